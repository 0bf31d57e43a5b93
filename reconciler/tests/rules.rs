//! Data-driven tests of the reconciler's pure rules: each table row is one scenario of the
//! reference's catalogue (§11) or one of its "Test inputs", given as input → exact expected output,
//! so a changed state, reason, key or payload field fails the row that names it.

use chrono::{DateTime, Utc};
use events::{
    ActorType, AgentId, AgentStatus, CommentId, CompanyId, InvocationSource, IssueId, IssueStatus,
    LivenessState, Priority, RunId, RunOutcome, TriggerDetail, WakeupId,
};
use reconciler::comment::{
    self, CommentDecision, CommentInput, CommentSkip, ContinuationEffect, EndedRun,
};
use reconciler::continuation::{
    self, AgentState, ContinuationDecision, ContinuationInput, ExistingWakeup, IssueState,
    SkipReason, SourceRun, WakeupStatus,
};
use reconciler::escalation::{
    self, LatestRun, RecoveryKind, RunStatus, StrandedAgent, StrandedDecision, StrandedInput,
    StrandedIssue, StrandedSkip,
};
use reconciler::liveness::{self, ClassificationInput, EvidenceCounts, IssueSnapshot};
use reconciler::summary::{self, Mode, SummaryAgent, SummaryInput, SummaryIssue, SummaryRun};
use serde_json::{json, Map, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// fixtures

fn run_id(n: u128) -> RunId {
    RunId(Uuid::from_u128(0x1000 + n))
}
fn issue_id() -> IssueId {
    IssueId(Uuid::from_u128(0x2000))
}
fn agent_id(n: u128) -> AgentId {
    AgentId(Uuid::from_u128(0x3000 + n))
}
fn company(n: u128) -> CompanyId {
    CompanyId(Uuid::from_u128(0x4000 + n))
}
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("fixture times are RFC 3339")
        .with_timezone(&Utc)
}
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("fixture is not an object: {other}"),
    }
}

const PLAN_SENTENCE: &str = "I will inspect the repo next and then implement the fix.";
const T1: &str = "2026-04-18T12:00:00Z";
const T2: &str = "2026-04-18T12:05:00Z";

// ---------------------------------------------------------------------------------------------
// liveness classification (§5)

/// Defaults of the catalogue: run succeeded, issue `in_progress` "Implement feature", no output.
fn classification_base() -> ClassificationInput {
    ClassificationInput {
        outcome: RunOutcome::Succeeded,
        error_code: None,
        error: None,
        result: Map::new(),
        stdout_excerpt: None,
        stderr_excerpt: None,
        issue: Some(IssueSnapshot {
            status: IssueStatus::InProgress,
            title: "Implement feature".into(),
            description: None,
        }),
        evidence: EvidenceCounts::default(),
        continuation_attempt: 0,
    }
}

fn summary_says(input: &mut ClassificationInput, text: &str) {
    input.result.insert("summary".into(), text.into());
}

struct ClassificationCase {
    name: &'static str,
    given: fn(&mut ClassificationInput),
    state: LivenessState,
    reason: &'static str,
    next_action: Option<&'static str>,
    last_useful_action_at: Option<&'static str>,
}

fn classification_cases() -> Vec<ClassificationCase> {
    use LivenessState::*;
    vec![
        ClassificationCase {
            name: "planning sentence is plan_only, next action names the inspection",
            given: |i| summary_says(i, PLAN_SENTENCE),
            state: PlanOnly,
            reason: "Run described future work without concrete action evidence",
            next_action: Some(PLAN_SENTENCE),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "no output and no evidence is empty_response",
            given: |_| {},
            state: EmptyResponse,
            reason: "Run succeeded without useful output or concrete action evidence",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "whitespace-only output is no output",
            given: |i| {
                summary_says(i, "   \n ");
                i.stdout_excerpt = Some("\t".into());
                i.result.insert("result".into(), json!(42));
            },
            state: EmptyResponse,
            reason: "Run succeeded without useful output or concrete action evidence",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "comment, revision, work product and tool event are advanced",
            given: |i| {
                i.evidence = EvidenceCounts {
                    comments: 1,
                    revisions: 1,
                    work_products: 1,
                    tool_action_events: 1,
                    latest_evidence_at: Some(at(T2)),
                    ..EvidenceCounts::default()
                };
                summary_says(i, PLAN_SENTENCE);
            },
            state: Advanced,
            reason: "Run produced concrete action evidence: 1 issue comment(s), 1 document revision(s), 1 work product(s), 1 tool/action event(s)",
            next_action: None,
            last_useful_action_at: Some(T2),
        },
        ClassificationCase {
            name: "every evidence kind is listed, workspace operations included",
            given: |i| {
                i.evidence = EvidenceCounts {
                    comments: 2,
                    revisions: 3,
                    plan_revisions: 1,
                    work_products: 4,
                    workspace_operations: 5,
                    activity_events: 6,
                    tool_action_events: 7,
                    latest_evidence_at: Some(at(T1)),
                };
            },
            state: Advanced,
            reason: "Run produced concrete action evidence: 2 issue comment(s), 3 document revision(s), 4 work product(s), 5 workspace operation(s), 6 activity event(s), 7 tool/action event(s)",
            next_action: None,
            last_useful_action_at: Some(T1),
        },
        ClassificationCase {
            name: "activity events alone are concrete",
            given: |i| {
                i.evidence.activity_events = 1;
                i.evidence.latest_evidence_at = Some(at(T1));
            },
            state: Advanced,
            reason: "Run produced concrete action evidence: 1 activity event(s)",
            next_action: None,
            last_useful_action_at: Some(T1),
        },
        ClassificationCase {
            name: "a workspace operation is not progress: plan_only, no last useful action",
            given: |i| {
                i.evidence.workspace_operations = 1;
                i.evidence.latest_evidence_at = Some(at(T1));
                summary_says(i, "I will inspect the repo next.");
            },
            state: PlanOnly,
            reason: "Run described future work without concrete action evidence",
            next_action: Some("I will inspect the repo next."),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "a workspace operation without output is an empty response",
            given: |i| {
                i.evidence.workspace_operations = 1;
                i.evidence.latest_evidence_at = Some(at(T1));
            },
            state: EmptyResponse,
            reason: "Run succeeded without useful output or concrete action evidence",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "planning task title with a Plan: output is exempt",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.title = "Draft implementation plan".into();
                }
                summary_says(i, "Plan:\n- write the outline");
            },
            state: Advanced,
            reason: "Planning/document task produced useful output and is exempt from plan-only classification",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "planning task description is exempt",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.title = "Caching".into();
                    issue.description = Some("Please write a design doc for the cache.".into());
                }
                summary_says(i, "I will review the options tomorrow.");
            },
            state: Advanced,
            reason: "Planning/document task produced useful output and is exempt from plan-only classification",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "planning task without output is still an empty response",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.title = "Draft implementation plan".into();
                }
            },
            state: EmptyResponse,
            reason: "Run succeeded without useful output or concrete action evidence",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "a plan revision by the run with Next steps: is advanced",
            given: |i| {
                i.evidence.revisions = 1;
                i.evidence.plan_revisions = 1;
                i.evidence.latest_evidence_at = Some(at(T1));
                summary_says(i, "Next steps:");
            },
            state: Advanced,
            reason: "Run produced concrete action evidence: 1 document revision(s)",
            next_action: None,
            last_useful_action_at: Some(T1),
        },
        ClassificationCase {
            name: "a plan revision by another run is not counted: plan_only",
            given: |i| summary_says(i, "Next steps:\n- inspect files"),
            state: PlanOnly,
            reason: "Run described future work without concrete action evidence",
            next_action: Some("Next steps:"),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "issue done is completed",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.status = IssueStatus::Done;
                }
                summary_says(i, PLAN_SENTENCE);
            },
            state: Completed,
            reason: "Issue is done",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "issue cancelled is completed",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.status = IssueStatus::Cancelled;
                }
            },
            state: Completed,
            reason: "Issue is cancelled",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "backfill: issue done and the run commented, last useful action = comment time",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.status = IssueStatus::Done;
                }
                i.evidence.comments = 1;
                i.evidence.latest_evidence_at = Some(at(T1));
            },
            state: Completed,
            reason: "Issue is done",
            next_action: None,
            last_useful_action_at: Some(T1),
        },
        ClassificationCase {
            name: "declared blocker",
            given: |i| summary_says(i, "I cannot proceed because I need access credentials."),
            state: Blocked,
            reason: "Run output declared a concrete blocker",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "declared blocker wins over evidence and keeps the last useful action",
            given: |i| {
                i.evidence.comments = 1;
                i.evidence.latest_evidence_at = Some(at(T2));
                summary_says(i, "Waiting on the API key.\nNext: ask the owner for the key");
            },
            state: Blocked,
            reason: "Run output declared a concrete blocker",
            next_action: Some("Next: ask the owner for the key"),
            last_useful_action_at: Some(T2),
        },
        ClassificationCase {
            name: "issue status blocked",
            given: |i| {
                if let Some(issue) = i.issue.as_mut() {
                    issue.status = IssueStatus::Blocked;
                }
                summary_says(i, "Let me check with the owner.");
            },
            state: Blocked,
            reason: "Issue status is blocked",
            next_action: Some("Let me check with the owner."),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "negated blocker is no blocker",
            given: |i| summary_says(i, "Not blocked.\nI'll fix the parser next."),
            state: PlanOnly,
            reason: "Run described future work without concrete action evidence",
            next_action: Some("I'll fix the parser next."),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "process loss is failed with its code",
            given: |i| {
                i.outcome = RunOutcome::Failed;
                i.error_code = Some("process_lost".into());
                i.error = Some("Process lost -- child pid 999999999 is no longer running".into());
            },
            state: Failed,
            reason: "Run ended with failed (process_lost)",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "failure wins over a done issue and evidence",
            given: |i| {
                i.outcome = RunOutcome::Failed;
                i.error_code = Some("adapter_failed".into());
                i.evidence.comments = 1;
                i.evidence.latest_evidence_at = Some(at(T1));
                if let Some(issue) = i.issue.as_mut() {
                    issue.status = IssueStatus::Done;
                }
            },
            state: Failed,
            reason: "Run ended with failed (adapter_failed)",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "timed out without a code has no brackets",
            given: |i| i.outcome = RunOutcome::TimedOut,
            state: Failed,
            reason: "Run ended with timed_out",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "a blank code counts as none",
            given: |i| {
                i.outcome = RunOutcome::TimedOut;
                i.error_code = Some("  ".into());
            },
            state: Failed,
            reason: "Run ended with timed_out",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "cancelled (backfill of a cancel)",
            given: |i| {
                i.outcome = RunOutcome::Cancelled;
                i.error_code = Some("cancelled".into());
            },
            state: Failed,
            reason: "Run ended with cancelled (cancelled)",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "useful output without plans is needs_followup; Next: line is the next action",
            given: |i| {
                summary_says(i, "Looked around the codebase.");
                i.stderr_excerpt = Some("  Next: deploy the fix  ".into());
            },
            state: NeedsFollowup,
            reason: "Run produced useful output but no concrete action evidence",
            next_action: Some("Next: deploy the fix"),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "needs_followup without a next action line",
            given: |i| summary_says(i, "The tests are green."),
            state: NeedsFollowup,
            reason: "Run produced useful output but no concrete action evidence",
            next_action: None,
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "stdout in the result is read as output",
            given: |i| {
                i.result.insert("stdout".into(), json!("Let me open the config."));
            },
            state: PlanOnly,
            reason: "Run described future work without concrete action evidence",
            next_action: Some("Let me open the config."),
            last_useful_action_at: None,
        },
        ClassificationCase {
            name: "a run without an issue can be plan_only",
            given: |i| {
                i.issue = None;
                i.stdout_excerpt = Some("Plan:\n1. read".into());
            },
            state: PlanOnly,
            reason: "Run described future work without concrete action evidence",
            next_action: None,
            last_useful_action_at: None,
        },
    ]
}

