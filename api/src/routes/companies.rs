//! Companies and their dead letters. Companies have no names in the event contract, so the list
//! is every company id seen in the read models (a company token sees only its own). Dead letters
//! belong to a company when their subject (`<prefix>.<company>.<entity>.<id>`) names it.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::Access;
use crate::error::ApiError;
use crate::freshness::{fresh, position, snapshot};
use crate::model::{Company, CompanyList, DeadLetter, DeadLetterList};
use crate::params::{schema, Fresh, Limit, MinSeq, PathIds, Query};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

pub const LIST: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies",
    operation_id: "listCompanies",
    tag: "companies",
    summary: "Companies this token may read",
    description: "Every company seen in the read models for an admin token; the token's own \
        company for a company token.",
    auth: true,
    fresh: true,
    query: schema::<Fresh>,
    body: Body::Json(super::json::<CompanyList>),
};

pub const DEAD_LETTERS: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/dead-letters",
    operation_id: "listDeadLetters",
    tag: "operations",
    summary: "Events on this company's subjects that the projector could not apply",
    description: "Newest first, with the reason and the start of the payload.",
    auth: true,
    fresh: true,
    query: schema::<DeadLettersQuery>,
    body: Body::Json(super::json::<DeadLetterList>),
};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLettersQuery {
    /// Dead letters to return; default 50.
    limit: Limit<500, 50>,
    min_seq: MinSeq,
}

pub(crate) async fn list(
    State(app): State<Shared>,
    access: Access,
    Query(q): Query<Fresh>,
) -> Result<Response, ApiError> {
    let only: Option<Uuid> = access.only_company();
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let statement = tx
        .prepare_cached(
            "WITH ids AS (
                 SELECT company_id FROM issues UNION SELECT company_id FROM agents
                 UNION SELECT $1::uuid WHERE $1::uuid IS NOT NULL
             )
             SELECT ids.company_id,
                 (SELECT count(*) FROM issues i WHERE i.company_id = ids.company_id) AS issues,
                 (SELECT count(*) FROM agents a WHERE a.company_id = ids.company_id) AS agents,
                 (SELECT count(*) FROM runs r WHERE r.company_id = ids.company_id
                      AND r.status IN ('queued', 'running')) AS live_runs
             FROM ids
             WHERE $1::uuid IS NULL OR ids.company_id = $1
             ORDER BY ids.company_id",
        )
        .await?;
    let (position, rows) = tokio::try_join!(position(&tx, &app), async {
        Ok::<_, ApiError>(tx.query(&statement, &[&only]).await?)
    })?;
    let companies = rows
        .iter()
        .map(|r| Company {
            company_id: r.get("company_id"),
            issues: r.get("issues"),
            agents: r.get("agents"),
            live_runs: r.get("live_runs"),
        })
        .collect();
    Ok(fresh(
        position,
        CompanyList {
            position,
            companies,
        },
    ))
}

pub(crate) async fn dead_letters(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<DeadLettersQuery>,
) -> Result<Response, ApiError> {
    let company = access.company(ids.raw("company"))?;
    let limit = q.limit.0;
    let mut client = app.reader(q.min_seq).await?;
    let tx = snapshot(&mut client).await?;
    let list = tx
        .prepare_cached(
            "SELECT seq, subject, reason, at, length(payload) AS payload_bytes,
                    substring(payload FROM 1 FOR 512) AS head
             FROM dead_letters
             WHERE split_part(subject, '.', $3::int) = $1::text
             ORDER BY seq DESC
             LIMIT $2",
        )
        .await?;
    let count = tx
        .prepare_cached(
            "SELECT count(*) FROM dead_letters WHERE split_part(subject, '.', $2::int) = $1::text",
        )
        .await?;
    let company_text = company.to_string();
    let token = crate::routes::company_token(&app.settings.subjects);
    let (position, rows, total) = tokio::try_join!(
        position(&tx, &app),
        async { Ok::<_, ApiError>(tx.query(&list, &[&company_text, &limit, &token]).await?) },
        async {
            Ok::<_, ApiError>(
                tx.query_one(&count, &[&company_text, &token])
                    .await?
                    .get::<_, i64>(0),
            )
        },
    )?;
    let dead_letters = rows
        .iter()
        .map(|r| DeadLetter {
            seq: r.get("seq"),
            subject: r.get("subject"),
            reason: r.get("reason"),
            at: r.get("at"),
            payload_bytes: r.get("payload_bytes"),
            payload_preview: String::from_utf8_lossy(r.get::<_, &[u8]>("head")).into_owned(),
        })
        .collect();
    Ok(fresh(
        position,
        DeadLetterList {
            position,
            total,
            dead_letters,
        },
    ))
}
