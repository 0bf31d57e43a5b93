//! Stranded assigned-issue recovery (reference §4, steps 1–5): an agent-assigned `todo` or
//! `in_progress` issue with no live run is re-dispatched or continued once, and escalated to
//! `blocked` with an explanatory comment when that one recovery failed too.
//!
//! "Once" is remembered by the `retry_reason` marker on the issue's newest run. runledger improves
//! on the original (§10, "healthy idle work falsely escalated"): it escalates only when the newest
//! run carrying the marker did not succeed; a recovery run that succeeded leaves the issue alone.

use crate::{text, FollowUpWakeup};
use events::issue::{Actor, IssueCommentAdded, IssueUpdated};
use events::{
    ActorType, AgentId, AgentStatus, CommentId, CompanyId, IssueId, IssueStatus, RunId, RunOutcome,
};
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Maximum length of the failure summary quoted in the escalation comment.
pub const MAX_FAILURE_SUMMARY_CHARS: usize = 240;
/// `source` of the escalation activity.
pub const ESCALATION_SOURCE: &str = "heartbeat.reconcile_stranded_assigned_issue";
/// Marker (`retry_reason`) of a dispatch recovery run of a `todo` issue.
pub const ASSIGNMENT_RECOVERY: &str = "assignment_recovery";
/// Marker (`retry_reason`) and wakeup reason of a continuation recovery of an `in_progress` issue.
pub const ISSUE_CONTINUATION_NEEDED: &str = "issue_continuation_needed";
/// Context key a process-loss retry of a recovery run keeps that recovery's marker under.
pub const RECOVERY_REASON: &str = "recovery_reason";

/// The stranded-recovery marker a run's context carries: its own `retry_reason` when that is a
/// recovery, or, for a process-loss retry, the `recovery_reason` it keeps of the recovery run it
/// retried.
pub fn recovery_marker(context: &Map<String, Value>) -> Option<&'static str> {
    let reason = |key: &str| context.get(key).and_then(Value::as_str);
    let marker = match reason("retry_reason") {
        Some(crate::retry::RETRY_REASON) => reason(RECOVERY_REASON)?,
        other => other?,
    };
    [ASSIGNMENT_RECOVERY, ISSUE_CONTINUATION_NEEDED]
        .into_iter()
        .find(|known| *known == marker)
}

/// Wakeup reason of a dispatch recovery.
pub const DISPATCH_WAKE_REASON: &str = "issue_assignment_recovery";
/// Context `source` of a dispatch recovery.
pub const DISPATCH_SOURCE: &str = "issue.assignment_recovery";
/// Context `source` of a continuation recovery.
pub const CONTINUATION_SOURCE: &str = "issue.continuation_recovery";

/// A JSON `"message": "…"` pair inside an error text.
static JSON_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""message"\s*:\s*"([^"]+)""#)
        .expect("the message pattern of escalation.rs is a valid regular expression")
});

/// Which recovery an issue gets: dispatch for `todo`, continuation for `in_progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryKind {
    /// Re-dispatch an assigned `todo` issue whose wake or run was lost.
    Dispatch,
    /// Continue an `in_progress` issue whose live execution vanished.
    Continuation,
}

impl RecoveryKind {
    /// The `retry_reason` marker a recovery run of this kind carries.
    pub fn marker(self) -> &'static str {
        match self {
            Self::Dispatch => ASSIGNMENT_RECOVERY,
            Self::Continuation => ISSUE_CONTINUATION_NEEDED,
        }
    }

    /// The wakeup reason of a recovery of this kind.
    pub fn wake_reason(self) -> &'static str {
        match self {
            Self::Dispatch => DISPATCH_WAKE_REASON,
            Self::Continuation => ISSUE_CONTINUATION_NEEDED,
        }
    }

    /// The context `source` of a recovery of this kind.
    pub fn source(self) -> &'static str {
        match self {
            Self::Dispatch => DISPATCH_SOURCE,
            Self::Continuation => CONTINUATION_SOURCE,
        }
    }
}

/// Status of a run: not finished yet, or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Waiting to start.
    Queued,
    /// Running.
    Running,
    /// Ended.
    Finished(RunOutcome),
}

