//! Issues, comments and work products. Writes that carry a `run_id` are that run's evidence
//! and put the run into the issue's ledger.

use super::run::{touched_by, EvidenceKind};
use super::Ctx;
use crate::fold::model::{ActivityRow, CommentRow, IssueRow, Model, WorkProductRow};
use events::issue::{
    IssueCommentAdded, IssueCreated, IssueFollowUpDeferralClosed, IssueFollowUpDeferred,
    IssueFollowUpRefused, IssueUpdated, IssueWorkProductAdded,
};
use events::{Event, IssueStatus};
use serde_json::{json, Map, Value};

/// Sets the lifecycle timestamps on the first move into a status.
fn enter_status(row: &mut IssueRow, status: IssueStatus, time: crate::fold::model::Time) {
    row.status = Some(status.as_str().to_owned());
    match status {
        IssueStatus::InProgress => row.started_at = row.started_at.or(Some(time)),
        IssueStatus::Done => row.completed_at = row.completed_at.or(Some(time)),
        IssueStatus::Cancelled => row.cancelled_at = row.cancelled_at.or(Some(time)),
        _ => {}
    }
}

/// The actor of an event that does not name one: the system, identified by the event source.
fn system_actor(event: &Event) -> (String, Option<String>) {
    ("system".to_owned(), Some(event.source.clone()))
}

pub(super) fn activity(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    actor: (String, Option<String>),
    entity: (&str, uuid::Uuid),
    run_id: Option<uuid::Uuid>,
    details: Value,
) {
    model.appends.activity.push(ActivityRow {
        seq: ctx.seq,
        company_id: ctx.company,
        actor_type: actor.0,
        actor_id: actor.1,
        action: event.event_type().as_str().to_owned(),
        entity_type: entity.0.to_owned(),
        entity_id: entity.1,
        run_id,
        details,
        at: ctx.time,
    });
}

pub(super) fn created(model: &mut Model, ctx: &Ctx, event: &Event, d: &IssueCreated) {
    let existed = model.issues.contains_key(&d.issue_id.0);
    let row = model.issue_mut(ctx, d.issue_id.0);
    // Updates that arrived before the creation win over its initial values.
    let fill = |slot: &mut Option<String>, value: Option<String>| {
        if !existed || slot.is_none() {
            *slot = value;
        }
    };
    fill(&mut row.identifier, Some(d.identifier.clone()));
    fill(&mut row.title, Some(d.title.clone()));
    fill(&mut row.description, d.description.clone());
    fill(&mut row.priority, Some(d.priority.as_str().to_owned()));
    fill(&mut row.assignee_user_id, d.assignee_user_id.clone());
    if !existed || row.assignee_agent_id.is_none() {
        row.assignee_agent_id = d.assignee_agent_id.map(|a| a.0);
    }
    if !existed || row.parent_id.is_none() {
        row.parent_id = d.parent_id.map(|p| p.0);
    }
    if !existed || row.status.is_none() {
        enter_status(row, d.status, ctx.time);
    }
    row.created_at = Some(row.created_at.map_or(ctx.time, |c| c.min(ctx.time)));
    let details = json!({
        "identifier": d.identifier,
        "title": d.title,
        "status": d.status,
        "priority": d.priority,
    });
    activity(
        model,
        ctx,
        event,
        system_actor(event),
        ("issue", d.issue_id.0),
        None,
        details,
    );
}

