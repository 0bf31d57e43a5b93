//! Projector integration tests against real NATS JetStream and PostgreSQL. Each test has its own
//! database and stream; the projector is driven step by step (no sleeps).

mod cache;
mod event_ids;
mod fuzz;
mod helpers;
mod membership;
mod poison;

use events::*;
use helpers::{Harness, World};
use projector::feed::{Feed, FeedError, FeedSpec, Reader};
use projector::store::checksum::checksums;
use projector::Outcome;
use projector::{apply_batch, Incoming, Target};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_run_lifecycle_projects_every_read_model() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let wakeup = WakeupId::new_random();
    let mut events = vec![
        w.agent("codex_local", json!({"timeout_sec": 45})),
        w.issue_created(IssueStatus::InProgress),
        w.wakeup(wakeup),
        w.queued(run, Some(wakeup), None, 0),
        w.started(run, Some(4242)),
    ];
    for _ in 0..3 {
        events.push(w.activity(run, ActivityKind::Heartbeat));
    }
    events.push(w.activity(run, ActivityKind::ToolCall));
    events.push(w.activity(run, ActivityKind::Workspace));
    events.push(w.comment(Some(run)));
    events.push(w.revision("plan", Some(run)));
    events.push(w.revision("continuation-summary", Some(run)));
    h.publish(&events).await;
    h.drain().await;

    let issue = h.issue(w.issue).await;
    assert_eq!(
        issue["execution_run_id"],
        json!(run),
        "a starting run takes the free lock"
    );
    let wake = h.wakeup(wakeup).await;
    assert_eq!(wake["status"], "claimed");
    assert_eq!(wake["run_id"], json!(run));

    h.publish(&[
        w.finished(run, RunOutcome::TimedOut, None),
        w.comment(Some(run)),
    ])
    .await;
    h.drain().await;

    let r = h.run(run).await;
    assert_eq!(r["status"], "timed_out");
    assert_eq!(r["error_code"], "timeout");
    assert_eq!(r["stop_reason"], "timeout");
    assert_eq!(r["effective_timeout_sec"], 45);
    assert_eq!(r["timeout_configured"], true);
    assert_eq!(r["timeout_source"], "config");
    assert_eq!(r["timeout_fired"], true);
    assert_eq!(
        r["result"]["summary"], "done",
        "adapter result keys survive"
    );
    assert_eq!(r["result"]["stop_reason"], "timeout");
    assert_eq!(r["activity_count"], 5);
    assert_eq!(r["evidence_tool_events"], 1);
    assert_eq!(r["evidence_workspace_ops"], 1);
    assert_eq!(
        r["evidence_comments"], 1,
        "the comment after the finish is not evidence"
    );
    assert_eq!(
        r["evidence_revisions"], 1,
        "continuation-summary never counts"
    );
    assert_eq!(r["evidence_plan_revisions"], 1);
    assert_eq!(r["evidence_activity"], 2, "comment + plan revision");
    assert_eq!(r["issue_status_at_finish"], "in_progress");
    assert_eq!(
        h.issue(w.issue).await["execution_run_id"],
        json!(null),
        "the lock is released"
    );
    assert_eq!(h.wakeup(wakeup).await["status"], "failed");

    let client = h.client().await;
    let ledger = client
        .query_one(
            "SELECT ledger_rank, status, stop_label, liveness_label, is_live FROM issue_run_ledger WHERE issue_id = $1",
            &[&w.issue.0],
        )
        .await
        .unwrap();
    assert_eq!(ledger.get::<_, i64>(0), 1);
    assert_eq!(ledger.get::<_, String>(2), "timeout (45s timeout)");
    assert_eq!(ledger.get::<_, String>(3), "No liveness data");
    assert!(!ledger.get::<_, bool>(4));
    let timeline: i64 = client
        .query_one(
            "SELECT count(*) FROM run_events WHERE run_id = $1",
            &[&run.0],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        timeline >= 6,
        "queued, started, tool, workspace, comment, revisions, finished: {timeline}"
    );
    let comments: i64 = client
        .query_one(
            "SELECT count(*) FROM issue_comments WHERE issue_id = $1",
            &[&w.issue.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comments, 2);
}

