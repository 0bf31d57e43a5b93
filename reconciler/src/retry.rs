//! The single process-loss retry (reference §3, "exactly one retry"): a run lost while running is
//! retried once when a pid or process group was recorded and it is not itself a retry. The rule
//! is the projector's own ([`process_loss_retry_due`]), so the fold's "; retrying once" always
//! agrees with what the reconciler does. The fold releases a lost run's execution lock; the
//! retry's `run.queued` takes it when it is free.

use crate::escalation::RECOVERY_REASON;
use crate::FollowUpWakeup;
use events::{AgentId, IssueId, RunId};
use projector::fold::stop::process_loss_retry_due;
use serde_json::{Map, Value};

/// Wakeup reason and `wake_reason` of the retry.
pub const WAKE_REASON: &str = "process_lost_retry";
/// `retry_reason` of the retry.
pub const RETRY_REASON: &str = "process_lost";
/// Retries per lost run.
pub const MAX_PROCESS_LOSS_RETRIES: u32 = 1;

/// The run the watchdog reported lost.
#[derive(Clone, Debug, PartialEq)]
pub struct LostRun {
    /// The run.
    pub run_id: RunId,
    /// Its agent (`None`: only a placeholder is known).
    pub agent_id: Option<AgentId>,
    /// Its issue.
    pub issue_id: Option<IssueId>,
    /// How often its chain was already retried after a process loss.
    pub process_loss_retry_count: u32,
    /// Recorded pid.
    pub pid: Option<i32>,
    /// Recorded process group.
    pub pgid: Option<i32>,
    /// Its context snapshot; the retry keeps it (same session).
    pub context: Map<String, Value>,
}

/// Why a lost run is not retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRetry {
    /// It is already the retry of a lost run: never a second one.
    AlreadyRetried,
    /// Neither a pid nor a process group was recorded.
    NoProcessRecorded,
    /// Its agent is unknown, so there is no one to wake.
    AgentUnknown,
}

/// The decision.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryDecision {
    /// Queue the retry.
    Retry(FollowUpWakeup),
    /// Let the loss stand.
    NoRetry(NoRetry),
}

/// Decides the retry of a lost run.
pub fn decide(run: &LostRun) -> RetryDecision {
    let count = i32::try_from(run.process_loss_retry_count).unwrap_or(i32::MAX);
    if !process_loss_retry_due(count, run.pid, run.pgid) {
        return RetryDecision::NoRetry(
            if run.process_loss_retry_count >= MAX_PROCESS_LOSS_RETRIES {
                NoRetry::AlreadyRetried
            } else {
                NoRetry::NoProcessRecorded
            },
        );
    }
    let Some(agent_id) = run.agent_id else {
        return RetryDecision::NoRetry(NoRetry::AgentUnknown);
    };
    let lost = Value::String(run.run_id.to_string());
    let mut payload = Map::new();
    if let Some(issue) = run.issue_id {
        payload.insert("issue_id".into(), issue.to_string().into());
    }
    payload.insert("retry_of_run_id".into(), lost.clone());
    let mut context = run.context.clone();
    if let Some(issue) = run.issue_id {
        context.insert("issue_id".into(), issue.to_string().into());
    }
    // A retry of a stranded issue's recovery run is still that recovery: it keeps the marker
    // (`recovery_reason`), so the sweep escalates after it instead of recovering the issue again.
    if let Some(marker) = crate::escalation::recovery_marker(&run.context) {
        context.insert(RECOVERY_REASON.into(), marker.into());
    }
    context.insert("wake_reason".into(), WAKE_REASON.into());
    context.insert("retry_reason".into(), RETRY_REASON.into());
    context.insert("retry_of_run_id".into(), lost);
    RetryDecision::Retry(FollowUpWakeup {
        agent_id,
        issue_id: run.issue_id,
        reason: WAKE_REASON.to_owned(),
        payload,
        context,
        idempotency_key: None,
        retry_of_run_id: Some(run.run_id),
        continuation_attempt: 0,
        process_loss_retry_count: run.process_loss_retry_count + 1,
    })
}
