//! Wakeup requests of a company, newest first, filterable by agent, status and issue.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{Wakeup, WakeupList};
use crate::params::{schema, Choices, Id, Limit, MinSeq, OneOf, PathIds, Query};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

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
    query: schema::<ListQuery>,
    body: Body::Json(super::json::<WakeupList>),
};

/// The values of `?status=`.
#[derive(Debug)]
pub struct WakeupStatus;

impl Choices for WakeupStatus {
    const VALUES: &'static [&'static str] = WAKEUP_STATUSES;
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Only wakeups of this agent.
    agent: Option<Id>,
    /// Only wakeups in this status.
    status: Option<OneOf<WakeupStatus>>,
    /// Only wakeups for this issue.
    issue: Option<Id>,
    /// Wakeups to return; default 100.
    limit: Limit<500, 100>,
    min_seq: MinSeq,
}

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let agent = q.agent.map(|a| a.0);
    let issue = q.issue.map(|i| i.0);
    let status = q.status.as_ref().map(|s| s.0.as_str());
    let limit = q.limit.0;
    let mut client = app.reader(q.min_seq).await?;
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
    let (position, rows) = tokio::try_join!(position(&tx, &app), async {
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