#[test]
fn classification_table() {
    for case in classification_cases() {
        let mut input = classification_base();
        (case.given)(&mut input);
        let verdict = liveness::classify(&input);
        assert_eq!(verdict.state, case.state, "{}", case.name);
        assert_eq!(verdict.reason, case.reason, "{}", case.name);
        assert_eq!(
            verdict.next_action.as_deref(),
            case.next_action,
            "{}",
            case.name
        );
        assert_eq!(
            verdict.last_useful_action_at,
            case.last_useful_action_at.map(at),
            "{}",
            case.name
        );
        assert_eq!(verdict.continuation_attempt, 0, "{}", case.name);
    }
}

#[test]
fn output_text_joins_result_keys_then_excerpts_then_error() {
    let mut input = classification_base();
    input.result = object(json!({
        "stderr": " e ", "stdout": "o", "message": "m", "result": "r", "summary": " s ",
        "other": "ignored", "error": "ignored too"
    }));
    input.stdout_excerpt = Some("out".into());
    input.stderr_excerpt = Some("  ".into());
    input.error = Some(" err ".into());
    assert_eq!(liveness::output_text(&input), "s\nr\nm\no\ne\nout\nerr");
}

#[test]
fn reason_and_next_action_are_cut_to_500_chars() {
    let mut input = classification_base();
    input.outcome = RunOutcome::Failed;
    input.error_code = Some("x".repeat(600));
    let verdict = liveness::classify(&input);
    assert_eq!(verdict.reason.chars().count(), 500);
    assert!(verdict.reason.starts_with("Run ended with failed (xxx"));
    assert!(verdict.reason.ends_with("x..."));

    let mut input = classification_base();
    let line = format!("I will inspect {}", "ü".repeat(700));
    summary_says(&mut input, &line);
    let verdict = liveness::classify(&input);
    let next = verdict.next_action.expect("plan_only has a next action");
    assert_eq!(next.chars().count(), 500);
    assert!(next.ends_with("ü..."));
}

#[test]
fn continuation_attempt_is_carried_and_event_is_built() {
    let mut input = classification_base();
    input.continuation_attempt = 2;
    summary_says(&mut input, PLAN_SENTENCE);
    let verdict = liveness::classify(&input);
    assert_eq!(verdict.continuation_attempt, 2);
    let event = verdict.to_event(run_id(1));
    assert_eq!(event.run_id, run_id(1));
    assert_eq!(event.state, LivenessState::PlanOnly);
    assert_eq!(event.reason, liveness::PLAN_ONLY_REASON);
    assert_eq!(event.next_action.as_deref(), Some(PLAN_SENTENCE));
    assert_eq!(event.continuation_attempt, 2);
}

// ---------------------------------------------------------------------------------------------
// bounded continuations (§6)

fn continuation_base() -> ContinuationInput {
    ContinuationInput {
        run: SourceRun {
            run_id: run_id(1),
            company_id: company(1),
            agent_id: agent_id(1),
            liveness_state: LivenessState::PlanOnly,
            liveness_reason: Some(liveness::PLAN_ONLY_REASON.into()),
            next_action: Some(PLAN_SENTENCE.into()),
            continuation_attempt: 0,
        },
        issue: Some(IssueState {
            issue_id: issue_id(),
            company_id: company(1),
            status: IssueStatus::InProgress,
            assignee_agent_id: Some(agent_id(1)),
            has_execution_state: false,
        }),
        agent: Some(AgentState {
            agent_id: agent_id(1),
            company_id: company(1),
            status: AgentStatus::Idle,
            budget_blocked: false,
        }),
        existing_wakeups: Vec::new(),
    }
}

fn key_for_attempt(attempt: u32) -> String {
    format!(
        "run_liveness_continuation:{}:{}:plan_only:{attempt}",
        issue_id(),
        run_id(1)
    )
}

fn existing(attempt: u32, status: WakeupStatus) -> ExistingWakeup {
    ExistingWakeup {
        idempotency_key: key_for_attempt(attempt),
        status,
    }
}

/// Changes the issue or agent of a rule input, if it has one.
fn with<T>(state: &mut Option<T>, change: impl FnOnce(&mut T)) {
    if let Some(state) = state.as_mut() {
        change(state);
    }
}

/// What a row expects: skip reason, exhaustion, or enqueue at an attempt.
#[derive(Debug, PartialEq)]
enum Expect {
    Skip(SkipReason),
    Exhausted,
    Enqueue(u32),
}

