//! The company overview: which issues count as blocked or stranded (and which do not), the live
//! runs, the last decision about a stranded issue's run, and the dead letters, in one snapshot.

use crate::helpers::{tokens, Harness, Projection, World};
use events::*;
use serde_json::{json, Value};

fn identifiers(overview: &Value) -> Vec<(String, String)> {
    overview["attention"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["identifier"].as_str().unwrap().to_owned(),
                a["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_overview_lists_blocked_and_stranded_issues_and_live_runs() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let home = w.issue;
    let mut events = vec![w.agent("CodexCoder", "codex_local", json!({}))];
    let mut issue = |w: &mut World, ident: &str, status: IssueStatus| {
        let id = IssueId::new_random();
        events.push(w.issue_created(id, ident, "An issue", status, None));
        id
    };
    issue(&mut w, "B-1", IssueStatus::Blocked);
    let lost = issue(&mut w, "S-1", IssueStatus::InProgress);
    let fine = issue(&mut w, "OK-1", IssueStatus::InProgress);
    // T-1 has no run yet and D-1 is done: neither needs a person.
    issue(&mut w, "T-1", IssueStatus::Todo);
    let retried = issue(&mut w, "R-1", IssueStatus::InProgress);
    issue(&mut w, "D-1", IssueStatus::Done);
    let (lost_run, fine_run, failed_run, retry_run) = (
        RunId::new_random(),
        RunId::new_random(),
        RunId::new_random(),
        RunId::new_random(),
    );
    // S-1: its run was lost and nothing runs: stranded, with the refusal as its last decision.
    w.issue = lost;
    events.extend([w.queued(lost_run, 0), w.started(lost_run), w.lost(lost_run)]);
    events.push(w.event(EventData::IssueFollowUpRefused(
        issue::IssueFollowUpRefused {
            issue_id: lost,
            run_id: Some(lost_run),
            agent_id: Some(w.agent),
            follow_up: "process_lost_retry".into(),
            reason: "issue is blocked".into(),
            retry_after: None,
            extra: Default::default(),
        },
    )));
    // OK-1: its last run succeeded: not stranded.
    w.issue = fine;
    events.extend(w.succeeded(fine_run, LivenessState::Advanced, "1 comment", None, 0));
    // its run failed but the retry is queued: live, not stranded.
    w.issue = retried;
    events.extend([
        w.queued(failed_run, 0),
        w.started(failed_run),
        w.finished(failed_run, RunOutcome::Failed, Some("boom")),
        w.queued(retry_run, 0),
    ]);
    w.issue = home;
    h.publish(&events).await;
    let bad = format!("{}.{}.run.{}", h.ts.prefix, w.company, uuid::Uuid::new_v4());
    h.publish_raw(&bad, b"not json").await;
    h.drain().await;

    let o = h.ok(&format!("/v1/companies/{}/overview", w.company)).await;
    assert_eq!(
        identifiers(&o),
        [
            ("B-1".to_owned(), "blocked".to_owned()),
            ("S-1".to_owned(), "stranded".to_owned())
        ],
        "{o}"
    );
    assert_eq!(
        (o["blocked_count"].clone(), o["stranded_count"].clone()),
        (json!(1), json!(1))
    );
    let stranded = &o["attention"][1];
    assert_eq!(stranded["last_run"]["run_id"], json!(lost_run));
    assert_eq!(stranded["last_run"]["status"], "failed");
    assert_eq!(stranded["last_decision"]["type"], "follow_up.refused");
    assert_eq!(
        stranded["last_decision"]["message"],
        "Automatic process_lost_retry refused: issue is blocked"
    );
    assert_eq!(o["attention"][0]["last_run"], Value::Null);
    assert_eq!(o["live_run_count"], 1);
    assert_eq!(o["live_runs"][0]["run_id"], json!(retry_run));
    assert_eq!(o["live_runs"][0]["issue_identifier"], "R-1");
    assert_eq!(o["dead_letters"], 1);
    assert_eq!(o["issues"], 6);
    assert_eq!(o["lag"], 0, "{o}");
    assert_eq!(o["position"], o["stream_last_seq"]);
}
