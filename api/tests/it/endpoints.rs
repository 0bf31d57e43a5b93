//! Every endpoint answers with the data the projections hold: the ledger (fields, labels, order,
//! 8 rows and "2 older runs not shown"), runs, timelines, live runs, wakeups, the continuation
//! summary, documents, issues, companies, dead letters, health and metrics.

use crate::helpers::{tokens, Harness, Projection, World, ADMIN};
use events::*;
use serde_json::{json, Value};

fn row(ledger: &Value, run: RunId) -> &Value {
    ledger["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == json!(run))
        .unwrap_or_else(|| panic!("run {run} is in the ledger page"))
}

#[tokio::test]
async fn the_ledger_shows_eight_rows_newest_first_with_every_label() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (events, runs) = w.ten_runs();
    let last = h.publish(&events).await;
    h.drain().await;
    let (c, i) = (w.company.0, w.issue.0);

    let reply = h
        .get(&format!("/v1/companies/{c}/issues/{i}/runs"), Some(ADMIN))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.position, Some(last), "the position header");
    let ledger = reply.body;
    assert_eq!(ledger["position"], last, "the body says the same position");
    assert_eq!(ledger["total"], 10);
    assert_eq!(ledger["limit"], 8);
    assert_eq!(ledger["hidden_count"], 2);
    assert_eq!(ledger["hidden_label"], "2 older runs not shown");
    let rows = ledger["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let order: Vec<Value> = rows.iter().map(|r| r["run_id"].clone()).collect();
    let newest_first: Vec<Value> = runs.iter().rev().take(8).map(|r| json!(r)).collect();
    assert_eq!(order, newest_first, "newest first by start time");
    let ranks: Vec<i64> = rows
        .iter()
        .map(|r| r["ledger_rank"].as_i64().unwrap())
        .collect();
    assert_eq!(ranks, (1..=8).collect::<Vec<_>>());

    let running = row(&ledger, runs[9]);
    assert_eq!(running["status"], "running");
    assert_eq!(running["is_live"], true);
    assert_eq!(running["agent_name"], "CodexCoder");
    assert_eq!(running["liveness_label"], "Checks after finish");
    assert_eq!(running["stop_label"], "Still running");
    assert_eq!(
        running["last_useful_action_fallback"],
        "No action recorded yet"
    );
    assert!(
        running["elapsed_sec"].as_i64().unwrap() > 0,
        "elapsed up to the last activity"
    );

    let blocked = row(&ledger, runs[8]);
    assert_eq!(blocked["liveness_label"], "Blocked");
    assert_eq!(
        blocked["next_action"],
        "Need API credentials from the operator"
    );
    assert_eq!(blocked["stop_label"], "completed (30s timeout)");
    assert_eq!(
        blocked["usage"],
        json!({"input_tokens": 1200, "output_tokens": 340, "cost_usd": 0.02})
    );
    assert_eq!(blocked["result_summary"], "did the work");

    let unclassified = row(&ledger, runs[7]);
    assert_eq!(unclassified["liveness_label"], "No liveness data");
    assert_eq!(unclassified["stop_label"], "adapter failed");
    assert_eq!(unclassified["last_useful_action_fallback"], "Unavailable");

    let exhausted = row(&ledger, runs[6]);
    assert_eq!(exhausted["exhausted"], true);
    assert_eq!(exhausted["continuation_attempt"], 2);
    assert_eq!(exhausted["liveness_label"], "Plan only");
    assert_eq!(
        exhausted["last_useful_action_fallback"],
        "No concrete action"
    );

    let empty = row(&ledger, runs[5]);
    assert_eq!(empty["liveness_label"], "Empty response");
    assert_eq!(empty["continuation_attempt"], 1);
    assert_eq!(empty["exhausted"], false);
    assert_eq!(empty["last_useful_action_fallback"], "No useful output");

    let plan = row(&ledger, runs[4]);
    assert_eq!(plan["liveness_state"], "plan_only");
    assert!(plan["next_action"]
        .as_str()
        .unwrap()
        .contains("inspect the repo"));

    let budget = row(&ledger, runs[3]);
    assert_eq!(budget["status"], "cancelled");
    assert_eq!(budget["stop_reason"], "budget_paused");
    assert_eq!(budget["stop_label"], "budget paused");

    let timeout = row(&ledger, runs[2]);
    assert_eq!(timeout["stop_label"], "timeout (30s timeout)");
    assert_eq!(timeout["effective_timeout_sec"], 30);
    assert_eq!(timeout["timeout_configured"], true);
    assert_eq!(timeout["timeout_source"], "config");
    assert_eq!(timeout["timeout_fired"], true);
    assert_eq!(timeout["liveness_label"], "Failed");

    // More rows on request, and the advanced runs' last useful action is a time.
    let all = h
        .ok(&format!("/v1/companies/{c}/issues/{i}/runs?limit=20"))
        .await;
    assert_eq!(all["rows"].as_array().unwrap().len(), 10);
    assert_eq!(all["hidden_count"], 0);
    assert_eq!(all["hidden_label"], Value::Null);
    let advanced = row(&all, runs[0]);
    assert_eq!(advanced["liveness_label"], "Advanced");
    assert!(advanced["last_useful_action_at"].is_string());
    assert_eq!(advanced["last_useful_action_fallback"], Value::Null);
}

