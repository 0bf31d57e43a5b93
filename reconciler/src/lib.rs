//! The reconciler decides runledger's follow-ups — what follows from what happened — and
//! publishes each decision as an event that the projector folds like any other: the liveness of a
//! finished run, its bounded continuation, the continuation summary, the result comment or
//! missing-comment follow-up of a run that never commented, the single retry of a lost run, the
//! recovery or escalation of a stranded issue, the cancel request of a silent detached run, and
//! the refusals of storm control.
//!
//! Layout, pure to impure:
//! - the rules, pure functions with every fact as an input: [`liveness`], [`continuation`],
//!   [`summary`], [`comment`], [`escalation`], [`retry`], [`storm`], [`silence`] (and [`text`]
//!   matchers);
//! - [`engine`]: given the read models as of an event (the reconciler's private fold), the
//!   decision [`engine::ledger`] and the event, the follow-up events, with deterministic ids;
//! - [`sim`]: fold + engine entirely in memory, for data-driven tests;
//! - [`state`] and [`batch`]: the same in PostgreSQL, one transaction per batch advancing the
//!   private fold, the ledger, the transactional outbox and the position together;
//! - [`service`] (JetStream consumer), [`outbox`] (publisher), [`tick`] (the clock), [`dry_run`].

pub mod batch;
pub mod comment;
pub mod continuation;
pub mod dry_run;
pub mod engine;
mod error;
pub mod escalation;
pub mod liveness;
pub mod migrate;
pub mod outbox;
pub mod retry;
pub mod service;
pub mod silence;
pub mod sim;
pub mod state;
pub mod storm;
pub mod summary;
pub mod text;
pub mod tick;

pub use error::ReconcilerError;
pub use service::{Outcome, Reconciler, ReconcilerSettings};

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
    /// The issue the follow-up works on (`None` only for the retry of an issue-less run).
    pub issue_id: Option<IssueId>,
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
    /// Process-loss retry count of the queued run (1 for the retry of a lost run, else 0).
    pub process_loss_retry_count: u32,
}

impl FollowUpWakeup {
    /// The `wakeup.requested` payload for this follow-up.
    pub fn wakeup_requested(&self, wakeup_id: WakeupId) -> WakeupRequested {
        WakeupRequested {
            wakeup_id,
            agent_id: self.agent_id,
            issue_id: self.issue_id,
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
            issue_id: self.issue_id,
            invocation_source: InvocationSource::Automation,
            trigger_detail: TriggerDetail::System,
            context: self.context.clone(),
            retry_of_run_id: self.retry_of_run_id,
            process_loss_retry_count: self.process_loss_retry_count,
            continuation_attempt: self.continuation_attempt,
            extra: Map::new(),
        }
    }
}
