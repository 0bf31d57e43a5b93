//! The row cache between batches: used while the position row is as its writer left it, dropped
//! when anyone else wrote, after a failed batch, and when full; in every case the tables end as a
//! projection without any cache.

use crate::helpers::{Harness, World};
use events::*;
use projector::feed::Batch;
use projector::store::batch::apply;
use projector::store::cache::RowCache;
use projector::store::checksum::checksums;
use projector::{apply_batch, CommitMode, Incoming, Session, Target};
use serde_json::json;
use std::collections::BTreeMap;
use testsupport::TestDb;

/// Feeds events to one writer in batches, numbering them like the stream would.
struct Writer {
    target: Target,
    subjects: Subjects,
    next_seq: u64,
}

impl Writer {
    fn new(h: &Harness) -> Self {
        Self {
            target: Target {
                consumer: "runledger-projector".into(),
                stream: h.ts.stream.clone(),
                subjects: h.subjects.clone(),
            },
            subjects: h.subjects.clone(),
            next_seq: 1,
        }
    }

    fn incoming(&mut self, events: &[Event]) -> Vec<Incoming> {
        events
            .iter()
            .map(|e| {
                let seq = self.next_seq;
                self.next_seq += 1;
                Incoming {
                    seq,
                    subject: self.subjects.stored(e),
                    payload: e.to_vec().into(),
                    stored_at: e.time,
                }
            })
            .collect()
    }

    async fn apply(
        &mut self,
        h: &Harness,
        session: &mut Session,
        events: &[Event],
    ) -> Result<(), projector::ProjectorError> {
        let messages = self.incoming(events);
        let mut client = h.client().await;
        let batch = Batch::parse(&self.target.subjects, messages);
        apply(&mut client, &self.target, &batch, session)
            .await
            .map(|_| ())
    }
}

/// The checksums of `events` projected in one batch without a cache, into a fresh database.
async fn uncached(h: &Harness, events: &[Event]) -> BTreeMap<String, (i64, String)> {
    let db = TestDb::new().await.unwrap();
    let mut client = db.client().await.unwrap();
    projector::store::migrate::migrate(&mut client, "public")
        .await
        .unwrap();
    let mut writer = Writer::new(h);
    let messages = writer.incoming(events);
    apply_batch(&mut client, &writer.target, &messages)
        .await
        .unwrap();
    checksums(&client).await.unwrap()
}

async fn host(h: &Harness, run: RunId) -> serde_json::Value {
    h.run(run).await["host"].clone()
}

#[tokio::test]
async fn cached_rows_are_trusted_only_while_the_position_row_is_as_this_writer_left_it() {
    let h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let mut writer = Writer::new(&h);
    let mut a = Session::new(CommitMode::Synchronous);
    let mut b = Session::new(CommitMode::Synchronous);
    let tamper = "UPDATE runs SET host = 'tampered'";
    writer
        .apply(
            &h,
            &mut a,
            &[
                w.issue_created(IssueStatus::InProgress),
                w.queued(run, None, None, 0),
                w.started(run, Some(7)),
            ],
        )
        .await
        .unwrap();
    assert!(!a.cache.is_empty(), "the committed rows are kept");

    // A write outside any batch, with the position row untouched, is not seen: the next batch
    // works on the rows as this writer committed them (this is why such writes must reset the
    // position row's writer, as migrations that change rows do).
    h.client().await.batch_execute(tamper).await.unwrap();
    writer
        .apply(&h, &mut a, &[w.activity(run, ActivityKind::Heartbeat)])
        .await
        .unwrap();
    assert_eq!(
        host(&h, run).await,
        json!("host-1"),
        "served from the cache"
    );

    // With the writer reset, the rows are loaded again.
    h.client()
        .await
        .batch_execute(&format!(
            "{tamper}; UPDATE projector_positions SET writer = NULL"
        ))
        .await
        .unwrap();
    writer
        .apply(&h, &mut a, &[w.activity(run, ActivityKind::Heartbeat)])
        .await
        .unwrap();
    assert_eq!(host(&h, run).await, json!("tampered"), "loaded again");
    assert_eq!(h.run(run).await["activity_count"], 2);

    // Another writer takes a turn: the first one's rows are stale and must not be used.
    writer
        .apply(&h, &mut b, &[w.activity(run, ActivityKind::Heartbeat)])
        .await
        .unwrap();
    writer
        .apply(&h, &mut a, &[w.activity(run, ActivityKind::Heartbeat)])
        .await
        .unwrap();
    assert_eq!(
        h.run(run).await["activity_count"],
        4,
        "both writers' heartbeats are counted"
    );
}

