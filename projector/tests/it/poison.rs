//! Poison: events the contract accepts but PostgreSQL would refuse (or store changed). Each is
//! dead-lettered with the field named and never stalls the stream, live or in a replay; what the
//! pre-check cannot foresee is found by bisecting the refused batch.

use crate::helpers::{Harness, World};
use events::*;
use projector::replay::{replay, ReplayMode, ReplayOutcome, ReplayPlan};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Publishes `event` with `edit` applied to its JSON, on its subject; the stream sequence.
async fn publish_edited(h: &Harness, event: &Event, edit: impl FnOnce(&mut Value)) -> u64 {
    let mut value = event.to_value();
    edit(&mut value);
    h.publish_raw(&h.subjects.of(event), &serde_json::to_vec(&value).unwrap())
        .await
}

/// Dead letters by sequence: their reasons.
async fn dead_letters(h: &Harness) -> BTreeMap<u64, String> {
    h.client()
        .await
        .query("SELECT seq, reason FROM dead_letters", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
        .collect()
}

#[tokio::test]
async fn every_kind_of_poison_is_dead_lettered_naming_its_field() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let run = RunId::new_random();
    h.publish(&[
        w.agent("codex_local", json!({})),
        w.queued(run, None, None, 0),
    ])
    .await;
    let nul = json!("a\u{0}b");
    // (expected field, sequence)
    let mut poisons: Vec<(&str, u64)> = Vec::new();
    let mut good = 0;
    macro_rules! poison {
        ($field:expr, $event:expr, $edit:expr) => {{
            let event = $event;
            let seq = publish_edited(&h, &event, $edit).await;
            poisons.push(($field, seq));
            // a good event right after each poison one
            h.publish(&[w.activity(run, ActivityKind::Heartbeat)]).await;
            good += 1;
        }};
    }
    // A NUL in each kind of text: a plain text column, an optional one, jsonb content, a jsonb
    // key, an envelope attribute.
    poison!("data.name", w.agent("codex_local", json!({})), |v| v
        ["data"]["name"] =
        nul.clone());
    poison!("data.message", w.activity(run, ActivityKind::Action), |v| {
        v["data"]["message"] = nul.clone()
    });
    poison!("data.body", w.comment(Some(run)), |v| v["data"]["body"] =
        nul.clone());
    poison!(
        "data.result.summary",
        w.finished(run, RunOutcome::Failed, None),
        |v| { v["data"]["result"]["summary"] = nul.clone() }
    );
    poison!(
        "data.context.a\\u0000",
        w.queued(RunId::new_random(), None, None, 0),
        |v| { v["data"]["context"]["a\u{0}"] = json!(1) }
    );
    poison!("source", w.activity(run, ActivityKind::Action), |v| v
        ["source"] =
        nul.clone());
    // Numbers beyond their columns.
    poison!(
        "data.continuation_attempt",
        w.queued(RunId::new_random(), None, None, 0),
        |v| { v["data"]["continuation_attempt"] = json!(4_294_967_295u64) }
    );
    poison!(
        "data.process_loss_retry_count",
        w.queued(RunId::new_random(), None, None, 0),
        |v| { v["data"]["process_loss_retry_count"] = json!(2_147_483_648u64) }
    );
    poison!("data.process_started_at", w.started(run, Some(7)), |v| {
        v["data"]["process_started_at"] = json!(u64::MAX)
    });
    poison!("data.revision_number", w.revision("plan", Some(run)), |v| {
        v["data"]["revision_number"] = json!(2_147_483_648u64)
    });
    poison!("data.host", w.started(run, Some(7)), |v| {
        v["data"]["host"] = json!("h".repeat(bounds::MAX_INDEXED_TEXT + 1))
    });
    // Times out of bounds.
    poison!("time", w.activity(run, ActivityKind::Action), |v| v
        ["time"] =
        json!("9999-12-31T00:00:00Z"));
    poison!("time", w.activity(run, ActivityKind::Action), |v| v
        ["time"] =
        json!("0001-01-01T00:00:00Z"));
    poison!("data.at", w.activity(run, ActivityKind::Action), |v| v
        ["data"]["at"] =
        json!("1970-01-01T00:00:00Z"));
    let tick = Event::new(
        tick::TICK_COMPANY,
        "forger",
        chrono::Utc::now(),
        EventData::ReconcilerTicked(tick::ReconcilerTicked {
            tick_id: TickId::new_random(),
            at: "2099-01-01T00:00:00Z".parse().unwrap(),
            partition: None,
            extra: Default::default(),
        }),
    );
    poison!("data.at", tick, |_| {});
    // A lone surrogate is refused by the JSON parser already.
    let activity = w.activity(run, ActivityKind::Action);
    let text = String::from_utf8(activity.to_vec())
        .unwrap()
        .replace("\"kind\"", "\"message\":\"a\\ud800b\",\"kind\"");
    let seq = h
        .publish_raw(&h.subjects.of(&activity), text.as_bytes())
        .await;
    poisons.push(("malformed JSON", seq));
    h.publish(&[w.activity(run, ActivityKind::Heartbeat)]).await;
    good += 1;

    // A NUL the dead letter's own reason quotes (an unknown type) is stored escaped.
    let activity = w.activity(run, ActivityKind::Action);
    let seq = publish_edited(&h, &activity, |v| v["type"] = json!("run.\u{0}")).await;
    poisons.push(("unknown event type `run.\\u0000`", seq));
    h.publish(&[w.activity(run, ActivityKind::Heartbeat)]).await;
    good += 1;

    h.drain().await;
    let dead = dead_letters(&h).await;
    assert_eq!(
        dead.keys().copied().collect::<Vec<_>>(),
        poisons.iter().map(|p| p.1).collect::<Vec<_>>(),
        "exactly the poison is dead-lettered: {dead:#?}"
    );
    for (field, seq) in &poisons {
        assert!(
            dead[seq].contains(&format!("`{field}`")) || dead[seq].starts_with(field),
            "seq {seq}: the reason names `{field}`: {}",
            dead[seq]
        );
    }
    let r = h.run(run).await;
    assert_eq!(r["activity_count"], good, "every good event was applied");
    assert_eq!(r["status"], "queued");
    assert_eq!(r["continuation_attempt"], 0);
    assert!(r["process_started_at"].is_null(), "{r}");
}

