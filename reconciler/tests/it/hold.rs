//! Follow-ups flow promptly after a restart: the hold point of a previous incarnation's
//! unpublished follow-ups is the stream's real last sequence (from the stream's info, not a
//! consumer's pending count, which nats-server over-reports for a consumer created mid-stream),
//! so they are published without waiting for traffic that may never come.

use crate::harness::Harness;
use crate::world::World;
use events::*;
use reconciler::engine::Policy;
use std::time::Duration;

#[tokio::test]
async fn a_restarted_reconciler_publishes_held_follow_ups_without_new_traffic() {
    let mut h = Harness::new(Policy::default()).await;
    let mut w = World::new();
    let first = RunId::new_random();
    let mut events = vec![w.agent("codex_local"), w.issue(IssueStatus::InProgress)];
    events.extend(w.start(first));
    events.push(w.lost(first));
    h.publish(&events).await;
    h.settle().await;

    // A second run is lost; the reconciler decides, and stops before publishing.
    let second = RunId::new_random();
    let mut more = w.start(second);
    more.push(w.lost(second));
    h.publish(&more).await;
    let last = h.last_seq().await as i64;
    while h.reconciler.position().await.unwrap() < last {
        h.reconciler.step(Duration::from_millis(200)).await.unwrap();
    }
    let schema = h.reconciler_schema_of(w.company);
    let client = h.pool.get().await.unwrap();
    let unpublished = format!(
        "SELECT count(*), coalesce(max(hold_until_seq), 0) FROM {schema}.outbox WHERE NOT published"
    );
    let row = client.query_one(&unpublished, &[]).await.unwrap();
    let (held, _): (i64, i64) = (row.get(0), row.get(1));
    assert!(held > 0, "the loss was decided and not yet published");

    // A new incarnation holds them until the stream's real last sequence, which the stored
    // position already reached: they go out at once.
    let restarted = h.kit.reconciler(Policy::default()).await;
    let row = client.query_one(&unpublished, &[]).await.unwrap();
    let hold: i64 = row.get(1);
    assert!(
        hold <= h.last_seq().await as i64,
        "held until {hold}, beyond the stream's last sequence {}",
        h.last_seq().await
    );
    let published = restarted.drain_outboxes().await.unwrap();
    assert_eq!(published as i64, held, "published without any new event");
}
