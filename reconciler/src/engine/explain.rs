//! The explanation the engine puts on every follow-up it emits ([`events::decision`]): the rule,
//! the cause, what the rule looked at and the outcome in a sentence.
//!
//! The inputs are read from the same state the rule decided on (the read models as of the cause,
//! the ledger, the storm policy), so they are the rule's facts, and a replay (or the simulator)
//! computes the same explanation byte for byte.

use super::rule;
use crate::engine::ledger::{Deferral, Ledger};
use crate::storm::StormPolicy;
use chrono::{DateTime, SecondsFormat, Utc};
use events::decision::{Cause, Decision};
use events::{Event, EventData};
use projector::fold::model::Model;
use serde_json::{Map, Value};
use uuid::Uuid;

/// What an explanation reads besides the follow-up.
pub(crate) struct Facts<'a> {
    pub model: &'a Model,
    pub ledger: &'a Ledger,
    pub storm: &'a StormPolicy,
    /// The run whose end triggered the decision (none for a tick).
    pub trigger_run: Option<Uuid>,
}

fn uuid_at(data: &Value, key: &str) -> Option<Uuid> {
    data.get(key)?.as_str()?.parse().ok()
}

fn text(data: &Value, key: &str) -> String {
    data.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The issue and the run a follow-up is about. A queued run or a wakeup is about the run that
/// led to it (the lost run it retries, the ended run it continues, the stranded issue's newest
/// run), not about the run it creates.
pub(crate) fn subject(facts: &Facts<'_>, follow_up: &Event) -> (Option<Uuid>, Option<Uuid>) {
    let data = serde_json::to_value(&follow_up.data).unwrap_or(Value::Null);
    let own_run = match follow_up.data {
        EventData::RunQueued(_) | EventData::WakeupRequested(_) => {
            uuid_at(&data, "retry_of_run_id")
        }
        _ => uuid_at(&data, "run_id"),
    };
    let deferred_from = deferral_of(facts, follow_up).and_then(|d| d.data().run_id.map(|r| r.0));
    let mut issue = uuid_at(&data, "issue_id");
    let run = deferred_from
        .or(own_run)
        .or(facts.trigger_run)
        .or_else(|| issue.and_then(|i| super::sweep::newest_run(facts.model, i).map(|r| r.run_id)));
    if issue.is_none() {
        issue = run
            .and_then(|r| facts.model.runs.get(&r))
            .and_then(|r| r.issue_id);
    }
    (issue, run)
}

/// The open deferral a follow-up fires or closes.
fn deferral_of<'a>(facts: &Facts<'a>, follow_up: &Event) -> Option<&'a Deferral> {
    let id: Uuid = match &follow_up.data {
        EventData::IssueFollowUpDeferralClosed(d) => d.deferral_id.0,
        _ => follow_up
            .extensions
            .get(super::DEFERRAL_ATTRIBUTE)?
            .as_str()?
            .parse()
            .ok()?,
    };
    facts.ledger.deferrals.iter().find(|d| d.event.id.0 == id)
}

/// The inputs about the run a rule looked at.
const RUN_INPUTS: [&str; 7] = [
    "run_status",
    "run_error_code",
    "liveness",
    "continuation_attempt",
    "process_loss_retries",
    "run_retry_reason",
    "run_id",
];

/// The explanation of `follow_up`, decided by `rule` on `cause` at `now`.
pub(crate) fn explain(
    facts: &Facts<'_>,
    cause: &Event,
    now: DateTime<Utc>,
    rule: &str,
    follow_up: &Event,
    classified: &[(Uuid, String)],
) -> Decision {
    let (issue, run) = subject(facts, follow_up);
    let mut inputs = Map::new();
    let issue_row = issue.and_then(|i| facts.model.issues.get(&i));
    if let Some(issue) = issue {
        inputs.insert("issue_id".into(), issue.to_string().into());
    }
    // An escalation already decided is in effect for the rules before the fold sees it.
    let status = match issue {
        Some(i) if facts.ledger.has_pending_escalation(i) => Some("blocked".to_owned()),
        _ => issue_row.and_then(|i| i.status.clone()),
    };
    inputs.insert("issue_status".into(), status.into());
    // A deferred follow-up fired or closed goes by the facts its deferral was decided on.
    let deferred = deferral_of(facts, follow_up).and_then(|d| Decision::of(&d.event));
    let run_row = run
        .filter(|_| deferred.is_none())
        .and_then(|r| facts.model.runs.get(&r));
    if let Some(run) = run {
        inputs.insert("run_id".into(), run.to_string().into());
    }
    if let Some(deferred) = &deferred {
        for key in RUN_INPUTS {
            if let Some(value) = deferred.inputs.get(key) {
                inputs.insert(key.into(), value.clone());
            }
        }
    }
    if let Some(r) = run_row {
        inputs.insert("run_status".into(), r.status.clone().into());
        inputs.insert("run_error_code".into(), r.error_code.clone().into());
        // A classification decided with this follow-up is what the rule went by.
        let liveness = classified
            .iter()
            .find(|(id, _)| *id == r.run_id)
            .map(|(_, state)| state.clone())
            .or_else(|| r.liveness_state.clone());
        inputs.insert("liveness".into(), liveness.into());
        let retry_reason = r.context.get("retry_reason").and_then(Value::as_str);
        inputs.insert("run_retry_reason".into(), retry_reason.into());
        inputs.insert("continuation_attempt".into(), r.continuation_attempt.into());
        inputs.insert(
            "process_loss_retries".into(),
            r.process_loss_retry_count.into(),
        );
    }
    if let Some(issue) = issue {
        let since = now - facts.storm.window;
        let grants = facts
            .ledger
            .grants_of(issue)
            .iter()
            .filter(|(at, _)| *at > since)
            .count();
        inputs.insert("storm_granted_in_window".into(), grants.into());
        inputs.insert(
            "storm_deferred".into(),
            facts.ledger.deferred_of(issue).len().into(),
        );
        inputs.insert("storm_ceiling".into(), facts.storm.ceiling.into());
    }
    if let Some(deferral) = follow_up.extensions.get(super::DEFERRAL_ATTRIBUTE) {
        inputs.insert("deferral_id".into(), deferral.clone());
    }
    let sentence = sentence(rule, follow_up, &inputs);
    Decision {
        rule: rule.to_owned(),
        cause: Cause {
            id: cause.id,
            event_type: cause.event_type().as_str().to_owned(),
            time: cause.time,
        },
        inputs,
        sentence,
    }
}