impl RunStatus {
    /// The stored spelling (`queued`, `running`, `succeeded`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Finished(outcome) => outcome.as_str(),
        }
    }
}

/// A candidate issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrandedIssue {
    /// The issue.
    pub issue_id: IssueId,
    /// Its company.
    pub company_id: CompanyId,
    /// Human identifier, e.g. `PAP-12`.
    pub identifier: Option<String>,
    /// Status.
    pub status: IssueStatus,
    /// Agent assignee.
    pub assignee_agent_id: Option<AgentId>,
    /// User assignee: user-assigned issues are never touched.
    pub assignee_user_id: Option<String>,
    /// The run that checked it out.
    pub checkout_run_id: Option<RunId>,
}

/// The assignee agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrandedAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// Its company.
    pub company_id: CompanyId,
    /// Its status.
    pub status: AgentStatus,
}

/// The issue's newest run (creation time, then id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatestRun {
    /// The run.
    pub run_id: RunId,
    /// Its status.
    pub status: RunStatus,
    /// `retry_reason` of its context.
    pub retry_reason: Option<String>,
    /// The "already recovered once" marker: its own `retry_reason` when that is a recovery, or
    /// the recovery a process-loss retry of a recovery run carries on ([`recovery_marker`]).
    pub recovery: Option<String>,
    /// Its error code.
    pub error_code: Option<String>,
    /// Its error text.
    pub error: Option<String>,
}

/// Everything the stranded-issue decision looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrandedInput {
    /// The candidate.
    pub issue: StrandedIssue,
    /// Its assignee agent (`None`: missing).
    pub agent: Option<StrandedAgent>,
    /// A queued/running run of the issue, or a deferred wakeup naming it, exists.
    pub has_live_path: bool,
    /// The issue's newest run.
    pub latest_run: Option<LatestRun>,
}

/// Why a candidate is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrandedSkip {
    /// Not an agent-assigned, not user-assigned `todo`/`in_progress` issue.
    NotCandidate,
    /// The assignee agent does not exist.
    AgentMissing,
    /// The assignee agent belongs to another company, or is not the assignee.
    AgentForeign,
    /// The assignee agent cannot be invoked.
    AgentNotInvokable(AgentStatus),
    /// A run or deferred wakeup will still serve the issue.
    LiveExecutionPath,
    /// A `todo` issue that never had a run is waiting for its normal dispatch.
    NeverDispatched,
    /// A `todo` issue whose newest run succeeded.
    LatestRunSucceeded,
    /// The recovery run succeeded; the issue is idle, not stranded (runledger's improvement).
    RecoverySucceeded,
}

/// An escalation to `blocked`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    /// The issue.
    pub issue_id: IssueId,
    /// Which recovery was already used.
    pub kind: RecoveryKind,
    /// Status before the escalation.
    pub previous_status: IssueStatus,
    /// The authorless comment.
    pub comment_body: String,
    /// Activity details: `identifier`, `status`, `previous_status`, `source`, `latest_run_id`,
    /// `latest_run_status`, `latest_run_error_code`.
    pub activity_details: Map<String, Value>,
}

impl Escalation {
    /// The `issue.updated` moving the issue to `blocked` (assignee kept), by the system, with the
    /// activity details under `details`.
    pub fn issue_updated(&self) -> IssueUpdated {
        let mut update = IssueUpdated::default_for(self.issue_id);
        update.status = Some(IssueStatus::Blocked);
        update.actor = Some(Actor {
            actor_type: ActorType::System,
            id: None,
        });
        update.extra.insert(
            "details".to_owned(),
            Value::Object(self.activity_details.clone()),
        );
        update
    }

    /// The authorless `issue.comment_added` explaining the escalation.
    pub fn comment_added(&self, comment_id: CommentId) -> IssueCommentAdded {
        IssueCommentAdded {
            comment_id,
            issue_id: self.issue_id,
            body: self.comment_body.clone(),
            author_agent_id: None,
            author_user_id: None,
            run_id: None,
            extra: Map::new(),
        }
    }
}

