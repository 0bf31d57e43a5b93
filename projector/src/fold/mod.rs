//! The fold: `apply(model, seq, event)` changes in-memory read-model rows and does no I/O.
//!
//! Rules it keeps (reference §2–§3, §8):
//! - a terminal run status never changes again; events of one run may arrive in any order and
//!   still converge (placeholders are created for rows whose creating event has not arrived);
//! - evidence of progress is counted only until the run ends (the classifier's cut-off) and never
//!   from the system's own `continuation-summary` document;
//! - every value comes from the event and its stream sequence, so a rebuild is byte-identical;
//! - an event that contradicts the model (another company's entity, a duplicate document key) is
//!   rejected as a whole, before anything changes, and becomes a dead letter.

mod agent;
mod decision;
mod document;
mod issue;
pub mod model;
mod run;
pub mod stop;
mod wakeup;

use crate::fold::model::*;
use events::{Event, EventData};
use serde_json::Value;
use uuid::Uuid;

/// Why an event cannot be applied; it is dead-lettered with this reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection(pub String);

/// The ids an event reads or writes, so the store can load them before folding.
#[derive(Clone, Debug, Default)]
pub struct Touched {
    pub agents: Vec<Uuid>,
    pub issues: Vec<Uuid>,
    pub runs: Vec<Uuid>,
    pub wakeups: Vec<Uuid>,
    pub documents: Vec<Uuid>,
    pub document_keys: Vec<(Uuid, String)>,
    pub children: Vec<Uuid>,
}

impl Touched {
    pub fn add(&mut self, event: &Event) {
        use EventData as D;
        if let Some(run) = event.data.run_id() {
            self.runs.push(run.0);
        }
        match &event.data {
            D::AgentRegistered(d) => self.agents.push(d.agent_id.0),
            D::AgentStatusChanged(d) => self.agents.push(d.agent_id.0),
            D::IssueCreated(d) => {
                self.issues.push(d.issue_id.0);
                self.agents.extend(d.assignee_agent_id.map(|a| a.0));
            }
            D::IssueUpdated(d) => self.issues.push(d.issue_id.0),
            D::IssueCommentAdded(d) => {
                self.issues.push(d.issue_id.0);
                self.children.push(d.comment_id.0);
            }
            D::IssueWorkProductAdded(d) => {
                self.issues.push(d.issue_id.0);
                self.children.push(d.work_product_id.0);
            }
            D::DocumentRevised(d) => {
                self.documents.push(d.document_id.0);
                self.children.push(d.revision_id.0);
                self.issues.extend(d.issue_id.map(|i| i.0));
                if let (Some(issue), Some(key)) = (d.issue_id, &d.key) {
                    self.document_keys.push((issue.0, key.clone()));
                }
            }
            D::WakeupRequested(d) => {
                self.wakeups.push(d.wakeup_id.0);
                self.agents.push(d.agent_id.0);
                self.issues.extend(d.issue_id.map(|i| i.0));
            }
            D::RunQueued(d) => {
                self.agents.push(d.agent_id.0);
                self.issues.extend(d.issue_id.map(|i| i.0));
                self.wakeups.extend(d.wakeup_id.map(|w| w.0));
            }
            D::RunStarted(d) => {
                self.agents.push(d.agent_id.0);
                self.issues.extend(d.issue_id.map(|i| i.0));
            }
            D::IssueFollowUpRefused(d) => {
                self.issues.push(d.issue_id.0);
                self.agents.extend(d.agent_id.map(|a| a.0));
            }
            D::IssueFollowUpDeferred(d) => {
                self.issues.push(d.issue_id.0);
                self.agents.push(d.agent_id.0);
            }
            D::IssueFollowUpDeferralClosed(d) => self.issues.push(d.issue_id.0),
            _ => {}
        }
    }
}