#[tokio::test]
async fn terminal_status_never_regresses_and_order_does_not_matter() {
    let mut w = World::new();
    let run = RunId::new_random();
    let in_order = vec![
        w.agent("codex_local", json!({})),
        w.issue_created(IssueStatus::Todo),
        w.queued(run, None, None, 0),
        w.started(run, Some(7)),
        w.activity(run, ActivityKind::Action),
        w.finished(run, RunOutcome::Succeeded, None),
    ];
    // Same events, shuffled: activity before the run exists, finished before it started, queued
    // last. (Evidence is cut off at the finish in stream order, so it stays before the finish.)
    let shuffled = vec![
        in_order[4].clone(),
        in_order[5].clone(),
        in_order[0].clone(),
        in_order[1].clone(),
        in_order[3].clone(),
        in_order[2].clone(),
    ];
    let mut a = Harness::new().await;
    a.publish(&in_order).await;
    a.drain().await;
    let mut b = Harness::new().await;
    b.publish(&shuffled).await;
    b.drain().await;
    let (ra, rb) = (a.run(run).await, b.run(run).await);
    for field in [
        "status",
        "agent_id",
        "issue_id",
        "pid",
        "host",
        "started_at",
        "finished_at",
        "stop_reason",
        "evidence_tool_events",
        "activity_count",
        "exit_code",
    ] {
        assert_eq!(ra[field], rb[field], "{field} converges");
    }
    assert_eq!(rb["status"], "succeeded");
    assert_eq!(
        b.issue(w.issue).await["execution_run_id"],
        json!(null),
        "a finished run never takes the lock"
    );
}

#[tokio::test]
async fn bad_input_is_dead_lettered_and_the_projector_continues() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    // Another company of the same partition: stream order decides which company's claim on the
    // run comes first. (Across partitions, the partition that commits first would: each
    // partition only orders its own companies' events.)
    let other = std::iter::repeat_with(World::new)
        .find(|o| h.subjects.partition_of(o.company) == h.subjects.partition_of(w.company))
        .unwrap();
    let run = RunId::new_random();
    let prefix = h.subjects.prefix().to_owned();
    let subject = format!("{prefix}.{}.run.{}", w.company, run);
    h.publish_raw(&subject, b"{not json").await;
    h.publish_raw(&subject, br#"{"specversion":"1.0","type":"run.exploded"}"#)
        .await;
    let mut wrong_place = w.queued(run, None, None, 0);
    wrong_place.company_id = other.company;
    h.publish_raw(&subject, &wrong_place.to_vec()).await;
    h.publish(&[w.queued(run, None, None, 0)]).await;
    // the same run, claimed by another company
    let mut foreign = w.started(run, Some(1));
    foreign.company_id = other.company;
    h.publish(&[foreign]).await;
    h.drain().await;

    let client = h.client().await;
    let rows = client
        .query(
            "SELECT seq, reason, payload FROM dead_letters ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let reasons: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].starts_with("malformed JSON"), "{}", reasons[0]);
    assert!(
        reasons[1].contains("missing required attribute")
            || reasons[1].contains("unknown event type"),
        "{}",
        reasons[1]
    );
    assert!(reasons[2].contains("belongs on"), "{}", reasons[2]);
    assert!(reasons[3].contains("belongs to company"), "{}", reasons[3]);
    assert_eq!(
        rows[0].get::<_, Vec<u8>>(2),
        b"{not json".to_vec(),
        "raw payload kept whole"
    );
    assert_eq!(
        h.run(run).await["status"],
        "queued",
        "the valid event was applied"
    );
    let counters = client
        .query_one(
            "SELECT sum(events_applied)::bigint, sum(dead_lettered)::bigint
               FROM projector_positions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (counters.get::<_, i64>(0), counters.get::<_, i64>(1)),
        (1, 4)
    );
}

#[tokio::test]
async fn redelivery_and_duplicate_publishes_apply_once() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let events = vec![
        w.queued(run, None, None, 0),
        w.started(run, Some(9)),
        w.activity(run, ActivityKind::ToolCall),
    ];
    h.publish(&events).await;
    h.publish(&events).await; // duplicate ids: stored once
    h.drain().await;
    let before = checksums(&**h.client().await).await.unwrap();
    assert_eq!(h.run(run).await["evidence_tool_events"], 1);

    // A redelivery of already-applied messages (e.g. an ack lost after commit) is skipped.
    let target = Target {
        consumer: h.projector_position_key(w.company),
        stream: h.ts.stream.clone(),
        subjects: h.subjects.clone(),
    };
    let incoming: Vec<Incoming> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Incoming {
            seq: i as u64 + 1,
            subject: h.subjects.stored(e),
            payload: e.to_vec().into(),
            stored_at: e.time,
        })
        .collect();
    let mut client = h.client().await;
    let report = apply_batch(&mut client, &target, &incoming).await.unwrap();
    assert_eq!((report.applied, report.skipped), (0, 3));
    assert_eq!(checksums(&**client).await.unwrap(), before);

    // A message repeated within one batch is folded once, too.
    let next = w.activity(run, ActivityKind::ToolCall);
    let again = Incoming {
        seq: 4,
        subject: h.subjects.stored(&next),
        payload: next.to_vec().into(),
        stored_at: next.time,
    };
    let report = apply_batch(&mut client, &target, &[again.clone(), again])
        .await
        .unwrap();
    assert_eq!((report.applied, report.skipped), (1, 1));
    assert_eq!(h.run(run).await["evidence_tool_events"], 2);
    let timeline: i64 = client
        .query_one("SELECT count(*) FROM run_events WHERE seq = 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeline, 1);
}

