//! Runs: queue, start, activity, detachment, loss, cancellation, finish and liveness, plus the
//! evidence other events credit to a run and the issue execution lock runs take and release.

use super::wakeup;
use super::{latest, Ctx};
use crate::fold::model::{Model, RunRow};
use crate::fold::stop::{error_code_for, process_loss_retry_due, stop_metadata};
use events::run::*;
use events::ActivityKind;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What kind of evidence an event is for the run it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EvidenceKind {
    Comment,
    Revision {
        plan: bool,
    },
    WorkProduct,
    /// An issue update made by the run.
    Activity,
    ToolEvent,
    WorkspaceOp,
    /// Names the run but proves nothing (a heartbeat, output, the system's own document).
    None,
}

/// An event named the run: it is alive (clears a detached warning), it may be evidence, and if it
/// concerns an issue the run joins that issue's ledger.
#[allow(clippy::too_many_arguments)]
pub(crate) fn touched_by(
    model: &mut Model,
    ctx: &Ctx,
    run_id: Uuid,
    issue_id: Option<Uuid>,
    kind: EvidenceKind,
    event_type: &str,
    message: String,
    payload: Value,
) {
    let run = model.run_mut(ctx, run_id);
    run.last_activity_at = latest(run.last_activity_at, ctx.time);
    let counts = !run.is_terminal();
    let same_issue = issue_id.is_none() || run.issue_id.is_none() || run.issue_id == issue_id;
    if counts {
        let e = &mut run.evidence;
        let before = e.clone();
        match kind {
            EvidenceKind::Comment if same_issue => e.comments += 1,
            EvidenceKind::Revision { plan } if same_issue => {
                e.revisions += 1;
                if plan {
                    e.plan_revisions += 1;
                }
            }
            EvidenceKind::WorkProduct if same_issue => e.work_products += 1,
            EvidenceKind::ToolEvent => e.tool_events += 1,
            EvidenceKind::WorkspaceOp => e.workspace_ops += 1,
            _ => {}
        }
        // Writes made with the run's id are also activity entries of that run.
        if matches!(
            kind,
            EvidenceKind::Comment
                | EvidenceKind::Revision { .. }
                | EvidenceKind::WorkProduct
                | EvidenceKind::Activity
        ) {
            e.activity += 1;
        }
        if *e != before {
            e.latest_at = latest(e.latest_at, ctx.time);
        }
    }
    let cleared = clear_detached(run);
    if let Some(issue) = issue_id {
        model.link(ctx, issue, run_id);
    }
    model.timeline(ctx, run_id, event_type, "info", message, payload);
    if cleared {
        model.timeline(
            ctx,
            run_id,
            "run.detached_cleared",
            "info",
            "Detached child process reported activity; cleared detached warning".into(),
            json!({}),
        );
    }
}

fn clear_detached(run: &mut RunRow) -> bool {
    let detached = run.status.as_deref() == Some("running")
        && run.error_code.as_deref() == Some("process_detached");
    if detached {
        run.error = None;
        run.error_code = None;
        run.detached_at = None;
    }
    detached
}

