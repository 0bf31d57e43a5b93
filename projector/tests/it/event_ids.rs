//! Idempotence by CloudEvent id: an event folded once is skipped however it comes again (another
//! `Nats-Msg-Id`, none at all, long after JetStream's duplicate window), and other content under
//! a known id is a conflict.

use crate::helpers::{Harness, World};
use async_nats::jetstream::message::PublishMessage;
use events::*;
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
