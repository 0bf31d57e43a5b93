//! Time-based sweeps, run when a `reconciler.ticked` is consumed, with the tick's time as "now"
//! (reference §4 and §10): silent detached runs are asked to stop, and stranded agent-assigned
//! issues are recovered once and then escalated to `blocked`.
//!
//! Candidates are visited in id order and every value comes from the model, the ledger and the
//! tick, so a replay sweeps identically. What the reconciler already asked for but the fold has
//! not seen yet (a queued recovery run, an escalation, a cancel request) is taken from the
//! ledger, so a second tick before the first one's follow-ups come back does not repeat them.

use super::{entity_id, rule, Emitter, Policy};
use crate::engine::ledger::{Deferral, Ledger};
use crate::escalation::{
    self, LatestRun, RunStatus, StrandedAgent, StrandedDecision, StrandedInput, StrandedIssue,
};
use crate::silence::{self, DetachedRun};
use chrono::{DateTime, Utc};
use events::issue::DeferralOutcome;
use events::run::RunCancelRequested;
use events::{
    AgentId, AgentStatus, CommentId, CompanyId, EventData, IssueId, IssueStatus, RunId, RunOutcome,
};
use projector::fold::model::{IssueRow, Model, RunRow};
use serde_json::Map;
use uuid::Uuid;

pub(super) fn tick(
    model: &Model,
    ledger: &Ledger,
    em: &mut Emitter<'_>,
    policy: &Policy,
    now: DateTime<Utc>,
) {
    due_deferrals(model, ledger, em, now);
    silent_detached_runs(model, ledger, em, policy, now);
    stranded_issues(model, ledger, em, policy);
}

/// Every open deferral due at `now` (in due order, then id): its follow-up is published exactly
/// as deferred, or, if the issue has moved on since it was deferred, it is closed as moot.
fn due_deferrals(model: &Model, ledger: &Ledger, em: &mut Emitter<'_>, now: DateTime<Utc>) {
    let mut due: Vec<&Deferral> = ledger
        .deferrals
        .iter()
        .filter(|d| d.due_at <= now)
        .collect();
    due.sort_by_key(|d| (d.due_at, d.event.id));
    for deferral in due {
        let company = deferral.event.company_id;
        match moved_on(model, ledger, deferral) {
            Some(reason) => em.close(deferral, company, DeferralOutcome::Moot, &reason),
            None => em.fire(deferral, company),
        }
    }
}

/// Why the issue of a deferral has moved on since it was deferred, if it has: it is no longer
/// `todo`/`in_progress` (done, cancelled, blocked, in review...), it was reassigned, a run of it
/// started since (progress), or a person commented on it since.
pub(crate) fn moved_on(model: &Model, ledger: &Ledger, deferral: &Deferral) -> Option<String> {
    let d = deferral.data();
    let since = deferral.event.time;
    let Some(issue) = model.issues.get(&deferral.issue_id) else {
        return Some("the issue is unknown".into());
    };
    match issue.status.as_deref() {
        Some("todo" | "in_progress") => {}
        Some(status) => return Some(format!("the issue is {status}")),
        None => return Some("the issue is unknown".into()),
    }
    if issue.assignee_user_id.is_some() || issue.assignee_agent_id != Some(d.agent_id.0) {
        return Some("the issue was reassigned".into());
    }
    let started = model
        .runs
        .values()
        .filter(|r| r.issue_id == Some(deferral.issue_id) && r.run_id != d.run.run_id.0)
        .filter(|r| r.started_at.is_some_and(|t| t > since))
        .min_by_key(|r| (r.started_at, r.run_id));
    if let Some(run) = started {
        return Some(format!("run {} of the issue started since", run.run_id));
    }
    if ledger
        .human_comments
        .get(&deferral.issue_id)
        .is_some_and(|t| *t > since)
    {
        return Some("a person commented on the issue since".into());
    }
    None
}

/// Whether a run is `running` with the detached warning and no cancel request yet.
pub(crate) fn is_detached_candidate(run: &RunRow) -> bool {
    run.status.as_deref() == Some("running")
        && run.error_code.as_deref() == Some("process_detached")
        && run.cancel_requested_at.is_none()
}

fn silent_detached_runs(
    model: &Model,
    ledger: &Ledger,
    em: &mut Emitter<'_>,
    policy: &Policy,
    now: DateTime<Utc>,
) {
    let mut runs: Vec<&RunRow> = model
        .runs
        .values()
        .map(|r| &**r)
        .filter(|r| is_detached_candidate(r) && !ledger.has_pending_cancel(r.run_id))
        .collect();
    runs.sort_by_key(|r| r.run_id);
    for run in runs {
        let detached = DetachedRun {
            detached_at: run.detached_at,
            last_activity_at: run.last_activity_at,
            started_at: run.started_at,
        };
        let Some(reason) = silence::check(&detached, now, policy.silence_timeout) else {
            continue;
        };
        em.emit(
            rule::SILENCE_TIMEOUT,
            &format!("{}/run.cancel_requested", run.run_id),
            CompanyId(run.company_id),
            |_| {
                EventData::RunCancelRequested(RunCancelRequested {
                    run_id: RunId(run.run_id),
                    reason,
                    extra: Map::new(),
                })
            },
        );
    }
}

/// Whether an issue is a stranded-recovery candidate: `todo`/`in_progress`, assigned to an agent
/// and not to a user.
pub(crate) fn is_stranded_candidate(issue: &IssueRow) -> bool {
    matches!(issue.status.as_deref(), Some("todo" | "in_progress"))
        && issue.assignee_agent_id.is_some()
        && issue.assignee_user_id.is_none()
}

