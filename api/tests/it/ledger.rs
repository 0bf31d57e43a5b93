//! The ledger query against the `issue_run_ledger` view: same runs, same order, same labels, for
//! every run state, including runs that joined an issue's ledger through activity on it while
//! belonging to another issue (the page query's second branch).

use crate::helpers::{tokens, Harness, Projection, World};
use events::*;
use serde_json::{json, Value};

/// Every column both have, compared row by row (the API with a limit large enough for all).
async fn assert_matches_view(h: &Harness, w: &World, issue: IssueId) -> Value {
    let api = h
        .ok(&format!(
            "/v1/companies/{}/issues/{issue}/runs?limit=100",
            w.company
        ))
        .await;
    let client = h.pool.get().await.unwrap();
    let view = client
        .query(
            "SELECT to_jsonb(v) FROM issue_run_ledger v WHERE issue_id = $1 ORDER BY ledger_rank",
            &[&issue.0],
        )
        .await
        .unwrap();
    let api_rows = api["rows"].as_array().unwrap();
    assert_eq!(api_rows.len(), view.len(), "same runs");
    assert_eq!(api["total"], view.len());
    for (mine, theirs) in api_rows.iter().zip(&view) {
        let theirs: Value = theirs.get(0);
        for column in [
            "ledger_rank",
            "run_id",
            "status",
            "agent_id",
            "agent_name",
            "adapter_type",
            "invocation_source",
            "elapsed_sec",
            "is_live",
            "error_code",
            "stop_reason",
            "effective_timeout_sec",
            "timeout_configured",
            "timeout_source",
            "timeout_fired",
            "liveness_state",
            "liveness_reason",
            "continuation_attempt",
            "next_action",
            "exhausted",
            "liveness_label",
            "stop_label",
            "last_useful_action_fallback",
            "process_loss_retry_count",
            "retry_of_run_id",
            "result_summary",
        ] {
            assert_eq!(
                mine[column], theirs[column],
                "column {column} of run {}",
                mine["run_id"]
            );
        }
        for time in [
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "last_useful_action_at",
        ] {
            let parse = |v: &Value| {
                v.as_str()
                    .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
            };
            assert_eq!(
                parse(&mine[time]),
                parse(&theirs[time]),
                "{time} of run {}",
                mine["run_id"]
            );
        }
    }
    api
}

#[tokio::test]
async fn the_page_query_agrees_with_the_view_for_every_run_state() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (mut events, _) = w.ten_runs();
    let (queued, lost, manual, paused, ghost) = (
        RunId::new_random(),
        RunId::new_random(),
        RunId::new_random(),
        RunId::new_random(),
        RunId::new_random(),
    );
    events.push(w.queued(queued, 0));
    events.extend([w.queued(lost, 0), w.started(lost), w.lost(lost)]);
    events.extend([
        w.queued(manual, 0),
        w.started(manual),
        w.finished(
            manual,
            RunOutcome::Cancelled,
            Some("Cancelled by control plane"),
        ),
    ]);
    events.extend([
        w.queued(paused, 0),
        w.started(paused),
        w.finished(
            paused,
            RunOutcome::Cancelled,
            Some("Cancelled due to agent pause"),
        ),
    ]);
    // Only evidence of this run has arrived: a placeholder row, status unknown.
    let issue = w.issue;
    events.push(w.comment(issue, Some(ghost)));
    h.publish(&events).await;
    h.drain().await;

    let api = assert_matches_view(&h, &w, w.issue).await;
    let label = |run: RunId, column: &str| {
        api["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["run_id"] == json!(run))
            .map(|r| r[column].clone())
            .unwrap()
    };
    assert_eq!(label(queued, "stop_label"), "Waiting to start");
    assert_eq!(label(queued, "liveness_label"), "Checks after finish");
    assert_eq!(label(lost, "stop_label"), "process lost");
    assert_eq!(label(manual, "stop_label"), "cancelled");
    assert_eq!(label(paused, "stop_label"), "paused");
    assert_eq!(label(ghost, "status"), Value::Null);
    assert_eq!(label(ghost, "is_live"), true);
    assert_eq!(label(ghost, "stop_label"), "Waiting to start");
    assert_eq!(
        label(ghost, "last_useful_action_fallback"),
        "No action recorded yet"
    );
}

#[tokio::test]
async fn runs_of_another_issue_that_worked_on_this_one_are_in_its_ledger() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (mut events, runs_a) = w.ten_runs();
    let issue_a = w.issue;
    let issue_b = IssueId::new_random();
    events.push(w.issue_created(issue_b, "PAP-8", "Follow-up", IssueStatus::Todo, None));
    w.issue = issue_b;
    let (b1, b2) = (RunId::new_random(), RunId::new_random());
    events.extend(w.succeeded(b1, LivenessState::Advanced, "1 comment", None, 0));
    // run 9 of issue A (started before b2) comments on issue B: it joins B's ledger
    events.push(w.comment(issue_b, Some(runs_a[9])));
    events.extend(w.succeeded(b2, LivenessState::Completed, "Issue is done", None, 0));
    h.publish(&events).await;
    h.drain().await;

    let api = assert_matches_view(&h, &w, issue_b).await;
    let order: Vec<&Value> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["run_id"])
        .collect();
    assert_eq!(order, [&json!(b2), &json!(b1), &json!(runs_a[9])]);
    let first = h
        .ok(&format!(
            "/v1/companies/{}/issues/{issue_b}/runs?limit=2",
            w.company
        ))
        .await;
    assert_eq!(first["hidden_label"], "1 older run not shown");
    assert_eq!(first["rows"].as_array().unwrap().len(), 2);
    // And A's ledger is unchanged by it.
    w.issue = issue_a;
    let a = assert_matches_view(&h, &w, issue_a).await;
    assert_eq!(a["total"], 10);
}