#[tokio::test]
async fn detached_warning_is_set_once_and_cleared_by_activity() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    h.publish(&[
        w.queued(run, None, None, 0),
        w.started(run, Some(123)),
        w.detached(run, 123),
        w.detached(run, 123),
    ])
    .await;
    h.drain().await;
    let r = h.run(run).await;
    assert_eq!(r["status"], "running");
    assert_eq!(r["error_code"], "process_detached");
    assert_eq!(
        r["error"],
        "Lost in-memory process handle, but child pid 123 is still alive"
    );
    let client = h.client().await;
    let warns: i64 = client
        .query_one(
            "SELECT count(*) FROM run_events WHERE run_id = $1 AND type = 'run.process_detached'",
            &[&run.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(warns, 1, "one warn event, first time only");

    h.publish(&[w.activity(run, ActivityKind::Heartbeat)]).await;
    h.drain().await;
    let r = h.run(run).await;
    assert_eq!(r["error_code"], json!(null));
    assert_eq!(r["error"], json!(null));
    assert_eq!(r["status"], "running");
    let cleared: String = client
        .query_one(
            "SELECT message FROM run_events WHERE run_id = $1 AND type = 'run.detached_cleared'",
            &[&run.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        cleared,
        "Detached child process reported activity; cleared detached warning"
    );
}

#[tokio::test]
async fn a_lost_run_releases_the_lock_and_its_one_retry_takes_it() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let (first, retry) = (RunId::new_random(), RunId::new_random());
    let wakeup = WakeupId::new_random();
    let checkout = w.event(EventData::IssueUpdated(issue::IssueUpdated {
        checkout_run_id: Some(Some(first)),
        ..issue::IssueUpdated::default_for(w.issue)
    }));
    h.publish(&[
        w.agent("codex_local", json!({})),
        w.issue_created(IssueStatus::InProgress),
        w.wakeup(wakeup),
        w.queued(first, Some(wakeup), None, 0),
        w.started(first, Some(999_999_999)),
        checkout,
        w.lost(first, Some(999_999_999)),
    ])
    .await;
    h.drain().await;
    let r = h.run(first).await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error_code"], "process_lost");
    assert_eq!(r["stop_reason"], "process_lost");
    assert_eq!(r["timeout_configured"], false);
    assert_eq!(r["timeout_fired"], false);
    assert!(r["error"].as_str().unwrap().ends_with("; retrying once"));
    assert_eq!(h.wakeup(wakeup).await["status"], "failed");
    assert_eq!(
        h.issue(w.issue).await["execution_run_id"],
        json!(null),
        "the lost run released the lock (a fact); the retry takes it"
    );

    h.publish(&[w.queued(retry, None, Some(first), 1)]).await;
    h.drain().await;
    let issue = h.issue(w.issue).await;
    assert_eq!(
        issue["execution_run_id"],
        json!(retry),
        "the retry holds the lock"
    );
    assert_eq!(issue["checkout_run_id"], json!(first), "checkout untouched");

    h.publish(&[
        w.started(retry, Some(999_999_998)),
        w.lost(retry, Some(999_999_998)),
    ])
    .await;
    h.drain().await;
    let r = h.run(retry).await;
    assert_eq!(r["status"], "failed");
    assert!(
        !r["error"].as_str().unwrap().contains("retrying once"),
        "never a second retry"
    );
    let issue = h.issue(w.issue).await;
    assert_eq!(issue["execution_run_id"], json!(null), "released");
    assert_eq!(issue["checkout_run_id"], json!(first));
}

#[tokio::test]
async fn a_retry_never_takes_the_lock_from_another_run() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let (lost, other, retry) = (
        RunId::new_random(),
        RunId::new_random(),
        RunId::new_random(),
    );
    h.publish(&[
        w.agent("codex_local", json!({})),
        w.issue_created(IssueStatus::InProgress),
        w.queued(lost, None, None, 0),
        w.started(lost, Some(999_999_999)),
        w.lost(lost, Some(999_999_999)),
        // the released lock is free: another run of the issue starts first and takes it
        w.queued(other, None, None, 0),
        w.started(other, Some(999_999_997)),
        w.queued(retry, None, Some(lost), 1),
    ])
    .await;
    h.drain().await;
    assert_eq!(
        h.issue(w.issue).await["execution_run_id"],
        json!(other),
        "the retry takes the lock only when it is free"
    );
}

