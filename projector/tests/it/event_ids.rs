//! Idempotence by CloudEvent id: an event folded once is skipped however it comes again (another
//! `Nats-Msg-Id`, none at all, long after JetStream's duplicate window), and other content under
//! a known id is a conflict.

use crate::helpers::{Harness, World};
use async_nats::jetstream::message::PublishMessage;
use events::*;
use projector::replay::{replay, ReplayMode, ReplayOutcome, ReplayPlan};
use serde_json::json;

/// Publishes `bytes` on `subject` with `msg_id` as `Nats-Msg-Id` (or none); its sequence.
async fn publish_with_id(h: &Harness, subject: &str, bytes: &[u8], msg_id: Option<&str>) -> u64 {
    let mut message = PublishMessage::build().payload(bytes.to_vec().into());
    if let Some(id) = msg_id {
        message = message.message_id(id);
    }
    h.js()
        .send_publish(subject.to_owned(), message)
        .await
        .expect("published")
        .await
        .expect("stored")
        .sequence
}

#[tokio::test]
async fn an_event_id_folds_once_whatever_the_header_and_however_late() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let activity = w.activity(run, ActivityKind::ToolCall);
    h.publish(&[w.queued(run, None, None, 0), activity.clone()])
        .await;
    h.drain().await;
    assert_eq!(h.run(run).await["activity_count"], 1);

    // The same event again: without a header, under another header, and re-serialised (its
    // attributes in another order, no optional `subject`): each is stored by JetStream, which
    // only knows `Nats-Msg-Id`s within its window; none folds again. The same goes for an event
    // sent after the window has passed, which is the case without a header.
    let subject = h.subjects.of(&activity);
    let wire = activity.to_vec();
    let mut reordered = activity.to_value();
    reordered.as_object_mut().unwrap().remove("subject");
    let reordered: serde_json::Map<_, _> = reordered
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .rev()
        .collect();
    let first = publish_with_id(&h, &subject, &wire, None).await;
    publish_with_id(&h, &subject, &wire, Some("another-header")).await;
    let last = publish_with_id(&h, &subject, &serde_json::to_vec(&reordered).unwrap(), None).await;
    assert_eq!(last, first + 2, "JetStream stored every copy");
    h.drain().await;
    let r = h.run(run).await;
    assert_eq!(r["activity_count"], 1, "one effect: {r}");
    assert_eq!(r["evidence_tool_events"], 1);
    let client = h.client().await;
    let dead: i64 = client
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dead, 0, "a duplicate is skipped, not dead-lettered");

    // Other content under a known id is a conflict, dead-lettered; the next event still folds.
    let mut forged = activity.clone();
    if let EventData::RunActivity(a) = &mut forged.data {
        a.message = Some("something else".into());
    }
    let conflict = publish_with_id(&h, &subject, &forged.to_vec(), None).await;
    h.publish(&[w.activity(run, ActivityKind::Heartbeat)]).await;
    h.drain().await;
    let reason: String = client
        .query_one(
            "SELECT reason FROM dead_letters WHERE seq = $1",
            &[&(conflict as i64)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        reason.contains("conflict") && reason.contains(&activity.id.to_string()),
        "{reason}"
    );
    assert_eq!(h.run(run).await["activity_count"], 2);
}

#[tokio::test]
async fn a_repeated_id_within_one_batch_folds_once_and_a_conflict_within_it_is_dead_lettered() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    let activity = w.activity(run, ActivityKind::Action);
    let mut forged = activity.clone();
    forged.source = "elsewhere".into();
    let subject = h.subjects.of(&activity);
    h.publish(&[w.queued(run, None, None, 0)]).await;
    for bytes in [activity.to_vec(), activity.to_vec(), forged.to_vec()] {
        publish_with_id(&h, &subject, &bytes, None).await;
    }
    h.drain().await;
    let r = h.run(run).await;
    assert_eq!(r["activity_count"], json!(1), "{r}");
    let rows = h
        .client()
        .await
        .query("SELECT seq, reason FROM dead_letters", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 4);
}

