//! The reconciler's explanations: a follow-up carrying a `decision` extension
//! ([`events::decision`]) becomes a row of `decisions`, whatever its type, so an operator can ask
//! why an issue was requeued, blocked, deferred or left alone. Facts of the stream only.

use super::Ctx;
use crate::fold::model::{DecisionRow, Model};
use events::decision::Decision;
use events::{Event, EventData};
use serde_json::Value;
use uuid::Uuid;

pub(super) fn record(model: &mut Model, ctx: &Ctx, event: &Event) {
    let Some(decision) = Decision::of(event) else {
        return;
    };
    let id = |key: &str| {
        decision
            .inputs
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    model.appends.decisions.push(DecisionRow {
        event_id: event.id.0,
        seq: ctx.seq,
        company_id: ctx.company,
        issue_id: id("issue_id"),
        run_id: id("run_id"),
        created_run_id: match &event.data {
            EventData::RunQueued(d) => Some(d.run_id.0),
            _ => None,
        },
        event_type: event.event_type().as_str().to_owned(),
        rule: decision.rule.clone(),
        cause_id: decision.cause.id.0,
        cause_type: decision.cause.event_type.clone(),
        cause_time: decision.cause.time,
        inputs: Value::Object(decision.inputs),
        sentence: decision.sentence,
        at: ctx.time,
    });
}