#[tokio::test]
async fn one_poison_event_among_ten_thousand_live_and_in_a_replay() {
    let mut h = Harness::new().await;
    let mut w = World::new();
    let mut events = vec![
        w.agent("codex_local", json!({})),
        w.issue_created(IssueStatus::Todo),
    ];
    let runs: Vec<RunId> = (0..100).map(|_| RunId::new_random()).collect();
    for run in &runs {
        events.push(w.queued(*run, None, None, 0));
        events.push(w.started(*run, Some(42)));
        for _ in 0..97 {
            events.push(w.activity(*run, ActivityKind::ToolCall));
        }
        events.push(w.finished(*run, RunOutcome::Succeeded, None));
    }
    let (before, after) = events.split_at(events.len() / 2);
    h.publish(before).await;
    let poison_run = runs[49];
    let poison = w.activity(poison_run, ActivityKind::ToolCall);
    let poison_seq = publish_edited(&h, &poison, |v| v["data"]["message"] = json!("x\u{0}")).await;
    h.publish(after).await;
    h.drain().await;

    let dead = dead_letters(&h).await;
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), vec![poison_seq]);
    assert!(dead[&poison_seq].contains("data.message"), "{dead:?}");
    let client = h.client().await;
    let row = client
        .query_one(
            "SELECT sum(events_applied)::bigint, sum(dead_lettered)::bigint, max(last_seq)
               FROM projector_positions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (events.len() as i64, 1, events.len() as i64 + 1)
    );
    let counts: i64 = client
        .query_one(
            "SELECT sum(evidence_tool_events) FROM runs WHERE status = 'succeeded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counts, 100 * 97, "every good activity counted once");

    // A rebuild from the stream gives the same tables, the dead letter included.
    let scratch = h.db.pool_in("rebuilt");
    let plan = ReplayPlan {
        live_schema: "public".into(),
        into: "rebuilt".into(),
        consumer: "runledger-projector".into(),
        stream: h.ts.stream.clone(),
        subjects: h.subjects.clone(),
        from_seq: None,
        to_seq: None,
        batch_size: 1000,
        mode: ReplayMode::DryRun,
    };
    let outcome = replay(&h.pool, &scratch, &h.js(), &plan, |_| {})
        .await
        .expect("the replay gets past the poison");
    let ReplayOutcome::DryRun { position, tables } = outcome else {
        panic!("a dry run reports a dry run: {outcome:?}");
    };
    assert_eq!(position, events.len() as i64 + 1);
    for table in &tables {
        assert!(
            table.equal(),
            "the rebuild equals the live table: {table:?}"
        );
    }
    assert!(tables
        .iter()
        .any(|t| t.table == "dead_letters" && t.rebuilt_rows == 1));
}

