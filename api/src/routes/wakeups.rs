//! Wakeup requests of a company, newest first, filterable by agent, status and issue.

use super::{limit, Body, Doc, Kind, Method, QueryParam, MIN_SEQ};
use crate::app::Shared;
use crate::auth::Access;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{Wakeup, WakeupList};
use crate::params::{PathIds, QueryParams};
use axum::extract::State;
use axum::response::Response;

pub const WAKEUP_STATUSES: &[&str] = &[
    "queued",
    "deferred_issue_execution",
    "claimed",
    "coalesced",
    "skipped",
    "completed",
    "failed",
    "cancelled",
];

pub const LIST: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/wakeups",
    operation_id: "listWakeups",
    tag: "wakeups",
    summary: "A company's wakeup requests, newest first",
    description: "",
    auth: true,
    fresh: true,
    query: &[
        QueryParam {
            name: "agent",
            kind: Kind::Uuid,
            description: "Only wakeups of this agent.",
        },
        QueryParam {
            name: "status",
            kind: Kind::OneOf(WAKEUP_STATUSES),
            description: "Only wakeups in this status.",
        },
        QueryParam {
            name: "issue",
            kind: Kind::Uuid,
            description: "Only wakeups for this issue.",
        },
        limit(500, "Wakeups to return; default 100."),
        MIN_SEQ,
    ],
    body: Body::Json(super::json::<WakeupList>),
};

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    q.check(&LIST)?;
    let agent = q.uuid("agent")?;
    let issue = q.uuid("issue")?;
    let status = q.text("status");
    let limit = q.int("limit", 1, 500, 100)?;
    let mut client = app.reader(&q).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx
        .prepare_cached(
            "SELECT w.wakeup_id, w.agent_id, a.name AS agent_name, w.issue_id, w.source,
                    w.trigger_detail, w.reason, w.status, w.idempotency_key,
                    w.requested_by_actor_type, w.requested_by_actor_id, w.run_id, w.payload,
                    w.requested_at, w.claimed_at, w.finished_at, w.updated_at
             FROM wakeup_requests w LEFT JOIN agents a ON a.agent_id = w.agent_id
             WHERE w.company_id = $1
               AND ($2::uuid IS NULL OR w.agent_id = $2)
               AND ($3::text IS NULL OR w.status = $3)
               AND ($4::uuid IS NULL OR w.issue_id = $4)
             ORDER BY w.requested_at DESC NULLS LAST, w.wakeup_id DESC
             LIMIT $5",
        )
        .await?;
    let (position, rows) = tokio::try_join!(position(&tx, &app.settings.consumer), async {
        Ok::<_, ApiError>(
            tx.query(&statement, &[&company, &agent, &status, &issue, &limit])
                .await?,
        )
    })?;
    let wakeups = rows
        .iter()
        .map(|r| Wakeup {
            wakeup_id: r.get("wakeup_id"),
            agent_id: r.get("agent_id"),
            agent_name: r.get("agent_name"),
            issue_id: r.get("issue_id"),
            source: r.get("source"),
            trigger_detail: r.get("trigger_detail"),
            reason: r.get("reason"),
            status: r.get("status"),
            idempotency_key: r.get("idempotency_key"),
            requested_by_actor_type: r.get("requested_by_actor_type"),
            requested_by_actor_id: r.get("requested_by_actor_id"),
            run_id: r.get("run_id"),
            payload: r.get("payload"),
            requested_at: r.get("requested_at"),
            claimed_at: r.get("claimed_at"),
            finished_at: r.get("finished_at"),
            updated_at: r.get("updated_at"),
        })
        .collect();
    Ok(fresh(position, WakeupList { position, wakeups }))
}