fn plan(
    h: &Harness,
    into: &str,
    batch_size: usize,
    to_seq: Option<u64>,
    mode: ReplayMode,
) -> ReplayPlan {
    ReplayPlan {
        live_schema: "public".into(),
        into: into.into(),
        consumer: "runledger-projector".into(),
        stream: h.ts.stream.clone(),
        subjects: h.subjects.clone(),
        from_seq: None,
        to_seq,
        batch_size,
        mode,
    }
}

/// Rebuilds into `into` (a dry run: compared with the live tables, then dropped) and checks
/// that every table, the folded ids and the dead letters included, equals the live one.
async fn rebuild_equals_live(h: &Harness, into: &str, batch_size: usize) {
    let scratch = h.db.pool_in(into);
    let outcome = replay(
        &h.pool,
        &scratch,
        &h.js(),
        &plan(h, into, batch_size, None, ReplayMode::DryRun),
        |_| {},
    )
    .await
    .expect("the rebuild completes");
    let ReplayOutcome::DryRun { tables, .. } = outcome else {
        panic!("a dry run reports a dry run: {outcome:?}");
    };
    for table in &tables {
        assert!(
            table.equal(),
            "rebuilt with batches of {batch_size}: {table:?}"
        );
    }
}

/// A rebuild keeps no key on the folded ids while it fills (it remembers them instead): every
/// repeat and conflict of the history is still found exactly as the live projector found it,
/// whether the repeats are rare (the key comes back at the end), spread over many batches (the
/// key comes back early and is probed), or the rebuild resumes a schema built halfway.
#[tokio::test]
async fn a_rebuild_finds_every_repeated_id_the_live_projector_found() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    h.publish(&[w.queued(run, None, None, 0), w.started(run, Some(7))])
        .await;
    let client = h.client().await;
    let mut sent = Vec::new();
    // The history in two halves: a build of the first half is resumed after the second (at any
    // partition count: a partitioned stream is rebuilt to each partition's live position).
    for half in [0..30, 30..60] {
        for i in half {
            let activity = w.activity(run, ActivityKind::ToolCall);
            h.publish(std::slice::from_ref(&activity)).await;
            sent.push(activity);
            // Every third event: an earlier one again (no header), every seventh: other content
            // under an earlier id. The second half repeats ids of the first.
            if i % 3 == 2 {
                let again = &sent[i / 2];
                publish_with_id(&h, &h.subjects.of(again), &again.to_vec(), None).await;
            }
            if i % 7 == 6 {
                let mut forged = sent[i / 3].clone();
                forged.source = format!("elsewhere-{i}");
                publish_with_id(&h, &h.subjects.of(&forged), &forged.to_vec(), None).await;
            }
        }
        h.drain().await;
        if sent.len() == 30 {
            let scratch = h.db.pool_in("rebuilt_resumed");
            let first = plan(&h, "rebuilt_resumed", 5, None, ReplayMode::BuildOnly);
            let built = replay(&h.pool, &scratch, &h.js(), &first, |_| {})
                .await
                .expect("the first half builds");
            assert!(matches!(built, ReplayOutcome::Built { .. }), "{built:?}");
            let key: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint c
                                      JOIN pg_namespace n ON n.oid = c.connamespace
                                     WHERE n.nspname = 'rebuilt_resumed'
                                       AND c.conname = 'folded_events_pkey')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(key, "a finished build has the key of its folded ids");
        }
    }
    let (folded, dead): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM folded_events), (SELECT count(*) FROM dead_letters)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        (folded, dead),
        (62, 8),
        "live: every id folded once, 8 conflicts"
    );
    assert_eq!(h.run(run).await["activity_count"], 60);

    // Repeats in a few large batches, then in almost every small one.
    rebuild_equals_live(&h, "rebuilt_large", 1000).await;
    rebuild_equals_live(&h, "rebuilt_small", 3).await;
    // The build of the first half, resumed: the ids it folded before are known to it.
    rebuild_equals_live(&h, "rebuilt_resumed", 5).await;
}
