//! Bounded liveness continuations (reference §6): whether a `plan_only` or `empty_response` run
//! earns another wake of its agent, and what that wake says.
//!
//! A run that only planned, or said nothing, is woken again at most twice per chain
//! (0 → 1 → 2 → exhausted); the exhaustion is then made visible with one comment. The guards
//! run in the reference's order so a skipped continuation always reports the first reason that
//! applies. Unlike the original, a `claimed` wakeup with the same key also counts as existing
//! (reference §10, "continuation storms").

use crate::{text, FollowUpWakeup};
use events::{AgentId, AgentStatus, CompanyId, IssueId, IssueStatus, LivenessState, RunId};
use serde_json::{Map, Value};
use std::fmt;

/// Continuations per chain.
pub const MAX_CONTINUATION_ATTEMPTS: u32 = 2;
/// Wakeup reason and `wake_reason` of a liveness continuation.
pub const WAKE_REASON: &str = "run_liveness_continuation";
/// Instruction sent when the source run named no next action.
pub const DEFAULT_INSTRUCTION: &str = "The previous run ended without concrete progress. Take the first concrete action now or mark the issue blocked with a specific unblock request.";
/// Reason used in the exhaustion comment when the run has none.
pub const DEFAULT_EXHAUSTED_BASE_REASON: &str = "Run ended without concrete progress";
/// Appended to the liveness reason of a run whose chain is exhausted.
pub const EXHAUSTED_SUFFIX: &str = "; continuation attempts exhausted";
/// First line of the exhaustion comment.
pub const EXHAUSTED_COMMENT_HEADING: &str = "Bounded liveness continuation exhausted";

/// Status of a wakeup request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakeupStatus {
    /// Waiting for a run.
    Queued,
    /// Waiting for the issue's execution lock.
    DeferredIssueExecution,
    /// Its run started.
    Claimed,
    /// Merged into a live run of the same agent.
    Coalesced,
    /// Not acted on.
    Skipped,
    /// Its run succeeded.
    Completed,
    /// Its run failed.
    Failed,
    /// Its run was cancelled.
    Cancelled,
}

impl WakeupStatus {
    /// Every status, in declaration order.
    pub const ALL: [WakeupStatus; 8] = [
        Self::Queued,
        Self::DeferredIssueExecution,
        Self::Claimed,
        Self::Coalesced,
        Self::Skipped,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::DeferredIssueExecution => "deferred_issue_execution",
            Self::Claimed => "claimed",
            Self::Coalesced => "coalesced",
            Self::Skipped => "skipped",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether a wakeup in this status already stands for the continuation with its key:
    /// `queued`, `deferred_issue_execution`, `claimed` (runledger's addition) or `completed`.
    pub fn suppresses_continuation(self) -> bool {
        matches!(
            self,
            Self::Queued | Self::DeferredIssueExecution | Self::Claimed | Self::Completed
        )
    }
}

/// The classified run whose continuation is being decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRun {
    /// The run.
    pub run_id: RunId,
    /// Its company.
    pub company_id: CompanyId,
    /// Its agent.
    pub agent_id: AgentId,
    /// Its liveness state.
    pub liveness_state: LivenessState,
    /// Its liveness reason.
    pub liveness_reason: Option<String>,
    /// Its next action, which becomes the continuation's instruction.
    pub next_action: Option<String>,
    /// Its position in the continuation chain.
    pub continuation_attempt: u32,
}

/// The run's issue, now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueState {
    /// The issue.
    pub issue_id: IssueId,
    /// Its company.
    pub company_id: CompanyId,
    /// Its status.
    pub status: IssueStatus,
    /// Its agent assignee.
    pub assignee_agent_id: Option<AgentId>,
    /// Whether `execution_state` is set (a review/approval stage is active).
    pub has_execution_state: bool,
}