pub(super) fn updated(model: &mut Model, ctx: &Ctx, event: &Event, d: &IssueUpdated) {
    let row = model.issue_mut(ctx, d.issue_id.0);
    let mut details = Map::new();
    let previous_status = row.status.clone();
    if let Some(status) = d.status {
        enter_status(row, status, ctx.time);
        details.insert("status".into(), json!(status));
        details.insert("previous_status".into(), json!(previous_status));
    }
    if let Some(title) = &d.title {
        row.title = Some(title.clone());
        details.insert("title".into(), json!(title));
    }
    if let Some(description) = &d.description {
        row.description = description.clone();
        details.insert("description_changed".into(), json!(true));
    }
    if let Some(priority) = d.priority {
        row.priority = Some(priority.as_str().to_owned());
        details.insert("priority".into(), json!(priority));
    }
    if let Some(assignee) = d.assignee_agent_id {
        row.assignee_agent_id = assignee.map(|a| a.0);
        details.insert("assignee_agent_id".into(), json!(assignee));
    }
    if let Some(assignee) = &d.assignee_user_id {
        row.assignee_user_id = assignee.clone();
        details.insert("assignee_user_id".into(), json!(assignee));
    }
    if let Some(checkout) = d.checkout_run_id {
        row.checkout_run_id = checkout.map(|r| r.0);
        details.insert("checkout_run_id".into(), json!(checkout));
    }
    if let Some(state) = &d.execution_state {
        row.execution_state = state.clone();
        details.insert("execution_state".into(), json!(state));
    }
    for (key, value) in &d.extra {
        match (key.as_str(), value) {
            // The reconciler's escalation sends its activity details as one object.
            ("details", Value::Object(inner)) => {
                for (key, value) in inner {
                    details.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            _ => {
                details.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    let identifier = row.identifier.clone();
    let actor = match &d.actor {
        Some(a) => (a.actor_type.as_str().to_owned(), a.id.clone()),
        None if d.run_id.is_some() => ("agent".to_owned(), None),
        None => system_actor(event),
    };
    let run_id = d.run_id.map(|r| r.0);
    activity(
        model,
        ctx,
        event,
        actor,
        ("issue", d.issue_id.0),
        run_id,
        Value::Object(details.clone()),
    );
    if let Some(run_id) = run_id {
        let what = format!(
            "Updated {}",
            identifier.unwrap_or_else(|| d.issue_id.to_string())
        );
        touched_by(
            model,
            ctx,
            run_id,
            Some(d.issue_id.0),
            EvidenceKind::Activity,
            "issue.updated",
            what,
            Value::Object(details),
        );
    }
}

pub(super) fn comment_added(model: &mut Model, ctx: &Ctx, event: &Event, d: &IssueCommentAdded) {
    if !model.known_children.insert(d.comment_id.0) {
        return; // the same comment again (another event id): already stored
    }
    model.issue_mut(ctx, d.issue_id.0);
    model.appends.comments.push(CommentRow {
        comment_id: d.comment_id.0,
        company_id: ctx.company,
        issue_id: d.issue_id.0,
        body: d.body.clone(),
        author_agent_id: d.author_agent_id.map(|a| a.0),
        author_user_id: d.author_user_id.clone(),
        run_id: d.run_id.map(|r| r.0),
        created_at: ctx.time,
        seq: ctx.seq,
    });
    let actor = match (&d.author_agent_id, &d.author_user_id) {
        (Some(agent), _) => ("agent".to_owned(), Some(agent.to_string())),
        (None, Some(user)) => ("user".to_owned(), Some(user.clone())),
        (None, None) => system_actor(event),
    };
    let details = json!({"comment_id": d.comment_id});
    let run_id = d.run_id.map(|r| r.0);
    activity(
        model,
        ctx,
        event,
        actor,
        ("issue", d.issue_id.0),
        run_id,
        details.clone(),
    );
    if let Some(run_id) = run_id {
        touched_by(
            model,
            ctx,
            run_id,
            Some(d.issue_id.0),
            EvidenceKind::Comment,
            "issue.comment_added",
            "Commented on the issue".into(),
            details,
        );
    }
}

pub(super) fn work_product_added(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    d: &IssueWorkProductAdded,
) {
    if !model.known_children.insert(d.work_product_id.0) {
        return;
    }
    model.issue_mut(ctx, d.issue_id.0);
    model.appends.work_products.push(WorkProductRow {
        work_product_id: d.work_product_id.0,
        company_id: ctx.company,
        issue_id: d.issue_id.0,
        kind: d.kind.clone(),
        title: d.title.clone(),
        run_id: d.run_id.map(|r| r.0),
        created_at: ctx.time,
        seq: ctx.seq,
    });
    let details = json!({"work_product_id": d.work_product_id, "kind": d.kind, "title": d.title});
    let run_id = d.run_id.map(|r| r.0);
    let actor = if run_id.is_some() {
        ("agent".to_owned(), None)
    } else {
        system_actor(event)
    };
    activity(
        model,
        ctx,
        event,
        actor,
        ("issue", d.issue_id.0),
        run_id,
        details.clone(),
    );
    if let Some(run_id) = run_id {
        let what = format!("Added work product: {} {}", d.kind, d.title);
        touched_by(
            model,
            ctx,
            run_id,
            Some(d.issue_id.0),
            EvidenceKind::WorkProduct,
            "issue.work_product_added",
            what,
            details,
        );
    }
}

/// An automatic follow-up of the issue was refused: an activity entry on the issue by the
/// system and a warning on the run's timeline. It is a fact only: the execution lock is not
/// touched (a lost run released it when it was lost).
pub(super) fn follow_up_refused(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    d: &IssueFollowUpRefused,
) {
    let details = json!({
        "follow_up": d.follow_up,
        "reason": d.reason,
        "retry_after": d.retry_after,
        "run_id": d.run_id,
        "agent_id": d.agent_id,
    });
    let message = format!("Automatic {} refused: {}", d.follow_up, d.reason);
    system_note(
        model,
        ctx,
        event,
        d.issue_id.0,
        d.run_id.map(|r| r.0),
        ("follow_up.refused", "warn", message),
        details,
    );
}

/// An automatic follow-up of the issue waits for storm control's backoff: an activity entry on
/// the issue and an entry on the source run's timeline, with when it is due.
pub(super) fn follow_up_deferred(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    d: &IssueFollowUpDeferred,
) {
    let details = json!({
        "follow_up": d.follow_up,
        "rule": d.rule,
        "reason": d.reason,
        "due_at": d.due_at,
        "run_id": d.run_id,
        "agent_id": d.agent_id,
        "wakeup_id": d.wakeup.wakeup_id,
        "queued_run_id": d.run.run_id,
    });
    let message = format!(
        "Automatic {} deferred until {}: {}",
        d.follow_up,
        d.due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        d.reason
    );
    system_note(
        model,
        ctx,
        event,
        d.issue_id.0,
        d.run_id.map(|r| r.0),
        ("follow_up.deferred", "info", message),
        details,
    );
}

/// A deferral ended: fired (its follow-up was published) or moot (the issue had moved on).
pub(super) fn follow_up_deferral_closed(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    d: &IssueFollowUpDeferralClosed,
) {
    let details = json!({
        "deferral_id": d.deferral_id,
        "follow_up": d.follow_up,
        "outcome": d.outcome.as_str(),
        "reason": d.reason,
        "run_id": d.run_id,
    });
    let message = format!(
        "Deferred {} {}: {}",
        d.follow_up,
        match d.outcome {
            events::issue::DeferralOutcome::Fired => "sent",
            events::issue::DeferralOutcome::Moot => "dropped as moot",
        },
        d.reason
    );
    system_note(
        model,
        ctx,
        event,
        d.issue_id.0,
        d.run_id.map(|r| r.0),
        ("follow_up.deferral_closed", "info", message),
        details,
    );
}

/// The system's note on an issue about one of its automatic follow-ups: an activity entry on
/// the issue and, with a run, an entry on that run's timeline. The run is named in the details,
/// not as the entry's run: this is the system's write, never evidence of that run.
fn system_note(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    issue_id: uuid::Uuid,
    run_id: Option<uuid::Uuid>,
    (kind, level, message): (&str, &'static str, String),
    details: Value,
) {
    model.issue_mut(ctx, issue_id);
    activity(
        model,
        ctx,
        event,
        system_actor(event),
        ("issue", issue_id),
        None,
        details.clone(),
    );
    if let Some(run_id) = run_id {
        model.timeline(ctx, run_id, kind, level, message, details);
    }
}