/// One continuation row: name, how it differs from the base, expectation.
type ContinuationCase = (&'static str, fn(&mut ContinuationInput), Expect);

fn continuation_cases() -> Vec<ContinuationCase> {
    use Expect::*;
    vec![
        (
            "plan_only at attempt 0 enqueues attempt 1",
            |_| {},
            Enqueue(1),
        ),
        (
            "empty_response at attempt 1 enqueues attempt 2",
            |i| {
                i.run.liveness_state = LivenessState::EmptyResponse;
                i.run.continuation_attempt = 1;
            },
            Enqueue(2),
        ),
        (
            "attempt 2 is exhausted",
            |i| i.run.continuation_attempt = 2,
            Exhausted,
        ),
        (
            "attempt 3 is exhausted too",
            |i| i.run.continuation_attempt = 3,
            Exhausted,
        ),
        (
            "advanced is not actionable",
            |i| i.run.liveness_state = LivenessState::Advanced,
            Skip(SkipReason::StateNotActionable(LivenessState::Advanced)),
        ),
        (
            "needs_followup is not actionable",
            |i| i.run.liveness_state = LivenessState::NeedsFollowup,
            Skip(SkipReason::StateNotActionable(LivenessState::NeedsFollowup)),
        ),
        (
            "state is checked before anything else",
            |i| {
                i.run.liveness_state = LivenessState::Failed;
                i.issue = None;
                i.agent = None;
            },
            Skip(SkipReason::StateNotActionable(LivenessState::Failed)),
        ),
        (
            "missing issue",
            |i| i.issue = None,
            Skip(SkipReason::IssueMissing),
        ),
        (
            "missing agent",
            |i| i.agent = None,
            Skip(SkipReason::AgentMissing),
        ),
        (
            "issue of another company",
            |i| with(&mut i.issue, |issue| issue.company_id = company(2)),
            Skip(SkipReason::CompanyMismatch),
        ),
        (
            "agent of another company",
            |i| with(&mut i.agent, |agent| agent.company_id = company(2)),
            Skip(SkipReason::CompanyMismatch),
        ),
        (
            "issue reassigned to another agent",
            |i| {
                with(&mut i.issue, |issue| {
                    issue.assignee_agent_id = Some(agent_id(2))
                })
            },
            Skip(SkipReason::NoLongerAssigned),
        ),
        (
            "issue unassigned",
            |i| with(&mut i.issue, |issue| issue.assignee_agent_id = None),
            Skip(SkipReason::NoLongerAssigned),
        ),
        (
            "issue done",
            |i| with(&mut i.issue, |issue| issue.status = IssueStatus::Done),
            Skip(SkipReason::IssueStatusNotContinuable(IssueStatus::Done)),
        ),
        (
            "issue in review",
            |i| with(&mut i.issue, |issue| issue.status = IssueStatus::InReview),
            Skip(SkipReason::IssueStatusNotContinuable(IssueStatus::InReview)),
        ),
        (
            "todo issue is continuable",
            |i| with(&mut i.issue, |issue| issue.status = IssueStatus::Todo),
            Enqueue(1),
        ),
        (
            "execution state set",
            |i| with(&mut i.issue, |issue| issue.has_execution_state = true),
            Skip(SkipReason::ExecutionStateActive),
        ),
        (
            "agent paused",
            |i| with(&mut i.agent, |agent| agent.status = AgentStatus::Paused),
            Skip(SkipReason::AgentNotInvokable(AgentStatus::Paused)),
        ),
        (
            "agent not invokable is reported before the budget stop",
            |i| {
                with(&mut i.agent, |agent| {
                    agent.status = AgentStatus::Terminated;
                    agent.budget_blocked = true;
                })
            },
            Skip(SkipReason::AgentNotInvokable(AgentStatus::Terminated)),
        ),
        (
            "agent in error is still invokable",
            |i| with(&mut i.agent, |agent| agent.status = AgentStatus::Error),
            Enqueue(1),
        ),
        (
            "budget hard stop",
            |i| with(&mut i.agent, |agent| agent.budget_blocked = true),
            Skip(SkipReason::BudgetHardStop),
        ),
        (
            "budget hard stop is checked before exhaustion",
            |i| {
                i.run.continuation_attempt = 2;
                with(&mut i.agent, |agent| agent.budget_blocked = true);
            },
            Skip(SkipReason::BudgetHardStop),
        ),
        (
            "existing queued key",
            |i| i.existing_wakeups = vec![existing(1, WakeupStatus::Queued)],
            Skip(SkipReason::AlreadyRequested(WakeupStatus::Queued)),
        ),
        (
            "existing deferred key",
            |i| i.existing_wakeups = vec![existing(1, WakeupStatus::DeferredIssueExecution)],
            Skip(SkipReason::AlreadyRequested(
                WakeupStatus::DeferredIssueExecution,
            )),
        ),
        (
            "existing completed key",
            |i| i.existing_wakeups = vec![existing(1, WakeupStatus::Completed)],
            Skip(SkipReason::AlreadyRequested(WakeupStatus::Completed)),
        ),
        (
            "existing claimed key (runledger improvement)",
            |i| i.existing_wakeups = vec![existing(1, WakeupStatus::Claimed)],
            Skip(SkipReason::AlreadyRequested(WakeupStatus::Claimed)),
        ),
        (
            "failed, cancelled, skipped or coalesced wakeups with the key do not count",
            |i| {
                i.existing_wakeups = vec![
                    existing(1, WakeupStatus::Failed),
                    existing(1, WakeupStatus::Cancelled),
                    existing(1, WakeupStatus::Skipped),
                    existing(1, WakeupStatus::Coalesced),
                ]
            },
            Enqueue(1),
        ),
        (
            "a wakeup of another attempt does not count",
            |i| i.existing_wakeups = vec![existing(2, WakeupStatus::Queued)],
            Enqueue(1),
        ),
        (
            "exhaustion comes before the key check",
            |i| {
                i.run.continuation_attempt = 2;
                i.existing_wakeups = vec![existing(3, WakeupStatus::Queued)];
            },
            Exhausted,
        ),
    ]
}

#[test]
fn continuation_table() {
    for (name, given, expected) in continuation_cases() {
        let mut input = continuation_base();
        given(&mut input);
        let actual = match continuation::decide(&input) {
            ContinuationDecision::Skip(reason) => Expect::Skip(reason),
            ContinuationDecision::Exhausted(_) => Expect::Exhausted,
            ContinuationDecision::Enqueue {
                next_attempt,
                idempotency_key,
                wakeup,
            } => {
                assert_eq!(wakeup.continuation_attempt, next_attempt, "{name}");
                assert_eq!(
                    wakeup.idempotency_key.as_deref(),
                    Some(idempotency_key.as_str()),
                    "{name}"
                );
                Expect::Enqueue(next_attempt)
            }
        };
        assert_eq!(actual, expected, "{name}");
    }
}

#[test]
fn plan_only_continuation_carries_key_payload_and_context() {
    let ContinuationDecision::Enqueue {
        next_attempt,
        idempotency_key,
        wakeup,
    } = continuation::decide(&continuation_base())
    else {
        panic!("plan_only at attempt 0 must enqueue");
    };
    assert_eq!(next_attempt, 1);
    assert_eq!(idempotency_key, key_for_attempt(1));
    assert_eq!(wakeup.reason, "run_liveness_continuation");
    assert_eq!(wakeup.agent_id, agent_id(1));
    assert_eq!(wakeup.issue_id, Some(issue_id()));
    assert_eq!(
        Value::Object(wakeup.payload.clone()),
        json!({
            "issue_id": issue_id().to_string(),
            "source_run_id": run_id(1).to_string(),
            "liveness_state": "plan_only",
            "liveness_reason": "Run described future work without concrete action evidence",
            "continuation_attempt": 1,
            "max_continuation_attempts": 2,
            "instruction": PLAN_SENTENCE,
        })
    );
    assert_eq!(
        Value::Object(wakeup.context.clone()),
        json!({
            "issue_id": issue_id().to_string(),
            "wake_reason": "run_liveness_continuation",
            "liveness_continuation_attempt": 1,
            "liveness_continuation_max_attempts": 2,
            "liveness_continuation_source_run_id": run_id(1).to_string(),
            "liveness_continuation_state": "plan_only",
            "liveness_continuation_reason": "Run described future work without concrete action evidence",
            "liveness_continuation_instruction": PLAN_SENTENCE,
        })
    );

    let requested = wakeup.wakeup_requested(WakeupId(Uuid::from_u128(9)));
    assert_eq!(requested.source, InvocationSource::Automation);
    assert_eq!(requested.trigger_detail, TriggerDetail::System);
    assert_eq!(requested.reason, "run_liveness_continuation");
    assert_eq!(requested.requested_by_actor_type, ActorType::System);
    assert_eq!(
        requested.requested_by_actor_id.as_deref(),
        Some("heartbeat")
    );
    assert_eq!(
        requested.idempotency_key.as_deref(),
        Some(key_for_attempt(1).as_str())
    );
    assert_eq!(requested.issue_id, Some(issue_id()));

    let queued = wakeup.run_queued(run_id(2), WakeupId(Uuid::from_u128(9)));
    assert_eq!(queued.continuation_attempt, 1);
    assert_eq!(queued.retry_of_run_id, None);
    assert_eq!(queued.process_loss_retry_count, 0);
    assert_eq!(queued.issue_id, Some(issue_id()));
    assert_eq!(queued.context, wakeup.context);
}

#[test]
fn empty_response_without_next_action_gets_the_default_instruction() {
    let mut input = continuation_base();
    input.run.liveness_state = LivenessState::EmptyResponse;
    input.run.liveness_reason = None;
    input.run.next_action = Some("   ".into());
    input.run.continuation_attempt = 1;
    let ContinuationDecision::Enqueue {
        idempotency_key,
        wakeup,
        ..
    } = continuation::decide(&input)
    else {
        panic!("empty_response at attempt 1 must enqueue");
    };
    assert_eq!(
        idempotency_key,
        format!(
            "run_liveness_continuation:{}:{}:empty_response:2",
            issue_id(),
            run_id(1)
        )
    );
    assert_eq!(
        wakeup.payload["instruction"],
        json!("The previous run ended without concrete progress. Take the first concrete action now or mark the issue blocked with a specific unblock request.")
    );
    assert_eq!(wakeup.payload["liveness_reason"], Value::Null);
    assert_eq!(wakeup.payload["continuation_attempt"], json!(2));
    assert_eq!(wakeup.context["liveness_continuation_attempt"], json!(2));
    assert_eq!(
        wakeup.context["liveness_continuation_state"],
        json!("empty_response")
    );
}

#[test]
fn recovery_run_is_the_continuation_source() {
    let recovery_run = run_id(7);
    let mut input = continuation_base();
    input.run.run_id = recovery_run;
    let ContinuationDecision::Enqueue { wakeup, .. } = continuation::decide(&input) else {
        panic!("must enqueue");
    };
    assert_eq!(
        wakeup.payload["source_run_id"],
        json!(recovery_run.to_string())
    );
    assert_eq!(
        wakeup.context["liveness_continuation_source_run_id"],
        json!(recovery_run.to_string())
    );
}

#[test]
fn exhaustion_comment_and_reason() {
    let mut input = continuation_base();
    input.run.continuation_attempt = 2;
    let ContinuationDecision::Exhausted(exhausted) = continuation::decide(&input) else {
        panic!("attempt 2 must be exhausted");
    };
    assert!(exhausted
        .comment_body
        .starts_with("Bounded liveness continuation exhausted"));
    assert!(exhausted.comment_body.contains("Attempts used: 2/2"));
    assert_eq!(
        exhausted.comment_body,
        "Bounded liveness continuation exhausted\n\n\
         - Last liveness state: `plan_only`\n\
         - Attempts used: 2/2\n\
         - Reason: Run described future work without concrete action evidence\n\
         - Next action: a human or manager should inspect the run and either clarify the task, \
         mark it blocked, or assign a concrete follow-up."
    );
    assert_eq!(
        exhausted.reason_with_suffix,
        "Run described future work without concrete action evidence; continuation attempts exhausted"
    );
    assert_eq!(exhausted.issue_id, issue_id());
    assert_eq!(exhausted.author_agent_id, agent_id(1));
    assert_eq!(exhausted.source_run_id, run_id(1));
    assert_eq!((exhausted.attempt, exhausted.max_attempts), (2, 2));
}

#[test]
fn exhausted_reason_rules() {
    let cases = [
        (
            "",
            "Run ended without concrete progress; continuation attempts exhausted",
        ),
        (
            "Run ended; continuation attempts exhausted",
            "Run ended; continuation attempts exhausted",
        ),
    ];
    for (base, expected) in cases {
        let base = if base.is_empty() {
            continuation::DEFAULT_EXHAUSTED_BASE_REASON
        } else {
            base
        };
        assert_eq!(continuation::exhausted_reason(base), expected);
    }
    let long = continuation::exhausted_reason(&"r".repeat(500));
    assert_eq!(long.chars().count(), 500);
    assert!(long.ends_with("r...; continuation attempts exhausted"));

    let mut input = continuation_base();
    input.run.continuation_attempt = 2;
    input.run.liveness_reason = None;
    let ContinuationDecision::Exhausted(exhausted) = continuation::decide(&input) else {
        panic!("must be exhausted");
    };
    assert!(exhausted
        .comment_body
        .contains("- Reason: Run ended without concrete progress\n"));
    assert_eq!(
        exhausted.reason_with_suffix,
        "Run ended without concrete progress; continuation attempts exhausted"
    );
}

#[test]
fn wakeup_status_spellings_round_trip() {
    for status in WakeupStatus::ALL {
        assert_eq!(WakeupStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(WakeupStatus::parse("bogus"), None);
}

// ---------------------------------------------------------------------------------------------
// continuation summary (§7)

fn summary_base() -> SummaryInput {
    SummaryInput {
        issue: SummaryIssue {
            issue_id: issue_id(),
            identifier: Some("PAP-12".into()),
            title: "Implement feature".into(),
            description: Some(
                "Intro text.\n\n## Objective\n\nShip the recovery sweep.\n\n### Detail\n\nKeep it pure.\n\n\
                 ## Acceptance Criteria\n\n- stranded issues recover\n- tests pass\n\n## Notes\n\nnone"
                    .into(),
            ),
            status: IssueStatus::InProgress,
            priority: Priority::High,
        },
        run: SummaryRun {
            run_id: run_id(1),
            outcome: RunOutcome::Succeeded,
            error: None,
            error_code: None,
            result: object(json!({
                "summary": "Updated server/src/services/heartbeat.ts and its tests."
            })),
            stdout_excerpt: None,
            stderr_excerpt: None,
            finished_at: Some(at(T1)),
        },
        agent: SummaryAgent {
            name: "CodexCoder".into(),
            adapter_type: Some("codex_local".into()),
        },
        previous_body: None,
    }
}

#[test]
fn summary_has_every_section_the_objective_criteria_and_the_path() {
    let body = summary::build_body(&summary_base());
    let expected = format!(
        "# Continuation Summary\n\n\
         - Issue: PAP-12 — Implement feature\n\
         - Status: in_progress\n\
         - Priority: high\n\
         - Current mode: implementation\n\
         - Last updated by run: {run}\n\
         - Agent: CodexCoder (codex_local)\n\n\
         ## Objective\n\nShip the recovery sweep.\n\n### Detail\n\nKeep it pure.\n\n\
         ## Acceptance Criteria\n\n- stranded issues recover\n- tests pass\n\n\
         ## Recent Concrete Actions\n\n\
         - Run `{run}` finished with status `succeeded` at 2026-04-18T12:00:00.000Z.\n\
         - Updated server/src/services/heartbeat.ts and its tests.\n\n\
         ## Files / Routes Touched\n\n- `server/src/services/heartbeat.ts`\n\n\
         ## Commands Run\n\n\
         - Run `{run}` invoked adapter `codex_local`.\n\
         - Detailed shell/tool commands remain in the run log and transcript.\n\n\
         ## Blockers / Decisions\n\n- No new blocker was recorded by the latest run.\n\n\
         ## Next Action\n\n\
         - Resume implementation from the acceptance criteria, latest comments, and this summary.",
        run = run_id(1)
    );
    assert_eq!(body, expected);
    assert!(body.chars().count() <= summary::MAX_BODY_CHARS);
}

#[test]
fn summary_of_a_failed_run_quotes_the_error_and_asks_to_inspect() {
    let mut input = summary_base();
    input.run.outcome = RunOutcome::Failed;
    input.run.error_code = Some("adapter_failed".into());
    input.run.error = Some("adapter failed".into());
    input.run.result = Map::new();
    let body = summary::build_body(&input);
    for needle in [
        "- Run `",
        "` finished with status `failed` at 2026-04-18T12:00:00.000Z.",
        "- No adapter-provided result summary was captured for this run.",
        "- Latest run error (adapter_failed): adapter failed",
        "- Latest run ended with `failed`; inspect the error before continuing.",
        "- Current mode: implementation",
        "## Next Action\n\n- Inspect the failed run, fix the cause, and resume from the most recent concrete action above.",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
}

#[test]
fn summary_without_description_or_identifier() {
    let mut input = summary_base();
    input.issue.description = None;
    input.issue.identifier = None;
    input.agent.adapter_type = None;
    input.run.finished_at = None;
    input.run.error = Some("boom".into());
    let body = summary::build_body(&input);
    for needle in [
        format!("- Issue: {} — Implement feature", issue_id()),
        "## Objective\n\nNo objective captured.".to_owned(),
        "## Acceptance Criteria\n\nNo explicit acceptance criteria captured.".to_owned(),
        format!("- Run `{}` finished with status `succeeded`.", run_id(1)),
        "- Latest run error: boom".to_owned(),
        "- Agent: CodexCoder (unknown)".to_owned(),
    ] {
        assert!(body.contains(&needle), "missing {needle:?} in\n{body}");
    }
}

#[test]
fn summary_objective_falls_back_to_the_description() {
    let mut input = summary_base();
    input.issue.description = Some("  Just make it work.  ".into());
    let body = summary::build_body(&input);
    assert!(body.contains("## Objective\n\nJust make it work.\n\n## Acceptance Criteria"));
}

#[test]
fn summary_mode_table() {
    use IssueStatus::{Backlog, Blocked, Done, InProgress, InReview, Todo};
    use RunOutcome::{Cancelled, Failed, Succeeded, TimedOut};
    let cases = [
        (Done, Succeeded, Mode::Review),
        (InReview, Failed, Mode::Review),
        (Todo, Failed, Mode::Implementation),
        (Backlog, TimedOut, Mode::Implementation),
        (Todo, Cancelled, Mode::Implementation),
        (Todo, Succeeded, Mode::Plan),
        (Backlog, Succeeded, Mode::Plan),
        (InProgress, Succeeded, Mode::Implementation),
        (Blocked, Succeeded, Mode::Implementation),
    ];
    for (status, outcome, expected) in cases {
        assert_eq!(
            summary::mode(status, outcome),
            expected,
            "{status} {outcome}"
        );
    }
}

#[test]
fn summary_next_action_table() {
    use IssueStatus::{Done, InProgress, InReview, Todo};
    use RunOutcome::{Cancelled, Failed, Succeeded, TimedOut};
    let resume =
        "Resume implementation from the acceptance criteria, latest comments, and this summary.";
    let inspect =
        "Inspect the failed run, fix the cause, and resume from the most recent concrete action above.";
    let cases = [
        (
            Done,
            Failed,
            Some("prev"),
            "Review the completed issue output and close any remaining follow-up comments.",
        ),
        (
            InReview,
            Succeeded,
            Some("prev"),
            "Wait for reviewer feedback or approval before continuing executor work.",
        ),
        (InProgress, Failed, Some("prev"), inspect),
        (Todo, TimedOut, None, inspect),
        (
            InProgress,
            Cancelled,
            Some("prev"),
            "Confirm the cancellation reason before starting another run.",
        ),
        (InProgress, Succeeded, Some("prev"), "prev"),
        (Todo, Succeeded, None, resume),
    ];
    for (status, outcome, previous, expected) in cases {
        assert_eq!(
            summary::next_action(status, outcome, previous),
            expected,
            "{status} {outcome}"
        );
    }
}

#[test]
fn summary_carries_paths_and_next_action_over_from_the_previous_body() {
    let first = summary::build_body(&summary_base());
    let edited = first.replace(
        "- Resume implementation from the acceptance criteria, latest comments, and this summary.",
        "- Run the migration script against staging.",
    );
    let mut second = summary_base();
    second.run.run_id = run_id(2);
    second.run.result = object(json!({"summary": "Touched ui/src/App.tsx only."}));
    second.previous_body = Some(edited);
    let body = summary::build_body(&second);
    assert!(body.contains(
        "## Files / Routes Touched\n\n- `ui/src/App.tsx`\n- `server/src/services/heartbeat.ts`\n\n"
    ));
    assert!(body.ends_with("## Next Action\n\n- Run the migration script against staging."));
    assert!(body.contains(&format!("- Last updated by run: {}", run_id(2))));
}

#[test]
fn summary_paths_are_unique_capped_and_filtered() {
    let many: Vec<String> = (0..20).map(|n| format!("src/module_{n:02}.rs")).collect();
    let text = format!("{} {}", many.join(" "), many.join(" "));
    let paths = summary::touched_paths([text.as_str()]);
    assert_eq!(paths, many[..12].to_vec());

    let cases = [
        (
            "see `server/src/a.ts`, then (docs/guide.md).",
            vec!["server/src/a.ts", "docs/guide.md"],
        ),
        ("and/or 3/4 read/write", vec![]),
        ("https://example.com/a.ts example.com/b.ts", vec![]),
        (
            "\"lib/x\" 'foo/bar.json': .github/workflows/ci.yml",
            vec!["lib/x", "foo/bar.json", ".github/workflows/ci.yml"],
        ),
        ("server/src/a.ts server/src/a.ts", vec!["server/src/a.ts"]),
    ];
    for (text, expected) in cases {
        assert_eq!(summary::touched_paths([text]), expected, "{text}");
    }
}

#[test]
fn summary_caps_sections_errors_and_body() {
    let mut input = summary_base();
    input.issue.description = Some(format!("## Objective\n\n{}", "o".repeat(5_000)));
    input.run.error = Some("e".repeat(2_000));
    input.run.error_code = Some("adapter_failed".into());
    let body = summary::build_body(&input);
    let objective = summary::markdown_section(&body, "Objective").expect("objective section");
    assert_eq!(objective.chars().count(), summary::MAX_SECTION_CHARS);
    assert!(objective.ends_with("o\n[truncated]"));
    let error_line = body
        .lines()
        .find(|line| line.starts_with("- Latest run error (adapter_failed): "))
        .expect("error line");
    let quoted = error_line.trim_start_matches("- Latest run error (adapter_failed): ");
    assert_eq!(
        quoted.chars().count() + "\n[truncated]".len(),
        summary::MAX_ERROR_CHARS
    );

    let mut huge = summary_base();
    huge.issue.title = "t".repeat(9_000);
    let body = summary::build_body(&huge);
    assert_eq!(body.chars().count(), summary::MAX_BODY_CHARS);
    assert!(body.ends_with("t\n[truncated]"));
}

#[test]
fn summary_constants() {
    assert_eq!(summary::TITLE, "Continuation Summary");
    assert_eq!(summary::DOCUMENT_KEY, "continuation-summary");
}

// ---------------------------------------------------------------------------------------------
// stranded-issue recovery and escalation (§4)

const LOST_ERROR: &str = "run failed before issue advanced";

fn latest(status: RunStatus, marker: Option<&str>) -> LatestRun {
    LatestRun {
        run_id: run_id(1),
        status,
        retry_reason: marker.map(str::to_owned),
        recovery: marker
            .filter(|m| {
                [
                    escalation::ASSIGNMENT_RECOVERY,
                    escalation::ISSUE_CONTINUATION_NEEDED,
                ]
                .contains(m)
            })
            .map(str::to_owned),
        error_code: Some("process_lost".into()),
        error: Some(LOST_ERROR.into()),
    }
}

fn failed() -> RunStatus {
    RunStatus::Finished(RunOutcome::Failed)
}

fn succeeded() -> RunStatus {
    RunStatus::Finished(RunOutcome::Succeeded)
}

fn stranded_base(status: IssueStatus) -> StrandedInput {
    StrandedInput {
        issue: StrandedIssue {
            issue_id: issue_id(),
            company_id: company(1),
            identifier: Some("PAP-12".into()),
            status,
            assignee_agent_id: Some(agent_id(1)),
            assignee_user_id: None,
            checkout_run_id: Some(run_id(5)),
        },
        agent: Some(StrandedAgent {
            agent_id: agent_id(1),
            company_id: company(1),
            status: AgentStatus::Idle,
        }),
        has_live_path: false,
        latest_run: Some(latest(failed(), None)),
    }
}

/// What a stranded row expects.
#[derive(Debug, PartialEq)]
enum Stranded {
    Skip(StrandedSkip),
    Dispatch(Option<RunId>),
    Continuation(Option<RunId>),
    Escalate(RecoveryKind),
}

/// One stranded row: name, issue status, how it differs from the base, expectation.
type StrandedCase = (&'static str, IssueStatus, fn(&mut StrandedInput), Stranded);

fn stranded_cases() -> Vec<StrandedCase> {
    use IssueStatus::{Done, InProgress, Todo};
    use Stranded::*;
    vec![
        (
            "stranded todo is re-dispatched",
            Todo,
            |_| {},
            Dispatch(Some(run_id(1))),
        ),
        (
            "todo with the dispatch marker escalates",
            Todo,
            |i| i.latest_run = Some(latest(failed(), Some("assignment_recovery"))),
            Escalate(RecoveryKind::Dispatch),
        ),
        (
            "todo with a timed-out recovery escalates",
            Todo,
            |i| {
                i.latest_run = Some(latest(
                    RunStatus::Finished(RunOutcome::TimedOut),
                    Some("assignment_recovery"),
                ))
            },
            Escalate(RecoveryKind::Dispatch),
        ),
        (
            "todo with the continuation marker is re-dispatched",
            Todo,
            |i| i.latest_run = Some(latest(failed(), Some("issue_continuation_needed"))),
            Dispatch(Some(run_id(1))),
        ),
        (
            "todo without any run is left to its normal dispatch",
            Todo,
            |i| i.latest_run = None,
            Skip(StrandedSkip::NeverDispatched),
        ),
        (
            "todo whose newest run succeeded",
            Todo,
            |i| i.latest_run = Some(latest(succeeded(), None)),
            Skip(StrandedSkip::LatestRunSucceeded),
        ),
        (
            "todo whose recovery run succeeded",
            Todo,
            |i| i.latest_run = Some(latest(succeeded(), Some("assignment_recovery"))),
            Skip(StrandedSkip::LatestRunSucceeded),
        ),
        (
            "stranded in_progress is continued",
            InProgress,
            |_| {},
            Continuation(Some(run_id(1))),
        ),
        (
            "in_progress whose newest run succeeded is continued",
            InProgress,
            |i| i.latest_run = Some(latest(succeeded(), None)),
            Continuation(Some(run_id(1))),
        ),
        (
            "in_progress without a run continues from the checkout run",
            InProgress,
            |i| i.latest_run = None,
            Continuation(Some(run_id(5))),
        ),
        (
            "in_progress without any run pointer",
            InProgress,
            |i| {
                i.latest_run = None;
                i.issue.checkout_run_id = None;
            },
            Continuation(None),
        ),
        (
            "in_progress with the continuation marker escalates",
            InProgress,
            |i| i.latest_run = Some(latest(failed(), Some("issue_continuation_needed"))),
            Escalate(RecoveryKind::Continuation),
        ),
        (
            "in_progress with a cancelled recovery escalates",
            InProgress,
            |i| {
                i.latest_run = Some(latest(
                    RunStatus::Finished(RunOutcome::Cancelled),
                    Some("issue_continuation_needed"),
                ))
            },
            Escalate(RecoveryKind::Continuation),
        ),
        (
            "in_progress whose recovery run succeeded is idle, not stranded",
            InProgress,
            |i| i.latest_run = Some(latest(succeeded(), Some("issue_continuation_needed"))),
            Skip(StrandedSkip::RecoverySucceeded),
        ),
        (
            "user-assigned issue is never touched",
            Todo,
            |i| {
                i.issue.assignee_agent_id = None;
                i.issue.assignee_user_id = Some("user-1".into());
            },
            Skip(StrandedSkip::NotCandidate),
        ),
        (
            "an issue with a user assignee too is never touched",
            InProgress,
            |i| i.issue.assignee_user_id = Some("user-1".into()),
            Skip(StrandedSkip::NotCandidate),
        ),
        (
            "done issue is no candidate",
            Done,
            |_| {},
            Skip(StrandedSkip::NotCandidate),
        ),
        (
            "missing agent",
            Todo,
            |i| i.agent = None,
            Skip(StrandedSkip::AgentMissing),
        ),
        (
            "agent of another company",
            Todo,
            |i| {
                if let Some(agent) = i.agent.as_mut() {
                    agent.company_id = company(2);
                }
            },
            Skip(StrandedSkip::AgentForeign),
        ),
        (
            "agent paused",
            InProgress,
            |i| {
                if let Some(agent) = i.agent.as_mut() {
                    agent.status = AgentStatus::Paused;
                }
            },
            Skip(StrandedSkip::AgentNotInvokable(AgentStatus::Paused)),
        ),
        (
            "live path exists",
            InProgress,
            |i| {
                i.has_live_path = true;
                i.latest_run = Some(latest(failed(), Some("issue_continuation_needed")));
            },
            Skip(StrandedSkip::LiveExecutionPath),
        ),
        (
            "newest run still running",
            Todo,
            |i| i.latest_run = Some(latest(RunStatus::Running, None)),
            Skip(StrandedSkip::LiveExecutionPath),
        ),
    ]
}

#[test]
fn stranded_table() {
    for (name, status, given, expected) in stranded_cases() {
        let mut input = stranded_base(status);
        given(&mut input);
        let actual = match escalation::decide_stranded(&input) {
            StrandedDecision::Skip(skip) => Stranded::Skip(skip),
            StrandedDecision::Dispatch(wakeup) => Stranded::Dispatch(wakeup.retry_of_run_id),
            StrandedDecision::Continuation(wakeup) => {
                Stranded::Continuation(wakeup.retry_of_run_id)
            }
            StrandedDecision::Escalate(escalation) => Stranded::Escalate(escalation.kind),
        };
        assert_eq!(actual, expected, "{name}");
    }
}

#[test]
fn dispatch_recovery_wakeup() {
    let StrandedDecision::Dispatch(wakeup) =
        escalation::decide_stranded(&stranded_base(IssueStatus::Todo))
    else {
        panic!("stranded todo must be dispatched");
    };
    assert_eq!(wakeup.reason, "issue_assignment_recovery");
    assert_eq!(wakeup.agent_id, agent_id(1));
    assert_eq!(
        Value::Object(wakeup.payload.clone()),
        json!({"issue_id": issue_id().to_string(), "retry_of_run_id": run_id(1).to_string()})
    );
    assert_eq!(
        Value::Object(wakeup.context.clone()),
        json!({
            "issue_id": issue_id().to_string(),
            "wake_reason": "issue_assignment_recovery",
            "retry_reason": "assignment_recovery",
            "retry_of_run_id": run_id(1).to_string(),
            "source": "issue.assignment_recovery",
        })
    );
    let queued = wakeup.run_queued(run_id(3), WakeupId(Uuid::from_u128(8)));
    assert_eq!(queued.retry_of_run_id, Some(run_id(1)));
    assert_eq!(queued.context["retry_reason"], json!("assignment_recovery"));
}

#[test]
fn continuation_recovery_wakeup() {
    let StrandedDecision::Continuation(wakeup) =
        escalation::decide_stranded(&stranded_base(IssueStatus::InProgress))
    else {
        panic!("stranded in_progress must be continued");
    };
    assert_eq!(wakeup.reason, "issue_continuation_needed");
    assert_eq!(
        Value::Object(wakeup.context.clone()),
        json!({
            "issue_id": issue_id().to_string(),
            "wake_reason": "issue_continuation_needed",
            "retry_reason": "issue_continuation_needed",
            "retry_of_run_id": run_id(1).to_string(),
            "source": "issue.continuation_recovery",
        })
    );
}

#[test]
fn escalation_of_todo_after_the_dispatch_retry() {
    let mut input = stranded_base(IssueStatus::Todo);
    input.latest_run = Some(latest(failed(), Some("assignment_recovery")));
    let StrandedDecision::Escalate(escalated) = escalation::decide_stranded(&input) else {
        panic!("must escalate");
    };
    assert!(escalated.comment_body.contains("retried dispatch"));
    assert!(escalated
        .comment_body
        .contains("Latest retry failure: `process_lost` - run failed before issue advanced."));
    assert_eq!(
        escalated.comment_body,
        "runledger automatically retried dispatch for this assigned `todo` issue after a lost \
         wake/run, but it still has no live execution path. Latest retry failure: `process_lost` \
         - run failed before issue advanced. Moving it to `blocked` so it is visible for \
         intervention."
    );
    assert_eq!(escalated.previous_status, IssueStatus::Todo);
    assert_eq!(
        Value::Object(escalated.activity_details.clone()),
        json!({
            "identifier": "PAP-12",
            "status": "blocked",
            "previous_status": "todo",
            "source": "heartbeat.reconcile_stranded_assigned_issue",
            "latest_run_id": run_id(1).to_string(),
            "latest_run_status": "failed",
            "latest_run_error_code": "process_lost",
        })
    );

    let update = escalated.issue_updated();
    assert_eq!(update.status, Some(IssueStatus::Blocked));
    assert_eq!(
        update.assignee_agent_id, None,
        "assignee is kept (not sent)"
    );
    assert_eq!(
        update.actor.as_ref().map(|actor| actor.actor_type),
        Some(ActorType::System)
    );
    let wire = serde_json::to_value(&update).expect("issue.updated serializes");
    assert_eq!(wire["status"], json!("blocked"));
    assert_eq!(wire["details"]["previous_status"], json!("todo"));

    let comment = escalated.comment_added(CommentId(Uuid::from_u128(6)));
    assert_eq!(comment.author_agent_id, None);
    assert_eq!(comment.author_user_id, None);
    assert_eq!(comment.body, escalated.comment_body);
}

#[test]
fn escalation_of_in_progress_after_the_continuation_retry() {
    let mut input = stranded_base(IssueStatus::InProgress);
    input.latest_run = Some(LatestRun {
        error_code: None,
        error: None,
        ..latest(failed(), Some("issue_continuation_needed"))
    });
    let StrandedDecision::Escalate(escalated) = escalation::decide_stranded(&input) else {
        panic!("must escalate");
    };
    assert_eq!(
        escalated.comment_body,
        "runledger automatically retried continuation for this assigned `in_progress` issue after \
         its live execution disappeared, but it still has no live execution path. Moving it to \
         `blocked` so it is visible for intervention."
    );
    assert_eq!(
        escalated.activity_details["latest_run_error_code"],
        Value::Null
    );
    assert_eq!(
        escalated.activity_details["previous_status"],
        json!("in_progress")
    );

    input.latest_run = Some(latest(failed(), Some("issue_continuation_needed")));
    let StrandedDecision::Escalate(escalated) = escalation::decide_stranded(&input) else {
        panic!("must escalate");
    };
    assert!(escalated.comment_body.contains("retried continuation"));
    assert!(escalated
        .comment_body
        .contains("Latest retry failure: `process_lost` - run failed before issue advanced."));
}

#[test]
fn failure_line_table() {
    let long = "a".repeat(300);
    let long_cut = format!("{}...", "a".repeat(237));
    let cases: Vec<(Option<&str>, Option<&str>, Option<String>)> = vec![
        (
            Some("process_lost"),
            Some(LOST_ERROR),
            Some("Latest retry failure: `process_lost` - run failed before issue advanced.".into()),
        ),
        (
            Some("timeout"),
            None,
            Some("Latest retry failure: `timeout`.".into()),
        ),
        (
            Some("timeout"),
            Some("  \n "),
            Some("Latest retry failure: `timeout`.".into()),
        ),
        (
            None,
            Some("\n\n  first line  \nsecond line"),
            Some("Latest retry failure: first line.".into()),
        ),
        (
            Some(" "),
            Some(r#"HTTP 500: {"error": {"message": "model overloaded", "code": 529}}"#),
            Some("Latest retry failure: model overloaded.".into()),
        ),
        (
            Some("adapter_failed"),
            Some(long.as_str()),
            Some(format!(
                "Latest retry failure: `adapter_failed` - {long_cut}."
            )),
        ),
        (None, None, None),
        (Some(""), Some(""), None),
    ];
    for (code, error, expected) in cases {
        assert_eq!(
            escalation::failure_line(code, error),
            expected,
            "{code:?} {error:?}"
        );
    }
    assert_eq!(
        escalation::failure_summary(Some(&long)).map(|s| s.chars().count()),
        Some(240)
    );
}

// ---------------------------------------------------------------------------------------------
// process-loss retry (§3), storm control and silent detached runs (§10)

fn lost_run(count: u32, pid: Option<i32>, agent: bool) -> reconciler::retry::LostRun {
    reconciler::retry::LostRun {
        run_id: run_id(1),
        agent_id: agent.then(|| agent_id(1)),
        issue_id: Some(issue_id()),
        process_loss_retry_count: count,
        pid,
        pgid: None,
        context: object(json!({"issue_id": issue_id().to_string(), "session": "s-1"})),
    }
}

#[test]
fn process_loss_is_retried_exactly_once() {
    use reconciler::retry::{decide, NoRetry, RetryDecision};
    let cases = [
        (lost_run(0, Some(42), true), None),
        (lost_run(1, Some(42), true), Some(NoRetry::AlreadyRetried)),
        (lost_run(0, None, true), Some(NoRetry::NoProcessRecorded)),
        (lost_run(0, Some(42), false), Some(NoRetry::AgentUnknown)),
    ];
    for (run, refused) in cases {
        match (decide(&run), refused) {
            (RetryDecision::NoRetry(reason), Some(expected)) => assert_eq!(reason, expected),
            (RetryDecision::Retry(wakeup), None) => {
                assert_eq!(wakeup.reason, "process_lost_retry");
                assert_eq!(wakeup.retry_of_run_id, Some(run_id(1)));
                assert_eq!(wakeup.process_loss_retry_count, 1);
                assert_eq!(
                    Value::Object(wakeup.payload.clone()),
                    json!({"issue_id": issue_id().to_string(), "retry_of_run_id": run_id(1).to_string()})
                );
                assert_eq!(wakeup.context["wake_reason"], "process_lost_retry");
                assert_eq!(wakeup.context["retry_reason"], "process_lost");
                assert_eq!(wakeup.context["retry_of_run_id"], run_id(1).to_string());
                assert_eq!(wakeup.context["session"], "s-1", "same session");
                let queued = wakeup.run_queued(run_id(2), WakeupId(Uuid::from_u128(9)));
                assert_eq!(queued.process_loss_retry_count, 1);
                assert_eq!(queued.retry_of_run_id, Some(run_id(1)));
            }
            (other, expected) => panic!("{run:?}: got {other:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn storm_control_never_slows_the_bounded_flows_and_defers_or_refuses_the_excess() {
    use chrono::TimeDelta;
    use reconciler::storm::{check, excess, StormPolicy, Verdict};
    let policy = StormPolicy::default();
    let t0 = at(T1);
    let s = TimeDelta::seconds;
    const RETRY: &str = "process_lost_retry";
    const REQUEUE: &str = "issue_continuation_needed";
    const DISPATCH: &str = "issue_assignment_recovery";
    const CONT: &str = "run_liveness_continuation";
    const COMMENT: &str = "issue_comment_missing";
    #[derive(Debug, PartialEq)]
    enum Want {
        Grant,
        Defer(DateTime<Utc>, &'static str),
        Refuse(Option<DateTime<Utc>>, &'static str),
    }
    use Want::*;
    let g = |offsets: &[(i64, &str)]| -> Vec<(DateTime<Utc>, String)> {
        offsets
            .iter()
            .map(|(o, r)| (t0 + s(*o), (*r).to_owned()))
            .collect()
    };
    /// (granted so far, open deferrals' due times, the new wakeup's reason, now, expected)
    type Case = (
        Vec<(DateTime<Utc>, String)>,
        Vec<DateTime<Utc>>,
        &'static str,
        DateTime<Utc>,
        Want,
    );
    let cases: Vec<Case> = vec![
        (vec![], vec![], CONT, t0, Grant),
        // The original's bounded flows, a second apart: never slowed.
        (g(&[(0, RETRY)]), vec![], COMMENT, t0 + s(3), Grant),
        (g(&[(0, REQUEUE)]), vec![], CONT, t0 + s(2), Grant),
        (g(&[(0, REQUEUE), (2, CONT)]), vec![], CONT, t0 + s(4), Grant),
        (g(&[(0, RETRY), (1, REQUEUE), (2, CONT), (3, CONT), (4, COMMENT)]), vec![], RETRY, t0 + s(5),
            Defer(t0 + s(34), "wakeup 1 beyond the bounded flows within 1h waits 30s")),
        // Beyond them: the first excess waits 30 s after the previous wakeup, the next 1 min...
        (g(&[(0, CONT), (10, CONT)]), vec![], CONT, t0 + s(20),
            Defer(t0 + s(40), "wakeup 1 beyond the bounded flows within 1h waits 30s")),
        (g(&[(0, CONT), (10, CONT)]), vec![], CONT, t0 + s(40), Grant),
        (g(&[(0, CONT), (10, CONT), (50, CONT)]), vec![], CONT, t0 + s(60),
            Defer(t0 + s(110), "wakeup 2 beyond the bounded flows within 1h waits 1m")),
        (g(&[(0, REQUEUE)]), vec![], DISPATCH, t0 + s(5),
            Defer(t0 + s(30), "waits 30s")),
        // ...counting the deferrals still open.
        (g(&[(0, CONT), (10, CONT)]), vec![t0 + s(40)], CONT, t0 + s(20),
            Defer(t0 + s(100), "wakeup 2 beyond the bounded flows within 1h waits 1m")),
        // The ceiling counts the excess only.
        (g(&[(0, CONT), (1, CONT)]), (1..=6).map(|i| t0 + s(i * 100)).collect(), CONT, t0 + s(2),
            Refuse(Some(t0 + s(3_600)), "6 automatic wakeups of this issue beyond the bounded flows in the last 1h (ceiling 6)")),
        (g(&[(0, CONT), (1, CONT)]), (1..=5).map(|i| t0 + s(i * 100)).collect(), CONT, t0 + s(2),
            Defer(t0 + s(500) + TimeDelta::minutes(16), "wakeup 6 beyond the bounded flows within 1h waits 16m")),
        // Older than the window: forgotten.
        (g(&[(-7_200, CONT), (-7_100, CONT)]), vec![], CONT, t0, Grant),
    ];
    for (granted, deferred, reason, now, expected) in cases {
        let got = match check(&policy, &granted, &deferred, reason, now) {
            Verdict::Grant => Grant,
            Verdict::Defer { due, reason } => {
                let Defer(at, fragment) = expected else {
                    panic!("{granted:?} {reason}: deferred, expected {expected:?}");
                };
                assert!(reason.contains(fragment), "{reason}");
                Defer(due, if due == at { fragment } else { "" })
            }
            Verdict::Refuse(refusal) => {
                let Refuse(_, fragment) = expected else {
                    panic!("{granted:?} {reason}: refused ({refusal:?}), expected {expected:?}");
                };
                assert!(refusal.reason.contains(fragment), "{}", refusal.reason);
                Refuse(refusal.retry_after, fragment)
            }
        };
        assert_eq!(got, expected, "{granted:?} + {reason} at {now}");
    }
    assert_eq!(
        excess([RETRY, CONT, CONT, CONT, REQUEUE, DISPATCH, COMMENT]),
        2
    );
    assert_eq!(
        reconciler::storm::backoff(&policy, 7),
        TimeDelta::minutes(30)
    );
    let none = StormPolicy {
        ceiling: 0,
        ..policy
    };
    assert!(
        matches!(check(&none, &[], &[], CONT, t0), Verdict::Refuse(r) if r.retry_after.is_none())
    );
}

#[test]
fn silent_detached_runs_are_asked_to_stop_after_the_timeout() {
    use chrono::TimeDelta;
    use reconciler::silence::{check, DetachedRun, DEFAULT_SILENCE_TIMEOUT};
    let t0 = at(T1);
    let run = |detached: i64, activity: Option<i64>| DetachedRun {
        detached_at: Some(t0 + TimeDelta::minutes(detached)),
        last_activity_at: activity.map(|m| t0 + TimeDelta::minutes(m)),
        started_at: Some(t0),
    };
    let cases = [
        (run(0, None), 14, false),
        (run(0, None), 15, true),
        (run(0, Some(10)), 20, false),
        (run(0, Some(10)), 25, true),
        (run(5, Some(1)), 19, false),
    ];
    for (detached, minutes, cancel) in cases {
        let reason = check(
            &detached,
            t0 + TimeDelta::minutes(minutes),
            DEFAULT_SILENCE_TIMEOUT,
        );
        assert_eq!(reason.is_some(), cancel, "{detached:?} at +{minutes}m");
        if let Some(reason) = reason {
            assert!(
                reason.starts_with("Detached run silent for 15m"),
                "{reason}"
            );
            let lower = reason.to_lowercase();
            assert!(
                !lower.contains("pause") && !lower.contains("budget"),
                "stop reason stays `cancelled`"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// what a succeeded run leaves on its issue (§2): result comment or missing-comment follow-up

/// A succeeded run of the continuation fixtures' issue and agent, silent: no comment, no result.
fn comment_base() -> CommentInput {
    let continuation = continuation_base();
    CommentInput {
        run: EndedRun {
            run_id: run_id(1),
            company_id: company(1),
            agent_id: agent_id(1),
            outcome: RunOutcome::Succeeded,
            comments: 0,
            result: Map::new(),
            wake_reason: Some("issue_assigned".into()),
        },
        issue: continuation.issue,
        agent: continuation.agent,
        continuation: ContinuationEffect::Nothing,
    }
}

fn result_says(input: &mut CommentInput, result: Value) {
    input.run.result = object(result);
}

/// What a row expects: the posted body, a follow-up, or why nothing.
#[derive(Debug, PartialEq)]
enum Word {
    Post(String),
    FollowUp,
    Skip(CommentSkip),
}

/// One row: name, how it differs from the base, expectation.
type CommentCase = (&'static str, fn(&mut CommentInput), Word);

fn comment_cases() -> Vec<CommentCase> {
    use CommentSkip::*;
    use Word::*;
    vec![
        ("a silent succeeded run is followed up", |_| {}, FollowUp),
        (
            "its summary is posted, trimmed",
            |i| result_says(i, json!({"summary": "  Shipped it.\n"})),
            Post("Shipped it.".into()),
        ),
        (
            "a blank summary falls back to result",
            |i| {
                result_says(
                    i,
                    json!({"summary": " ", "result": "Result text", "message": "m"}),
                )
            },
            Post("Result text".into()),
        ),
        (
            "non-string summary and result fall back to message",
            |i| {
                result_says(
                    i,
                    json!({"summary": 42, "result": null, "message": "Message text"}),
                )
            },
            Post("Message text".into()),
        ),
        (
            "stdout, stderr and error are no result summary",
            |i| result_says(i, json!({"stdout": "out", "stderr": "err", "error": "e"})),
            FollowUp,
        ),
        (
            "a run that commented gets no result comment",
            |i| {
                i.run.comments = 1;
                result_says(i, json!({"summary": "Shipped it."}));
            },
            Skip(AlreadyCommented(1)),
        ),
        (
            "a run that commented gets no follow-up",
            |i| i.run.comments = 2,
            Skip(AlreadyCommented(2)),
        ),
        (
            "a failed run skips the auto-comment",
            |i| {
                i.run.outcome = RunOutcome::Failed;
                result_says(i, json!({"summary": "Tried."}));
            },
            Skip(NotSucceeded(RunOutcome::Failed)),
        ),
        (
            "a timed-out run skips both",
            |i| i.run.outcome = RunOutcome::TimedOut,
            Skip(NotSucceeded(RunOutcome::TimedOut)),
        ),
        (
            "a cancelled run skips both",
            |i| i.run.outcome = RunOutcome::Cancelled,
            Skip(NotSucceeded(RunOutcome::Cancelled)),
        ),
        (
            "a run without an issue",
            |i| {
                i.issue = None;
                result_says(i, json!({"summary": "Shipped it."}));
            },
            Skip(NoIssue),
        ),
        (
            "an issue of another company is never commented on",
            |i| {
                with(&mut i.issue, |issue| issue.company_id = company(2));
                result_says(i, json!({"summary": "Shipped it."}));
            },
            Skip(NoIssue),
        ),
        (
            "a done issue still gets the result comment",
            |i| {
                with(&mut i.issue, |issue| issue.status = IssueStatus::Done);
                result_says(i, json!({"summary": "Shipped it."}));
            },
            Post("Shipped it.".into()),
        ),
        (
            "a done issue gets no follow-up",
            |i| with(&mut i.issue, |issue| issue.status = IssueStatus::Done),
            Skip(IssueClosed(IssueStatus::Done)),
        ),
        (
            "a cancelled issue gets no follow-up",
            |i| with(&mut i.issue, |issue| issue.status = IssueStatus::Cancelled),
            Skip(IssueClosed(IssueStatus::Cancelled)),
        ),
        (
            "a blocked issue waits for a person: no follow-up",
            |i| with(&mut i.issue, |issue| issue.status = IssueStatus::Blocked),
            Skip(IssueClosed(IssueStatus::Blocked)),
        ),
        (
            "an execution state is no guard of the follow-up",
            |i| with(&mut i.issue, |issue| issue.has_execution_state = true),
            FollowUp,
        ),
        (
            "reassigned to another agent",
            |i| {
                with(&mut i.issue, |issue| {
                    issue.assignee_agent_id = Some(agent_id(2))
                })
            },
            Skip(Guard(SkipReason::NoLongerAssigned)),
        ),
        (
            "assigned to nobody (a user)",
            |i| with(&mut i.issue, |issue| issue.assignee_agent_id = None),
            Skip(Guard(SkipReason::NoLongerAssigned)),
        ),
        (
            "the agent is missing",
            |i| i.agent = None,
            Skip(Guard(SkipReason::AgentMissing)),
        ),
        (
            "the agent is of another company",
            |i| with(&mut i.agent, |agent| agent.company_id = company(2)),
            Skip(Guard(SkipReason::CompanyMismatch)),
        ),
        (
            "the agent is paused",
            |i| with(&mut i.agent, |agent| agent.status = AgentStatus::Paused),
            Skip(Guard(SkipReason::AgentNotInvokable(AgentStatus::Paused))),
        ),
        (
            "the agent is terminated",
            |i| with(&mut i.agent, |agent| agent.status = AgentStatus::Terminated),
            Skip(Guard(SkipReason::AgentNotInvokable(
                AgentStatus::Terminated,
            ))),
        ),
        (
            "the agent is budget-blocked",
            |i| with(&mut i.agent, |agent| agent.budget_blocked = true),
            Skip(Guard(SkipReason::BudgetHardStop)),
        ),
        (
            "a run woken by a missing-comment follow-up gets no second one",
            |i| i.run.wake_reason = Some(comment::WAKE_REASON.into()),
            Skip(AlreadyFollowedUp),
        ),
        (
            "a run woken by a missing-comment follow-up still posts its summary",
            |i| {
                i.run.wake_reason = Some(comment::WAKE_REASON.into());
                result_says(i, json!({"summary": "Did it; next: tests."}));
            },
            Post("Did it; next: tests.".into()),
        ),
        (
            "a continuation wakes the agent anyway",
            |i| i.continuation = ContinuationEffect::Wakes,
            Skip(ContinuationWakes),
        ),
        (
            "an exhausted chain comments as the run",
            |i| i.continuation = ContinuationEffect::Comments,
            Skip(ExhaustionComments),
        ),
        (
            "a continuation does not stop the result comment",
            |i| {
                i.continuation = ContinuationEffect::Wakes;
                result_says(i, json!({"summary": PLAN_SENTENCE}));
            },
            Post(PLAN_SENTENCE.into()),
        ),
    ]
}

#[test]
fn run_comment_table() {
    for (name, given, expected) in comment_cases() {
        let mut input = comment_base();
        given(&mut input);
        let actual = match comment::decide(&input) {
            CommentDecision::Post(posted) => {
                assert_eq!(posted.issue_id, issue_id(), "{name}");
                assert_eq!(posted.author_agent_id, agent_id(1), "{name}");
                assert_eq!(posted.run_id, run_id(1), "{name}");
                Word::Post(posted.body)
            }
            CommentDecision::FollowUp(_) => Word::FollowUp,
            CommentDecision::Skip(skip) => Word::Skip(skip),
        };
        assert_eq!(actual, expected, "{name}");
    }
}

#[test]
fn missing_comment_follow_up_carries_key_payload_and_context() {
    let CommentDecision::FollowUp(wakeup) = comment::decide(&comment_base()) else {
        panic!("a follow-up");
    };
    let (issue, run) = (issue_id(), run_id(1));
    assert_eq!(wakeup.agent_id, agent_id(1));
    assert_eq!(wakeup.issue_id, Some(issue));
    assert_eq!(wakeup.reason, "issue_comment_missing");
    let key = format!("issue_comment_missing:{issue}:{run}");
    assert_eq!(wakeup.idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(comment::idempotency_key(issue, run), key);
    assert_eq!(
        Value::Object(wakeup.payload.clone()),
        json!({"issue_id": issue, "source_run_id": run, "instruction": comment::INSTRUCTION})
    );
    assert_eq!(
        Value::Object(wakeup.context.clone()),
        json!({
            "issue_id": issue,
            "wake_reason": "issue_comment_missing",
            "source": "issue.comment_missing",
            "missing_comment_source_run_id": run,
        })
    );
    assert_eq!(
        (
            wakeup.retry_of_run_id,
            wakeup.continuation_attempt,
            wakeup.process_loss_retry_count
        ),
        (None, 0, 0)
    );
    let requested = wakeup.wakeup_requested(WakeupId(Uuid::from_u128(9)));
    assert_eq!(requested.source, InvocationSource::Automation);
    assert_eq!(requested.trigger_detail, TriggerDetail::System);
    assert_eq!(requested.requested_by_actor_type, ActorType::System);
}

#[test]
fn result_comment_is_capped_on_a_char_boundary() {
    let long = "é".repeat(comment::MAX_RESULT_COMMENT_CHARS + 100);
    let body = comment::comment_text(&object(json!({ "summary": long }))).unwrap();
    assert_eq!(body.chars().count(), comment::MAX_RESULT_COMMENT_CHARS);
    assert!(body.ends_with("é..."));
    let exact = "x".repeat(comment::MAX_RESULT_COMMENT_CHARS);
    let body = comment::comment_text(&object(json!({ "message": exact.clone() }))).unwrap();
    assert_eq!(body, exact, "at the limit: unchanged");
    assert_eq!(comment::comment_text(&Map::new()), None);

    let posted = comment::ResultComment {
        issue_id: issue_id(),
        author_agent_id: agent_id(1),
        run_id: run_id(1),
        body: "Shipped it.".into(),
    }
    .comment_added(CommentId(Uuid::from_u128(7)));
    assert_eq!(posted.author_agent_id, Some(agent_id(1)));
    assert_eq!(posted.author_user_id, None);
    assert_eq!(posted.run_id, Some(run_id(1)));
    assert_eq!(posted.body, "Shipped it.");
}

#[test]
fn continuation_effects() {
    let decide = |change: fn(&mut ContinuationInput)| {
        let mut input = continuation_base();
        change(&mut input);
        ContinuationEffect::of(Some(&continuation::decide(&input)))
    };
    assert_eq!(decide(|_| {}), ContinuationEffect::Wakes);
    assert_eq!(
        decide(|i| i.run.continuation_attempt = 2),
        ContinuationEffect::Comments
    );
    assert_eq!(
        decide(|i| i.run.liveness_state = LivenessState::Advanced),
        ContinuationEffect::Nothing
    );
    assert_eq!(ContinuationEffect::of(None), ContinuationEffect::Nothing);
}