#[tokio::test]
async fn a_failed_batch_leaves_nothing_half_taken_in_the_cache() {
    let h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let (older, newer) = (WakeupId::new_random(), WakeupId::new_random());
    let mut writer = Writer::new(&h);
    let mut a = Session::new(CommitMode::Synchronous);
    let first = [
        w.issue_created(IssueStatus::Todo),
        w.queued(run, None, None, 0),
        w.started(run, Some(5)),
        w.wakeup(older),
        w.wakeup(newer),
    ];
    writer.apply(&h, &mut a, &first).await.unwrap();
    assert_eq!(h.wakeup(older).await["status"], "deferred_issue_execution");

    // Every row the next batch needs is cached; it takes them, then fails writing.
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    h.client()
        .await
        .batch_execute(&rename("runs", "runs_away"))
        .await
        .unwrap();
    let heartbeat = w.activity(run, ActivityKind::Heartbeat);
    let failed = writer
        .apply(&h, &mut a, std::slice::from_ref(&heartbeat))
        .await;
    assert!(failed.is_err(), "the batch must fail: {failed:?}");
    writer.next_seq -= 1;
    h.client()
        .await
        .batch_execute(&rename("runs_away", "runs"))
        .await
        .unwrap();

    // The retry, then the finish that releases the lock: the oldest deferred wakeup is promoted,
    // so the store still knew about both deferred wakeups.
    let finish = w.finished(run, RunOutcome::Succeeded, None);
    writer
        .apply(&h, &mut a, &[heartbeat.clone(), finish.clone()])
        .await
        .unwrap();
    assert_eq!(h.wakeup(older).await["status"], "queued");
    assert_eq!(h.wakeup(newer).await["status"], "deferred_issue_execution");
    let all: Vec<Event> = first.into_iter().chain([heartbeat, finish]).collect();
    assert_eq!(
        checksums(&**h.client().await).await.unwrap(),
        uncached(&h, &all).await
    );
}

#[tokio::test]
async fn a_full_cache_keeps_the_latest_batch_and_still_ends_identical() {
    let h = Harness::new().await;
    let mut w = World::new();
    let mut writer = Writer::new(&h);
    let mut a = Session {
        cache: RowCache::new(4),
        ..Session::new(CommitMode::Asynchronous)
    };
    let mut all = vec![
        w.agent("codex_local", json!({})),
        w.issue_created(IssueStatus::Todo),
    ];
    let mut batches = vec![all.clone()];
    // Runs of one issue, one after another, each with wakeups deferred behind the running one;
    // other runs in between push rows out of the small cache.
    for round in 0..6 {
        let run = RunId::new_random();
        let mut batch = vec![w.queued(run, None, None, 0), w.started(run, Some(round))];
        for _ in 0..2 {
            batch.push(w.wakeup(WakeupId::new_random()));
        }
        batches.push(batch);
        // A batch of another issue only: it fills the cache, pushing this issue's rows out.
        let mut other = World::new();
        let stranger = RunId::new_random();
        batches.push(vec![
            other.queued(stranger, None, None, 0),
            other.started(stranger, Some(99)),
            other.finished(stranger, RunOutcome::Succeeded, None),
        ]);
        batches.push(vec![
            w.activity(run, ActivityKind::ToolCall),
            w.finished(run, RunOutcome::Succeeded, None),
        ]);
    }
    for batch in batches.iter().skip(1) {
        all.extend(batch.iter().cloned());
    }
    let mut largest = 0;
    for batch in &batches {
        writer.apply(&h, &mut a, batch).await.unwrap();
        largest = largest.max(a.cache.len());
    }
    // Over capacity, only the latest batch's rows stay: its agent, issue, runs and the issue's
    // wakeups (at most 13 here), never everything the writer has seen (25 wakeups alone).
    assert!(largest <= 14, "the cache grew to {largest} rows");
    let promoted: i64 = h
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM wakeup_requests WHERE status = 'queued'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        promoted >= 5,
        "finishes promoted deferred wakeups: {promoted}"
    );
    assert_eq!(
        checksums(&**h.client().await).await.unwrap(),
        uncached(&h, &all).await
    );
}
