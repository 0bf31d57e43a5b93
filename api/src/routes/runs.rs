//! Runs of a company: the list (`?status=running` = live runs), one run with everything the read
//! model knows, and its timeline.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::columns::ledger_row;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{RunDetail, RunEvent, RunList, RunListItem, RunResponse, RunTimeline};
use crate::params::{schema, Choices, Fresh, Id, Limit, MinSeq, OneOf, PathIds, Query, Seq};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

/// Run statuses, plus `live` (queued or running).
pub const RUN_STATUSES: &[&str] = &[
    "live",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
];

pub const LIST: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/runs",
    operation_id: "listRuns",
    tag: "runs",
    summary: "A company's runs, newest first (`?status=running` for live runs)",
    description: "Each with its ledger fields and its issue.",
    auth: true,
    fresh: true,
    query: schema::<ListQuery>,
    body: Body::Json(super::json::<RunList>),
};

/// The values of `?status=`.
#[derive(Debug)]
pub struct RunStatus;

impl Choices for RunStatus {
    const VALUES: &'static [&'static str] = RUN_STATUSES;
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs in this status; `live` = queued or running.
    status: Option<OneOf<RunStatus>>,
    /// Only runs of this agent.
    agent: Option<Id>,
    /// Runs to return; default 100.
    limit: Limit<500, 100>,
    min_seq: MinSeq,
}

pub const GET: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/runs/{run}",
    operation_id: "getRun",
    tag: "runs",
    summary: "One run: ledger fields, process, result, stop metadata",
    description: "",
    auth: true,
    fresh: true,
    query: schema::<Fresh>,
    body: Body::Json(super::json::<RunResponse>),
};

pub const EVENTS: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/runs/{run}/events",
    operation_id: "getRunTimeline",
    tag: "runs",
    summary: "A run's timeline, oldest first",
    description: "Page with `after_seq` = the previous page's `next_after_seq`.",
    auth: true,
    fresh: true,
    query: schema::<EventsQuery>,
    body: Body::Json(super::json::<RunTimeline>),
};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EventsQuery {
    /// Only entries made by events after this stream sequence.
    after_seq: Seq,
    /// Entries to return; default 200.
    limit: Limit<1000, 200>,
    min_seq: MinSeq,
}

fn no_run(company: Uuid, run: Uuid) -> ApiError {
    ApiError::not_found(format!("no run {run} in company {company}"))
}

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let statuses: Option<Vec<String>> = match q.status.as_ref().map(|s| s.0.as_str()) {
        None => None,
        Some("live") => Some(vec!["queued".into(), "running".into()]),
        Some(s) => Some(vec![s.to_owned()]),
    };
    let agent = q.agent.map(|a| a.0);
    let limit = q.limit.0;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx
        .prepare_cached(concat!(
            "SELECT ",
            ledger_columns!(),
            ", r.issue_id, i.identifier AS issue_identifier, i.title AS issue_title
             FROM runs r
             LEFT JOIN agents a ON a.agent_id = r.agent_id
             LEFT JOIN issues i ON i.issue_id = r.issue_id
             WHERE r.company_id = $1
               AND ($2::text[] IS NULL OR r.status = ANY($2))
               AND ($3::uuid IS NULL OR r.agent_id = $3)
             ORDER BY ",
            ledger_order!(),
            " LIMIT $4"
        ))
        .await?;
    let (position, rows) = tokio::try_join!(position(&tx, &app), async {
        Ok::<_, ApiError>(
            tx.query(&statement, &[&company, &statuses, &agent, &limit])
                .await?,
        )
    })?;
    let runs = rows
        .iter()
        .map(|r| RunListItem {
            ledger: ledger_row(r),
            issue_id: r.get("issue_id"),
            issue_identifier: r.get("issue_identifier"),
            issue_title: r.get("issue_title"),
        })
        .collect();
    Ok(fresh(position, RunList { position, runs }))
}

