//! What the read models can store, checked before anything is written: an event that passes the
//! contract ([`Event::from_slice`]) but that PostgreSQL would refuse, or store changed, is out of
//! bounds. Consumers dead-letter it with the field named; `runledger publish` refuses it the same
//! way. Without this check one such event failed its whole batch, again and again, and stalled
//! the stream for every tenant.
//!
//! The bounds (docs/reliability.md explains each):
//! - no NUL character in any text, anywhere in the event (PostgreSQL's `text` and `jsonb` cannot
//!   hold U+0000). Lone surrogates (`"\ud800"`) never get this far: the JSON parser refuses them;
//! - every number fits the column that stores it (`integer` for counters and revision numbers,
//!   `bigint` for `process_started_at`), instead of being clamped or dropped;
//! - every time lies in [`EARLIEST`, `LATEST`), and times that say when something happened are at
//!   most [`AHEAD`] after the stream stored the event ([`TICK_AHEAD`] for `reconciler.ticked`,
//!   whose time drives the time-based sweeps). Honest clock skew passes; a forged tick in 2099
//!   does not. The reference is the stream's own timestamp, so a replay decides the same;
//! - indexed text ([`MAX_INDEXED_TEXT`] bytes) fits a B-tree index entry.

use crate::envelope::Event;
use crate::error::ContractError;
use crate::payload::EventData;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::Value;

/// The earliest time an event may carry (inclusive).
pub fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap()
}

/// The first time an event may no longer carry (exclusive).
pub fn latest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap()
}

/// `EARLIEST` and `LATEST` as text, for messages and docs.
pub const EARLIEST: &str = "2000-01-01T00:00:00Z";
pub const LATEST: &str = "2100-01-01T00:00:00Z";

/// How far after its storage time an event may say something happened: a day covers any honest
/// clock skew and a producer's queue.
pub const AHEAD: TimeDelta = TimeDelta::days(1);

/// How far after its storage time a tick may be: the tick's time is "now" for the sweeps, so a
/// tick from the future would decide early. Five minutes covers honest skew between hosts.
pub const TICK_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// Longest text (bytes) of a column under a B-tree index (`runs.host`,
/// `wakeup_requests.idempotency_key`); a B-tree entry holds at most about 2.7 kB.
pub const MAX_INDEXED_TEXT: usize = 1024;

impl Event {
    /// Checks that every value of the event can be stored as it is (see [`crate::bounds`]).
    /// `wire` is the event's JSON as received (it tells cheaply whether a NUL can be in there);
    /// `stored_at` is when the stream stored it (a producer passes its own clock).
    pub fn check_bounds(&self, wire: &[u8], stored_at: DateTime<Utc>) -> Result<(), ContractError> {
        if may_hold_nul(wire) {
            no_nul("", &self.to_value())?;
        }
        let t = self.event_type().as_str();
        let ahead = match self.data {
            EventData::ReconcilerTicked(_) => TICK_AHEAD,
            _ => AHEAD,
        };
        let happened = |field: &str, time: DateTime<Utc>| {
            in_years(field, time)?;
            if time > stored_at + ahead {
                return Err(out(
                    field,
                    format!(
                        "{} is more than {} after the event was stored ({})",
                        time.to_rfc3339(),
                        humane(ahead),
                        stored_at.to_rfc3339()
                    ),
                ));
            }
            Ok(())
        };
        happened("time", self.time)?;
        let int4 = |field: &str, value: u32| {
            if i32::try_from(value).is_err() {
                return Err(out(
                    &format!("data.{field}"),
                    format!(
                        "{value} is more than {} ({t} stores it as integer)",
                        i32::MAX
                    ),
                ));
            }
            Ok(())
        };
        let indexed = |field: &str, value: &str| {
            if value.len() > MAX_INDEXED_TEXT {
                return Err(out(
                    &format!("data.{field}"),
                    format!(
                        "{} bytes, more than the {MAX_INDEXED_TEXT} an indexed text may have",
                        value.len()
                    ),
                ));
            }
            Ok(())
        };
        use EventData as D;
        match &self.data {
            D::RunQueued(d) => {
                int4("process_loss_retry_count", d.process_loss_retry_count)?;
                int4("continuation_attempt", d.continuation_attempt)?;
            }
            D::RunStarted(d) => {
                indexed("host", &d.host)?;
                if let Some(started) = d.process_started_at {
                    if i64::try_from(started).is_err() {
                        return Err(out(
                            "data.process_started_at",
                            format!(
                                "{started} is more than {} ({t} stores it as bigint)",
                                i64::MAX
                            ),
                        ));
                    }
                }
            }
            D::RunProcessDetached(d) => indexed("host", &d.host)?,
            D::RunActivity(d) => happened("data.at", d.at)?,
            D::RunLivenessClassified(d) => {
                int4("continuation_attempt", d.continuation_attempt)?;
                if let Some(at) = d.last_useful_action_at {
                    happened("data.last_useful_action_at", at)?;
                }
            }
            D::DocumentRevised(d) => int4("revision_number", d.revision_number)?,
            D::WakeupRequested(d) => {
                if let Some(key) = &d.idempotency_key {
                    indexed("idempotency_key", key)?;
                }
            }
            // A time to wait for lies ahead by nature: only the years bound it.
            D::IssueFollowUpRefused(d) => {
                if let Some(at) = d.retry_after {
                    in_years("data.retry_after", at)?;
                }
            }
            D::ReconcilerTicked(d) => happened("data.at", d.at)?,
            // A deferral holds the follow-up it will emit unchanged: that follow-up's bounds,
            // and a due time that lies ahead by nature.
            D::IssueFollowUpDeferred(d) => {
                in_years("data.due_at", d.due_at)?;
                int4(
                    "run.process_loss_retry_count",
                    d.run.process_loss_retry_count,
                )?;
                int4("run.continuation_attempt", d.run.continuation_attempt)?;
                if let Some(key) = &d.wakeup.idempotency_key {
                    indexed("wakeup.idempotency_key", key)?;
                }
            }
            D::AgentRegistered(_)
            | D::IssueFollowUpDeferralClosed(_)
            | D::AgentStatusChanged(_)
            | D::IssueCreated(_)
            | D::IssueUpdated(_)
            | D::IssueCommentAdded(_)
            | D::IssueWorkProductAdded(_)
            | D::RunProcessLost(_)
            | D::RunCancelRequested(_)
            | D::RunFinished(_) => {}
        }
        Ok(())
    }
}

