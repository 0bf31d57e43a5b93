//! Operations: `/healthz` for probes and `/metrics` for Prometheus. Neither carries tenant data
//! (no ids, only counts), so neither needs a token; restrict them by network if that matters.
//!
//! `/healthz` answers 503 only when PostgreSQL is unreachable (then nothing can be read); NATS
//! being down makes it `degraded` with 200, because every read still works and the dashboard is
//! most useful exactly then.

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::metrics::DbSnapshot;
use crate::model::{Health, Probe, ProjectorHealth};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::{Duration, Instant};

pub const HEALTHZ: Doc = Doc {
    method: Method::Get,
    path: "/healthz",
    operation_id: "health",
    tag: "operations",
    summary: "PostgreSQL, NATS and the projector's lag",
    description: "200 `ok` or `degraded` (NATS unreachable: reads still work); 503 `unavailable` \
        when PostgreSQL does not answer. No token needed.",
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

pub(super) async fn stream_last_seq(app: &Shared) -> Option<Result<i64, String>> {
    let client = app.nats.as_ref()?;
    let js = async_nats::jetstream::new(client.clone());
    let asked = projector::feed::stream_last_seq(&js, &app.settings.stream);
    Some(match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Err(_) => Err("NATS did not answer within 2 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(last)) => Ok(last as i64),
    })
}

/// (position, events applied, dead lettered) of the configured consumer.
async fn projector_row(app: &Shared) -> Result<(i64, i64, i64), String> {
    let probe = async {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_opt(
                "SELECT last_seq, events_applied, dead_lettered FROM projector_positions WHERE consumer = $1",
                &[&app.settings.consumer],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.map_or((0, 0, 0), |r| (r.get(0), r.get(1), r.get(2))))
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err("PostgreSQL did not answer within 2 s".into()))
}

pub(crate) async fn healthz(
    State(app): State<Shared>,
    _: crate::params::Query<crate::params::NoParams>,
) -> Response {
    let started = Instant::now();
    let (row, stream) = tokio::join!(projector_row(&app), async {
        let started = Instant::now();
        (stream_last_seq(&app).await, started.elapsed())
    });
    let pg_latency = started.elapsed();
    let postgres = Probe {
        ok: row.is_ok(),
        configured: true,
        latency_ms: row.is_ok().then_some(pg_latency.as_secs_f64() * 1e3),
        error: row.as_ref().err().cloned(),
    };
    let (stream_result, nats_latency) = stream;
    let nats = match &stream_result {
        None => Probe {
            ok: false,
            configured: false,
            latency_ms: None,
            error: None,
        },
        Some(Ok(_)) => Probe {
            ok: true,
            configured: true,
            latency_ms: Some(nats_latency.as_secs_f64() * 1e3),
            error: None,
        },
        Some(Err(e)) => Probe {
            ok: false,
            configured: true,
            latency_ms: None,
            error: Some(e.clone()),
        },
    };
    let last = stream_result.and_then(Result::ok);
    let projector = row
        .as_ref()
        .ok()
        .map(|(position, applied, dead)| ProjectorHealth {
            consumer: app.settings.consumer.clone(),
            position: *position,
            events_applied: *applied,
            dead_letters: *dead,
            stream_last_seq: last,
            lag: last.map(|l| (l - position).max(0)),
        });
    let (status, code) = if !postgres.ok {
        ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
    } else if nats.configured && !nats.ok {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = Health {
        status: status.into(),
        postgres,
        nats,
        projector,
    };
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
    let (db, stream) = tokio::join!(db_snapshot(&app), stream_last_seq(&app));
    let db = db
        .map_err(|e| tracing::warn!(error = %e, "metrics: cannot read PostgreSQL"))
        .ok();
    let stream = stream.and_then(Result::ok);
    let text = app.metrics.render(
        db.as_ref(),
        &app.settings.consumer,
        stream,
        app.positions.current(),
        app.positions.waiting(),
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}