pub(super) fn queued(model: &mut Model, ctx: &Ctx, d: &RunQueued) {
    let run_id = d.run_id.0;
    let issue_id = d.issue_id.map(|i| i.0);
    let run = model.run_mut(ctx, run_id);
    run.agent_id = Some(d.agent_id.0);
    run.issue_id = issue_id.or(run.issue_id);
    run.wakeup_id = d.wakeup_id.map(|w| w.0).or(run.wakeup_id);
    run.invocation_source = Some(d.invocation_source.as_str().to_owned());
    run.trigger_detail = Some(d.trigger_detail.as_str().to_owned());
    run.context = d.context.clone();
    run.retry_of_run_id = d.retry_of_run_id.map(|r| r.0);
    run.process_loss_retry_count = i32::try_from(d.process_loss_retry_count).unwrap_or(i32::MAX);
    run.continuation_attempt = i32::try_from(d.continuation_attempt).unwrap_or(i32::MAX);
    run.queued_at = Some(ctx.time);
    run.created_at = Some(run.created_at.map_or(ctx.time, |c| c.min(ctx.time)));
    if run.status.is_none() {
        run.status = Some("queued".into());
    }
    let live = !run.is_terminal();
    if let Some(wakeup_id) = d.wakeup_id {
        let w = model.wakeup_mut(ctx, wakeup_id.0);
        w.run_id = Some(run_id);
        w.agent_id = w.agent_id.or(Some(d.agent_id.0));
        w.issue_id = w.issue_id.or(issue_id);
    }
    let mut message = format!(
        "Queued ({}, {})",
        d.invocation_source.as_str(),
        d.trigger_detail.as_str()
    );
    if let Some(issue) = issue_id {
        model.link(ctx, issue, run_id);
    }
    if let Some(retry_of) = d.retry_of_run_id.map(|r| r.0) {
        message = format!("{message}; retry of run {retry_of}");
        model.timeline(
            ctx,
            retry_of,
            "run.retried",
            "info",
            format!("Retried as run {run_id}"),
            json!({"retry_run_id": run_id}),
        );
        // The lost run released the lock when it was lost; its retry takes it if it is free
        // (or still names the run it retries), never from another run.
        if let Some(issue) = issue_id.filter(|_| live) {
            let issue = model.issue_mut(ctx, issue);
            if issue.execution_run_id.is_none() || issue.execution_run_id == Some(retry_of) {
                issue.execution_run_id = Some(run_id);
            }
        }
    }
    model.timeline(
        ctx,
        run_id,
        "run.queued",
        "info",
        message,
        json!({"context": d.context}),
    );
}

pub(super) fn started(model: &mut Model, ctx: &Ctx, d: &RunStarted) {
    let run_id = d.run_id.0;
    let run = model.run_mut(ctx, run_id);
    run.agent_id = run.agent_id.or(Some(d.agent_id.0));
    run.issue_id = run.issue_id.or(d.issue_id.map(|i| i.0));
    run.host = Some(d.host.clone());
    run.pid = d.pid;
    run.pgid = d.pgid;
    run.process_started_at = d.process_started_at.and_then(|t| i64::try_from(t).ok());
    run.supervisor_pid = d.supervisor_pid;
    run.started_at = Some(ctx.time);
    run.created_at = Some(run.created_at.map_or(ctx.time, |c| c.min(ctx.time)));
    run.last_activity_at = latest(run.last_activity_at, ctx.time);
    if matches!(run.status.as_deref(), None | Some("queued")) {
        run.status = Some("running".into());
    }
    let live = !run.is_terminal();
    let issue_id = run.issue_id;
    let wakeup_id = run.wakeup_id;
    if let Some(issue) = issue_id {
        model.link(ctx, issue, run_id);
        if live {
            let issue = model.issue_mut(ctx, issue);
            if issue.execution_run_id.is_none() {
                issue.execution_run_id = Some(run_id);
            }
        }
    }
    if let Some(w) = wakeup_id.filter(|_| live) {
        wakeup::claim(model, ctx, w);
    }
    let pid = d.pid.map_or("unknown".into(), |p| p.to_string());
    model.timeline(
        ctx,
        run_id,
        "run.started",
        "info",
        format!("Started on {} (pid {pid})", d.host),
        json!({"host": d.host, "pid": d.pid, "pgid": d.pgid, "supervisor_pid": d.supervisor_pid}),
    );
}