/// "failed with process_lost", "succeeded", "unknown".
fn ended(inputs: &Map<String, Value>) -> String {
    let status = inputs
        .get("run_status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    match inputs.get("run_error_code").and_then(Value::as_str) {
        Some(code) => format!("{status} with {code}"),
        None => status.to_owned(),
    }
}

fn recoveries(n: i64) -> String {
    match n {
        0 => "no recovery used yet".to_owned(),
        1 => "1 recovery used".to_owned(),
        n => format!("{n} recoveries used"),
    }
}

/// Why the rule acted, in a clause.
fn why(rule_name: &str, inputs: &Map<String, Value>) -> String {
    let last = ended(inputs);
    let int = |k: &str| inputs.get(k).and_then(Value::as_i64).unwrap_or(0);
    let issue_status = inputs
        .get("issue_status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let liveness = inputs
        .get("liveness")
        .and_then(Value::as_str)
        .unwrap_or("unclassified");
    let recovery = match inputs.get("run_retry_reason").and_then(Value::as_str) {
        Some(reason) => format!("it was already a recovery ({reason})"),
        None => "no recovery tried yet".to_owned(),
    };
    match rule_name {
        rule::PROCESS_LOST_RETRY => format!(
            "last run {last}; {}",
            recoveries(int("process_loss_retries"))
        ),
        rule::CONTINUATION => format!(
            "last run ended {liveness}; continuation attempt {} of the chain",
            int("continuation_attempt") + 1
        ),
        rule::CONTINUATION_EXHAUSTED => format!(
            "last run ended {liveness}; continuations exhausted after {}",
            int("continuation_attempt")
        ),
        rule::STRANDED_DISPATCH | rule::STRANDED_CONTINUATION | rule::STRANDED_ESCALATION => {
            format!("issue {issue_status} with no live run; last run {last}; {recovery}")
        }
        rule::MISSING_COMMENT | rule::RESULT_COMMENT => {
            format!("last run {last} and left no comment on the issue")
        }
        rule::SILENCE_TIMEOUT => format!("detached run silent too long (run {last})"),
        rule::STORM_CEILING => format!(
            "{} automatic wakeups granted and {} deferred in the window, ceiling {} beyond the \
             bounded flows",
            int("storm_granted_in_window"),
            int("storm_deferred"),
            int("storm_ceiling")
        ),
        _ => format!("last run {last}"),
    }
}

/// The outcome in a sentence: what was done, then why.
fn sentence(rule_name: &str, follow_up: &Event, inputs: &Map<String, Value>) -> String {
    let data = serde_json::to_value(&follow_up.data).unwrap_or(Value::Null);
    let why = why(rule_name, inputs);
    let fired = inputs.contains_key("deferral_id");
    let what = match &follow_up.data {
        EventData::RunQueued(_) if rule_name == rule::PROCESS_LOST_RETRY => "requeued once".into(),
        EventData::RunQueued(_) if fired => "run queued when its deferral fell due".into(),
        EventData::RunQueued(_) => "run queued".into(),
        EventData::WakeupRequested(_) if fired => "agent woken when its deferral fell due".into(),
        EventData::WakeupRequested(_) => "agent woken".into(),
        EventData::IssueFollowUpDeferred(d) => format!(
            "{} deferred until {} ({})",
            d.follow_up,
            d.due_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            d.reason
        ),
        EventData::IssueFollowUpRefused(d) => {
            format!("{} refused ({})", d.follow_up, d.reason)
        }
        EventData::IssueFollowUpDeferralClosed(d) => format!(
            "deferred {} {} ({})",
            d.follow_up,
            match d.outcome {
                events::issue::DeferralOutcome::Fired => "fired",
                events::issue::DeferralOutcome::Moot => "dropped as moot",
            },
            d.reason
        ),
        EventData::IssueCommentAdded(_) => "commented on the issue".into(),
        EventData::IssueUpdated(_) => format!("issue set to {}", text(&data, "status")),
        EventData::RunLivenessClassified(d) => {
            format!("run classified {} ({})", text(&data, "state"), d.reason)
        }
        EventData::RunCancelRequested(_) => "cancel requested".into(),
        EventData::DocumentRevised(_) => "continuation summary revised".into(),
        other => other.event_type().as_str().to_owned(),
    };
    format!("{what}: {why}")
}
