//! Run liveness classification (reference §5): what did a finished run actually achieve?
//!
//! The verdict is computed once, from the run's outcome, its output text, the issue as it was at
//! the finish and counts of the evidence the run left behind. Gathering those counts is the
//! caller's job (the database knows which comments, revisions… name the run); deciding what they
//! mean is this module's, with no I/O and no clock, so live classification and backfill can never
//! disagree about the rules.

use crate::text;
use chrono::{DateTime, Utc};
use events::run::RunLivenessClassified;
use events::{IssueStatus, LivenessState, RunId, RunOutcome};
use serde_json::{Map, Value};

/// Maximum length, in characters, of a liveness reason and of a next action.
pub const MAX_REASON_CHARS: usize = 500;

/// Reason of a `plan_only` verdict.
pub const PLAN_ONLY_REASON: &str = "Run described future work without concrete action evidence";
/// Reason of an `empty_response` verdict.
pub const EMPTY_RESPONSE_REASON: &str =
    "Run succeeded without useful output or concrete action evidence";
/// Reason of a `needs_followup` verdict.
pub const NEEDS_FOLLOWUP_REASON: &str =
    "Run produced useful output but no concrete action evidence";
/// Reason of an `advanced` verdict granted by the planning-task exemption.
pub const PLANNING_EXEMPT_REASON: &str =
    "Planning/document task produced useful output and is exempt from plan-only classification";
/// Reason of a `blocked` verdict taken from the issue status.
pub const ISSUE_BLOCKED_REASON: &str = "Issue status is blocked";
/// Reason of a `blocked` verdict taken from the run's output.
pub const DECLARED_BLOCKER_REASON: &str = "Run output declared a concrete blocker";

/// Keys of the adapter result read as output, in this order.
const RESULT_TEXT_KEYS: [&str; 5] = ["summary", "result", "message", "stdout", "stderr"];

/// What the run left behind, counted by the caller with the §5 rules: only the run's own writes,
/// revisions of `continuation-summary` excluded, issue-scoped kinds only when the run has an issue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvidenceCounts {
    /// Comments the run added to its issue.
    pub comments: u32,
    /// Revisions the run wrote to its issue's documents (not `continuation-summary`).
    pub revisions: u32,
    /// Of those, revisions of the `plan` document.
    pub plan_revisions: u32,
    /// Work products the run attached to its issue.
    pub work_products: u32,
    /// Workspace operations of the run (`workspace` activity): setup, never progress alone.
    pub workspace_operations: u32,
    /// Activity entries (issue updates…) naming the run, any entity.
    pub activity_events: u32,
    /// Tool/action events of the run (`tool_call` and `action` activity).
    pub tool_action_events: u32,
    /// Newest time of all six kinds above, workspace operations included.
    pub latest_evidence_at: Option<DateTime<Utc>>,
}

impl EvidenceCounts {
    /// Whether the run did something concrete: workspace operations alone never are.
    pub fn is_concrete(&self) -> bool {
        self.comments > 0
            || self.revisions > 0
            || self.work_products > 0
            || self.activity_events > 0
            || self.tool_action_events > 0
    }

    /// The non-zero counts, e.g. "1 issue comment(s), 2 tool/action event(s)".
    pub fn describe(&self) -> String {
        [
            (self.comments, "issue comment(s)"),
            (self.revisions, "document revision(s)"),
            (self.work_products, "work product(s)"),
            (self.workspace_operations, "workspace operation(s)"),
            (self.activity_events, "activity event(s)"),
            (self.tool_action_events, "tool/action event(s)"),
        ]
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, label)| format!("{count} {label}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The run's issue as it was when the run finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueSnapshot {
    /// Issue status at the finish.
    pub status: IssueStatus,
    /// Issue title.
    pub title: String,
    /// Issue description, markdown.
    pub description: Option<String>,
}

/// Everything the classifier looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassificationInput {
    /// How the run ended (a process loss is `failed` with `error_code` `process_lost`).
    pub outcome: RunOutcome,
    /// The run's error code, e.g. `process_lost`, `adapter_failed`.
    pub error_code: Option<String>,
    /// The run's error text.
    pub error: Option<String>,
    /// The adapter result (`result_json`).
    pub result: Map<String, Value>,
    /// Captured stdout excerpt.
    pub stdout_excerpt: Option<String>,
    /// Captured stderr excerpt.
    pub stderr_excerpt: Option<String>,
    /// The run's issue, if it has one.
    pub issue: Option<IssueSnapshot>,
    /// What the run left behind.
    pub evidence: EvidenceCounts,
    /// The run's position in its continuation chain (0 for ordinary runs).
    pub continuation_attempt: u32,
}

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The liveness state.
    pub state: LivenessState,
    /// Why, at most 500 characters.
    pub reason: String,
    /// What the run said it would do next (`blocked`, `plan_only`, `needs_followup` only).
    pub next_action: Option<String>,
    /// Newest evidence time, for `advanced`/`completed`/`blocked` runs with concrete evidence.
    pub last_useful_action_at: Option<DateTime<Utc>>,
    /// Copied from the input.
    pub continuation_attempt: u32,
}