pub(super) fn activity(model: &mut Model, ctx: &Ctx, d: &RunActivity) {
    let run_id = d.run_id.0;
    let run = model.run_mut(ctx, run_id);
    run.activity_count = run.activity_count.saturating_add(1);
    run.last_activity_at = latest(run.last_activity_at, d.at.max(ctx.time));
    if d.kind == ActivityKind::Heartbeat {
        // A ping proves liveness only; it is counted, not put on the timeline.
        if clear_detached(run) {
            model.timeline(
                ctx,
                run_id,
                "run.detached_cleared",
                "info",
                "Detached child process reported activity; cleared detached warning".into(),
                json!({}),
            );
        }
        return;
    }
    let kind = match d.kind {
        ActivityKind::ToolCall | ActivityKind::Action => EvidenceKind::ToolEvent,
        ActivityKind::Workspace => EvidenceKind::WorkspaceOp,
        _ => EvidenceKind::None,
    };
    let message = d
        .message
        .clone()
        .unwrap_or_else(|| d.kind.as_str().to_owned());
    touched_by(
        model,
        ctx,
        run_id,
        None,
        kind,
        &format!("activity.{}", d.kind.as_str()),
        message,
        json!({"at": d.at}),
    );
}

pub(super) fn process_detached(model: &mut Model, ctx: &Ctx, d: &RunProcessDetached) {
    let run = model.run_mut(ctx, d.run_id.0);
    if run.status.as_deref() != Some("running")
        || run.error_code.as_deref() == Some("process_detached")
    {
        return; // only a running run, and only the first time
    }
    let message = format!(
        "Lost in-memory process handle, but child pid {} is still alive",
        d.pid
    );
    run.error = Some(message.clone());
    run.error_code = Some("process_detached".into());
    run.detached_at = Some(ctx.time);
    model.timeline(
        ctx,
        d.run_id.0,
        "run.process_detached",
        "warn",
        message,
        json!({"pid": d.pid, "host": d.host}),
    );
}

