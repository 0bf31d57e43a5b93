//! Issues of a company: the list the dashboard picks from, one issue with its children and
//! documents, and the continuation-summary handoff document. System documents (the continuation
//! summary) are hidden from document lists unless `include_system=true`; they stay fetchable by
//! their own route.

use super::ledger::{issue_exists, no_issue};
use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{
    Children, ContinuationSummary, DocumentList, DocumentSummary, IssueDetail, IssueList,
    IssueResponse, IssueSummary,
};
use crate::params::{schema, Choices, Flag, Fresh, Limit, MinSeq, OneOf, PathIds, Query};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use tokio_postgres::Row;

/// Issue statuses (for filters).
pub const ISSUE_STATUSES: &[&str] = &[
    "backlog",
    "todo",
    "in_progress",
    "in_review",
    "done",
    "blocked",
    "cancelled",
];

pub const LIST: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues",
    operation_id: "listIssues",
    tag: "issues",
    summary: "A company's issues, most recently updated first",
    description: "With run counts and live (queued or running) run counts.",
    auth: true,
    fresh: true,
    query: schema::<ListQuery>,
    body: Body::Json(super::json::<IssueList>),
};

/// The values of `?status=`.
#[derive(Debug)]
pub struct IssueStatus;

impl Choices for IssueStatus {
    const VALUES: &'static [&'static str] = ISSUE_STATUSES;
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Only issues in this status.
    status: Option<OneOf<IssueStatus>>,
    /// Only issues whose identifier or title contains this text (any case).
    q: Option<String>,
    /// Issues to return; default 50.
    limit: Limit<200, 50>,
    min_seq: MinSeq,
}

pub const GET: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues/{issue}",
    operation_id: "getIssue",
    tag: "issues",
    summary: "One issue, with its children's states",
    description: "Run pointers, execution state, and a summary of child issues (\"1 active, 1 \
        done, 1 cancelled\").",
    auth: true,
    fresh: true,
    query: schema::<Fresh>,
    body: Body::Json(super::json::<IssueResponse>),
};

pub const DOCUMENTS: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues/{issue}/documents",
    operation_id: "listIssueDocuments",
    tag: "issues",
    summary: "An issue's documents (system documents hidden unless asked for)",
    description: "Without bodies. The continuation summary is a system document: listed only \
        with `include_system=true`.",
    auth: true,
    fresh: true,
    query: schema::<DocumentsQuery>,
    body: Body::Json(super::json::<DocumentList>),
};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentsQuery {
    /// Also list system documents (the continuation summary).
    include_system: Flag,
    min_seq: MinSeq,
}

pub const SUMMARY: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues/{issue}/continuation-summary",
    operation_id: "getContinuationSummary",
    tag: "issues",
    summary: "The issue's continuation summary (the handoff to its next run)",
    description: "The latest revision of the `continuation-summary` system document; 404 when \
        none has been written yet.",
    auth: true,
    fresh: true,
    query: schema::<Fresh>,
    body: Body::Json(super::json::<ContinuationSummary>),
};

const ISSUE_COLUMNS: &str = "i.issue_id, i.identifier, i.title, i.status, i.priority,
    i.assignee_agent_id, a.name AS assignee_agent_name, i.assignee_user_id, i.updated_at,
    (SELECT count(*) FROM issue_runs ir WHERE ir.issue_id = i.issue_id) AS run_count,
    (SELECT count(*) FROM runs r WHERE r.issue_id = i.issue_id AND r.status IN ('queued', 'running')) AS live_run_count";

fn issue_summary(row: &Row) -> IssueSummary {
    IssueSummary {
        issue_id: row.get("issue_id"),
        identifier: row.get("identifier"),
        title: row.get("title"),
        status: row.get("status"),
        priority: row.get("priority"),
        assignee_agent_id: row.get("assignee_agent_id"),
        assignee_agent_name: row.get("assignee_agent_name"),
        assignee_user_id: row.get("assignee_user_id"),
        updated_at: row.get("updated_at"),
        run_count: row.get("run_count"),
        live_run_count: row.get("live_run_count"),
    }
}

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let status = q.status.as_ref().map(|s| s.0.as_str());
    let text =
        q.q.as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase);
    let limit = q.limit.0;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let sql = format!(
        "SELECT {ISSUE_COLUMNS}
         FROM issues i LEFT JOIN agents a ON a.agent_id = i.assignee_agent_id
         WHERE i.company_id = $1
           AND ($2::text IS NULL OR i.status = $2)
           AND ($3::text IS NULL OR strpos(lower(coalesce(i.identifier, '') || ' ' || coalesce(i.title, '')), $3) > 0)
         ORDER BY i.updated_at DESC, i.issue_id DESC
         LIMIT $4"
    );
    let statement = tx.prepare_cached(&sql).await?;
    let (position, rows) = tokio::try_join!(position(&tx, &app), async {
        Ok::<_, ApiError>(
            tx.query(&statement, &[&company, &status, &text, &limit])
                .await?,
        )
    })?;
    Ok(fresh(
        position,
        IssueList {
            position,
            issues: rows.iter().map(issue_summary).collect(),
        },
    ))
}

/// "1 active, 1 done, 1 cancelled"; "all 2 terminal (1 done, 1 cancelled)".
pub fn children_label(active: i64, done: i64, cancelled: i64) -> String {
    if active == 0 {
        let mut parts = Vec::new();
        if done > 0 {
            parts.push(format!("{done} done"));
        }
        if cancelled > 0 {
            parts.push(format!("{cancelled} cancelled"));
        }
        format!("all {} terminal ({})", done + cancelled, parts.join(", "))
    } else {
        let mut parts = vec![format!("{active} active")];
        if done > 0 {
            parts.push(format!("{done} done"));
        }
        if cancelled > 0 {
            parts.push(format!("{cancelled} cancelled"));
        }
        parts.join(", ")
    }
}

