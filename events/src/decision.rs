//! Why the reconciler published a follow-up: the `decision` extension attribute it puts on every
//! event it emits (a retry's `run.queued`, a wakeup, a comment, a refusal, a deferral, a deferral's
//! closing, a liveness classification...). It names the rule, the event that caused it, the facts
//! the rule looked at and the outcome in one sentence. Everything in it is derived from the stream
//! (the cause and the state folded up to it), so a replay folds the same explanation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Event, EventId};

/// The CloudEvents extension attribute carrying a [`Decision`]: its JSON as a string, since
/// CloudEvents extension values are scalars (an object is accepted when read).
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
        match event.extensions.get(DECISION_ATTRIBUTE)? {
            Value::String(json) => serde_json::from_str(json).ok(),
            value => serde_json::from_value(value.clone()).ok(),
        }
    }

    /// Puts this decision on `event`.
    pub fn attach(&self, event: &mut Event) {
        let json = serde_json::to_string(self).expect("a decision serializes");
        event
            .extensions
            .insert(DECISION_ATTRIBUTE.into(), Value::String(json));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples;

    #[test]
    fn a_decision_round_trips_through_the_encoded_event() {
        let mut event = examples::event(crate::EventType::RunQueued);
        assert_eq!(Decision::of(&event), None);
        let decision = Decision {
            rule: "process_lost_retry".into(),
            cause: Cause {
                id: EventId::new_random(),
                event_type: "run.process_lost".into(),
                time: event.time,
            },
            inputs: serde_json::json!({"issue_status": "in_progress", "process_loss_retries": 0})
                .as_object()
                .cloned()
                .unwrap(),
            sentence: "requeued once: last run failed with process_lost; no recovery used yet"
                .into(),
        };
        decision.attach(&mut event);
        assert!(event.extensions[DECISION_ATTRIBUTE].is_string(), "a scalar");
        let decoded = Event::from_slice(&event.to_vec()).unwrap();
        assert_eq!(Decision::of(&decoded), Some(decision));
    }
}