/// Moves a run into a terminal status with its stop metadata; settles its wakeup and releases
/// the issue's execution lock (a process-loss retry takes it again when it is queued).
fn terminate(model: &mut Model, ctx: &Ctx, run_id: Uuid, status: &str) {
    let run = model.run_mut(ctx, run_id);
    let agent = run.agent_id;
    let issue_id = run.issue_id;
    let wakeup_id = run.wakeup_id;
    let (adapter_type, config) = agent
        .and_then(|a| model.agents.get(&a))
        .map(|a| (a.adapter_type.clone(), a.adapter_config.clone()))
        .unwrap_or_default();
    let issue_status = issue_id
        .and_then(|i| model.issues.get(&i))
        .and_then(|i| i.status.clone());
    let run = model.run_mut(ctx, run_id);
    run.status = Some(status.to_owned());
    run.finished_at = Some(ctx.time);
    run.issue_status_at_finish = issue_status;
    let meta = stop_metadata(
        status,
        run.error_code.as_deref(),
        run.error.as_deref(),
        adapter_type.as_deref(),
        &config,
    );
    let mut result = match run.result.take() {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    meta.merge_into(&mut result);
    run.result = Some(Value::Object(result));
    run.stop_reason = Some(meta.stop_reason.to_owned());
    run.effective_timeout_sec = Some(meta.timeout.effective_timeout_sec);
    run.timeout_configured = Some(meta.timeout.configured);
    run.timeout_source = Some(meta.timeout.source.to_owned());
    run.timeout_fired = Some(meta.timeout_fired);
    if let Some(w) = wakeup_id {
        wakeup::settle(model, ctx, w, status);
    }
    if let Some(issue) = issue_id {
        release_lock(model, ctx, issue, run_id);
    }
}

/// Clears the issue's execution lock if it still names the run, and promotes the oldest
/// deferred wakeup.
pub(super) fn release_lock(model: &mut Model, ctx: &Ctx, issue_id: Uuid, run_id: Uuid) {
    let holds = model
        .issues
        .get(&issue_id)
        .is_some_and(|i| i.execution_run_id == Some(run_id));
    if holds {
        model.issue_mut(ctx, issue_id).execution_run_id = None;
        wakeup::promote_oldest_deferred(model, ctx, issue_id);
    }
}

pub(super) fn process_lost(model: &mut Model, ctx: &Ctx, d: &RunProcessLost) {
    let run_id = d.run_id.0;
    let run = model.run_mut(ctx, run_id);
    if run.is_terminal() {
        let status = run.status.clone().unwrap_or_default();
        model.timeline(
            ctx,
            run_id,
            "run.process_lost",
            "info",
            format!("Process loss reported after the run had already ended ({status}); ignored"),
            json!({"message": d.message}),
        );
        return;
    }
    run.pid = run.pid.or(d.pid);
    run.pgid = run.pgid.or(d.pgid);
    let retry = process_loss_retry_due(run.process_loss_retry_count, run.pid, run.pgid);
    let message = if retry {
        format!("{}; retrying once", d.message)
    } else {
        d.message.clone()
    };
    run.error = Some(message.clone());
    run.error_code = Some("process_lost".into());
    // The fold records the loss and releases the lock; the reconciler's retry (its
    // `run.queued`) takes the lock again when it is free.
    terminate(model, ctx, run_id, "failed");
    model.timeline(
        ctx,
        run_id,
        "run.process_lost",
        "error",
        message,
        json!({"pid": d.pid, "pgid": d.pgid, "descendant_group_terminated": d.descendant_group_terminated, "retry_due": retry}),
    );
}

pub(super) fn cancel_requested(model: &mut Model, ctx: &Ctx, d: &RunCancelRequested) {
    let run = model.run_mut(ctx, d.run_id.0);
    if run.cancel_requested_at.is_none() {
        run.cancel_requested_at = Some(ctx.time);
        run.cancel_reason = Some(d.reason.clone());
    }
    model.timeline(
        ctx,
        d.run_id.0,
        "run.cancel_requested",
        "warn",
        format!("Cancel requested: {}", d.reason),
        json!({"reason": d.reason}),
    );
}

pub(super) fn finished(model: &mut Model, ctx: &Ctx, d: &RunFinished) {
    let run_id = d.run_id.0;
    let outcome = d.outcome.as_str();
    let run = model.run_mut(ctx, run_id);
    if run.is_terminal() {
        let status = run.status.clone().unwrap_or_default();
        model.timeline(
            ctx,
            run_id,
            "run.finished",
            "info",
            format!("Reported {outcome} after the run had already ended ({status}); ignored"),
            json!({"outcome": outcome}),
        );
        return;
    }
    run.exit_code = d.exit_code;
    run.signal = d.signal.clone();
    run.error = d.error.clone().or_else(|| {
        (outcome == "cancelled")
            .then(|| run.cancel_reason.clone())
            .flatten()
    });
    run.error_code = error_code_for(outcome, d.error_code.as_deref());
    run.result = Some(Value::Object(d.result.clone()));
    run.usage = d.usage.clone().map(Value::Object);
    run.stdout_excerpt = d.stdout_excerpt.clone();
    run.stderr_excerpt = d.stderr_excerpt.clone();
    let error_code = run.error_code.clone();
    terminate(model, ctx, run_id, outcome);
    let mut message = format!("Finished: {outcome}");
    if let Some(code) = d.exit_code {
        message.push_str(&format!(" (exit code {code})"));
    }
    if let Some(signal) = &d.signal {
        message.push_str(&format!(" (signal {signal})"));
    }
    let level = if outcome == "succeeded" {
        "info"
    } else {
        "error"
    };
    model.timeline(
        ctx,
        run_id,
        "run.finished",
        level,
        message,
        json!({"outcome": outcome, "error_code": error_code, "error": d.error}),
    );
}

pub(super) fn liveness_classified(model: &mut Model, ctx: &Ctx, d: &RunLivenessClassified) {
    let run = model.run_mut(ctx, d.run_id.0);
    if run.liveness_state.is_some() {
        return; // computed once; later verdicts never revise it
    }
    run.liveness_state = Some(d.state.as_str().to_owned());
    run.liveness_reason = Some(d.reason.clone());
    run.next_action = d.next_action.clone();
    run.last_useful_action_at = d.last_useful_action_at;
    model.timeline(
        ctx,
        d.run_id.0,
        "run.liveness_classified",
        "info",
        format!("Liveness: {} ({})", d.state.as_str(), d.reason),
        json!({"state": d.state, "next_action": d.next_action}),
    );
}
