//! Why the reconciler did what it did on an issue: its explained follow-ups (requeues, wakeups,
//! comments, escalations, refusals, deferrals and their closings), newest first, from the
//! `decisions` read model. The cause's stream sequence comes from `folded_events`.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::params::{schema, Id, Limit, MinSeq, PathIds, Query, Seq};
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub const LIST: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues/{issue}/decisions",
    operation_id: "listIssueDecisions",
    tag: "issues",
    summary: "Why the reconciler acted on an issue, newest first",
    description: "Every follow-up the reconciler published for the issue (emitted, refused, \
                  deferred, or a deferral fired or dropped as moot), with its rule, its cause \
                  event, the inputs the rule looked at and the outcome in a sentence. Page with \
                  `before_seq` = the previous page's `next_before_seq`.",
    auth: true,
    fresh: true,
    query: schema::<ListQuery>,
    body: Body::Json(super::json::<DecisionList>),
};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    /// Only decisions about this run: the run the rule looked at, or the run it queued.
    run: Option<Id>,
    /// Only decisions folded before this stream sequence (the next page).
    before_seq: Option<Seq>,
    /// Decisions to return; default 50.
    limit: Limit<500, 50>,
    min_seq: MinSeq,
}

/// The event a decision answers.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DecisionCause {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its stream sequence (`None` if it was never folded here).
    pub seq: Option<i64>,
    pub time: DateTime<Utc>,
}

/// One explained follow-up.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Decision {
    /// The follow-up event's id and type, and the stream sequence that folded it.
    pub event_id: Uuid,
    pub event_type: String,
    pub seq: i64,
    pub rule: String,
    pub issue_id: Option<Uuid>,
    /// The run the rule looked at.
    pub run_id: Option<Uuid>,
    /// The run a `run.queued` follow-up queued.
    pub created_run_id: Option<Uuid>,
    pub cause: DecisionCause,
    /// What the rule looked at: issue status, run outcome, liveness, attempts used, storm-control
    /// counters.
    pub inputs: Value,
    /// The outcome in a sentence.
    pub sentence: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, JsonSchema)]
pub struct DecisionList {
    pub position: i64,
    pub decisions: Vec<Decision>,
    /// `before_seq` of the next (older) page; absent on the last page.
    pub next_before_seq: Option<i64>,
}

/// The query behind the route and `runledger explain`: company (`$1`), issue (`$2`) and run (`$3`)
/// filters (NULL: any), before sequence `$4`, newest first, one more than `$5` rows.
pub const SQL: &str =
    "SELECT d.event_id, d.event_type, d.seq, d.rule, d.issue_id, d.run_id, d.created_run_id,
        d.cause_id, d.cause_type, f.seq AS cause_seq, d.cause_time, d.inputs, d.sentence, d.at
     FROM decisions d LEFT JOIN folded_events f ON f.event_id = d.cause_id
     WHERE ($1::uuid IS NULL OR d.company_id = $1)
       AND ($2::uuid IS NULL OR d.issue_id = $2)
       AND ($3::uuid IS NULL OR d.run_id = $3 OR d.created_run_id = $3)
       AND d.seq < $4
     ORDER BY d.seq DESC, d.event_id DESC
     LIMIT $5::bigint + 1";

/// One row of [`SQL`].
pub fn decision(r: &tokio_postgres::Row) -> Decision {
    Decision {
        event_id: r.get("event_id"),
        event_type: r.get("event_type"),
        seq: r.get("seq"),
        rule: r.get("rule"),
        issue_id: r.get("issue_id"),
        run_id: r.get("run_id"),
        created_run_id: r.get("created_run_id"),
        cause: DecisionCause {
            event_id: r.get("cause_id"),
            event_type: r.get("cause_type"),
            seq: r.get("cause_seq"),
            time: r.get("cause_time"),
        },
        inputs: r.get("inputs"),
        sentence: r.get("sentence"),
        at: r.get("at"),
    }
}

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let issue = ids.uuid("issue")?;
    let run = q.run.map(|r| r.0);
    let before = q.before_seq.map_or(i64::MAX, |s| s.0);
    let limit = q.limit.0;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx.prepare_cached(SQL).await?;
    let (position, exists, rows) = tokio::try_join!(
        position(&tx, &app),
        super::ledger_issue_exists(&tx, company, issue),
        async {
            Ok::<_, ApiError>(
                tx.query(
                    &statement,
                    &[&Some(company), &Some(issue), &run, &before, &limit],
                )
                .await?,
            )
        },
    )?;
    if !exists {
        return Err(super::ledger_no_issue(company, issue));
    }
    let mut decisions: Vec<Decision> = rows.iter().map(decision).collect();
    let next_before_seq = if decisions.len() as i64 > limit {
        decisions.truncate(limit as usize);
        decisions.last().map(|d| d.seq)
    } else {
        None
    };
    Ok(fresh(
        position,
        DecisionList {
            position,
            decisions,
            next_before_seq,
        },
    ))
}