/// The stranded-issue decision.
#[derive(Clone, Debug, PartialEq)]
pub enum StrandedDecision {
    /// Leave the issue alone.
    Skip(StrandedSkip),
    /// Re-dispatch the `todo` issue (counts as `dispatch_requeued`).
    Dispatch(FollowUpWakeup),
    /// Continue the `in_progress` issue (counts as `continuation_requeued`).
    Continuation(FollowUpWakeup),
    /// Move the issue to `blocked` and say why (counts as `escalated`).
    Escalate(Escalation),
}

/// Decides what to do with one candidate issue, steps 1–5 of §4.
pub fn decide_stranded(input: &StrandedInput) -> StrandedDecision {
    match check_candidate(input) {
        Err(skip) => StrandedDecision::Skip(skip),
        Ok((kind, agent_id)) => decide_recovery(input, kind, agent_id),
    }
}

/// Steps 1–2 and the candidate filter; on success, the recovery kind and the agent to wake.
fn check_candidate(input: &StrandedInput) -> Result<(RecoveryKind, AgentId), StrandedSkip> {
    let issue = &input.issue;
    let kind = match issue.status {
        IssueStatus::Todo => RecoveryKind::Dispatch,
        IssueStatus::InProgress => RecoveryKind::Continuation,
        _ => return Err(StrandedSkip::NotCandidate),
    };
    let (Some(assignee), None) = (issue.assignee_agent_id, &issue.assignee_user_id) else {
        return Err(StrandedSkip::NotCandidate);
    };
    let agent = input.agent.as_ref().ok_or(StrandedSkip::AgentMissing)?;
    if agent.agent_id != assignee || agent.company_id != issue.company_id {
        return Err(StrandedSkip::AgentForeign);
    }
    if !agent.status.is_invokable() {
        return Err(StrandedSkip::AgentNotInvokable(agent.status));
    }
    let latest_is_live = input
        .latest_run
        .as_ref()
        .is_some_and(|run| matches!(run.status, RunStatus::Queued | RunStatus::Running));
    if input.has_live_path || latest_is_live {
        return Err(StrandedSkip::LiveExecutionPath);
    }
    Ok((kind, assignee))
}

/// Steps 3–5: dispatch, continue, escalate or skip, from the newest run and its marker.
fn decide_recovery(
    input: &StrandedInput,
    kind: RecoveryKind,
    agent_id: AgentId,
) -> StrandedDecision {
    let latest = input.latest_run.as_ref();
    let succeeded =
        latest.is_some_and(|run| run.status == RunStatus::Finished(RunOutcome::Succeeded));
    let marked = latest.is_some_and(|run| run.recovery.as_deref() == Some(kind.marker()));
    match kind {
        RecoveryKind::Dispatch => match latest {
            None => StrandedDecision::Skip(StrandedSkip::NeverDispatched),
            Some(_) if succeeded => StrandedDecision::Skip(StrandedSkip::LatestRunSucceeded),
            Some(run) if marked => StrandedDecision::Escalate(escalation(input, kind, run)),
            Some(run) => {
                StrandedDecision::Dispatch(recovery_wakeup(input, kind, agent_id, Some(run.run_id)))
            }
        },
        RecoveryKind::Continuation => match latest {
            Some(_) if marked && succeeded => {
                StrandedDecision::Skip(StrandedSkip::RecoverySucceeded)
            }
            Some(run) if marked => StrandedDecision::Escalate(escalation(input, kind, run)),
            _ => {
                let retry_of = latest.map(|run| run.run_id).or(input.issue.checkout_run_id);
                StrandedDecision::Continuation(recovery_wakeup(input, kind, agent_id, retry_of))
            }
        },
    }
}

