//! What `/healthz` (and the health gauges of `/metrics`) say, and why.
//!
//! - `unavailable` (503): PostgreSQL does not answer; nothing can be read.
//! - `stalled` (503): work waits longer than `stall_after` — the oldest event the projector or
//!   the reconciler has not read yet has been in the stream that long, or the oldest follow-up
//!   the reconciler may publish has waited that long in its outbox. Measured by the waiting
//!   work's own age (the stream's stored time of the first unread message, the outbox row's
//!   write time), not by when the position last moved, so a quiet stream is never a stall and a
//!   burst after a quiet hour is not one either.
//! - `degraded` (200): NATS does not answer (reads still work; the dashboard is most useful
//!   then), or a task of this process (`runledger up`'s projector, reconciler, outbox...) failed
//!   its last attempt and is retrying.
//! - `ok` (200) otherwise.

use crate::app::Shared;
use crate::model::{Health, Probe, ProjectorHealth, ReconcilerHealth};
use axum::http::StatusCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest any one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes everything once; the status and the HTTP code that goes with it.
pub(crate) async fn check(app: &Shared) -> (Health, StatusCode) {
    let started = Instant::now();
    let (db, stream) = tokio::join!(read_positions(app), async {
        let started = Instant::now();
        (stream_last_seq(app).await, started.elapsed())
    });
    let pg_latency = started.elapsed();
    let postgres = Probe {
        ok: db.is_ok(),
        configured: true,
        latency_ms: db.is_ok().then_some(pg_latency.as_secs_f64() * 1e3),
        error: db.as_ref().err().cloned(),
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
    let stall_after = app.settings.stall_after.as_secs_f64();
    let (projector, reconciler) = match &db {
        Err(_) => (None, None),
        Ok(read) => {
            let projector = match read.projector {
                None => None,
                Some((position, applied, dead)) => {
                    let age = unread_age(app, last, position).await;
                    Some(ProjectorHealth {
                        consumer: app.settings.consumer.clone(),
                        position,
                        events_applied: applied,
                        dead_letters: dead,
                        stream_last_seq: last,
                        lag: last.map(|l| (l - position).max(0)),
                        oldest_unread_age_s: age,
                        stalled: age.is_some_and(|a| a > stall_after),
                    })
                }
            };
            let reconciler = match &read.reconciler {
                None => None,
                Some(r) => {
                    let age = unread_age(app, last, r.position).await;
                    let outbox_stuck = r.outbox_oldest_age_s.is_some_and(|a| a > stall_after);
                    Some(ReconcilerHealth {
                        schema: r.schema.clone(),
                        position: r.position,
                        lag: last.map(|l| (l - r.position).max(0)),
                        oldest_unread_age_s: age,
                        outbox_unpublished: r.outbox_unpublished,
                        outbox_oldest_age_s: r.outbox_oldest_age_s,
                        stalled: outbox_stuck || age.is_some_and(|a| a > stall_after),
                    })
                }
            };
            (projector, reconciler)
        }
    };
    let failing = app.metrics.failing_tasks();
    let stalled = projector.as_ref().is_some_and(|p| p.stalled)
        || reconciler.as_ref().is_some_and(|r| r.stalled);
    let (status, code) = if !postgres.ok {
        ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
    } else if stalled {
        ("stalled", StatusCode::SERVICE_UNAVAILABLE)
    } else if (nats.configured && !nats.ok) || !failing.is_empty() {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let health = Health {
        status: status.into(),
        postgres,
        nats,
        projector,
        reconciler,
        failing,
        stall_after_s: stall_after,
    };
    (health, code)
}

/// The stream's last sequence; `None` when the API runs without NATS.
pub(crate) async fn stream_last_seq(app: &Shared) -> Option<Result<i64, String>> {
    let client = app.nats.as_ref()?;
    let js = async_nats::jetstream::new(client.clone());
    let asked = projector::feed::stream_last_seq(&js, &app.settings.stream);
    Some(match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Err(_) => Err("NATS did not answer within 2 s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(last)) => Ok(last as i64),
    })
}

/// How long the first event after `position` has been in the stream, in seconds; `None` without
/// lag or when NATS cannot say.
async fn unread_age(app: &Shared, last: Option<i64>, position: i64) -> Option<f64> {
    let last = last?;
    if last <= position {
        return None;
    }
    let client = app.nats.as_ref()?;
    let js = async_nats::jetstream::new(client.clone());
    let asked = async {
        let stream = js.get_stream(&app.settings.stream).await.ok()?;
        stream.get_raw_message((position + 1) as u64).await.ok()
    };
    let message = tokio::time::timeout(PROBE_TIMEOUT, asked).await.ok()??;
    let stored_ns = message.time.unix_timestamp_nanos();
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    Some(((now_ns - stored_ns).max(0) as f64) / 1e9)
}

/// What PostgreSQL says about the readers.
struct Positions {
    /// (position, events applied, dead lettered) of the configured projector consumer.
    projector: Option<(i64, i64, i64)>,
    reconciler: Option<ReconcilerRead>,
}

struct ReconcilerRead {
    schema: String,
    position: i64,
    outbox_unpublished: i64,
    outbox_oldest_age_s: Option<f64>,
}

async fn read_positions(app: &Shared) -> Result<Positions, String> {
    let probe = async {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_opt(
                "SELECT last_seq, events_applied, dead_lettered FROM projector_positions WHERE consumer = $1",
                &[&app.settings.consumer],
            )
            .await
            .map_err(|e| e.to_string())?;
        let projector = Some(row.map_or((0, 0, 0), |r| (r.get(0), r.get(1), r.get(2))));
        let reconciler = match &app.settings.reconciler_schema {
            None => None,
            Some(schema) => read_reconciler(&client, schema).await?,
        };
        Ok(Positions {
            projector,
            reconciler,
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err("PostgreSQL did not answer within 2 s".into()))
}

/// The reconciler's lowest position and its outbox, when its schema is in this database. A
/// follow-up held until the reconciler has read further (`hold_until_seq`) is waiting for the
/// reconciler, not for the drainer, so only publishable rows count toward the outbox's age.
async fn read_reconciler(
    client: &deadpool_postgres::Object,
    schema: &str,
) -> Result<Option<ReconcilerRead>, String> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[
                &format!("{schema}.reconciler_positions"),
                &format!("{schema}.outbox"),
            ],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    if !exists {
        return Ok(None);
    }
    // The schema name is a checked identifier (see the settings), never client input.
    let row = client
        .query_one(
            &format!(
                "WITH p AS (SELECT coalesce(min(last_seq), 0) AS position FROM {schema}.reconciler_positions)
                 SELECT p.position,
                        (SELECT count(*) FROM {schema}.outbox WHERE NOT published),
                        (SELECT extract(epoch FROM now() - min(written_at))::float8
                           FROM {schema}.outbox
                          WHERE NOT published AND hold_until_seq <= p.position)
                   FROM p"
            ),
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(ReconcilerRead {
        schema: schema.to_owned(),
        position: row.get(0),
        outbox_unpublished: row.get(1),
        outbox_oldest_age_s: row.get::<_, Option<f64>>(2).map(|a| a.max(0.0)),
    }))
}