/// The run's agent, now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentState {
    /// The agent.
    pub agent_id: AgentId,
    /// Its company.
    pub company_id: CompanyId,
    /// Its status.
    pub status: AgentStatus,
    /// Whether the orchestrator hard-stopped it for budget.
    pub budget_blocked: bool,
}

/// A wakeup already recorded for the agent; only those whose key matches the planned
/// continuation's are considered, so the caller may pass a superset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingWakeup {
    /// Its idempotency key.
    pub idempotency_key: String,
    /// Its status.
    pub status: WakeupStatus,
}

/// Everything the continuation decision looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinuationInput {
    /// The classified run.
    pub run: SourceRun,
    /// Its issue (`None`: missing, or the run has no issue).
    pub issue: Option<IssueState>,
    /// Its agent (`None`: missing).
    pub agent: Option<AgentState>,
    /// Wakeups already recorded (see [`ExistingWakeup`]).
    pub existing_wakeups: Vec<ExistingWakeup>,
}

/// Why no continuation is enqueued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Only `plan_only` and `empty_response` runs are continued.
    StateNotActionable(LivenessState),
    /// The run has no issue, or it no longer exists.
    IssueMissing,
    /// The run's agent no longer exists.
    AgentMissing,
    /// Issue or agent belongs to another company than the run.
    CompanyMismatch,
    /// The issue was reassigned away from the run's agent.
    NoLongerAssigned,
    /// Only `todo` and `in_progress` issues are continued.
    IssueStatusNotContinuable(IssueStatus),
    /// A review/approval stage is active.
    ExecutionStateActive,
    /// The agent cannot be invoked.
    AgentNotInvokable(AgentStatus),
    /// The agent is hard-stopped for budget.
    BudgetHardStop,
    /// A wakeup with the same key already stands for this continuation.
    AlreadyRequested(WakeupStatus),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StateNotActionable(state) => {
                write!(
                    f,
                    "liveness state {state} is not actionable for continuation"
                )
            }
            Self::IssueMissing => f.write_str("issue not found"),
            Self::AgentMissing => f.write_str("agent not found"),
            Self::CompanyMismatch => f.write_str("company scope mismatch"),
            Self::NoLongerAssigned => {
                f.write_str("issue is no longer assigned to the source run agent")
            }
            Self::IssueStatusNotContinuable(status) => {
                write!(f, "issue status {status} is not continuable")
            }
            Self::ExecutionStateActive => f.write_str("issue is held by execution policy state"),
            Self::AgentNotInvokable(status) => write!(f, "agent status {status} is not invokable"),
            Self::BudgetHardStop => f.write_str("budget hard stop blocks continuation"),
            Self::AlreadyRequested(status) => write!(
                f,
                "continuation wake already exists for this source run and attempt ({})",
                status.as_str()
            ),
        }
    }
}

/// The chain is used up: tell a human, once per source run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhaustion {
    /// The issue to comment on.
    pub issue_id: IssueId,
    /// The comment's author: the run's agent.
    pub author_agent_id: AgentId,
    /// The source run (the comment's `run_id`; one comment per source run).
    pub source_run_id: RunId,
    /// Attempts used.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The comment, starting "Bounded liveness continuation exhausted".
    pub comment_body: String,
    /// The run's new liveness reason, ending "; continuation attempts exhausted".
    pub reason_with_suffix: String,
}

/// The continuation decision.
#[derive(Clone, Debug, PartialEq)]
pub enum ContinuationDecision {
    /// Nothing to do.
    Skip(SkipReason),
    /// No attempt left; the issue status stays as it is.
    Exhausted(Exhaustion),
    /// Wake the agent again with this attempt number.
    Enqueue {
        /// Attempt number of the new run.
        next_attempt: u32,
        /// `run_liveness_continuation:<issue>:<source run>:<state>:<next attempt>`.
        idempotency_key: String,
        /// The wakeup and the run serving it.
        wakeup: FollowUpWakeup,
    },
}

