//! Operations: `/healthz` for probes and `/metrics` for Prometheus. Neither carries tenant data
//! (no ids, only counts), so neither needs a token; restrict them by network if that matters.
//!
//! What `/healthz` answers, and when it is 503, is explained in [`crate::health`].

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::metrics::DbSnapshot;
use crate::model::Health;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;

pub const HEALTHZ: Doc = Doc {
    method: Method::Get,
    path: "/healthz",
    operation_id: "health",
    tag: "operations",
    summary: "PostgreSQL, NATS, the projector's and the reconciler's progress, failing tasks",
    description: "200 `ok`, or `degraded` (NATS unreachable: reads still work; or a task of \
        this process retrying after a failure); 503 `stalled` (an unread event or a publishable \
        follow-up has waited longer than `stall_after_s`) or `unavailable` (PostgreSQL does not \
        answer). No token needed.",
    auth: false,
    fresh: false,
    query: crate::params::schema::<crate::params::NoParams>,
    body: Body::Json(super::json::<Health>),
};

pub const METRICS: Doc = Doc {
    method: Method::Get,
    path: "/metrics",
    operation_id: "metrics",
    tag: "operations",
    summary: "Prometheus metrics",
    description: "Projector position, lag, events applied and dead letters (from PostgreSQL and \
        NATS), HTTP requests and latency, and whatever the projector and reconciler tasks feed \
        into the in-process registry. No token needed.",
    auth: false,
    fresh: false,
    query: crate::params::schema::<crate::params::NoParams>,
    body: Body::Text(crate::metrics::CONTENT_TYPE),
};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn healthz(
    State(app): State<Shared>,
    _: crate::params::Query<crate::params::NoParams>,
) -> Response {
    let (body, code, _) = crate::health::check(&app).await;
    let mut response = (code, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn db_snapshot(app: &Shared) -> Result<DbSnapshot, String> {
    let read = async {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        let positions = client
            .query(
                "SELECT consumer, last_seq, events_applied, dead_lettered FROM projector_positions ORDER BY consumer",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let counts = client
            .query_one(
                "SELECT (SELECT count(*) FROM dead_letters),
                        (SELECT count(*) FROM runs WHERE status IN ('queued', 'running'))",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(DbSnapshot {
            positions: positions
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
            dead_letters: counts.get(0),
            live_runs: counts.get(1),
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err("PostgreSQL did not answer within 2 s".into()))
}

pub(crate) async fn metrics(
    State(app): State<Shared>,
    _: crate::params::Query<crate::params::NoParams>,
) -> Response {
    let (db, (health, _, stream)) = tokio::join!(db_snapshot(&app), crate::health::check(&app));
    let db = db
        .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read PostgreSQL"))
        .ok();
    let text = app.metrics.render(
        db.as_ref(),
        &app.settings.consumer,
        stream,
        app.positions.current(),
        app.positions.waiting(),
        Some(&health),
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}