#[tokio::test]
async fn runs_timelines_live_runs_and_wakeups() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (mut events, runs) = w.ten_runs();
    let wakeup = WakeupId::new_random();
    events.push(w.wakeup(wakeup, "issue_assigned"));
    h.publish(&events).await;
    h.drain().await;
    let c = w.company.0;

    let run = h.ok(&format!("/v1/companies/{c}/runs/{}", runs[2])).await;
    let r = &run["run"];
    assert_eq!(r["run_id"], json!(runs[2]));
    assert_eq!(r["status"], "timed_out");
    assert_eq!(r["stop_label"], "timeout (30s timeout)");
    assert_eq!(r["host"], "host-1");
    assert_eq!(r["pid"], 4242);
    assert_eq!(r["issue_id"], json!(w.issue));
    assert_eq!(r["ledger_issue_ids"], json!([w.issue]));
    assert_eq!(r["result"]["summary"], "did the work");
    assert!(run["position"].as_i64().unwrap() > 0);

    let timeline = h
        .ok(&format!("/v1/companies/{c}/runs/{}/events", runs[9]))
        .await;
    let entries = timeline["events"].as_array().unwrap();
    assert!(entries.len() >= 3, "queued, started, tool call: {timeline}");
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] <= p[1]), "oldest first");
    assert!(entries.iter().any(|e| e["message"]
        .as_str()
        .unwrap_or("")
        .contains("ran cargo test")));
    assert_eq!(timeline["next_after_seq"], Value::Null);
    // Paging by whole events.
    let first = h
        .ok(&format!(
            "/v1/companies/{c}/runs/{}/events?limit=1",
            runs[9]
        ))
        .await;
    assert_eq!(first["events"].as_array().unwrap().len(), 1);
    let after = first["next_after_seq"].as_i64().expect("a next page");
    let rest = h
        .ok(&format!(
            "/v1/companies/{c}/runs/{}/events?after_seq={after}",
            runs[9]
        ))
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len() + 1, entries.len());

    let live = h
        .ok(&format!("/v1/companies/{c}/runs?status=running"))
        .await;
    let live: Vec<&Value> = live["runs"].as_array().unwrap().iter().collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["run_id"], json!(runs[9]));
    assert_eq!(live[0]["issue_identifier"], "PAP-7");
    let also_live = h
        .ok(&format!(
            "/v1/companies/{c}/runs?status=live&agent={}",
            w.agent
        ))
        .await;
    assert_eq!(also_live["runs"].as_array().unwrap().len(), 1);
    let everything = h.ok(&format!("/v1/companies/{c}/runs")).await;
    assert_eq!(everything["runs"].as_array().unwrap().len(), 10);

    // Run 9 holds the issue's execution lock, so the new wakeup waits for it.
    let wakeups = h
        .ok(&format!(
            "/v1/companies/{c}/wakeups?agent={}&status=deferred_issue_execution",
            w.agent
        ))
        .await;
    let list = wakeups["wakeups"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["wakeup_id"], json!(wakeup));
    assert_eq!(list[0]["reason"], "issue_assigned");
    assert_eq!(list[0]["agent_name"], "CodexCoder");
    let none = h
        .ok(&format!("/v1/companies/{c}/wakeups?status=claimed"))
        .await;
    assert_eq!(none["wakeups"], json!([]));
    let by_issue = h
        .ok(&format!("/v1/companies/{c}/wakeups?issue={}", w.issue))
        .await;
    assert_eq!(by_issue["wakeups"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn issues_documents_and_the_continuation_summary() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (mut events, runs) = w.ten_runs();
    events.push(w.plan(runs[8]));
    // Children: one active, one done, one cancelled.
    let parent = w.issue;
    let kids: Vec<IssueId> = (0..3).map(|_| IssueId::new_random()).collect();
    for (n, (kid, status)) in kids
        .iter()
        .zip([IssueStatus::Todo, IssueStatus::Done, IssueStatus::Cancelled])
        .enumerate()
    {
        events.push(w.issue_created(
            *kid,
            &format!("PAP-{}", 20 + n),
            "Child",
            status,
            Some(parent),
        ));
    }
    let without_summary = IssueId::new_random();
    events.push(w.issue_created(
        without_summary,
        "PAP-99",
        "Fresh issue",
        IssueStatus::Todo,
        None,
    ));
    h.publish(&events).await;
    h.drain().await;
    let (c, i) = (w.company.0, w.issue.0);

    let issue = h.ok(&format!("/v1/companies/{c}/issues/{i}")).await;
    let issue = &issue["issue"];
    assert_eq!(issue["identifier"], "PAP-7");
    assert_eq!(issue["title"], "Implement feature");
    assert_eq!(issue["status"], "in_progress");
    assert_eq!(issue["assignee_agent_name"], "CodexCoder");
    assert_eq!(issue["run_count"], 10);
    assert_eq!(issue["live_run_count"], 1);
    assert_eq!(issue["children"]["label"], "1 active, 1 done, 1 cancelled");

    let issues = h.ok(&format!("/v1/companies/{c}/issues")).await;
    assert_eq!(issues["issues"].as_array().unwrap().len(), 5);
    let found = h.ok(&format!("/v1/companies/{c}/issues?q=pap-7")).await;
    assert_eq!(found["issues"].as_array().unwrap().len(), 1);
    let done = h.ok(&format!("/v1/companies/{c}/issues?status=done")).await;
    assert_eq!(done["issues"][0]["identifier"], "PAP-21");

    let summary = h
        .ok(&format!(
            "/v1/companies/{c}/issues/{i}/continuation-summary"
        ))
        .await;
    assert_eq!(summary["key"], "continuation-summary");
    assert_eq!(summary["title"], "Continuation Summary");
    assert_eq!(summary["created_by_run_id"], json!(runs[8]));
    assert!(summary["body"].as_str().unwrap().contains("## Next Action"));
    let missing = h
        .get(
            &format!("/v1/companies/{c}/issues/{without_summary}/continuation-summary"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert!(missing.body["message"]
        .as_str()
        .unwrap()
        .contains("no continuation summary yet"));

    // System documents are hidden from document lists unless asked for.
    let docs = h
        .ok(&format!("/v1/companies/{c}/issues/{i}/documents"))
        .await;
    let keys: Vec<&Value> = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["key"])
        .collect();
    assert_eq!(keys, [&json!("plan")]);
    let all = h
        .ok(&format!(
            "/v1/companies/{c}/issues/{i}/documents?include_system=true"
        ))
        .await;
    let keys: Vec<&Value> = all["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["key"])
        .collect();
    assert_eq!(keys, [&json!("continuation-summary"), &json!("plan")]);
    assert_eq!(all["documents"][0]["is_system"], true);
}

#[tokio::test]
async fn companies_dead_letters_health_and_metrics() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    // Both companies in one partition, so its position row is the one that counts them all.
    let mut other = std::iter::repeat_with(World::new)
        .find(|o| h.subjects.partition_of(o.company) == h.subjects.partition_of(w.company))
        .unwrap();
    let consumer = h.kit.projector_position_key(w.company);
    let (events, _) = w.ten_runs();
    h.publish(&events).await;
    h.publish(&[other.agent("Other", "process", json!({}))])
        .await;
    let bad = format!("{}.{}.run.{}", h.ts.prefix, w.company, uuid::Uuid::new_v4());
    let bad_seq = h.publish_raw(&bad, b"{not json").await;
    h.drain().await;

    let companies = h.ok("/v1/companies").await;
    let ids: Vec<&Value> = companies["companies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["company_id"])
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&&json!(w.company)) && ids.contains(&&json!(other.company)));
    let mine = companies["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["company_id"] == json!(w.company))
        .unwrap();
    assert_eq!(mine["issues"], 1);
    assert_eq!(mine["agents"], 1);
    assert_eq!(mine["live_runs"], 1);

    let dead = h
        .ok(&format!("/v1/companies/{}/dead-letters", w.company))
        .await;
    assert_eq!(dead["total"], 1);
    assert_eq!(dead["dead_letters"][0]["seq"], bad_seq);
    assert_eq!(dead["dead_letters"][0]["payload_preview"], "{not json");
    assert!(!dead["dead_letters"][0]["reason"]
        .as_str()
        .unwrap()
        .is_empty());
    let none = h
        .ok(&format!("/v1/companies/{}/dead-letters", other.company))
        .await;
    assert_eq!(none["total"], 0);

    let health = h.get("/healthz", None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["postgres"]["ok"], true);
    assert_eq!(health.body["nats"]["ok"], true);
    assert_eq!(health.body["projector"]["position"], bad_seq);
    assert_eq!(health.body["projector"]["stream_last_seq"], bad_seq);
    assert_eq!(health.body["projector"]["lag"], 0);
    assert_eq!(health.body["projector"]["dead_letters"], 1);

    // Lag shows up as soon as the stream is ahead of the projector.
    h.publish(&[w.agent("CodexCoder", "codex_local", json!({}))])
        .await;
    let health = h.get("/healthz", None).await;
    assert_eq!(health.body["projector"]["lag"], 1);

    h.registry.record_projector_batch(
        &projector::BatchReport {
            applied: 2,
            by_type: [("run.finished", 2)].into_iter().collect(),
            ..Default::default()
        },
        std::time::Duration::from_millis(4),
    );
    h.registry
        .record_reconciler_decisions("run_liveness_continuation", 1);
    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    for expected in [
        format!("runledger_projector_position{{consumer=\"{consumer}\"}} {bad_seq}"),
        format!(
            "runledger_projector_events_applied_total{{consumer=\"{consumer}\"}} {}",
            bad_seq - 1
        ),
        format!("runledger_projector_dead_lettered_total{{consumer=\"{consumer}\"}} 1"),
        "runledger_dead_letters 1".to_owned(),
        "runledger_live_runs 1".to_owned(),
        "runledger_projector_lag{consumer=\"runledger-projector\"} 1".to_owned(),
        "runledger_projector_events_total{type=\"run.finished\"} 2".to_owned(),
        "runledger_projector_batch_duration_seconds_count 1".to_owned(),
        "runledger_reconciler_decisions_total{rule=\"run_liveness_continuation\"} 1".to_owned(),
        "runledger_http_requests_total{route=\"/healthz\",status=\"200\"} 2".to_owned(),
        "runledger_http_request_duration_seconds_bucket{route=\"/v1/companies\",le=\"+Inf\"} 1"
            .to_owned(),
    ] {
        assert!(
            text.contains(&expected),
            "metrics lack `{expected}`:\n{text}"
        );
    }
}