#[tokio::test]
async fn a_batch_postgresql_refuses_is_bisected_down_to_the_event() {
    let mut h = Harness::new().await;
    testsupport::TestDb::refuse_poison_comments(&**h.client().await, "public").await;
    let mut w = World::new();
    let mut events = vec![w.issue_created(IssueStatus::Todo)];
    let mut poison_at = 0;
    for i in 0..1000 {
        let mut comment = w.comment(None);
        if i == 617 {
            if let EventData::IssueCommentAdded(c) = &mut comment.data {
                c.body = "poison".into();
            }
            poison_at = events.len() as u64 + 1;
        }
        events.push(comment);
    }
    h.publish(&events).await;
    h.drain().await;

    let dead = dead_letters(&h).await;
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), vec![poison_at]);
    assert!(
        dead[&poison_at].contains("PostgreSQL refused") && dead[&poison_at].contains("22023"),
        "{dead:?}"
    );
    assert_eq!(
        rows(&h, "issue_comments").await,
        999,
        "every other comment was applied"
    );
    assert_eq!(
        rows(&h, "folded_events").await,
        1000,
        "the refused event's id is not recorded as folded"
    );
}

/// A refused row pipelined beside a `COPY` of new rows: the `COPY` that starts after the refusal
/// fails too (and its connection with it), possibly before the refusal is read back. The batch
/// is still bisected down to the event PostgreSQL refused, not retried as if the database were
/// away.
#[tokio::test]
async fn a_refusal_beside_a_copy_of_new_rows_is_bisected_too() {
    let mut h = Harness::new().await;
    testsupport::TestDb::refuse_poison_comments(&**h.client().await, "public").await;
    let mut w = World::new();
    let mut events = vec![w.issue_created(IssueStatus::Todo)];
    let mut poison_at = 0;
    for i in 0..300 {
        // New runs are written with `COPY` (their rows cannot exist yet), comments with an
        // insert: both in every batch.
        events.push(w.queued(RunId::new_random(), None, None, 0));
        let mut comment = w.comment(None);
        if i == 150 {
            if let EventData::IssueCommentAdded(c) = &mut comment.data {
                c.body = "poison".into();
            }
            poison_at = events.len() as u64 + 1;
        }
        events.push(comment);
    }
    h.publish(&events).await;
    h.drain().await;

    let dead = dead_letters(&h).await;
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), vec![poison_at]);
    assert_eq!(rows(&h, "runs").await, 300);
    assert_eq!(rows(&h, "issue_comments").await, 299);
}

/// How many rows `table` holds.
async fn rows(h: &Harness, table: &str) -> i64 {
    h.client()
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}