#[tokio::test]
async fn deferred_wakeups_wait_for_the_lock_and_the_oldest_is_promoted() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let (older, newer) = (WakeupId::new_random(), WakeupId::new_random());
    h.publish(&[
        w.issue_created(IssueStatus::Todo),
        w.queued(run, None, None, 0),
        w.started(run, Some(5)),
        w.wakeup(older),
        w.wakeup(newer),
    ])
    .await;
    h.drain().await;
    assert_eq!(h.wakeup(older).await["status"], "deferred_issue_execution");
    assert_eq!(h.wakeup(newer).await["status"], "deferred_issue_execution");
    h.publish(&[w.finished(run, RunOutcome::Succeeded, None)])
        .await;
    h.drain().await;
    assert_eq!(h.wakeup(older).await["status"], "queued");
    assert_eq!(h.wakeup(newer).await["status"], "deferred_issue_execution");
}

#[tokio::test]
async fn cancellation_stop_reasons_follow_the_message() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let cases = [
        (
            "Cancelled due to budget pause",
            "budget_paused",
            "budget paused",
        ),
        ("Cancelled by control plane", "cancelled", "cancelled"),
        ("Cancelled due to agent pause", "paused", "paused"),
    ];
    let mut events = vec![
        w.agent("codex_local", json!({})),
        w.issue_created(IssueStatus::InProgress),
    ];
    let mut runs = Vec::new();
    for (reason, _, _) in cases {
        let run = RunId::new_random();
        runs.push(run);
        events.push(w.queued(run, None, None, 0));
        events.push(
            w.event(EventData::RunCancelRequested(run::RunCancelRequested {
                run_id: run,
                reason: reason.into(),
                extra: Default::default(),
            })),
        );
        events.push(w.event(EventData::RunFinished(run::RunFinished {
            run_id: run,
            outcome: RunOutcome::Cancelled,
            exit_code: None,
            signal: Some("SIGTERM".into()),
            error: None,
            error_code: None,
            result: Default::default(),
            stdout_excerpt: None,
            stderr_excerpt: None,
            usage: None,
            extra: Default::default(),
        })));
    }
    h.publish(&events).await;
    h.drain().await;
    let client = h.client().await;
    for (run, (reason, stop, label)) in runs.iter().zip(cases) {
        let r = h.run(*run).await;
        assert_eq!(r["status"], "cancelled");
        assert_eq!(r["error"], reason, "the cancel reason is the error");
        assert_eq!(r["error_code"], "cancelled");
        assert_eq!(r["stop_reason"], stop);
        assert_eq!(r["effective_timeout_sec"], 0);
        assert_eq!(r["timeout_fired"], false);
        let l: String = client
            .query_one(
                "SELECT stop_label FROM issue_run_ledger WHERE run_id = $1",
                &[&run.0],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(l, label);
    }
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_concurrently() {
    let db = testsupport::TestDb::new().await.unwrap();
    let mut a = db.client().await.unwrap();
    let mut b = db.client().await.unwrap();
    let (ra, rb) = tokio::join!(
        projector::store::migrate::migrate(&mut a, "public"),
        projector::store::migrate::migrate(&mut b, "public")
    );
    let mut applied = [ra.unwrap(), rb.unwrap()];
    applied.sort();
    assert_eq!(
        applied,
        [
            vec![],
            projector::store::migrate::MIGRATIONS
                .iter()
                .map(|m| m.0)
                .collect::<Vec<_>>()
        ],
        "exactly one process applies the migrations"
    );
    assert!(projector::store::migrate::migrate(&mut a, "public")
        .await
        .unwrap()
        .is_empty());
    assert!(projector::store::migrate::migrate(&mut a, "Bad-Name")
        .await
        .is_err());
}

#[tokio::test]
async fn a_failed_batch_is_retried_from_the_stored_position_without_losing_events() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let runs: Vec<RunId> = (0..3).map(|_| RunId::new_random()).collect();
    h.publish(&[w.queued(runs[0], None, None, 0)]).await;
    h.drain().await;
    // Break the database under the projector: the next batch fails and is rolled back.
    h.client()
        .await
        .batch_execute("ALTER TABLE runs RENAME TO runs_away")
        .await
        .unwrap();
    h.publish(&[w.queued(runs[1], None, None, 0)]).await;
    let err = loop {
        match h.projector.step(Duration::from_secs(2)).await {
            Err(e) => break e,
            Ok(Outcome::Idle) => panic!("the published event never arrived"),
            Ok(Outcome::Applied(_)) => continue,
        }
    };
    assert!(err.to_string().contains("runs"), "{err}");
    h.publish(&[w.queued(runs[2], None, None, 0)]).await;
    h.client()
        .await
        .batch_execute("ALTER TABLE runs_away RENAME TO runs")
        .await
        .unwrap();
    h.drain().await;
    for run in &runs {
        assert_eq!(h.run(*run).await["status"], "queued", "no event lost");
    }
}

