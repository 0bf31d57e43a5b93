//! A company at a glance, the dashboard's landing page: the runs live now, the issues that need
//! a person (blocked, or stranded: assigned, nothing running, and the last run ended badly), the
//! dead letters and how far the projector is behind the stream. All of it read in one snapshot,
//! so the numbers agree with each other and with `position`.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::columns::ledger_row;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{LedgerRow, RunListItem};
use crate::params::{schema, Fresh, PathIds, Query};
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

pub const GET: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/overview",
    operation_id: "getCompanyOverview",
    tag: "companies",
    summary: "A company at a glance: live runs, issues that need a person, dead letters, lag",
    description: "Live runs (queued or running, newest first, at most 50), blocked and stranded \
        issues (assigned `todo`/`in_progress` with no live run whose last run failed, timed out \
        or was cancelled; at most 50) each with its last run and the last decision about that \
        run, the company's dead letters, and the projector's lag behind the stream (null \
        without NATS).",
    auth: true,
    fresh: true,
    query: schema::<Fresh>,
    body: Body::Json(super::json::<Overview>),
};

/// Most live runs and attention issues listed.
const LISTED: i64 = 50;

/// Timeline entries that are the reconciler's decisions about a run.
pub const DECISION_KINDS: &[&str] = &[
    "run.retried",
    "follow_up.refused",
    "run.liveness_classified",
    "run.cancel_requested",
];

/// The body of `GET /v1/companies/{company}/overview`.
#[derive(Serialize, JsonSchema)]
pub struct Overview {
    pub position: i64,
    pub company_id: Uuid,
    /// The stream's last sequence; null when NATS is not configured or does not answer.
    pub stream_last_seq: Option<i64>,
    /// Events in the stream not yet projected; null with `stream_last_seq`.
    pub lag: Option<i64>,
    /// Queued or running runs (all of them, however many are listed).
    pub live_run_count: i64,
    pub live_runs: Vec<RunListItem>,
    pub blocked_count: i64,
    pub stranded_count: i64,
    /// Blocked issues first, then stranded ones, most recently changed first.
    pub attention: Vec<AttentionIssue>,
    /// Dead letters on this company's subjects.
    pub dead_letters: i64,
    pub issues: i64,
}

/// An issue that needs a person.
#[derive(Serialize, JsonSchema)]
pub struct AttentionIssue {
    pub issue_id: Uuid,
    pub identifier: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    /// `blocked` or `stranded`.
    pub reason: String,
    pub updated_at: DateTime<Utc>,
    /// The issue's newest run, if any.
    pub last_run: Option<LedgerRow>,
    /// The newest decision about that run (a timeline entry of the reconciler's).
    pub last_decision: Option<Decision>,
}

/// A decision on a run's timeline.
#[derive(Serialize, JsonSchema)]
pub struct Decision {
    pub seq: i64,
    /// `run.retried`, `follow_up.refused`, `run.liveness_classified`, `run.cancel_requested`.
    #[serde(rename = "type")]
    pub kind: String,
    pub level: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

const LIVE_SQL: &str = concat!(
    "SELECT ",
    ledger_columns!(),
    ", r.issue_id, i.identifier AS issue_identifier, i.title AS issue_title
     FROM runs r
     LEFT JOIN agents a ON a.agent_id = r.agent_id
     LEFT JOIN issues i ON i.issue_id = r.issue_id
     WHERE r.company_id = $1 AND r.status IN ('queued', 'running')
     ORDER BY ",
    ledger_order!(),
    " LIMIT $2"
);

/// The blocked and stranded issues of the company, each with its newest run and how many there
/// are of its reason (all of them: the caller lists the first [`LISTED`]).
const ATTENTION_SQL: &str = concat!(
    "WITH candidates AS (
         SELECT i.issue_id, i.identifier, i.title, i.status, i.updated_at, i.assignee_agent_id
         FROM issues i
         WHERE i.company_id = $1 AND i.status IN ('blocked', 'todo', 'in_progress')
     ), judged AS (
         SELECT c.*, last.run_id AS last_run_id,
             CASE WHEN c.status = 'blocked' THEN 'blocked'
                  WHEN c.assignee_agent_id IS NOT NULL
                   AND last.status IN ('failed', 'timed_out', 'cancelled')
                   AND NOT EXISTS (
                       SELECT 1 FROM issue_runs ir JOIN runs r ON r.run_id = ir.run_id
                       WHERE ir.issue_id = c.issue_id
                         AND (r.status IS NULL OR r.status IN ('queued', 'running')))
                  THEN 'stranded' END AS reason
         FROM candidates c
         LEFT JOIN LATERAL (
             SELECT r.run_id, r.status FROM issue_runs ir JOIN runs r ON r.run_id = ir.run_id
             WHERE ir.issue_id = c.issue_id
             ORDER BY ",
    ledger_order!(),
    " LIMIT 1
         ) last ON true
     )
     SELECT j.issue_id, j.identifier, j.title, j.status AS issue_status, j.updated_at AS issue_updated_at,
            j.reason, count(*) OVER (PARTITION BY j.reason) AS of_reason, ",
    ledger_columns!(),
    "
     FROM judged j
     LEFT JOIN runs r ON r.run_id = j.last_run_id
     LEFT JOIN agents a ON a.agent_id = r.agent_id
     WHERE j.reason IS NOT NULL
     ORDER BY j.reason = 'blocked' DESC, j.updated_at DESC, j.issue_id"
);