/// Applies one event to the model. On `Err`, nothing was changed.
pub fn apply(model: &mut Model, seq: i64, event: &Event) -> Result<(), Rejection> {
    check_company(model, event)?;
    use EventData as D;
    let ctx = Ctx {
        seq,
        company: event.company_id.0,
        time: event.time,
    };
    match &event.data {
        D::AgentRegistered(d) => agent::registered(model, &ctx, d),
        D::AgentStatusChanged(d) => agent::status_changed(model, &ctx, d),
        D::IssueCreated(d) => issue::created(model, &ctx, event, d),
        D::IssueUpdated(d) => issue::updated(model, &ctx, event, d),
        D::IssueCommentAdded(d) => issue::comment_added(model, &ctx, event, d),
        D::IssueWorkProductAdded(d) => issue::work_product_added(model, &ctx, event, d),
        D::DocumentRevised(d) => document::revised(model, &ctx, event, d)?,
        D::WakeupRequested(d) => wakeup::requested(model, &ctx, d),
        D::RunQueued(d) => run::queued(model, &ctx, d),
        D::RunStarted(d) => run::started(model, &ctx, d),
        D::RunActivity(d) => run::activity(model, &ctx, d),
        D::RunProcessDetached(d) => run::process_detached(model, &ctx, d),
        D::RunProcessLost(d) => run::process_lost(model, &ctx, d),
        D::RunCancelRequested(d) => run::cancel_requested(model, &ctx, d),
        D::RunFinished(d) => run::finished(model, &ctx, d),
        D::RunLivenessClassified(d) => run::liveness_classified(model, &ctx, d),
        D::IssueFollowUpRefused(d) => issue::follow_up_refused(model, &ctx, event, d),
        D::IssueFollowUpDeferred(d) => issue::follow_up_deferred(model, &ctx, event, d),
        D::IssueFollowUpDeferralClosed(d) => {
            issue::follow_up_deferral_closed(model, &ctx, event, d)
        }
        // The reconciler's clock: it changes nothing here (the reconciler sweeps on it).
        D::ReconcilerTicked(_) => {}
    }
    decision::record(model, &ctx, event);
    Ok(())
}

/// Everything an event's rules need besides its data.
pub(crate) struct Ctx {
    pub seq: i64,
    pub company: Uuid,
    pub time: Time,
}

/// Rules never join across companies: an event naming another company's entity is rejected.
fn check_company(model: &Model, event: &Event) -> Result<(), Rejection> {
    let company = event.company_id.0;
    let check = |kind: &str, id: Uuid, owner: Option<Uuid>| match owner {
        Some(owner) if owner != company => Err(Rejection(format!(
            "{kind} {id} belongs to company {owner}, not to this event's company {company}"
        ))),
        _ => Ok(()),
    };
    let mut t = Touched::default();
    t.add(event);
    for id in &t.agents {
        check("agent", *id, model.agents.get(id).map(|r| r.company_id))?;
    }
    for id in &t.issues {
        check("issue", *id, model.issues.get(id).map(|r| r.company_id))?;
    }
    for id in &t.runs {
        check("run", *id, model.runs.get(id).map(|r| r.company_id))?;
    }
    for id in &t.wakeups {
        check("wakeup", *id, model.wakeups.get(id).map(|r| r.company_id))?;
    }
    for id in &t.documents {
        check(
            "document",
            *id,
            model.documents.get(id).map(|r| r.company_id),
        )?;
    }
    Ok(())
}

pub(crate) fn latest(current: Option<Time>, candidate: Time) -> Option<Time> {
    Some(current.map_or(candidate, |c| c.max(candidate)))
}

impl Model {
    pub(crate) fn agent_mut(&mut self, ctx: &Ctx, id: Uuid) -> &mut AgentRow {
        self.dirty.agents.insert(id);
        let row = self.agents.entry(id).or_insert_with(|| AgentRow {
            agent_id: id,
            company_id: ctx.company,
            name: None,
            role: None,
            adapter_type: None,
            adapter_config: Default::default(),
            status: None,
            budget_blocked: false,
            registered_at: None,
            updated_at: ctx.time,
            last_seq: ctx.seq,
        });
        row.updated_at = row.updated_at.max(ctx.time);
        row.last_seq = row.last_seq.max(ctx.seq);
        row
    }