/// A feed of `reader` on the harness' stream after `after`, one event per batch.
async fn feed(h: &Harness, reader: Reader, after: u64, batch_size: usize) -> Feed {
    let spec = FeedSpec {
        stream: h.ts.stream.clone(),
        subjects: h.subjects.clone(),
        reader,
        batch_size,
        linger: Duration::from_millis(5),
    };
    Feed::open(&h.js(), spec, after).await.unwrap()
}

/// The sequences of the next batch (waiting up to 5 s).
async fn next_seqs(feed: &mut Feed) -> Result<Vec<u64>, FeedError> {
    Ok(feed
        .next(Duration::from_secs(5))
        .await?
        .map(|b| b.iter().map(|(m, _)| m.seq).collect())
        .unwrap_or_default())
}

#[tokio::test]
async fn a_live_feed_whose_deliveries_skip_fails_instead_of_handing_out_a_gap() {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let h = Harness::new().await;
    let mut w = World::new();
    let events: Vec<Event> = (0..6).map(|_| w.issue_created(IssueStatus::Todo)).collect();
    h.publish(&events).await;
    let reader = || Reader::Durable("gap-check".into());
    let mut live = feed(&h, reader(), 0, 1).await;
    assert_eq!(next_seqs(&mut live).await.unwrap(), [1]);
    assert_eq!(next_seqs(&mut live).await.unwrap(), [2]);
    // The consumer is replaced behind the feed's back, further on: its deliveries restart at 1
    // and would skip events 3 and 4.
    let js = h.js();
    let stream = js.get_stream(&h.ts.stream).await.unwrap();
    stream.delete_consumer("gap-check").await.unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("gap-check".into()),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 5 },
            ack_policy: AckPolicy::None,
            filter_subject: h.subjects.all(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = testsupport::Deadline::after(Duration::from_secs(20));
    let mut next = 3;
    let error = loop {
        assert!(!deadline.passed(), "the feed neither delivered nor failed");
        match next_seqs(&mut live).await {
            // Only events in order may come out (those the old consumer had already sent
            // before it was deleted), never one after a gap.
            Ok(seqs) => {
                for seq in seqs {
                    assert_eq!(seq, next, "a gap was handed out");
                    next += 1;
                }
            }
            Err(e) => break e,
        }
    };
    assert!(
        next <= 5,
        "the replaced consumer's events came out: up to {next}"
    );
    // Either the gap is seen, or the server first says the consumer was deleted: a failure
    // either way, and no gap.
    assert!(
        matches!(error, FeedError::Gap { .. } | FeedError::Broken(_)),
        "{error}"
    );
    // A failed feed hands out nothing more.
    assert_eq!(next_seqs(&mut live).await, Err(FeedError::Failed));
    // Opened again at the stored position, every event comes, in order.
    let mut live = feed(&h, reader(), 2, 1).await;
    for seq in 3..=6 {
        assert_eq!(next_seqs(&mut live).await.unwrap(), [seq]);
    }
}

