//! `GET /v1/companies/{company}/issues/{issue}/runs`: an issue's run ledger, newest first, 8 rows
//! by default plus how many older runs are not shown.
//!
//! The first page comes straight from the `runs_ledger_order_idx` index (an issue's runs in ledger
//! order), so it costs the same for an issue with 10 or 10,000 runs. Runs that joined the ledger
//! through activity on this issue while belonging to another (`runs.issue_id` differs) are merged
//! in from `issue_runs` only when they exist: every run whose `issue_id` is X is linked to X by the
//! projector, so the issue has such runs exactly when it has more links than own runs. The page,
//! the two counts, the issue check and the position are one statement: one round trip, one
//! snapshot. The counts (for "N older runs not shown") are the only part that grows with the
//! ledger: two index-only scans.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::columns::ledger_row;
use crate::error::ApiError;
use crate::freshness::fresh;
use crate::model::{LedgerPage, LedgerRow};
use crate::params::{schema, Limit, MinSeq, PathIds, Query};
use axum::extract::State;
use axum::response::Response;
use deadpool_postgres::Transaction;
use serde::Deserialize;
use uuid::Uuid;

pub const LEDGER: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues/{issue}/runs",
    operation_id: "getIssueRunLedger",
    tag: "ledger",
    summary: "An issue's run ledger, newest first",
    description: "Runs whose context names the issue or that logged activity on it, newest first \
        (start time, else creation; ties by run id), with every ledger field and label, and \
        `hidden_count` (\"N older runs not shown\").",
    auth: true,
    fresh: true,
    query: schema::<LedgerQuery>,
    body: Body::Json(super::json::<LedgerPage>),
};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerQuery {
    /// Rows to return; default 8, as the reference ledger shows.
    limit: Limit<100, 8>,
    min_seq: MinSeq,
}

/// One statement, so one snapshot: the position, whether the issue exists, the ledger's size and
/// the page (a single row of NULL run columns when the page is empty).
const PAGE_SQL: &str = concat!(
    "WITH counts AS MATERIALIZED (
    SELECT (SELECT count(*) FROM issue_runs WHERE issue_id = $1) AS total,
           (SELECT count(*) FROM runs WHERE issue_id = $1) AS own
), own AS (
    SELECT r.run_id, COALESCE(r.started_at, r.created_at, r.queued_at) AS k
    FROM runs r
    WHERE r.issue_id = $1 AND r.company_id = $2
      AND EXISTS (SELECT 1 FROM issue_runs ir WHERE ir.issue_id = $1 AND ir.run_id = r.run_id)
    ORDER BY ",
    ledger_order!(),
    "
    LIMIT $3
), linked AS (
    SELECT r.run_id, COALESCE(r.started_at, r.created_at, r.queued_at) AS k
    FROM issue_runs ir JOIN runs r ON r.run_id = ir.run_id
    WHERE ir.issue_id = $1 AND r.company_id = $2 AND r.issue_id IS DISTINCT FROM $1
      AND (SELECT total > own FROM counts)
    ORDER BY ",
    ledger_order!(),
    "
    LIMIT $3
), page AS (
    SELECT run_id, k FROM own UNION ALL SELECT run_id, k FROM linked
    ORDER BY k DESC NULLS LAST, run_id DESC
    LIMIT $3
), ledger AS (
    SELECT row_number() OVER (ORDER BY p.k DESC NULLS LAST, p.run_id DESC) AS ledger_rank, ",
    ledger_columns!(),
    "
    FROM page p JOIN runs r ON r.run_id = p.run_id LEFT JOIN agents a ON a.agent_id = r.agent_id
)
SELECT ARRAY(SELECT COALESCE((SELECT last_seq FROM projector_positions WHERE consumer = k), 0)
             FROM unnest($4::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i) AS positions,
    (EXISTS (SELECT 1 FROM issues WHERE issue_id = $1 AND company_id = $2)
     OR EXISTS (SELECT 1 FROM issue_runs WHERE issue_id = $1 AND company_id = $2)) AS issue_exists,
    (SELECT total FROM counts) AS total,
    ledger.*
FROM (SELECT 1) AS one LEFT JOIN ledger ON true
ORDER BY ledger.ledger_rank"
);

