//! Wakeup requests and how runs settle them: `queued` (or `deferred_issue_execution` while
//! another run holds the issue), `claimed` when its run starts, then the run's outcome.

use super::Ctx;
use crate::fold::model::Model;
use events::wakeup::WakeupRequested;
use uuid::Uuid;

pub(super) fn requested(model: &mut Model, ctx: &Ctx, d: &WakeupRequested) {
    let id = d.wakeup_id.0;
    let placeholder = model.wakeups.get(&id).map(|w| w.requested_at.is_none());
    let held_by_other = d
        .issue_id
        .and_then(|issue| model.issues.get(&issue.0))
        .and_then(|issue| issue.execution_run_id)
        .is_some();
    let row = model.wakeup_mut(ctx, id);
    row.agent_id = Some(d.agent_id.0);
    row.issue_id = d.issue_id.map(|i| i.0);
    row.source = Some(d.source.as_str().to_owned());
    row.trigger_detail = Some(d.trigger_detail.as_str().to_owned());
    row.reason = Some(d.reason.clone());
    row.payload = d.payload.clone();
    row.idempotency_key = d.idempotency_key.clone();
    row.requested_by_actor_type = Some(d.requested_by_actor_type.as_str().to_owned());
    row.requested_by_actor_id = d.requested_by_actor_id.clone();
    row.requested_at = Some(ctx.time);
    // A row its run created first already carries the status the run gave it.
    if placeholder.is_none() && held_by_other {
        row.status = "deferred_issue_execution".into();
    }
}

/// The run serving a wakeup has started.
pub(super) fn claim(model: &mut Model, ctx: &Ctx, wakeup_id: Uuid) {
    let row = model.wakeup_mut(ctx, wakeup_id);
    if matches!(row.status.as_str(), "queued" | "deferred_issue_execution") {
        row.status = "claimed".into();
        row.claimed_at = Some(ctx.time);
    }
}

/// The run serving a wakeup has ended with `run_status`.
pub(super) fn settle(model: &mut Model, ctx: &Ctx, wakeup_id: Uuid, run_status: &str) {
    let row = model.wakeup_mut(ctx, wakeup_id);
    if matches!(
        row.status.as_str(),
        "queued" | "deferred_issue_execution" | "claimed"
    ) {
        row.status = match run_status {
            "succeeded" => "completed",
            "cancelled" => "cancelled",
            _ => "failed",
        }
        .into();
        row.finished_at = Some(ctx.time);
    }
}

/// The issue's execution lock was released: the oldest deferred wakeup goes back to `queued`.
pub(super) fn promote_oldest_deferred(model: &mut Model, ctx: &Ctx, issue_id: Uuid) {
    let oldest = model
        .wakeups
        .values()
        .filter(|w| w.issue_id == Some(issue_id) && w.status == "deferred_issue_execution")
        .min_by_key(|w| (w.requested_at, w.wakeup_id))
        .map(|w| w.wakeup_id);
    if let Some(id) = oldest {
        model.wakeup_mut(ctx, id).status = "queued".into();
    }
}