pub(crate) async fn get(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<Fresh>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let issue = ids.uuid("issue")?;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let sql = format!(
        "SELECT {ISSUE_COLUMNS}, i.company_id, i.description, i.parent_id, i.checkout_run_id,
                i.execution_run_id, i.execution_state, i.created_at, i.started_at,
                i.completed_at, i.cancelled_at,
                (SELECT count(*) FROM issues c WHERE c.parent_id = i.issue_id AND c.company_id = i.company_id) AS children,
                (SELECT count(*) FROM issues c WHERE c.parent_id = i.issue_id AND c.company_id = i.company_id AND c.status = 'done') AS children_done,
                (SELECT count(*) FROM issues c WHERE c.parent_id = i.issue_id AND c.company_id = i.company_id AND c.status = 'cancelled') AS children_cancelled
         FROM issues i LEFT JOIN agents a ON a.agent_id = i.assignee_agent_id
         WHERE i.issue_id = $1 AND i.company_id = $2"
    );
    let statement = tx.prepare_cached(&sql).await?;
    let (position, row) = tokio::try_join!(position(&tx, &app), async {
        Ok::<_, ApiError>(tx.query_opt(&statement, &[&issue, &company]).await?)
    })?;
    let row = row.ok_or_else(|| no_issue(company, issue))?;
    let (total, done, cancelled): (i64, i64, i64) = (
        row.get("children"),
        row.get("children_done"),
        row.get("children_cancelled"),
    );
    let active = total - done - cancelled;
    let children = (total > 0).then(|| Children {
        total,
        active,
        done,
        cancelled,
        label: children_label(active, done, cancelled),
    });
    Ok(fresh(
        position,
        IssueResponse {
            position,
            issue: IssueDetail {
                summary: issue_summary(&row),
                company_id: row.get("company_id"),
                description: row.get("description"),
                parent_id: row.get("parent_id"),
                checkout_run_id: row.get("checkout_run_id"),
                execution_run_id: row.get("execution_run_id"),
                execution_state: row.get("execution_state"),
                created_at: row.get("created_at"),
                started_at: row.get("started_at"),
                completed_at: row.get("completed_at"),
                cancelled_at: row.get("cancelled_at"),
                children,
            },
        },
    ))
}

pub(crate) async fn documents(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<DocumentsQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let issue = ids.uuid("issue")?;
    let include_system = q.include_system.0;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx
        .prepare_cached(
            "SELECT document_id, key, title, format, latest_revision_number, is_system,
                    length(latest_body) AS body_chars, updated_at
             FROM documents
             WHERE issue_id = $1 AND company_id = $2 AND ($3 OR NOT is_system)
             ORDER BY key NULLS LAST, document_id",
        )
        .await?;
    let (position, exists, rows) = tokio::try_join!(
        position(&tx, &app),
        issue_exists(&tx, company, issue),
        async {
            Ok::<_, ApiError>(
                tx.query(&statement, &[&issue, &company, &include_system])
                    .await?,
            )
        }
    )?;
    if !exists {
        return Err(no_issue(company, issue));
    }
    let documents = rows
        .iter()
        .map(|r| DocumentSummary {
            document_id: r.get("document_id"),
            key: r.get("key"),
            title: r.get("title"),
            format: r.get("format"),
            revision_number: r.get("latest_revision_number"),
            is_system: r.get("is_system"),
            body_chars: r.get("body_chars"),
            updated_at: r.get("updated_at"),
        })
        .collect();
    Ok(fresh(
        position,
        DocumentList {
            position,
            issue_id: issue,
            documents,
        },
    ))
}

pub(crate) async fn continuation_summary(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<Fresh>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let issue = ids.uuid("issue")?;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx
        .prepare_cached(
            "SELECT d.document_id, d.key, d.title, d.format, d.latest_body, d.latest_revision_id,
                    d.latest_revision_number, d.updated_at,
                    rv.created_by_run_id, rv.created_by_agent_id
             FROM documents d
             LEFT JOIN document_revisions rv ON rv.revision_id = d.latest_revision_id
             WHERE d.issue_id = $1 AND d.company_id = $2 AND d.key = 'continuation-summary'",
        )
        .await?;
    let (position, exists, row) = tokio::try_join!(
        position(&tx, &app),
        issue_exists(&tx, company, issue),
        async { Ok::<_, ApiError>(tx.query_opt(&statement, &[&issue, &company]).await?) }
    )?;
    if !exists {
        return Err(no_issue(company, issue));
    }
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!("issue {issue} has no continuation summary yet"))
    })?;
    Ok(fresh(
        position,
        ContinuationSummary {
            position,
            issue_id: issue,
            document_id: row.get("document_id"),
            key: row.get("key"),
            title: row.get("title"),
            format: row.get("format"),
            body: row.get("latest_body"),
            revision_id: row.get("latest_revision_id"),
            revision_number: row.get("latest_revision_number"),
            created_by_run_id: row.get("created_by_run_id"),
            created_by_agent_id: row.get("created_by_agent_id"),
            updated_at: row.get("updated_at"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::children_label;

    #[test]
    fn children_are_summarised_as_the_reference_says() {
        assert_eq!(children_label(1, 1, 1), "1 active, 1 done, 1 cancelled");
        assert_eq!(
            children_label(0, 1, 1),
            "all 2 terminal (1 done, 1 cancelled)"
        );
        assert_eq!(children_label(2, 0, 0), "2 active");
        assert_eq!(children_label(0, 3, 0), "all 3 terminal (3 done)");
    }
}
