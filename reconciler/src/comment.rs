//! A succeeded issue run leaves word on its issue (reference §2, "finalization order"): if it
//! never commented, its result summary is posted as a comment attributed to it; if it had no
//! summary either, its agent may be woken once to write one (the missing-comment follow-up).
//!
//! The reference does not say when that follow-up is "due"; runledger's definition is
//! [`decide`]'s, in this order: a succeeded run of an issue of its company that posted no
//! comment on it before it ended and has no result summary; the issue is not `done`, `blocked` or
//! `cancelled`, still assigned to the run's agent, which exists and is invokable and not
//! budget-blocked (the continuation guards, [`continuation::assigned_agent`] and
//! [`continuation::invokable`]); the run was not itself woken by a missing-comment follow-up
//! (one per chain); and the continuation decision of the same run neither wakes the agent (that
//! wake already reaches it on the issue) nor posts the exhaustion comment (the issue then has
//! word from the run).
//!
//! Both come after the run ended in stream order, so neither is ever the run's evidence.

use crate::continuation::{self, AgentState, ContinuationDecision, IssueState, SkipReason};
use crate::{text, FollowUpWakeup};
use events::issue::IssueCommentAdded;
use events::{AgentId, CommentId, CompanyId, IssueId, IssueStatus, RunId, RunOutcome};
use serde_json::{Map, Value};

/// Keys of the adapter result holding the run's summary, first non-empty string wins.
pub const COMMENT_TEXT_KEYS: [&str; 3] = ["summary", "result", "message"];
/// Longest result comment, in characters (longer summaries end in "...").
pub const MAX_RESULT_COMMENT_CHARS: usize = 4_000;
/// Wakeup reason and `wake_reason` of a missing-comment follow-up.
pub const WAKE_REASON: &str = "issue_comment_missing";
/// Context `source` of a missing-comment follow-up.
pub const SOURCE: &str = "issue.comment_missing";
/// What the woken agent is asked to do.
pub const INSTRUCTION: &str = "Your previous run on this issue finished without a comment. Post a comment on the issue now saying what you did, what changed and what is next.";

/// The run that just ended.
#[derive(Clone, Debug, PartialEq)]
pub struct EndedRun {
    /// The run.
    pub run_id: RunId,
    /// Its company.
    pub company_id: CompanyId,
    /// Its agent.
    pub agent_id: AgentId,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Its own comments on its issue, counted until it ended.
    pub comments: u32,
    /// Its adapter result (`result_json`).
    pub result: Map<String, Value>,
    /// Its context's `wake_reason`.
    pub wake_reason: Option<String>,
}

/// What the continuation decision of the same run does (decided before, published after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContinuationEffect {
    /// Nothing: skipped, or no continuation candidate.
    Nothing,
    /// Wakes the run's agent on the issue again.
    Wakes,
    /// Posts the exhaustion comment as the run's agent.
    Comments,
}

impl ContinuationEffect {
    /// The effect of a continuation decision (`None`: none was made).
    pub fn of(decision: Option<&ContinuationDecision>) -> Self {
        match decision {
            Some(ContinuationDecision::Enqueue { .. }) => Self::Wakes,
            Some(ContinuationDecision::Exhausted(_)) => Self::Comments,
            Some(ContinuationDecision::Skip(_)) | None => Self::Nothing,
        }
    }
}

/// Everything the decision looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct CommentInput {
    /// The run.
    pub run: EndedRun,
    /// Its issue with a known status (`None`: none, or only a placeholder is known).
    pub issue: Option<IssueState>,
    /// Its agent (`None`: missing).
    pub agent: Option<AgentState>,
    /// What the continuation decision of the run does.
    pub continuation: ContinuationEffect,
}

/// Why the run gets neither a result comment nor a follow-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommentSkip {
    /// Failures (failed, timed out, cancelled, lost) skip the auto-comment.
    NotSucceeded(RunOutcome),
    /// The run has no issue of its company with a known status.
    NoIssue,
    /// The run commented on its issue itself.
    AlreadyCommented(u32),
    /// No summary, and the issue is `done`, `cancelled` or `blocked`.
    IssueClosed(IssueStatus),
    /// No summary, and a wake guard of the continuation rule applies.
    Guard(SkipReason),
    /// No summary, but the run was itself a missing-comment follow-up (one per chain).
    AlreadyFollowedUp,
    /// No summary, but the run's continuation wakes the agent on the issue anyway.
    ContinuationWakes,
    /// No summary, but the run's exhausted continuation chain posts a comment as the run.
    ExhaustionComments,
}

/// The run's result summary, to be posted as its comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultComment {
    /// The issue to comment on.
    pub issue_id: IssueId,
    /// The author: the run's agent.
    pub author_agent_id: AgentId,
    /// The run (the comment's `run_id`).
    pub run_id: RunId,
    /// The summary, trimmed, at most [`MAX_RESULT_COMMENT_CHARS`].
    pub body: String,
}

