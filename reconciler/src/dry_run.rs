//! `reconcile --dry-run --from-seq N`: replays history through the rules into a scratch schema
//! without publishing anything, and compares the follow-ups it would emit for causes at or after
//! `N` with the reconciler's follow-ups already in the stream for those causes.
//!
//! It is the live code path (the same [`process_batch`]) on a throwaway schema: the private fold
//! is built from the beginning of the stream (rules need the state before `N`), triggers before
//! `N` decide nothing, and the outbox is read instead of drained. Follow-ups are matched by id
//! (ids are derived from cause and rule, so the same decision has the same id) and compared by
//! type and data.

use crate::batch::{process_batch, BatchTarget};
use crate::engine::{may_trigger, Policy, CAUSE_ATTRIBUTE, RULE_ATTRIBUTE, SOURCE};
use crate::error::ReconcilerError;
use crate::migrate::migrate;
use async_nats::jetstream::Context;
use deadpool_postgres::Pool;
use events::{Event, EventId, EventType, Subjects};
use projector::feed::{Feed, FeedSpec, Reader};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// What to replay and compare.
#[derive(Clone, Debug)]
pub struct DryRunPlan {
    pub stream: String,
    pub subjects: Subjects,
    pub policy: Policy,
    /// First cause sequence whose follow-ups are compared.
    pub from_seq: u64,
    /// Throwaway schema (dropped before and after).
    pub scratch_schema: String,
    pub batch_size: usize,
    /// Only this partition's events, decided as its own reconciler decides them (`None`: the
    /// whole, unpartitioned stream).
    pub partition: Option<u32>,
}

/// One follow-up, as decided or as found in the stream.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowUp {
    pub event_id: EventId,
    pub event_type: EventType,
    pub rule: String,
    /// Stream sequence of the cause (0 if the cause is not in the stream).
    pub cause_seq: u64,
    /// The event's `data`.
    pub data: Value,
}

/// The comparison.
#[derive(Clone, Debug, Default)]
pub struct DryRunReport {
    /// The stream position replayed to.
    pub position: u64,
    /// Follow-ups the rules emit (causes at or after `from_seq`).
    pub would_emit: usize,
    /// Reconciler follow-ups in the stream (same causes).
    pub in_stream: usize,
    /// Decided and present, with the same type and data.
    pub identical: usize,
    /// Decided but not in the stream.
    pub missing: Vec<FollowUp>,
    /// In the stream but not decided now.
    pub unexpected: Vec<FollowUp>,
    /// Same id, other type or data: (decided, in the stream).
    pub changed: Vec<(FollowUp, FollowUp)>,
}

impl DryRunReport {
    /// Whether the stream already holds exactly what the rules decide.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.changed.is_empty()
    }
}

fn follow_up(event: &Event, cause_seq: u64) -> FollowUp {
    FollowUp {
        event_id: event.id,
        event_type: event.event_type(),
        rule: event
            .extensions
            .get(RULE_ATTRIBUTE)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        cause_seq,
        data: serde_json::to_value(&event.data).unwrap_or(Value::Null),
    }
}

/// Replays the stream up to its current end and compares (see the module docs).
pub async fn dry_run(
    pool: &Pool,
    js: &Context,
    plan: &DryRunPlan,
) -> Result<DryRunReport, ReconcilerError> {
    projector::store::migrate::check_schema_name(&plan.scratch_schema)?;
    let mut client = pool.get().await?;
    let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", plan.scratch_schema);
    client.batch_execute(&drop).await?;
    let result = replay_and_compare(&mut client, js, plan).await;
    client.batch_execute(&drop).await?;
    result
}

async fn replay_and_compare(
    client: &mut deadpool_postgres::Object,
    js: &Context,
    plan: &DryRunPlan,
) -> Result<DryRunReport, ReconcilerError> {
    migrate(client, &plan.scratch_schema).await?;
    let head = match plan.partition {
        Some(p) => {
            let filter = plan.subjects.partition_filter(p);
            projector::feed::last_seq_of(js, &plan.stream, &filter).await?
        }
        None => projector::feed::stream_last_seq(js, &plan.stream).await?,
    };
    let target = BatchTarget {
        consumer: "runledger-reconciler-dry-run".into(),
        stream: plan.stream.clone(),
        subjects: plan.subjects.clone(),
        schema: plan.scratch_schema.clone(),
        policy: plan.policy.clone(),
        decide_from: plan.from_seq,
        fence: None,
    };
    let mut causes: HashMap<EventId, u64> = HashMap::new();
    let mut in_stream: BTreeMap<EventId, FollowUp> = BTreeMap::new();
    let spec = FeedSpec {
        stream: plan.stream.clone(),
        subjects: plan.subjects.clone(),
        reader: Reader::History,
        batch_size: plan.batch_size.max(1),
        linger: Duration::from_millis(20),
    };
    let mut feed = match plan.partition {
        Some(p) => Feed::open_partition(js, spec, p, 0).await?,
        None => Feed::open(js, spec, 0).await?,
    };
    let mut position = 0;
    let mut received = 0;
    while position < head {
        let Some(mut batch) = feed.next(Duration::from_secs(2)).await? else {
            if feed.received() != received {
                // A batch is still being read: not the end of history.
                received = feed.received();
                continue;
            }
            return Err(ReconcilerError::JetStream(format!(
                "history ended at {position}, before the stream's last sequence {head}"
            )));
        };
        position = batch.last_seq().unwrap_or(position);
        // What came after the head is not compared (nor decided).
        drop(batch.split_after(head));
        for (message, parsed) in batch.iter() {
            let Some(event) = parsed.event() else {
                continue;
            };
            if may_trigger(event.event_type()) {
                causes.insert(event.id, message.seq);
            }
            let decided =
                event.source == SOURCE && event.event_type() != EventType::ReconcilerTicked;
            if !decided {
                continue;
            }
            let cause_seq = event
                .extensions
                .get(CAUSE_ATTRIBUTE)
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<EventId>().ok())
                .and_then(|id| causes.get(&id).copied())
                .unwrap_or(0);
            if cause_seq >= plan.from_seq {
                in_stream.insert(event.id, follow_up(event, cause_seq));
            }
        }
        process_batch(client, &target, &batch, head).await?;
    }
    let rows = client
        .query(
            &format!(
                "SELECT payload, cause_seq FROM {}.outbox WHERE cause_seq >= $1 ORDER BY seq",
                plan.scratch_schema
            ),
            &[&(plan.from_seq as i64)],
        )
        .await?;
    let mut report = DryRunReport {
        position: head,
        in_stream: in_stream.len(),
        ..DryRunReport::default()
    };
    for row in rows {
        let payload: Vec<u8> = row.get(0);
        let cause_seq: i64 = row.get(1);
        let event = Event::from_slice(&payload)
            .map_err(|e| ReconcilerError::Config(format!("outbox row does not parse: {e}")))?;
        let decided = follow_up(&event, cause_seq as u64);
        report.would_emit += 1;
        match in_stream.remove(&event.id) {
            None => report.missing.push(decided),
            Some(found) if found.event_type == decided.event_type && found.data == decided.data => {
                report.identical += 1
            }
            Some(found) => report.changed.push((decided, found)),
        }
    }
    report.unexpected = in_stream.into_values().collect();
    Ok(report)
}