/// The recovery wakeup: payload `issue_id` + `retry_of_run_id`; context `wake_reason`,
/// `retry_reason`, `retry_of_run_id`, `source`.
fn recovery_wakeup(
    input: &StrandedInput,
    kind: RecoveryKind,
    agent_id: AgentId,
    retry_of_run_id: Option<RunId>,
) -> FollowUpWakeup {
    let issue_id = input.issue.issue_id;
    let retry_of = retry_of_run_id.map_or(Value::Null, |id| Value::String(id.to_string()));
    let mut payload = Map::new();
    payload.insert("issue_id".into(), issue_id.to_string().into());
    payload.insert("retry_of_run_id".into(), retry_of.clone());
    let mut context = Map::new();
    context.insert("issue_id".into(), issue_id.to_string().into());
    context.insert("wake_reason".into(), kind.wake_reason().into());
    context.insert("retry_reason".into(), kind.marker().into());
    context.insert("retry_of_run_id".into(), retry_of);
    context.insert("source".into(), kind.source().into());
    FollowUpWakeup {
        agent_id,
        issue_id: Some(issue_id),
        reason: kind.wake_reason().to_owned(),
        payload,
        context,
        idempotency_key: None,
        retry_of_run_id,
        continuation_attempt: 0,
        process_loss_retry_count: 0,
    }
}

/// The escalation: comment and activity details.
fn escalation(input: &StrandedInput, kind: RecoveryKind, latest: &LatestRun) -> Escalation {
    let issue = &input.issue;
    let error_code = latest.error_code.as_deref();
    let error = latest.error.as_deref();
    let mut details = Map::new();
    let identifier = text::non_empty_trimmed(issue.identifier.as_deref());
    details.insert(
        "identifier".into(),
        identifier.map_or(Value::Null, Value::from),
    );
    details.insert("status".into(), IssueStatus::Blocked.as_str().into());
    details.insert("previous_status".into(), issue.status.as_str().into());
    details.insert("source".into(), ESCALATION_SOURCE.into());
    details.insert("latest_run_id".into(), latest.run_id.to_string().into());
    details.insert("latest_run_status".into(), latest.status.as_str().into());
    details.insert(
        "latest_run_error_code".into(),
        text::non_empty_trimmed(error_code).map_or(Value::Null, Value::from),
    );
    Escalation {
        issue_id: issue.issue_id,
        kind,
        previous_status: issue.status,
        comment_body: escalation_comment(kind, error_code, error),
        activity_details: details,
    }
}

/// The escalation comment: what was retried, that there is still no live execution path, the
/// failure line if any, and that the issue moves to `blocked` for visibility.
pub fn escalation_comment(
    kind: RecoveryKind,
    error_code: Option<&str>,
    error: Option<&str>,
) -> String {
    let retried = match kind {
        RecoveryKind::Dispatch => {
            "runledger automatically retried dispatch for this assigned `todo` issue after a lost wake/run"
        }
        RecoveryKind::Continuation => {
            "runledger automatically retried continuation for this assigned `in_progress` issue after its live execution disappeared"
        }
    };
    let failure = failure_line(error_code, error)
        .map(|line| format!(" {line}"))
        .unwrap_or_default();
    format!(
        "{retried}, but it still has no live execution path.{failure} \
         Moving it to `blocked` so it is visible for intervention."
    )
}

/// "Latest retry failure: `<code>` - <summary>." (or code only, or summary only; `None` without
/// either).
pub fn failure_line(error_code: Option<&str>, error: Option<&str>) -> Option<String> {
    let code = text::non_empty_trimmed(error_code);
    let summary = failure_summary(error);
    match (code, summary) {
        (Some(code), Some(summary)) => Some(format!("Latest retry failure: `{code}` - {summary}.")),
        (Some(code), None) => Some(format!("Latest retry failure: `{code}`.")),
        (None, Some(summary)) => Some(format!("Latest retry failure: {summary}.")),
        (None, None) => None,
    }
}

/// A JSON `message` value inside the error text, else its first non-empty line, cut to 240.
pub fn failure_summary(error: Option<&str>) -> Option<String> {
    let error = text::non_empty_trimmed(error)?;
    let source = JSON_MESSAGE
        .captures(error)
        .and_then(|caps| caps.get(1))
        .map(|m| m.as_str())
        .or_else(|| error.lines().map(str::trim).find(|line| !line.is_empty()))?;
    Some(text::truncate_with_ellipsis(
        source,
        MAX_FAILURE_SUMMARY_CHARS,
    ))
}
