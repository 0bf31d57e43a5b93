//! Why the reconciler published a follow-up: the `decision` extension attribute it puts on every
//! event it emits (a retry's `run.queued`, a wakeup, a comment, a refusal, a deferral, a deferral's
//! closing, a liveness classification...). It names the rule, the event that caused it, the facts
//! the rule looked at and the outcome in one sentence. Everything in it is derived from the stream
//! (the cause and the state folded up to it), so a replay folds the same explanation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Event, EventId};

/// The CloudEvents extension attribute carrying a [`Decision`] (a JSON object).
pub const DECISION_ATTRIBUTE: &str = "decision";

/// The event a follow-up answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// Its CloudEvents id.
    pub id: EventId,
    /// Its type, e.g. `run.process_lost`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its time (a tick's `at`).
    pub time: DateTime<Utc>,
}

/// One explained decision of the reconciler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rule, as in the `rule` attribute (e.g. `process_lost_retry`).
    pub rule: String,
    /// The event that caused it.
    pub cause: Cause,
    /// What the rule looked at: `issue_status`, `run_status`, `run_error_code`, `liveness`,
    /// `continuation_attempt`, `process_loss_retries`, storm-control counters...
    pub inputs: Map<String, Value>,
    /// The outcome in a sentence.
    pub sentence: String,
}

impl Decision {
    /// The decision an event carries (`None`: not a reconciler follow-up, or malformed).
    pub fn of(event: &Event) -> Option<Decision> {
        let value = event.extensions.get(DECISION_ATTRIBUTE)?;
        serde_json::from_value(value.clone()).ok()
    }

    /// Puts this decision on `event`.
    pub fn attach(&self, event: &mut Event) {
        let value = serde_json::to_value(self).expect("a decision serializes");
        event.extensions.insert(DECISION_ATTRIBUTE.into(), value);
    }
}
