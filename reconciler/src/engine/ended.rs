//! What follows when a run ends (reference §2 "finalization order", §3, §5, §6, §7), in
//! publishing order: its liveness verdict; the refreshed continuation summary of its issue; for a
//! succeeded run that never commented, its result summary as its comment, or without one a
//! missing-comment follow-up if due ([`crate::comment`]); and either the single retry of a lost
//! run or the bounded continuation (or exhaustion comment) of a run that only planned.
//!
//! The issue is read as of the run's end: the private fold is at the ending event, and the
//! classifier uses the issue status the fold snapshotted at the finish (`issue_status_at_finish`).
//! Cancelled runs are classified too (`failed`, "Run ended with cancelled (cancelled)"), which is
//! what the reference's backfill records; live and replayed verdicts then agree.

use super::{rule, Emitter, Policy};
use crate::comment::{self, CommentDecision, CommentInput, ContinuationEffect, EndedRun};
use crate::continuation::{
    self, AgentState, ContinuationDecision, ContinuationInput, ExistingWakeup, IssueState,
    SourceRun, WakeupStatus,
};
use crate::engine::entity_id;
use crate::engine::ledger::{Ledger, SummaryState};
use crate::liveness::{self, Classification, ClassificationInput, EvidenceCounts, IssueSnapshot};
use crate::retry::{self, LostRun, RetryDecision};
use crate::summary::{self, SummaryAgent, SummaryInput, SummaryIssue, SummaryRun};
use events::document::DocumentRevised;
use events::{
    AgentId, AgentStatus, CommentId, CompanyId, DocumentId, EventData, IssueId, IssueStatus,
    LivenessState, Priority, RevisionId, RunId, RunOutcome,
};
use projector::fold::model::{AgentRow, IssueRow, Model, RunRow};
use serde_json::{Map, Value};
use std::borrow::Cow;
use uuid::Uuid;

pub(super) fn run_ended(
    model: &Model,
    ledger: &Ledger,
    em: &mut Emitter<'_>,
    policy: &Policy,
    run_id: Uuid,
    lost: bool,
) {
    let Some(run) = model.runs.get(&run_id) else {
        return;
    };
    let Some(outcome) = run.status.as_deref().and_then(RunOutcome::parse) else {
        return;
    };
    let company = CompanyId(run.company_id);
    let agent = run.agent_id.and_then(|a| model.agents.get(&a));
    let issue = run
        .issue_id
        .and_then(|i| model.issues.get(&i))
        .filter(|i| i.company_id == run.company_id);
    // An escalation the reconciler already decided is in effect even if the fold has not seen
    // it yet: decisions never depend on how fast the reconciler's own events come back.
    let (run, issue) = match issue {
        Some(issue) if ledger.has_pending_escalation(issue.issue_id) => {
            let blocked = Some(IssueStatus::Blocked.as_str().to_owned());
            let mut issue = issue.clone();
            issue.status = blocked.clone();
            let mut run = run.clone();
            run.issue_status_at_finish = blocked;
            (Cow::Owned(run), Some(Cow::Owned(issue)))
        }
        issue => (Cow::Borrowed(run), issue.map(Cow::Borrowed)),
    };
    let (run, issue) = (run.as_ref(), issue.as_deref());

    // §5: classify once; a run that already carries a verdict keeps it.
    let stored = run.liveness_state.as_deref().and_then(LivenessState::parse);
    let classification = match stored {
        Some(_) => None,
        None => Some(liveness::classify(&classification_input(run, issue))),
    };
    let (state, reason, next_action) = match (&classification, stored) {
        (Some(c), _) => (c.state, Some(c.reason.clone()), c.next_action.clone()),
        (None, Some(state)) => (state, run.liveness_reason.clone(), run.next_action.clone()),
        (None, None) => return,
    };

    // §6: only the normal finish path of a succeeded run is continued.
    let continuation = if !lost && outcome == RunOutcome::Succeeded {
        continuation_input(model, ledger, run, issue, agent, state, reason, next_action)
            .map(|input| continuation::decide(&input))
    } else {
        None
    };

    if let Some(mut verdict) = classification {
        if let Some(ContinuationDecision::Exhausted(exhausted)) = &continuation {
            verdict.reason = exhausted.reason_with_suffix.clone();
        }
        emit_liveness(em, company, run_id, &verdict);
    }
    // §7: after each finished or failed issue run, not after a process loss or a cancel.
    if !lost && outcome != RunOutcome::Cancelled {
        if let Some(issue) = issue {
            refresh_summary(model, ledger, em, run, issue, agent, outcome);
        }
    }
    if lost {
        process_loss_retry(ledger, em, policy, run, issue);
    } else {
        let effect = ContinuationEffect::of(continuation.as_ref());
        if let Some(input) = comment_input(run, issue, agent, outcome, effect) {
            leave_word(ledger, em, policy, &input);
        }
    }
    match continuation {
        Some(ContinuationDecision::Enqueue { wakeup, .. }) => em.rationed_wakeup(
            ledger,
            &policy.storm,
            rule::CONTINUATION,
            "",
            company,
            Some(run_id),
            &wakeup,
            false,
        ),
        Some(ContinuationDecision::Exhausted(exhausted)) => {
            em.emit(
                rule::CONTINUATION_EXHAUSTED,
                "issue.comment_added",
                company,
                |id| {
                    EventData::IssueCommentAdded(comment::run_comment(
                        CommentId(entity_id(id, "comment_id")),
                        exhausted.issue_id,
                        exhausted.author_agent_id,
                        exhausted.source_run_id,
                        &exhausted.comment_body,
                    ))
                },
            );
        }
        Some(ContinuationDecision::Skip(_)) | None => {}
    }
}