    pub(crate) fn issue_mut(&mut self, ctx: &Ctx, id: Uuid) -> &mut IssueRow {
        self.dirty.issues.insert(id);
        let row = self.issues.entry(id).or_insert_with(|| IssueRow {
            issue_id: id,
            company_id: ctx.company,
            identifier: None,
            title: None,
            description: None,
            status: None,
            priority: None,
            assignee_agent_id: None,
            assignee_user_id: None,
            parent_id: None,
            checkout_run_id: None,
            execution_run_id: None,
            execution_state: None,
            created_at: None,
            started_at: None,
            completed_at: None,
            cancelled_at: None,
            updated_at: ctx.time,
            last_seq: ctx.seq,
        });
        row.updated_at = row.updated_at.max(ctx.time);
        row.last_seq = row.last_seq.max(ctx.seq);
        row
    }

    pub(crate) fn run_mut(&mut self, ctx: &Ctx, id: Uuid) -> &mut RunRow {
        self.dirty.runs.insert(id);
        let row = self.runs.entry(id).or_insert_with(|| {
            Box::new(RunRow {
                run_id: id,
                company_id: ctx.company,
                agent_id: None,
                issue_id: None,
                wakeup_id: None,
                status: None,
                invocation_source: None,
                trigger_detail: None,
                context: Default::default(),
                host: None,
                pid: None,
                pgid: None,
                supervisor_pid: None,
                process_started_at: None,
                created_at: None,
                queued_at: None,
                started_at: None,
                finished_at: None,
                last_activity_at: None,
                activity_count: 0,
                exit_code: None,
                signal: None,
                error: None,
                error_code: None,
                result: None,
                usage: None,
                stdout_excerpt: None,
                stderr_excerpt: None,
                stop_reason: None,
                effective_timeout_sec: None,
                timeout_configured: None,
                timeout_source: None,
                timeout_fired: None,
                cancel_requested_at: None,
                cancel_reason: None,
                detached_at: None,
                retry_of_run_id: None,
                process_loss_retry_count: 0,
                continuation_attempt: 0,
                liveness_state: None,
                liveness_reason: None,
                last_useful_action_at: None,
                next_action: None,
                evidence: Evidence::default(),
                issue_status_at_finish: None,
                updated_at: ctx.time,
                last_seq: ctx.seq,
            })
        });
        row.updated_at = row.updated_at.max(ctx.time);
        row.last_seq = row.last_seq.max(ctx.seq);
        row
    }

    pub(crate) fn wakeup_mut(&mut self, ctx: &Ctx, id: Uuid) -> &mut WakeupRow {
        self.dirty.wakeups.insert(id);
        let row = self.wakeups.entry(id).or_insert_with(|| WakeupRow {
            wakeup_id: id,
            company_id: ctx.company,
            agent_id: None,
            issue_id: None,
            source: None,
            trigger_detail: None,
            reason: None,
            payload: Default::default(),
            status: "queued".into(),
            idempotency_key: None,
            requested_by_actor_type: None,
            requested_by_actor_id: None,
            run_id: None,
            requested_at: None,
            claimed_at: None,
            finished_at: None,
            updated_at: ctx.time,
            last_seq: ctx.seq,
        });
        row.updated_at = row.updated_at.max(ctx.time);
        row.last_seq = row.last_seq.max(ctx.seq);
        row
    }

    /// Adds a timeline entry to a run.
    pub(crate) fn timeline(
        &mut self,
        ctx: &Ctx,
        run_id: Uuid,
        kind: &str,
        level: &'static str,
        message: String,
        payload: Value,
    ) {
        let ordinal = self
            .appends
            .run_events
            .iter()
            .rev()
            .take_while(|e| e.seq == ctx.seq)
            .filter(|e| e.run_id == run_id)
            .count() as i16;
        self.appends.run_events.push(RunEventRow {
            run_id,
            seq: ctx.seq,
            ordinal,
            company_id: ctx.company,
            kind: kind.to_owned(),
            level,
            message,
            payload,
            at: ctx.time,
        });
    }

    /// Puts a run into an issue's ledger.
    pub(crate) fn link(&mut self, ctx: &Ctx, issue_id: Uuid, run_id: Uuid) {
        self.appends
            .issue_runs
            .insert((issue_id, run_id, ctx.company));
    }
}