impl Classification {
    /// The `run.liveness_classified` payload announcing this verdict for `run_id`.
    pub fn to_event(&self, run_id: RunId) -> RunLivenessClassified {
        RunLivenessClassified {
            run_id,
            state: self.state,
            reason: self.reason.clone(),
            next_action: self.next_action.clone(),
            last_useful_action_at: self.last_useful_action_at,
            continuation_attempt: self.continuation_attempt,
            extra: Map::new(),
        }
    }
}

/// The run's output text: non-empty trimmed `summary`, `result`, `message`, `stdout`, `stderr`
/// of the result, then the stdout and stderr excerpts and the error, newline-joined.
pub fn output_text(input: &ClassificationInput) -> String {
    let from_result = RESULT_TEXT_KEYS
        .iter()
        .filter_map(|key| text::field_text(&input.result, key));
    let from_run = [
        input.stdout_excerpt.as_deref(),
        input.stderr_excerpt.as_deref(),
        input.error.as_deref(),
    ]
    .into_iter()
    .filter_map(text::non_empty_trimmed);
    from_result.chain(from_run).collect::<Vec<_>>().join("\n")
}

/// First trimmed line of `output` that announces what comes next, cut to 500 characters.
pub fn next_action(output: &str) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .find(|line| text::is_next_action_line(line))
        .map(|line| text::truncate_with_ellipsis(line, MAX_REASON_CHARS))
}

/// "Run ended with <status> (<error_code>)", without brackets when there is no code.
pub fn failure_reason(outcome: RunOutcome, error_code: Option<&str>) -> String {
    match text::non_empty_trimmed(error_code) {
        Some(code) => format!("Run ended with {outcome} ({code})"),
        None => format!("Run ended with {outcome}"),
    }
}

/// Classifies a finished run; the first matching rule of §5 wins.
pub fn classify(input: &ClassificationInput) -> Classification {
    let output = output_text(input);
    let (state, reason, with_next_action) = decide(input, &output);
    let next_action = if with_next_action {
        next_action(&output)
    } else {
        None
    };
    Classification {
        state,
        reason: text::truncate_with_ellipsis(&reason, MAX_REASON_CHARS),
        next_action,
        last_useful_action_at: last_useful_action_at(state, &input.evidence),
        continuation_attempt: input.continuation_attempt,
    }
}

/// The decision order of §5: state, reason and whether a next action is extracted.
fn decide(input: &ClassificationInput, output: &str) -> (LivenessState, String, bool) {
    use LivenessState::*;
    let issue_status = input.issue.as_ref().map(|issue| issue.status);
    let evidence = &input.evidence;
    if input.outcome != RunOutcome::Succeeded {
        let reason = failure_reason(input.outcome, input.error_code.as_deref());
        return (Failed, reason, false);
    }
    if let Some(status @ (IssueStatus::Done | IssueStatus::Cancelled)) = issue_status {
        return (Completed, format!("Issue is {status}"), false);
    }
    if issue_status == Some(IssueStatus::Blocked) {
        return (Blocked, ISSUE_BLOCKED_REASON.to_owned(), true);
    }
    if text::declares_blocker(output) {
        return (Blocked, DECLARED_BLOCKER_REASON.to_owned(), true);
    }
    let useful_output = !output.is_empty();
    if !useful_output && !evidence.is_concrete() {
        return (EmptyResponse, EMPTY_RESPONSE_REASON.to_owned(), false);
    }
    if evidence.is_concrete() {
        let reason = format!(
            "Run produced concrete action evidence: {}",
            evidence.describe()
        );
        return (Advanced, reason, false);
    }
    if is_plan_exempt(input) {
        return (Advanced, PLANNING_EXEMPT_REASON.to_owned(), false);
    }
    if text::describes_future_work(output) {
        return (PlanOnly, PLAN_ONLY_REASON.to_owned(), true);
    }
    (NeedsFollowup, NEEDS_FOLLOWUP_REASON.to_owned(), true)
}

/// A planning task, or a run that revised the `plan` document, is exempt from `plan_only`.
fn is_plan_exempt(input: &ClassificationInput) -> bool {
    input.evidence.plan_revisions > 0
        || input
            .issue
            .as_ref()
            .is_some_and(|issue| text::is_planning_task(&issue.title, issue.description.as_deref()))
}

/// The newest evidence time, only for states that reflect real work and only with concrete evidence.
fn last_useful_action_at(state: LivenessState, evidence: &EvidenceCounts) -> Option<DateTime<Utc>> {
    let reflects_work = matches!(
        state,
        LivenessState::Advanced | LivenessState::Completed | LivenessState::Blocked
    );
    if reflects_work && evidence.is_concrete() {
        evidence.latest_evidence_at
    } else {
        None
    }
}