#[tokio::test]
async fn a_history_feed_whose_consumer_breaks_goes_on_where_it_was_without_gaps_or_repeats() {
    use futures::StreamExt;
    let h = Harness::new().await;
    let mut w = World::new();
    let events: Vec<Event> = (0..40)
        .map(|_| w.issue_created(IssueStatus::Todo))
        .collect();
    h.publish(&events).await;
    let js = h.js();
    let stream = js.get_stream(&h.ts.stream).await.unwrap();
    // The feed's consumers: those of the stream that other readers (the harness') do not own.
    let others: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    let readers = || async {
        let names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
        names
            .into_iter()
            .filter(|n| !others.contains(n))
            .collect::<Vec<_>>()
    };
    let mut history = feed(&h, Reader::History, 2, 10).await;
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.extend(next_seqs(&mut history).await.unwrap());
    }
    assert_eq!(seen[..10], (3..=12).collect::<Vec<_>>());
    // The consumer disappears behind the feed's back (as after a server restart without it).
    let first = readers().await;
    assert_eq!(first.len(), 1, "{first:?}");
    stream.delete_consumer(&first[0]).await.unwrap();
    // What was stored before may already be on its way; what comes after needs a new consumer.
    let more: Vec<Event> = (0..20)
        .map(|_| w.issue_created(IssueStatus::Todo))
        .collect();
    h.publish(&more).await;
    let deadline = testsupport::Deadline::after(Duration::from_secs(20));
    while seen.len() < 58 {
        assert!(!deadline.passed(), "read only {seen:?}");
        seen.extend(next_seqs(&mut history).await.unwrap());
    }
    assert_eq!(seen, (3..=60).collect::<Vec<_>>(), "in order, each once");
    // The broken consumer was replaced, not added to.
    let now = readers().await;
    assert!(now.len() == 1 && now != first, "{first:?} then {now:?}");
}
