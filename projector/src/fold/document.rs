//! Documents and their revisions. The `continuation-summary` document is the system's own
//! write: it is stored and shown, but never counted as the run's evidence.

use super::issue::activity;
use super::run::{touched_by, EvidenceKind};
use super::{Ctx, Rejection};
use crate::fold::model::{DocumentRow, Model, RevisionRow};
use events::document::{DocumentRevised, CONTINUATION_SUMMARY_KEY, PLAN_KEY};
use events::Event;
use serde_json::json;

pub(super) fn revised(
    model: &mut Model,
    ctx: &Ctx,
    event: &Event,
    d: &DocumentRevised,
) -> Result<(), Rejection> {
    let document_id = d.document_id.0;
    let existing = model.documents.get(&document_id);
    let issue_id = d
        .issue_id
        .map(|i| i.0)
        .or(existing.and_then(|e| e.issue_id));
    let key = d.key.clone().or(existing.and_then(|e| e.key.clone()));
    if let (Some(issue), Some(key)) = (issue_id, &key) {
        let clash = model.documents.values().find(|doc| {
            doc.document_id != document_id
                && doc.issue_id == Some(issue)
                && doc.key.as_deref() == Some(key)
        });
        if let Some(other) = clash {
            return Err(Rejection(format!(
                "issue {issue} already has document {} with key `{key}`",
                other.document_id
            )));
        }
    }
    if let (Some(stored), Some(given)) = (existing.and_then(|e| e.issue_id), d.issue_id) {
        if stored != given.0 {
            return Err(Rejection(format!(
                "document {document_id} belongs to issue {stored}, not {given}"
            )));
        }
    }
    if !model.known_children.insert(d.revision_id.0) {
        return Ok(()); // the same revision again: already stored
    }
    let is_system = key.as_deref() == Some(CONTINUATION_SUMMARY_KEY);
    let revision_number = i32::try_from(d.revision_number).unwrap_or(i32::MAX);
    model.dirty.documents.insert(document_id);
    let doc = model
        .documents
        .entry(document_id)
        .or_insert_with(|| DocumentRow {
            document_id,
            company_id: ctx.company,
            issue_id,
            key: key.clone(),
            title: d.title.clone(),
            format: d.format.clone(),
            latest_body: d.body.clone(),
            latest_revision_id: d.revision_id.0,
            latest_revision_number: 0,
            is_system,
            created_at: ctx.time,
            updated_at: ctx.time,
            last_seq: ctx.seq,
        });
    doc.issue_id = issue_id;
    doc.key = key.clone();
    doc.is_system = is_system;
    doc.created_at = doc.created_at.min(ctx.time);
    doc.updated_at = doc.updated_at.max(ctx.time);
    doc.last_seq = doc.last_seq.max(ctx.seq);
    // Revisions may arrive out of order: the highest number is the latest.
    if revision_number >= doc.latest_revision_number {
        doc.title = d.title.clone();
        doc.format = d.format.clone();
        doc.latest_body = d.body.clone();
        doc.latest_revision_id = d.revision_id.0;
        doc.latest_revision_number = revision_number;
    }
    model.appends.revisions.push(RevisionRow {
        revision_id: d.revision_id.0,
        document_id,
        company_id: ctx.company,
        issue_id,
        key: key.clone(),
        revision_number,
        title: d.title.clone(),
        format: d.format.clone(),
        body: d.body.clone(),
        change_summary: d.change_summary.clone(),
        created_by_run_id: d.run_id.map(|r| r.0),
        created_by_agent_id: d.agent_id.map(|a| a.0),
        created_at: ctx.time,
        seq: ctx.seq,
    });
    let details = json!({
        "document_id": d.document_id,
        "key": key,
        "revision_id": d.revision_id,
        "revision_number": d.revision_number,
        "title": d.title,
    });
    let actor = match d.agent_id {
        Some(agent) => ("agent".to_owned(), Some(agent.to_string())),
        None => ("system".to_owned(), Some(event.source.clone())),
    };
    let run_id = d.run_id.map(|r| r.0);
    activity(
        model,
        ctx,
        event,
        actor,
        ("document", document_id),
        run_id,
        details.clone(),
    );
    if let Some(run_id) = run_id {
        let what = format!(
            "Revised document {} (revision {})",
            key.as_deref().unwrap_or(&d.title),
            d.revision_number
        );
        let kind = if is_system {
            EvidenceKind::None
        } else {
            EvidenceKind::Revision {
                plan: key.as_deref() == Some(PLAN_KEY),
            }
        };
        touched_by(
            model,
            ctx,
            run_id,
            issue_id,
            kind,
            "document.revised",
            what,
            details,
        );
    }
    Ok(())
}
