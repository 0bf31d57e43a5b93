//! `GET /v1/companies/{c}/issues/{i}/decisions`: the reconciler's explained follow-ups of an
//! issue, newest first and paged, with the cause's stream sequence; the follow-ups come from the
//! reconciler's simulator (the same engine the service runs) over a process loss.

use crate::helpers::{tokens, Harness, Projection, World};
use events::*;
use serde_json::json;

#[tokio::test]
async fn an_issues_decisions_explain_the_process_loss_retry_newest_first_and_paged() {
    let mut w = World::new();
    let mut h = Harness::new(
        Projection::Stepped,
        tokens(&[(w.company, "company-token-0123456789abcdef")]),
    )
    .await;
    let run = RunId::new_random();
    let issue = w.issue;
    let history = vec![
        w.agent("CodexCoder", "codex_local", json!({})),
        w.issue_created(issue, "PAP-1", "Ship it", IssueStatus::InProgress, None),
        w.queued(run, 0),
        w.started(run),
    ];
    let lost = w.lost(run);
    let mut sim = reconciler::sim::Simulator::new(reconciler::engine::Policy::default());
    let follow_ups = sim.run(history.iter().chain([&lost]).cloned());
    h.publish(&history).await;
    let lost_seq = h.publish(std::slice::from_ref(&lost)).await;
    h.publish(&follow_ups).await;
    h.drain().await;

    let path = format!("/v1/companies/{}/issues/{issue}/decisions", w.company);
    let all = h.ok(&path).await;
    let decisions = all["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), follow_ups.len(), "{all}");
    assert_eq!(all["next_before_seq"], json!(null));
    let newest = &decisions[0];
    assert_eq!(newest["event_type"], "run.queued");
    assert_eq!(newest["rule"], "process_lost_retry");
    assert_eq!(
        newest["sentence"],
        "requeued once: last run failed with process_lost; no recovery used yet"
    );
    assert_eq!(newest["cause"]["type"], "run.process_lost");
    assert_eq!(newest["cause"]["seq"], lost_seq);
    assert_eq!(newest["cause"]["event_id"], lost.id.to_string());
    assert_eq!(newest["run_id"], run.to_string());
    for (key, value) in [
        ("issue_status", json!("in_progress")),
        ("run_status", json!("failed")),
        ("run_error_code", json!("process_lost")),
        ("liveness", json!("failed")),
        ("process_loss_retries", json!(0)),
        ("storm_granted_in_window", json!(0)),
    ] {
        assert_eq!(newest["inputs"][key], value, "{key}");
    }
    let seqs: Vec<i64> = decisions
        .iter()
        .map(|d| d["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|p| p[0] > p[1]),
        "newest first: {seqs:?}"
    );

    // Paged: two, then the rest from `next_before_seq`.
    let first = h.ok(&format!("{path}?limit=2")).await;
    assert_eq!(first["decisions"].as_array().unwrap().len(), 2);
    let next = first["next_before_seq"].as_i64().expect("a next page");
    assert_eq!(next, seqs[1]);
    let second = h.ok(&format!("{path}?limit=2&before_seq={next}")).await;
    assert_eq!(
        second["decisions"].as_array().unwrap().len(),
        follow_ups.len() - 2
    );
    assert_eq!(second["decisions"][0]["seq"], seqs[2]);

    // Filtered by the run the rules looked at; typed parameters are checked.
    let of_run = h.ok(&format!("{path}?run={run}")).await;
    assert_eq!(
        of_run["decisions"].as_array().unwrap().len(),
        follow_ups.len()
    );
    // The retry run itself: the decision that queued it.
    let retry = follow_ups
        .iter()
        .find_map(|e| match &e.data {
            EventData::RunQueued(q) => Some(q.run_id),
            _ => None,
        })
        .unwrap();
    let of_retry = h.ok(&format!("{path}?run={retry}")).await;
    let of_retry = of_retry["decisions"].as_array().unwrap();
    assert_eq!(of_retry.len(), 1, "{of_retry:?}");
    assert_eq!(of_retry[0]["event_type"], "run.queued");
    assert_eq!(of_retry[0]["created_run_id"], retry.to_string());
    let other = h.ok(&format!("{path}?run={}", RunId::new_random())).await;
    assert_eq!(other["decisions"], json!([]));
    let bad = h
        .get(
            &format!("{path}?before_seq=-1"),
            Some("company-token-0123456789abcdef"),
        )
        .await;
    assert_eq!(bad.status.as_u16(), 400);
    let missing = h
        .get(
            &format!(
                "/v1/companies/{}/issues/{}/decisions",
                w.company,
                IssueId::new_random()
            ),
            Some("company-token-0123456789abcdef"),
        )
        .await;
    assert_eq!(missing.status.as_u16(), 404);
}
