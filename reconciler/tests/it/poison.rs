//! Poison does not wedge the reconciler: an event out of bounds, and one whose rows PostgreSQL
//! refuses in the private fold only (a bisected batch), become dead letters of the private fold,
//! and everything after them is folded and decided; an event sent again under its id, however
//! late, decides nothing twice.

use crate::harness::Harness;
use crate::world::World;
use events::*;
use reconciler::engine::Policy;
use serde_json::json;

#[tokio::test]
async fn poison_and_a_refused_batch_do_not_wedge_the_reconciler_and_ids_fold_once() {
    let mut h = Harness::new(Policy::default()).await;
    let mut w = World::new();
    // The reconciler schema of the company's partition.
    let schema = h.reconciler_schema_of(w.company);
    testsupport::TestDb::refuse_poison_comments(&h.pool.get().await.unwrap(), &schema).await;
    let run = RunId::new_random();
    let mut events = vec![w.agent("codex_local"), w.issue(IssueStatus::InProgress)];
    events.extend(w.start(run));
    h.publish(&events).await;
    let nul = w.comment(run);
    let mut value = nul.to_value();
    value["data"]["body"] = json!("a\u{0}b");
    let nul_seq = h
        .publish_raw(&h.subjects.of(&nul), &serde_json::to_vec(&value).unwrap())
        .await;
    let mut refused = w.comment(run);
    if let EventData::IssueCommentAdded(c) = &mut refused.data {
        c.body = "poison".into();
    }
    let lost = w.lost(run);
    h.publish(&[refused, w.comment(run), lost.clone()]).await;
    let refused_seq = nul_seq + 1;
    h.settle().await;

    let client = h.pool.get().await.unwrap();
    let dead: Vec<(i64, String)> = client
        .query(
            &format!("SELECT seq, reason FROM {schema}.dead_letters ORDER BY seq"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, nul_seq as i64);
    assert!(dead[0].1.contains("data.body"), "{dead:?}");
    assert_eq!(dead[1].0, refused_seq as i64);
    assert!(dead[1].1.contains("PostgreSQL refused"), "{dead:?}");
    let follow_ups = h.follow_ups().await;
    assert!(
        follow_ups
            .iter()
            .any(|e| e.event_type() == EventType::RunQueued),
        "the process loss after the poison was decided: {follow_ups:?}"
    );

    // The run's loss again, without a header, long after it was decided: nothing new.
    let again = h.publish_raw(&h.subjects.of(&lost), &lost.to_vec()).await;
    h.settle().await;
    assert_eq!(h.follow_ups().await.len(), follow_ups.len());
    assert!(h.reconciler.position().await.unwrap() >= again as i64);
    let folded: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.folded_events WHERE event_id = $1"),
            &[&lost.id.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(folded, 1);
}