const CHANGED_SQL: &str = concat!(
    "SELECT (SELECT count(*) FROM issue_runs WHERE issue_id = $1) AS total, ",
    ledger_columns!(),
    "
FROM issue_runs ir JOIN runs r ON r.run_id = ir.run_id LEFT JOIN agents a ON a.agent_id = r.agent_id
WHERE ir.issue_id = $1 AND r.company_id = $2 AND r.last_seq > $3
ORDER BY ",
    ledger_order!(),
    "
LIMIT 200"
);

const ISSUE_EXISTS_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM issues WHERE issue_id = $1 AND company_id = $2)
    OR EXISTS (SELECT 1 FROM issue_runs WHERE issue_id = $1 AND company_id = $2)";

/// The issue has a row or ledger entries in this company.
pub(crate) async fn issue_exists(
    tx: &Transaction<'_>,
    company: Uuid,
    issue: Uuid,
) -> Result<bool, ApiError> {
    let statement = tx.prepare_cached(ISSUE_EXISTS_SQL).await?;
    Ok(tx.query_one(&statement, &[&issue, &company]).await?.get(0))
}

pub(crate) fn no_issue(company: Uuid, issue: Uuid) -> ApiError {
    ApiError::not_found(format!("no issue {issue} in company {company}"))
}

/// One read of the ledger's first page.
pub(crate) struct Page {
    pub position: i64,
    pub issue_exists: bool,
    pub total: i64,
    pub rows: Vec<LedgerRow>,
}

/// The newest `limit` rows, the ledger's size, whether the issue exists and the position, from
/// one snapshot.
pub(crate) async fn page(
    client: &deadpool_postgres::Object,
    app: &crate::app::App,
    company: Uuid,
    issue: Uuid,
    limit: i64,
) -> Result<Page, ApiError> {
    let statement = client.prepare_cached(PAGE_SQL).await?;
    let keys = crate::freshness::Reader::keys(&app.settings.consumer, &app.settings.subjects);
    let rows = client
        .query(&statement, &[&issue, &company, &limit, &keys])
        .await?;
    let first = rows
        .first()
        .expect("the page query returns at least one row");
    Ok(Page {
        position: app
            .positions
            .in_snapshot(&first.get::<_, Vec<i64>>("positions")),
        issue_exists: first.get("issue_exists"),
        total: first.get("total"),
        rows: rows
            .iter()
            .filter(|r| r.get::<_, Option<Uuid>>("run_id").is_some())
            .map(ledger_row)
            .collect(),
    })
}

/// Rows of the issue's ledger changed after stream sequence `since` (at most 200, newest first),
/// and the ledger's size.
pub(crate) async fn changed_rows(
    tx: &Transaction<'_>,
    company: Uuid,
    issue: Uuid,
    since: i64,
) -> Result<(Vec<LedgerRow>, i64), ApiError> {
    let statement = tx.prepare_cached(CHANGED_SQL).await?;
    let rows = tx.query(&statement, &[&issue, &company, &since]).await?;
    let total = rows.first().map_or(0, |r| r.get::<_, i64>("total"));
    Ok((rows.iter().map(ledger_row).collect(), total))
}

/// "N older runs not shown".
pub fn hidden_label(hidden: i64) -> Option<String> {
    match hidden {
        n if n <= 0 => None,
        1 => Some("1 older run not shown".into()),
        n => Some(format!("{n} older runs not shown")),
    }
}

pub(crate) async fn ledger(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let issue = ids.uuid("issue")?;
    let limit = q.limit.0;
    let client = app.reader(q.min_seq).await?;
    let Page {
        position,
        issue_exists,
        total,
        rows,
    } = page(&client, &app, company, issue, limit).await?;
    if !issue_exists {
        return Err(no_issue(company, issue));
    }
    let hidden_count = (total - rows.len() as i64).max(0);
    Ok(fresh(
        position,
        LedgerPage {
            position,
            company_id: company,
            issue_id: issue,
            limit,
            total,
            hidden_count,
            hidden_label: hidden_label(hidden_count),
            rows,
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_label_counts_older_runs() {
        assert_eq!(super::hidden_label(0), None);
        assert_eq!(super::hidden_label(1).unwrap(), "1 older run not shown");
        assert_eq!(super::hidden_label(2).unwrap(), "2 older runs not shown");
    }
}