fn emit_liveness(em: &mut Emitter<'_>, company: CompanyId, run_id: Uuid, verdict: &Classification) {
    em.emit(rule::LIVENESS, "run.liveness_classified", company, |_| {
        EventData::RunLivenessClassified(verdict.to_event(RunId(run_id)))
    });
}

fn issue_status(issue: &IssueRow) -> Option<IssueStatus> {
    issue.status.as_deref().and_then(IssueStatus::parse)
}

fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn result_map(run: &RunRow) -> Map<String, Value> {
    match &run.result {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// The classifier's input: the run, its evidence (counted by the fold until the run ended) and
/// its issue with the status it had at the end.
pub(crate) fn classification_input(run: &RunRow, issue: Option<&IssueRow>) -> ClassificationInput {
    let outcome = run
        .status
        .as_deref()
        .and_then(RunOutcome::parse)
        .unwrap_or(RunOutcome::Failed);
    let snapshot = issue.and_then(|issue| {
        let status = run
            .issue_status_at_finish
            .as_deref()
            .and_then(IssueStatus::parse)
            .or_else(|| issue_status(issue))?;
        Some(IssueSnapshot {
            status,
            title: issue.title.clone().unwrap_or_default(),
            description: issue.description.clone(),
        })
    });
    let e = &run.evidence;
    ClassificationInput {
        outcome,
        error_code: run.error_code.clone(),
        error: run.error.clone(),
        result: result_map(run),
        stdout_excerpt: run.stdout_excerpt.clone(),
        stderr_excerpt: run.stderr_excerpt.clone(),
        issue: snapshot,
        evidence: EvidenceCounts {
            comments: count(e.comments),
            revisions: count(e.revisions),
            plan_revisions: count(e.plan_revisions),
            work_products: count(e.work_products),
            workspace_operations: count(e.workspace_ops),
            activity_events: count(e.activity),
            tool_action_events: count(e.tool_events),
            latest_evidence_at: e.latest_at,
        },
        continuation_attempt: count(run.continuation_attempt),
    }
}

/// The key prefix of every continuation wakeup sourced from `run` for `issue`.
pub(crate) fn continuation_key_prefix(issue: Uuid, run: Uuid) -> String {
    format!("{}:{issue}:{run}:", continuation::WAKE_REASON)
}

#[allow(clippy::too_many_arguments)]
fn continuation_input(
    model: &Model,
    ledger: &Ledger,
    run: &RunRow,
    issue: Option<&IssueRow>,
    agent: Option<&AgentRow>,
    state: LivenessState,
    reason: Option<String>,
    next_action: Option<String>,
) -> Option<ContinuationInput> {
    let agent_id = run.agent_id?;
    let source = SourceRun {
        run_id: RunId(run.run_id),
        company_id: CompanyId(run.company_id),
        agent_id: AgentId(agent_id),
        liveness_state: state,
        liveness_reason: reason,
        next_action,
        continuation_attempt: count(run.continuation_attempt),
    };
    let mut existing_wakeups = Vec::new();
    if let Some(issue) = issue {
        let prefix = continuation_key_prefix(issue.issue_id, run.run_id);
        existing_wakeups.extend(
            model
                .wakeups
                .values()
                .filter(|w| w.company_id == run.company_id)
                .filter_map(|w| {
                    let key = w.idempotency_key.as_ref()?;
                    let status = WakeupStatus::parse(&w.status)?;
                    key.starts_with(&prefix).then(|| ExistingWakeup {
                        idempotency_key: key.clone(),
                        status,
                    })
                }),
        );
        existing_wakeups.extend(ledger.pending.iter().filter_map(|p| {
            let key = p.idempotency_key.as_ref()?;
            key.starts_with(&prefix).then(|| ExistingWakeup {
                idempotency_key: key.clone(),
                status: WakeupStatus::Queued,
            })
        }));
        existing_wakeups.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
    }
    Some(ContinuationInput {
        run: source,
        issue: issue.and_then(issue_state),
        agent: agent.and_then(agent_state),
        existing_wakeups,
    })
}

/// The issue as the wake guards see it (`None`: only a placeholder is known).
fn issue_state(issue: &IssueRow) -> Option<IssueState> {
    Some(IssueState {
        issue_id: IssueId(issue.issue_id),
        company_id: CompanyId(issue.company_id),
        status: issue_status(issue)?,
        assignee_agent_id: issue.assignee_agent_id.map(AgentId),
        has_execution_state: issue.execution_state.as_ref().is_some_and(|s| !s.is_null()),
    })
}

/// The agent as the wake guards see it (`None`: only a placeholder is known).
fn agent_state(agent: &AgentRow) -> Option<AgentState> {
    Some(AgentState {
        agent_id: AgentId(agent.agent_id),
        company_id: CompanyId(agent.company_id),
        status: agent.status.as_deref().and_then(AgentStatus::parse)?,
        budget_blocked: agent.budget_blocked,
    })
}

/// What the run-comment rules read: the run's own comments are the fold's evidence count, cut
/// off at the run's end, so the reconciler's comments after it never count.
fn comment_input(
    run: &RunRow,
    issue: Option<&IssueRow>,
    agent: Option<&AgentRow>,
    outcome: RunOutcome,
    continuation: ContinuationEffect,
) -> Option<CommentInput> {
    Some(CommentInput {
        run: EndedRun {
            run_id: RunId(run.run_id),
            company_id: CompanyId(run.company_id),
            agent_id: AgentId(run.agent_id?),
            outcome,
            comments: count(run.evidence.comments),
            result: result_map(run),
            wake_reason: run
                .context
                .get("wake_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        issue: issue.and_then(issue_state),
        agent: agent.and_then(agent_state),
        continuation,
    })
}

/// §2: the result summary as the run's comment, or the missing-comment follow-up if due.
fn leave_word(ledger: &Ledger, em: &mut Emitter<'_>, policy: &Policy, input: &CommentInput) {
    let company = input.run.company_id;
    match comment::decide(input) {
        CommentDecision::Post(posted) => {
            em.emit(rule::RESULT_COMMENT, "issue.comment_added", company, |id| {
                EventData::IssueCommentAdded(
                    posted.comment_added(CommentId(entity_id(id, "comment_id"))),
                )
            });
        }
        CommentDecision::FollowUp(wakeup) => em.rationed_wakeup(
            ledger,
            &policy.storm,
            rule::MISSING_COMMENT,
            "",
            company,
            Some(input.run.run_id.0),
            &wakeup,
            false,
        ),
        CommentDecision::Skip(_) => {}
    }
}

/// The document id of an issue's `continuation-summary` when none exists yet (one per issue).
pub(crate) fn summary_document_id(issue: Uuid) -> Uuid {
    Uuid::new_v5(&issue, summary::DOCUMENT_KEY.as_bytes())
}

fn refresh_summary(
    model: &Model,
    ledger: &Ledger,
    em: &mut Emitter<'_>,
    run: &RunRow,
    issue: &IssueRow,
    agent: Option<&AgentRow>,
    outcome: RunOutcome,
) {
    let Some(status) = issue_status(issue) else {
        return; // only a placeholder of the issue is known
    };
    let stored = model.documents.values().find(|d| {
        d.issue_id == Some(issue.issue_id) && d.key.as_deref() == Some(summary::DOCUMENT_KEY)
    });
    let mine = ledger.summaries.get(&issue.issue_id);
    let stored_number = stored.map_or(0, |d| d.latest_revision_number);
    let mine_number = mine.map_or(0, |s| s.revision_number);
    let previous_body = if mine_number > stored_number {
        mine.map(|s| s.body.clone())
    } else {
        stored.map(|d| d.latest_body.clone())
    };
    let document_id = stored
        .map(|d| d.document_id)
        .or(mine.map(|s| s.document_id))
        .unwrap_or_else(|| summary_document_id(issue.issue_id));
    let revision_number = stored_number.max(mine_number).saturating_add(1);
    let input = SummaryInput {
        issue: SummaryIssue {
            issue_id: IssueId(issue.issue_id),
            identifier: issue.identifier.clone(),
            title: issue.title.clone().unwrap_or_default(),
            description: issue.description.clone(),
            status,
            priority: issue
                .priority
                .as_deref()
                .and_then(Priority::parse)
                .unwrap_or(Priority::Medium),
        },
        run: SummaryRun {
            run_id: RunId(run.run_id),
            outcome,
            error: run.error.clone(),
            error_code: run.error_code.clone(),
            result: result_map(run),
            stdout_excerpt: run.stdout_excerpt.clone(),
            stderr_excerpt: run.stderr_excerpt.clone(),
            finished_at: run.finished_at,
        },
        agent: SummaryAgent {
            name: agent
                .and_then(|a| a.name.clone())
                .unwrap_or_else(|| "unknown agent".to_owned()),
            adapter_type: agent.and_then(|a| a.adapter_type.clone()),
        },
        previous_body,
    };
    let body = summary::build_body(&input);
    let company = CompanyId(run.company_id);
    em.emit(rule::SUMMARY, "document.revised", company, |id| {
        EventData::DocumentRevised(DocumentRevised {
            document_id: DocumentId(document_id),
            issue_id: Some(IssueId(issue.issue_id)),
            key: Some(summary::DOCUMENT_KEY.to_owned()),
            revision_id: RevisionId(entity_id(id, "revision_id")),
            revision_number: u32::try_from(revision_number).unwrap_or(1),
            title: summary::TITLE.to_owned(),
            format: summary::FORMAT.to_owned(),
            body: body.clone(),
            change_summary: Some(format!("Refreshed after run {} ({outcome})", run.run_id)),
            run_id: Some(RunId(run.run_id)),
            agent_id: run.agent_id.map(AgentId),
            extra: Map::new(),
        })
    });
    em.changes().summaries.push((
        issue.issue_id,
        SummaryState {
            document_id,
            revision_number,
            body,
        },
    ));
}

/// §3: one retry of a lost run, unless its issue is over. It is the original's bounded flow:
/// storm control grants it at once within its allowance.
fn process_loss_retry(
    ledger: &Ledger,
    em: &mut Emitter<'_>,
    policy: &Policy,
    run: &RunRow,
    issue: Option<&IssueRow>,
) {
    let lost = LostRun {
        run_id: RunId(run.run_id),
        agent_id: run.agent_id.map(AgentId),
        issue_id: run.issue_id.map(IssueId),
        process_loss_retry_count: count(run.process_loss_retry_count),
        pid: run.pid,
        pgid: run.pgid,
        context: run.context.clone(),
    };
    let company = CompanyId(run.company_id);
    let wakeup = match retry::decide(&lost) {
        RetryDecision::Retry(wakeup) => wakeup,
        RetryDecision::NoRetry(_) => return,
    };
    let terminal = issue
        .and_then(issue_status)
        .filter(|s| matches!(s, IssueStatus::Done | IssueStatus::Cancelled));
    if let (Some(status), Some(issue)) = (terminal, wakeup.issue_id) {
        em.refuse(
            rule::PROCESS_LOST_RETRY,
            "",
            company,
            issue,
            Some(run.run_id),
            Some(wakeup.agent_id),
            retry::WAKE_REASON,
            &format!("issue is {status}: no retries for finished issues"),
            None,
        );
        return;
    }
    em.rationed_wakeup(
        ledger,
        &policy.storm,
        rule::PROCESS_LOST_RETRY,
        "",
        company,
        Some(run.run_id),
        &wakeup,
        false,
    );
}