/// Whether a run can still serve its issue (unknown status: events of it arrived before its
/// `run.queued`, so it is taken to be on its way).
fn is_live(run: &RunRow) -> bool {
    matches!(run.status.as_deref(), None | Some("queued" | "running"))
}

/// The issue's newest run: by creation time (unknown first), then id.
pub(crate) fn newest_run(model: &Model, issue: Uuid) -> Option<&RunRow> {
    model
        .runs
        .values()
        .map(|r| &**r)
        .filter(|r| r.issue_id == Some(issue))
        .max_by_key(|r| (r.created_at, r.run_id))
}

fn run_status(run: &RunRow) -> RunStatus {
    match run.status.as_deref() {
        None | Some("queued") => RunStatus::Queued,
        Some("running") => RunStatus::Running,
        Some(other) => RunStatus::Finished(RunOutcome::parse(other).unwrap_or(RunOutcome::Failed)),
    }
}

fn stranded_input(model: &Model, ledger: &Ledger, issue: &IssueRow) -> Option<StrandedInput> {
    let status = issue.status.as_deref().and_then(IssueStatus::parse)?;
    let agent = issue
        .assignee_agent_id
        .and_then(|a| model.agents.get(&a))
        .and_then(|agent| {
            Some(StrandedAgent {
                agent_id: AgentId(agent.agent_id),
                company_id: CompanyId(agent.company_id),
                status: agent.status.as_deref().and_then(AgentStatus::parse)?,
            })
        });
    let id = issue.issue_id;
    let has_live_path = model
        .runs
        .values()
        .any(|r| r.issue_id == Some(id) && is_live(r))
        || model
            .wakeups
            .values()
            .any(|w| w.issue_id == Some(id) && w.status == "deferred_issue_execution")
        || ledger.has_pending_run(id)
        || ledger.has_open_deferral(id)
        || newest_run(model, id).is_some_and(|run| continuation_pending(model, ledger, run));
    let latest_run = newest_run(model, id).map(|run| LatestRun {
        run_id: RunId(run.run_id),
        status: run_status(run),
        retry_reason: run
            .context
            .get("retry_reason")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        recovery: crate::escalation::recovery_marker(&run.context).map(str::to_owned),
        error_code: run.error_code.clone(),
        error: run.error.clone(),
    });
    Some(StrandedInput {
        issue: StrandedIssue {
            issue_id: IssueId(id),
            company_id: CompanyId(issue.company_id),
            identifier: issue.identifier.clone(),
            status,
            assignee_agent_id: issue.assignee_agent_id.map(AgentId),
            assignee_user_id: issue.assignee_user_id.clone(),
            checkout_run_id: issue.checkout_run_id.map(RunId),
        },
        agent,
        has_live_path,
        latest_run,
    })
}

/// Whether a classified run's continuation is still to come: a wakeup keyed to it is queued,
/// deferred or claimed, or the reconciler's own is on its way.
fn continuation_pending(model: &Model, ledger: &Ledger, run: &RunRow) -> bool {
    if run.liveness_state.is_none() {
        return false;
    }
    let Some(issue) = run.issue_id else {
        return false;
    };
    let prefix = super::ended::continuation_key_prefix(issue, run.run_id);
    let keyed = |key: &Option<String>| key.as_deref().is_some_and(|k| k.starts_with(&prefix));
    model.wakeups.values().any(|w| {
        keyed(&w.idempotency_key)
            && matches!(
                w.status.as_str(),
                "queued" | "deferred_issue_execution" | "claimed"
            )
    }) || ledger.pending.iter().any(|p| keyed(&p.idempotency_key))
}

fn stranded_issues(model: &Model, ledger: &Ledger, em: &mut Emitter<'_>, policy: &Policy) {
    let mut issues: Vec<&IssueRow> = model
        .issues
        .values()
        .filter(|i| is_stranded_candidate(i) && !ledger.has_pending_escalation(i.issue_id))
        .collect();
    issues.sort_by_key(|i| i.issue_id);
    for issue in issues {
        let Some(input) = stranded_input(model, ledger, issue) else {
            continue;
        };
        let company = CompanyId(issue.company_id);
        let scope = format!("{}/", issue.issue_id);
        let source_run = input.latest_run.as_ref().map(|r| r.run_id.0);
        match escalation::decide_stranded(&input) {
            StrandedDecision::Skip(_) => {}
            StrandedDecision::Dispatch(wakeup) => em.rationed_wakeup(
                ledger,
                &policy.storm,
                rule::STRANDED_DISPATCH,
                &scope,
                company,
                source_run,
                &wakeup,
                true,
            ),
            StrandedDecision::Continuation(wakeup) => em.rationed_wakeup(
                ledger,
                &policy.storm,
                rule::STRANDED_CONTINUATION,
                &scope,
                company,
                source_run,
                &wakeup,
                true,
            ),
            StrandedDecision::Escalate(escalated) => {
                em.emit(
                    rule::STRANDED_ESCALATION,
                    &format!("{scope}issue.updated"),
                    company,
                    |_| EventData::IssueUpdated(escalated.issue_updated()),
                );
                em.emit(
                    rule::STRANDED_ESCALATION,
                    &format!("{scope}issue.comment_added"),
                    company,
                    |id| {
                        EventData::IssueCommentAdded(
                            escalated.comment_added(CommentId(entity_id(id, "comment_id"))),
                        )
                    },
                );
            }
        }
    }
}