const DECISIONS_SQL: &str = "SELECT DISTINCT ON (run_id) run_id, seq, type, level, message, at
     FROM run_events
     WHERE run_id = ANY($1) AND type = ANY($2)
     ORDER BY run_id, seq DESC, ordinal DESC";

const COUNTS_SQL: &str = "SELECT
         (SELECT count(*) FROM runs WHERE company_id = $1 AND status IN ('queued', 'running')),
         (SELECT count(*) FROM dead_letters WHERE split_part(subject, '.', $2::int) = $1::text),
         (SELECT count(*) FROM issues WHERE company_id = $1)";

pub(crate) async fn get(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<Fresh>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let stream_last = crate::health::stream_last_seq(&app);
    let token = crate::routes::company_token(&app.settings.subjects);
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let (live, attention, counts) = tokio::try_join!(
        tx.prepare_cached(LIVE_SQL),
        tx.prepare_cached(ATTENTION_SQL),
        tx.prepare_cached(COUNTS_SQL),
    )?;
    let (position, live, attention, counts, stream_last) = tokio::try_join!(
        position(&tx, &app),
        async { Ok::<_, ApiError>(tx.query(&live, &[&company, &LISTED]).await?) },
        async { Ok::<_, ApiError>(tx.query(&attention, &[&company]).await?) },
        async { Ok::<_, ApiError>(tx.query_one(&counts, &[&company, &token]).await?) },
        async { Ok::<_, ApiError>(stream_last.await) },
    )?;
    let (mut blocked_count, mut stranded_count) = (0, 0);
    for row in &attention {
        let n: i64 = row.get("of_reason");
        match row.get::<_, &str>("reason") {
            "blocked" => blocked_count = n,
            _ => stranded_count = n,
        }
    }
    let runs: Vec<Uuid> = attention
        .iter()
        .filter_map(|r| r.get::<_, Option<Uuid>>("run_id"))
        .collect();
    let kinds: Vec<&str> = DECISION_KINDS.to_vec();
    let decisions = tx.query(DECISIONS_SQL, &[&runs, &kinds]).await?;
    let mut decisions: std::collections::HashMap<Uuid, Decision> = decisions
        .iter()
        .map(|r| {
            (
                r.get("run_id"),
                Decision {
                    seq: r.get("seq"),
                    kind: r.get("type"),
                    level: r.get("level"),
                    message: r.get("message"),
                    at: r.get("at"),
                },
            )
        })
        .collect();
    let attention = attention
        .iter()
        .take(LISTED as usize)
        .map(|r| {
            let last_run = r.get::<_, Option<Uuid>>("run_id").map(|_| ledger_row(r));
            AttentionIssue {
                issue_id: r.get("issue_id"),
                identifier: r.get("identifier"),
                title: r.get("title"),
                status: r.get("issue_status"),
                reason: r.get("reason"),
                updated_at: r.get("issue_updated_at"),
                last_decision: last_run
                    .as_ref()
                    .and_then(|run| decisions.remove(&run.run_id)),
                last_run,
            }
        })
        .collect();
    let live_runs = live
        .iter()
        .map(|r| RunListItem {
            ledger: ledger_row(r),
            issue_id: r.get("issue_id"),
            issue_identifier: r.get("issue_identifier"),
            issue_title: r.get("issue_title"),
        })
        .collect();
    let stream_last_seq = stream_last.and_then(Result::ok);
    Ok(fresh(
        position,
        Overview {
            position,
            company_id: company,
            stream_last_seq,
            lag: stream_last_seq.map(|last| (last - position).max(0)),
            live_run_count: counts.get(0),
            live_runs,
            blocked_count,
            stranded_count,
            attention,
            dead_letters: counts.get(1),
            issues: counts.get(2),
        },
    ))
}
