//! Issue payloads: creation, partial updates, comments and work products. Comments, updates and
//! work products that carry a `run_id` are evidence of that run's progress.

use crate::ids::{AgentId, CommentId, EventId, IssueId, RunId, WorkProductId};
use crate::patch::present;
use crate::run::RunQueued;
use crate::vocab::{ActorType, IssueStatus, Priority};
use crate::wakeup::WakeupRequested;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn default_status() -> IssueStatus {
    IssueStatus::Backlog
}

fn default_priority() -> Priority {
    Priority::Medium
}

/// `issue.created`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueCreated {
    pub issue_id: IssueId,
    /// Human identifier, e.g. `PAP-12`.
    pub identifier: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Defaults to `backlog`.
    #[serde(default = "default_status")]
    pub status: IssueStatus,
    /// Defaults to `medium`.
    #[serde(default = "default_priority")]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_agent_id: Option<AgentId>,
    /// User ids belong to the orchestrator and are free-form strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<IssueId>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `issue.updated`: only the fields present change; a field sent as `null` is cleared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueUpdated {
    pub issue_id: IssueId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IssueStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub assignee_agent_id: Option<Option<AgentId>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub assignee_user_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub checkout_run_id: Option<Option<RunId>>,
    /// Non-null while a review/approval stage is active.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub execution_state: Option<Option<Value>>,
    /// The run that made the change (evidence for that run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `issue.comment_added`. No author at all means a system comment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueCommentAdded {
    pub comment_id: CommentId,
    pub issue_id: IssueId,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_agent_id: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `issue.work_product_added`: a pull request, branch, artifact... produced for the issue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueWorkProductAdded {
    pub work_product_id: WorkProductId,
    pub issue_id: IssueId,
    pub kind: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IssueUpdated {
    /// An update of `issue_id` that changes nothing yet; set the fields to change.
    pub fn default_for(issue_id: IssueId) -> Self {
        Self {
            issue_id,
            status: None,
            title: None,
            description: None,
            priority: None,
            assignee_agent_id: None,
            assignee_user_id: None,
            checkout_run_id: None,
            execution_state: None,
            run_id: None,
            actor: None,
            extra: Map::new(),
        }
    }
}

/// `issue.follow_up_refused`: the reconciler decided an automatic follow-up of the issue (a
/// process-loss retry, a stranded-issue recovery or a liveness continuation) and refused it:
/// the issue is terminal, or its automatic wakeups hit the backoff or the rolling ceiling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueFollowUpRefused {
    pub issue_id: IssueId,
    /// The run whose follow-up was refused (the lost run, the source run, the newest run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The agent that would have been woken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// The wakeup reason of the refused follow-up, e.g. `process_lost_retry`.
    pub follow_up: String,
    /// Why, e.g. "issue is done", "6 automatic wakeups in the last 1h (ceiling 6)".
    pub reason: String,
    /// When an automatic wakeup of this issue would be allowed again (absent: not by waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `issue.follow_up_deferred`: storm control held an automatic follow-up of the issue back (it
/// goes beyond the original's bounded flows and the backoff asks it to wait). The follow-up is
/// kept whole (its rule, the ids derived from its cause, the wakeup and the queued run) and is
/// published unchanged at the first tick at or after `due_at`, unless the issue has moved on by
/// then; either way an `issue.follow_up_deferral_closed` names this event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueFollowUpDeferred {
    pub issue_id: IssueId,
    /// The run the follow-up comes from (the lost run, the source run, the newest run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The agent that will be woken.
    pub agent_id: AgentId,
    /// The reconciler rule that decided the follow-up, e.g. `liveness_continuation`.
    pub rule: String,
    /// The wakeup reason of the follow-up, e.g. `run_liveness_continuation`.
    pub follow_up: String,
    /// Why it waits, e.g. "automatic wakeups of this issue back off: ...".
    pub reason: String,
    /// The event time from which it is due.
    pub due_at: DateTime<Utc>,
    /// The id of the `wakeup.requested` to publish (derived from the original cause).
    pub wakeup_event_id: EventId,
    /// The `wakeup.requested` to publish, unchanged.
    pub wakeup: Box<WakeupRequested>,
    /// The id of the `run.queued` to publish (derived from the original cause).
    pub run_event_id: EventId,
    /// The `run.queued` to publish, unchanged.
    pub run: Box<RunQueued>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How a deferred follow-up ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeferralOutcome {
    /// It fell due and was published as deferred.
    Fired,
    /// The issue had moved on when it fell due: it was not published.
    Moot,
}

impl DeferralOutcome {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Moot => "moot",
        }
    }
}

/// `issue.follow_up_deferral_closed`: a deferred follow-up (`deferral_id`, the id of its
/// `issue.follow_up_deferred`) fell due and was published (`fired`), or was dropped because the
/// issue had moved on (`moot`). Every deferral is closed exactly once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssueFollowUpDeferralClosed {
    pub issue_id: IssueId,
    /// The `issue.follow_up_deferred` this closes.
    pub deferral_id: EventId,
    /// The run the follow-up came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The wakeup reason of the follow-up.
    pub follow_up: String,
    pub outcome: DeferralOutcome,
    /// Why, e.g. "due" or "the issue is done".
    pub reason: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