/// The idempotency key of a continuation wake.
pub fn idempotency_key(
    issue_id: IssueId,
    source_run_id: RunId,
    state: LivenessState,
    next_attempt: u32,
) -> String {
    format!("{WAKE_REASON}:{issue_id}:{source_run_id}:{state}:{next_attempt}")
}

/// Decides whether the run's agent is woken again, guards first, in the reference's order.
pub fn decide(input: &ContinuationInput) -> ContinuationDecision {
    let (issue, agent) = match check_guards(input) {
        Ok(found) => found,
        Err(reason) => return ContinuationDecision::Skip(reason),
    };
    let run = &input.run;
    if run.continuation_attempt >= MAX_CONTINUATION_ATTEMPTS {
        return ContinuationDecision::Exhausted(exhaustion(run, issue.issue_id));
    }
    let next_attempt = run.continuation_attempt + 1;
    let key = idempotency_key(issue.issue_id, run.run_id, run.liveness_state, next_attempt);
    if let Some(existing) = blocking_wakeup(&input.existing_wakeups, &key) {
        return ContinuationDecision::Skip(SkipReason::AlreadyRequested(existing));
    }
    ContinuationDecision::Enqueue {
        next_attempt,
        wakeup: continuation_wakeup(run, issue.issue_id, agent.agent_id, next_attempt, &key),
        idempotency_key: key,
    }
}

/// The skip guards, in order; on success, the issue and agent they vouched for.
fn check_guards(input: &ContinuationInput) -> Result<(&IssueState, &AgentState), SkipReason> {
    let run = &input.run;
    if !matches!(
        run.liveness_state,
        LivenessState::PlanOnly | LivenessState::EmptyResponse
    ) {
        return Err(SkipReason::StateNotActionable(run.liveness_state));
    }
    let issue = input.issue.as_ref().ok_or(SkipReason::IssueMissing)?;
    let agent = assigned_agent(run.company_id, run.agent_id, issue, input.agent.as_ref())?;
    if !matches!(issue.status, IssueStatus::Todo | IssueStatus::InProgress) {
        return Err(SkipReason::IssueStatusNotContinuable(issue.status));
    }
    if issue.has_execution_state {
        return Err(SkipReason::ExecutionStateActive);
    }
    invokable(agent)?;
    Ok((issue, agent))
}

/// The first guards of every automatic wake of a run's agent on the run's issue (continuations
/// and missing-comment follow-ups): the agent exists, issue and agent belong to the run's
/// company, and the issue is still assigned to that agent.
pub fn assigned_agent<'a>(
    run_company: CompanyId,
    run_agent: AgentId,
    issue: &IssueState,
    agent: Option<&'a AgentState>,
) -> Result<&'a AgentState, SkipReason> {
    let agent = agent.ok_or(SkipReason::AgentMissing)?;
    if issue.company_id != run_company || agent.company_id != run_company {
        return Err(SkipReason::CompanyMismatch);
    }
    if issue.assignee_agent_id != Some(run_agent) {
        return Err(SkipReason::NoLongerAssigned);
    }
    Ok(agent)
}

/// The last guards of every automatic wake of an agent: it can be invoked and is not
/// hard-stopped for budget.
pub fn invokable(agent: &AgentState) -> Result<(), SkipReason> {
    if !agent.status.is_invokable() {
        return Err(SkipReason::AgentNotInvokable(agent.status));
    }
    if agent.budget_blocked {
        return Err(SkipReason::BudgetHardStop);
    }
    Ok(())
}

/// The status of a recorded wakeup with `key` that already stands for the continuation.
fn blocking_wakeup(existing: &[ExistingWakeup], key: &str) -> Option<WakeupStatus> {
    existing
        .iter()
        .filter(|wakeup| wakeup.idempotency_key == key)
        .map(|wakeup| wakeup.status)
        .find(|status| status.suppresses_continuation())
}

/// The run's instruction for the next attempt: its next action, else the default.
fn instruction(run: &SourceRun) -> String {
    text::non_empty_trimmed(run.next_action.as_deref())
        .unwrap_or(DEFAULT_INSTRUCTION)
        .to_owned()
}