/// A comment posted as a run's agent, naming the run (the result and the exhaustion comment).
pub fn run_comment(
    comment_id: CommentId,
    issue_id: IssueId,
    author_agent_id: AgentId,
    run_id: RunId,
    body: &str,
) -> IssueCommentAdded {
    IssueCommentAdded {
        comment_id,
        issue_id,
        body: body.to_owned(),
        author_agent_id: Some(author_agent_id),
        author_user_id: None,
        run_id: Some(run_id),
        extra: Map::new(),
    }
}

impl ResultComment {
    /// The `issue.comment_added` posting it.
    pub fn comment_added(&self, comment_id: CommentId) -> IssueCommentAdded {
        run_comment(
            comment_id,
            self.issue_id,
            self.author_agent_id,
            self.run_id,
            &self.body,
        )
    }
}

/// The decision.
#[derive(Clone, Debug, PartialEq)]
pub enum CommentDecision {
    /// Nothing to do.
    Skip(CommentSkip),
    /// Post the run's result summary as its comment.
    Post(ResultComment),
    /// Wake the agent to write the comment the run did not.
    FollowUp(FollowUpWakeup),
}

/// The run's result summary: the first non-empty string of `summary`, `result`, `message`,
/// trimmed and cut to [`MAX_RESULT_COMMENT_CHARS`] characters.
pub fn comment_text(result: &Map<String, Value>) -> Option<String> {
    text::first_field_text(result, &COMMENT_TEXT_KEYS)
        .map(|summary| text::truncate_with_ellipsis(summary, MAX_RESULT_COMMENT_CHARS))
}

/// The idempotency key of a missing-comment follow-up.
pub fn idempotency_key(issue_id: IssueId, source_run_id: RunId) -> String {
    format!("{WAKE_REASON}:{issue_id}:{source_run_id}")
}

/// Decides what the run leaves on its issue (see the module documentation for "due").
pub fn decide(input: &CommentInput) -> CommentDecision {
    match check(input) {
        Ok(decision) => decision,
        Err(skip) => CommentDecision::Skip(skip),
    }
}

fn check(input: &CommentInput) -> Result<CommentDecision, CommentSkip> {
    let run = &input.run;
    if run.outcome != RunOutcome::Succeeded {
        return Err(CommentSkip::NotSucceeded(run.outcome));
    }
    let issue = input
        .issue
        .as_ref()
        .filter(|issue| issue.company_id == run.company_id)
        .ok_or(CommentSkip::NoIssue)?;
    if run.comments > 0 {
        return Err(CommentSkip::AlreadyCommented(run.comments));
    }
    if let Some(body) = comment_text(&run.result) {
        return Ok(CommentDecision::Post(ResultComment {
            issue_id: issue.issue_id,
            author_agent_id: run.agent_id,
            run_id: run.run_id,
            body,
        }));
    }
    // A blocked issue waits for a person (an escalation the reconciler decided counts as
    // blocked already): the agent is not woken on it.
    if matches!(
        issue.status,
        IssueStatus::Done | IssueStatus::Cancelled | IssueStatus::Blocked
    ) {
        return Err(CommentSkip::IssueClosed(issue.status));
    }
    let agent =
        continuation::assigned_agent(run.company_id, run.agent_id, issue, input.agent.as_ref())
            .map_err(CommentSkip::Guard)?;
    continuation::invokable(agent).map_err(CommentSkip::Guard)?;
    if run.wake_reason.as_deref() == Some(WAKE_REASON) {
        return Err(CommentSkip::AlreadyFollowedUp);
    }
    match input.continuation {
        ContinuationEffect::Wakes => Err(CommentSkip::ContinuationWakes),
        ContinuationEffect::Comments => Err(CommentSkip::ExhaustionComments),
        ContinuationEffect::Nothing => Ok(CommentDecision::FollowUp(follow_up(
            run,
            issue.issue_id,
            agent.agent_id,
        ))),
    }
}

/// The follow-up wakeup: payload `issue_id`, `source_run_id`, `instruction`; context `issue_id`,
/// `wake_reason`, `source`, `missing_comment_source_run_id`.
fn follow_up(run: &EndedRun, issue_id: IssueId, agent_id: AgentId) -> FollowUpWakeup {
    let source_run = Value::String(run.run_id.to_string());
    let mut payload = Map::new();
    payload.insert("issue_id".into(), issue_id.to_string().into());
    payload.insert("source_run_id".into(), source_run.clone());
    payload.insert("instruction".into(), INSTRUCTION.into());
    let mut context = Map::new();
    context.insert("issue_id".into(), issue_id.to_string().into());
    context.insert("wake_reason".into(), WAKE_REASON.into());
    context.insert("source".into(), SOURCE.into());
    context.insert("missing_comment_source_run_id".into(), source_run);
    FollowUpWakeup {
        agent_id,
        issue_id: Some(issue_id),
        reason: WAKE_REASON.to_owned(),
        payload,
        context,
        idempotency_key: Some(idempotency_key(issue_id, run.run_id)),
        retry_of_run_id: None,
        continuation_attempt: 0,
        process_loss_retry_count: 0,
    }
}
