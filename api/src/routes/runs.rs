//! Runs of a company: the list (`?status=running` = live runs), one run with everything the read
//! model knows, and its timeline.

use super::{limit, Body, Doc, Kind, Method, QueryParam, MIN_SEQ};
use crate::app::Shared;
use crate::auth::Access;
use crate::columns::ledger_row;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{RunDetail, RunEvent, RunList, RunListItem, RunResponse, RunTimeline};
use crate::params::{PathIds, QueryParams};
use axum::extract::State;
use axum::response::Response;
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
    query: &[
        QueryParam {
            name: "status",
            kind: Kind::OneOf(RUN_STATUSES),
            description: "Only runs in this status; `live` = queued or running.",
        },
        QueryParam {
            name: "agent",
            kind: Kind::Uuid,
            description: "Only runs of this agent.",
        },
        limit(500, "Runs to return; default 100."),
        MIN_SEQ,
    ],
    body: Body::Json(super::json::<RunList>),
};

pub const GET: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/runs/{run}",
    operation_id: "getRun",
    tag: "runs",
    summary: "One run: ledger fields, process, result, stop metadata",
    description: "",
    auth: true,
    fresh: true,
    query: &[MIN_SEQ],
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
    query: &[
        QueryParam {
            name: "after_seq",
            kind: Kind::Int {
                min: 0,
                max: i64::MAX,
            },
            description: "Only entries made by events after this stream sequence.",
        },
        limit(1000, "Entries to return; default 200."),
        MIN_SEQ,
    ],
    body: Body::Json(super::json::<RunTimeline>),
};

fn no_run(company: Uuid, run: Uuid) -> ApiError {
    ApiError::not_found(format!("no run {run} in company {company}"))
}

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    q.check(&LIST)?;
    let statuses: Option<Vec<String>> = match q.text("status") {
        None => None,
        Some("live") => Some(vec!["queued".into(), "running".into()]),
        Some(s) => Some(vec![s.to_owned()]),
    };
    let agent = q.uuid("agent")?;
    let limit = q.int("limit", 1, 500, 100)?;
    let mut client = app.reader(&q).await?;
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
    let (position, rows) = tokio::try_join!(position(&tx, &app.settings.consumer), async {
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
    q: QueryParams,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let run = ids.uuid("run")?;
    q.check(&GET)?;
    let mut client = app.reader(&q).await?;
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
    let (position, row) = tokio::try_join!(position(&tx, &app.settings.consumer), async {
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
    q: QueryParams,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let run = ids.uuid("run")?;
    q.check(&EVENTS)?;
    let after = q.int("after_seq", 0, i64::MAX, 0)?;
    let limit = q.int("limit", 1, 1000, 200)?;
    let mut client = app.reader(&q).await?;
    let tx = snapshot(&mut client).await?;
    let exists = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = $1 AND company_id = $2)")
        .await?;
    // One more than asked for says whether there is a next page.
    let entries = tx
        .prepare_cached(
            "SELECT seq, ordinal, type, level, message, payload, at
             FROM run_events
             WHERE run_id = $1 AND company_id = $2 AND seq > $3
             ORDER BY seq, ordinal
             LIMIT $4::bigint + 1",
        )
        .await?;
    let (position, exists, rows) = tokio::try_join!(
        position(&tx, &app.settings.consumer),
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