pub(crate) async fn get(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<Fresh>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let run = ids.uuid("run")?;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx
        .prepare_cached(concat!(
            "SELECT ",
            ledger_columns!(),
            ", r.company_id, r.issue_id, r.wakeup_id, r.trigger_detail, r.context, r.host, r.pid,
               r.pgid, r.exit_code, r.signal, r.result, r.stdout_excerpt, r.stderr_excerpt,
               r.last_activity_at, r.activity_count, r.cancel_requested_at, r.cancel_reason,
               r.detached_at, r.updated_at,
               ARRAY(SELECT ir.issue_id FROM issue_runs ir WHERE ir.run_id = r.run_id
                     ORDER BY ir.issue_id) AS ledger_issue_ids
             FROM runs r LEFT JOIN agents a ON a.agent_id = r.agent_id
             WHERE r.run_id = $1 AND r.company_id = $2"
        ))
        .await?;
    let (position, row) = tokio::try_join!(position(&tx, &app), async {
        Ok::<_, ApiError>(tx.query_opt(&statement, &[&run, &company]).await?)
    })?;
    let r = row.ok_or_else(|| no_run(company, run))?;
    let detail = RunDetail {
        ledger: ledger_row(&r),
        company_id: r.get("company_id"),
        issue_id: r.get("issue_id"),
        ledger_issue_ids: r.get("ledger_issue_ids"),
        wakeup_id: r.get("wakeup_id"),
        trigger_detail: r.get("trigger_detail"),
        context: r.get("context"),
        host: r.get("host"),
        pid: r.get("pid"),
        pgid: r.get("pgid"),
        exit_code: r.get("exit_code"),
        signal: r.get("signal"),
        result: r.get("result"),
        stdout_excerpt: r.get("stdout_excerpt"),
        stderr_excerpt: r.get("stderr_excerpt"),
        last_activity_at: r.get("last_activity_at"),
        activity_count: r.get("activity_count"),
        cancel_requested_at: r.get("cancel_requested_at"),
        cancel_reason: r.get("cancel_reason"),
        detached_at: r.get("detached_at"),
        updated_at: r.get("updated_at"),
    };
    Ok(fresh(
        position,
        RunResponse {
            position,
            run: detail,
        },
    ))
}

pub(crate) async fn events(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let run = ids.uuid("run")?;
    let after = q.after_seq.0;
    let limit = q.limit.0;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let exists = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = $1 AND company_id = $2)")
        .await?;
    // One more than asked for says whether there is a next page.
    let entries = tx
        .prepare_cached(
            "SELECT e.seq, e.ordinal, e.type, e.level, e.message, e.payload, e.at,
                    a.actor_type, a.actor_id
             FROM run_events e LEFT JOIN activity_log a ON a.seq = e.seq
             WHERE e.run_id = $1 AND e.company_id = $2 AND e.seq > $3
             ORDER BY e.seq, e.ordinal
             LIMIT $4::bigint + 1",
        )
        .await?;
    let (position, exists, rows) = tokio::try_join!(
        position(&tx, &app),
        async {
            Ok::<_, ApiError>(
                tx.query_one(&exists, &[&run, &company])
                    .await?
                    .get::<_, bool>(0),
            )
        },
        async {
            Ok::<_, ApiError>(
                tx.query(&entries, &[&run, &company, &after, &limit])
                    .await?,
            )
        },
    )?;
    if !exists {
        return Err(no_run(company, run));
    }
    let more = rows.len() as i64 > limit;
    let mut events: Vec<RunEvent> = rows
        .iter()
        .take(limit as usize)
        .map(|r| RunEvent {
            seq: r.get("seq"),
            ordinal: r.get("ordinal"),
            kind: r.get("type"),
            level: r.get("level"),
            message: r.get("message"),
            payload: r.get("payload"),
            at: r.get("at"),
            actor_type: r.get("actor_type"),
            actor_id: r.get("actor_id"),
        })
        .collect();
    // A page ends on a whole event (all entries of its last seq) so `after_seq` loses nothing.
    let next_after_seq = if more {
        let last = events.last().map_or(after, |e| e.seq);
        if events.iter().any(|e| e.seq != last) {
            events.retain(|e| e.seq != last);
        }
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(fresh(
        position,
        RunTimeline {
            position,
            run_id: run,
            events,
            next_after_seq,
        },
    ))
}