/// Builds the continuation wakeup: seven payload fields and the `liveness_continuation_*` context.
fn continuation_wakeup(
    run: &SourceRun,
    issue_id: IssueId,
    agent_id: AgentId,
    next_attempt: u32,
    key: &str,
) -> FollowUpWakeup {
    let reason = run
        .liveness_reason
        .clone()
        .map_or(Value::Null, Value::String);
    let instruction = instruction(run);
    let mut payload = Map::new();
    payload.insert("issue_id".into(), issue_id.to_string().into());
    payload.insert("source_run_id".into(), run.run_id.to_string().into());
    payload.insert("liveness_state".into(), run.liveness_state.as_str().into());
    payload.insert("liveness_reason".into(), reason.clone());
    payload.insert("continuation_attempt".into(), next_attempt.into());
    payload.insert(
        "max_continuation_attempts".into(),
        MAX_CONTINUATION_ATTEMPTS.into(),
    );
    payload.insert("instruction".into(), instruction.clone().into());

    let mut context = Map::new();
    context.insert("issue_id".into(), issue_id.to_string().into());
    context.insert("wake_reason".into(), WAKE_REASON.into());
    context.insert("liveness_continuation_attempt".into(), next_attempt.into());
    context.insert(
        "liveness_continuation_max_attempts".into(),
        MAX_CONTINUATION_ATTEMPTS.into(),
    );
    context.insert(
        "liveness_continuation_source_run_id".into(),
        run.run_id.to_string().into(),
    );
    context.insert(
        "liveness_continuation_state".into(),
        run.liveness_state.as_str().into(),
    );
    context.insert("liveness_continuation_reason".into(), reason);
    context.insert(
        "liveness_continuation_instruction".into(),
        instruction.into(),
    );

    FollowUpWakeup {
        agent_id,
        issue_id: Some(issue_id),
        reason: WAKE_REASON.to_owned(),
        payload,
        context,
        idempotency_key: Some(key.to_owned()),
        retry_of_run_id: None,
        continuation_attempt: next_attempt,
        process_loss_retry_count: 0,
    }
}

/// The exhaustion comment and the suffixed reason.
fn exhaustion(run: &SourceRun, issue_id: IssueId) -> Exhaustion {
    let base = text::non_empty_trimmed(run.liveness_reason.as_deref())
        .unwrap_or(DEFAULT_EXHAUSTED_BASE_REASON);
    let attempt = run.continuation_attempt;
    let max = MAX_CONTINUATION_ATTEMPTS;
    let comment_body = [
        EXHAUSTED_COMMENT_HEADING.to_owned(),
        String::new(),
        format!("- Last liveness state: `{}`", run.liveness_state),
        format!("- Attempts used: {attempt}/{max}"),
        format!("- Reason: {base}"),
        "- Next action: a human or manager should inspect the run and either clarify the task, \
         mark it blocked, or assign a concrete follow-up."
            .to_owned(),
    ]
    .join("\n");
    Exhaustion {
        issue_id,
        author_agent_id: run.agent_id,
        source_run_id: run.run_id,
        attempt,
        max_attempts: max,
        comment_body,
        reason_with_suffix: exhausted_reason(base),
    }
}

/// `base` + "; continuation attempts exhausted", at most 500 characters with the suffix kept
/// (the ledger looks for it); a reason that already carries it is returned unchanged.
pub fn exhausted_reason(base: &str) -> String {
    let limit = crate::liveness::MAX_REASON_CHARS;
    if base.contains(EXHAUSTED_SUFFIX.trim_start_matches("; ")) {
        return text::truncate_with_ellipsis(base, limit);
    }
    let room = limit - EXHAUSTED_SUFFIX.chars().count();
    format!(
        "{}{EXHAUSTED_SUFFIX}",
        text::truncate_with_ellipsis(base, room)
    )
}