fn out(field: &str, reason: impl Into<String>) -> ContractError {
    ContractError::OutOfBounds {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn in_years(field: &str, time: DateTime<Utc>) -> Result<(), ContractError> {
    if time < earliest() || time >= latest() {
        return Err(out(
            field,
            format!("{} is outside {EARLIEST} .. {LATEST}", time.to_rfc3339()),
        ));
    }
    Ok(())
}

fn humane(delta: TimeDelta) -> String {
    if delta.num_hours() >= 1 {
        format!("{} h", delta.num_hours())
    } else {
        format!("{} min", delta.num_minutes())
    }
}

/// Whether JSON text can hold a NUL: only as the escape `\u0000` (JSON forbids raw control
/// characters in strings). A `\\u0000` (an escaped backslash) answers yes too; the exact walk
/// over the parsed event then finds nothing. Every event read or published is searched, so the
/// search is memchr's vectorised one (a byte-by-byte window comparison was 5% of a rebuild's
/// CPU).
fn may_hold_nul(wire: &[u8]) -> bool {
    static ESCAPED_NUL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br"\u0000"));
    ESCAPED_NUL.find(wire).is_some()
}

/// Finds a NUL in any string or object key of `value`; `path` names where `value` is.
fn no_nul(path: &str, value: &Value) -> Result<(), ContractError> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Err(out(
            if path.is_empty() { "(value)" } else { path },
            "contains a NUL character (U+0000), which PostgreSQL text cannot hold",
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                no_nul(&format!("{path}[{i}]"), item)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    return Err(out(
                        &join(&key.replace('\0', "\\u0000")),
                        "the key contains a NUL character (U+0000), which PostgreSQL text cannot hold",
                    ));
                }
                no_nul(&join(key), item)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::examples;
    use crate::{ContractError, Event, EventType};
    use chrono::{DateTime, TimeDelta, Utc};
    use serde_json::{json, Value};

    fn stored() -> DateTime<Utc> {
        examples::event(EventType::RunQueued).time + TimeDelta::seconds(1)
    }

    /// The example of `event_type` with `edit` applied to its JSON, parsed and checked.
    fn check(event_type: EventType, edit: impl FnOnce(&mut Value)) -> Result<(), ContractError> {
        let mut value = examples::event(event_type).to_value();
        edit(&mut value);
        let wire = serde_json::to_vec(&value).unwrap();
        let event = Event::from_slice(&wire)?;
        event.check_bounds(&wire, stored())
    }

    fn field(result: Result<(), ContractError>) -> String {
        match result {
            Err(ContractError::OutOfBounds { field, .. }) => field,
            other => panic!("expected out of bounds, got {other:?}"),
        }
    }

    #[test]
    fn every_example_is_in_bounds() {
        for event_type in EventType::ALL {
            check(*event_type, |_| {}).unwrap_or_else(|e| panic!("{event_type:?}: {e}"));
        }
    }

    #[test]
    fn a_nul_anywhere_is_named() {
        let cases: [(EventType, &str, &str); 5] = [
            (EventType::AgentRegistered, "/data/name", "data.name"),
            (EventType::RunActivity, "/data/message", "data.message"),
            (
                EventType::RunQueued,
                "/data/context/wake_reason",
                "data.context.wake_reason",
            ),
            (
                EventType::RunFinished,
                "/data/result/summary",
                "data.result.summary",
            ),
            (EventType::RunQueued, "/source", "source"),
        ];
        for (event_type, pointer, expected) in cases {
            let result = check(event_type, |v| {
                if v.pointer(pointer).is_none() {
                    let (parent, key) = pointer.rsplit_once('/').unwrap();
                    v.pointer_mut(parent).unwrap()[key] = json!("");
                }
                *v.pointer_mut(pointer).unwrap() = json!("a\u{0}b");
            });
            assert_eq!(field(result), expected, "{event_type:?} {pointer}");
        }
        let key = check(EventType::RunQueued, |v| {
            v["data"]["context"]["a\u{0}"] = json!(1);
        });
        assert_eq!(field(key), "data.context.a\\u0000");
        let item = check(EventType::RunFinished, |v| {
            v["data"]["result"]["list"] = json!(["ok", "a\u{0}"]);
        });
        assert_eq!(field(item), "data.result.list[1]");
    }

    #[test]
    fn an_escaped_backslash_is_not_a_nul() {
        check(EventType::RunActivity, |v| {
            v["data"]["message"] = json!("C:\\u0000");
        })
        .unwrap();
    }

    #[test]
    fn a_lone_surrogate_does_not_parse() {
        for escape in ["\\ud800", "\\udfff", "\\ud800\\u0041"] {
            let wire = String::from_utf8(examples::event(EventType::RunActivity).to_vec())
                .unwrap()
                .replace("\"kind\"", &format!("\"message\":\"a{escape}b\",\"kind\""));
            let err = Event::from_slice(wire.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ContractError::MalformedJson(_)),
                "{escape}: {err}"
            );
        }
    }

    #[test]
    fn numbers_beyond_their_columns_are_named() {
        let too_big = json!(u64::from(u32::MAX));
        let cases: [(EventType, &str, &str, Value); 5] = [
            (
                EventType::RunQueued,
                "continuation_attempt",
                "data.continuation_attempt",
                too_big.clone(),
            ),
            (
                EventType::RunQueued,
                "process_loss_retry_count",
                "data.process_loss_retry_count",
                too_big.clone(),
            ),
            (
                EventType::RunLivenessClassified,
                "continuation_attempt",
                "data.continuation_attempt",
                too_big.clone(),
            ),
            (
                EventType::DocumentRevised,
                "revision_number",
                "data.revision_number",
                too_big,
            ),
            (
                EventType::RunStarted,
                "process_started_at",
                "data.process_started_at",
                json!(u64::MAX),
            ),
        ];
        for (event_type, key, expected, value) in cases {
            let result = check(event_type, |v| v["data"][key] = value);
            assert_eq!(field(result), expected, "{event_type:?}");
        }
        check(EventType::RunQueued, |v| {
            v["data"]["continuation_attempt"] = json!(i32::MAX)
        })
        .unwrap();
        let host = check(EventType::RunStarted, |v| {
            v["data"]["host"] = json!("h".repeat(super::MAX_INDEXED_TEXT + 1))
        });
        assert_eq!(field(host), "data.host");
    }

    #[test]
    fn times_out_of_bounds_are_named() {
        let years = [
            (
                EventType::RunQueued,
                "/time",
                "1999-12-31T23:59:59Z",
                "time",
            ),
            (
                EventType::RunQueued,
                "/time",
                "9999-01-01T00:00:00Z",
                "time",
            ),
            (
                EventType::RunActivity,
                "/data/at",
                "0001-01-01T00:00:00Z",
                "data.at",
            ),
            (
                EventType::IssueFollowUpRefused,
                "/data/retry_after",
                "2100-01-01T00:00:00Z",
                "data.retry_after",
            ),
        ];
        for (event_type, pointer, time, expected) in years {
            let result = check(event_type, |v| {
                *v.pointer_mut(pointer).unwrap() = json!(time)
            });
            assert_eq!(field(result), expected, "{event_type:?} {time}");
        }
        let ahead = |event_type, by: TimeDelta| {
            check(event_type, |v| {
                v["time"] = json!((stored() + by).to_rfc3339());
            })
        };
        ahead(EventType::RunQueued, TimeDelta::hours(23)).unwrap();
        assert_eq!(
            field(ahead(EventType::RunQueued, TimeDelta::hours(25))),
            "time"
        );
        ahead(EventType::ReconcilerTicked, TimeDelta::minutes(4)).unwrap();
        assert_eq!(
            field(ahead(EventType::ReconcilerTicked, TimeDelta::minutes(6))),
            "time"
        );
        let forged_tick = check(EventType::ReconcilerTicked, |v| {
            v["data"]["at"] = json!("2099-01-01T00:00:00Z");
        });
        assert_eq!(field(forged_tick), "data.at");
    }
}
