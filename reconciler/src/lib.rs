//! The reconciler decides runledger's follow-ups: what a finished run achieved (liveness), whether
//! it earns a bounded continuation, what the continuation summary says, and how stranded issues
//! are recovered or escalated.
//!
//! This part of the crate is pure: no database, no NATS, no clock. Every fact (evidence counts,
//! existing wakeups, times) is an input and every decision is a value, which the I/O shell turns
//! into events. That keeps the rules testable from tables and identical between live decisions
//! and replays.

pub mod continuation;
pub mod escalation;
pub mod liveness;
pub mod summary;
pub mod text;

use events::run::RunQueued;
use events::wakeup::WakeupRequested;
use events::{ActorType, AgentId, InvocationSource, IssueId, RunId, TriggerDetail, WakeupId};
use serde_json::{Map, Value};

/// Actor id of the system when the reconciler requests a wakeup.
pub const SYSTEM_ACTOR_ID: &str = "heartbeat";

/// A wakeup the reconciler decided to request, and the run that serves it. Every follow-up is
/// requested by the system, from `automation`, with trigger `system`.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowUpWakeup {
    /// The agent to wake (the issue's assignee).
    pub agent_id: AgentId,
    /// The issue the follow-up works on.
    pub issue_id: IssueId,
    /// Wakeup reason, e.g. `run_liveness_continuation`, `issue_assignment_recovery`.
    pub reason: String,
    /// Wakeup payload (snake_case keys).
    pub payload: Map<String, Value>,
    /// Context snapshot of the queued run (snake_case keys).
    pub context: Map<String, Value>,
    /// Requests with the same key are one request.
    pub idempotency_key: Option<String>,
    /// The run this one retries, if it is a retry.
    pub retry_of_run_id: Option<RunId>,
    /// Continuation attempt of the queued run (0 outside liveness continuations).
    pub continuation_attempt: u32,
}

impl FollowUpWakeup {
    /// The `wakeup.requested` payload for this follow-up.
    pub fn wakeup_requested(&self, wakeup_id: WakeupId) -> WakeupRequested {
        WakeupRequested {
            wakeup_id,
            agent_id: self.agent_id,
            issue_id: Some(self.issue_id),
            source: InvocationSource::Automation,
            trigger_detail: TriggerDetail::System,
            reason: self.reason.clone(),
            payload: self.payload.clone(),
            idempotency_key: self.idempotency_key.clone(),
            requested_by_actor_type: ActorType::System,
            requested_by_actor_id: Some(SYSTEM_ACTOR_ID.to_owned()),
            extra: Map::new(),
        }
    }

    /// The `run.queued` payload of the run serving this follow-up.
    pub fn run_queued(&self, run_id: RunId, wakeup_id: WakeupId) -> RunQueued {
        RunQueued {
            run_id,
            agent_id: self.agent_id,
            wakeup_id: Some(wakeup_id),
            issue_id: Some(self.issue_id),
            invocation_source: InvocationSource::Automation,
            trigger_detail: TriggerDetail::System,
            context: self.context.clone(),
            retry_of_run_id: self.retry_of_run_id,
            process_loss_retry_count: 0,
            continuation_attempt: self.continuation_attempt,
            extra: Map::new(),
        }
    }
}
