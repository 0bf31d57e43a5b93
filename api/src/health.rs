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

/// Probes everything once; the status, the HTTP code that goes with it, and the stream's last
/// sequence it read (for `/metrics`, which would otherwise ask NATS again).
pub(crate) async fn check(app: &Shared) -> (Health, StatusCode, Option<i64>) {
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
    // With partitions a reader's position is the stream sequence every partition has caught up
    // with, its lag the stream's events after it (events of other partitions among them may be
    // read already: `runledger status` counts each partition's own), and the age the oldest of
    // the partitions'.
    let lag = |position: i64| last.map(|l| (l - position).max(0));
    let settings = &app.settings;
    // NATS that did not answer the probe is not asked again (each partition's next event would
    // wait out its own timeout: with partitions the reply came after the clients gave up).
    let nats_answered = app.nats.as_ref().filter(|_| last.is_some());
    let caught_up = |positions: Vec<i64>| async move {
        crate::freshness::caught_up(
            nats_answered,
            &settings.stream,
            &settings.subjects,
            &positions,
        )
        .await
    };
    let (projector, reconciler) = match &db {
        Err(_) => (None, None),
        Ok(read) => {
            let age = oldest_unread(app, last, &read.projector.positions).await;
            let position = caught_up(read.projector.positions.clone()).await;
            let projector = Some(ProjectorHealth {
                consumer: app.settings.consumer.clone(),
                position,
                events_applied: read.projector.applied,
                dead_letters: read.projector.dead_lettered,
                stream_last_seq: last,
                lag: lag(position),
                oldest_unread_age_s: age,
                stalled: age.is_some_and(|a| a > stall_after),
            });
            let reconciler = match &read.reconciler {
                None => None,
                Some(r) => {
                    let age = oldest_unread(app, last, &r.positions).await;
                    let outbox_stuck = r.outbox_oldest_age_s.is_some_and(|a| a > stall_after);
                    let position = caught_up(r.positions.clone()).await;
                    Some(ReconcilerHealth {
                        schema: r.schema.clone(),
                        position,
                        lag: lag(position),
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
    (health, code, last)
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

/// How long the oldest event after its partition's position has been in the stream, in
/// seconds, over every partition; `None` when every partition has read everything (or NATS
/// cannot say).
async fn oldest_unread(app: &Shared, last: Option<i64>, positions: &[i64]) -> Option<f64> {
    let last = last?;
    let client = app.nats.as_ref()?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = tokio::time::timeout(PROBE_TIMEOUT, js.get_stream(&app.settings.stream))
        .await
        .ok()?
        .ok()?;
    let subjects = &app.settings.subjects;
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let mut oldest: Option<f64> = None;
    for (partition, &position) in positions.iter().enumerate() {
        if last <= position {
            continue;
        }
        // The first message after the position: of the stream, or of the partition's subjects.
        let mut asked = stream.raw_message_builder().sequence((position + 1) as u64);
        if subjects.is_partitioned() {
            asked = asked.next_by_subject(subjects.partition_filter(partition as u32));
        }
        let Ok(Ok(message)) = tokio::time::timeout(PROBE_TIMEOUT, asked.send()).await else {
            continue;
        };
        let age = ((now_ns - message.time.unix_timestamp_nanos()).max(0) as f64) / 1e9;
        oldest = Some(oldest.map_or(age, |o: f64| o.max(age)));
    }
    oldest
}

/// What PostgreSQL says about the readers.
struct Positions {
    projector: ReaderRows,
    reconciler: Option<ReconcilerRead>,
}

/// A reader's positions, one per partition in partition order (0 where none is stored yet).
struct ReaderRows {
    positions: Vec<i64>,
    applied: i64,
    dead_lettered: i64,
}

struct ReconcilerRead {
    schema: String,
    positions: Vec<i64>,
    outbox_unpublished: i64,
    outbox_oldest_age_s: Option<f64>,
}

async fn read_positions(app: &Shared) -> Result<Positions, String> {
    let probe = async {
        let client = app.pool.get().await.map_err(|e| e.to_string())?;
        let subjects = &app.settings.subjects;
        let keys: Vec<String> = (0..subjects.partitions())
            .map(|p| projector::membership::position_key(&app.settings.consumer, subjects, p))
            .collect();
        let rows = client
            .query(
                "SELECT consumer, last_seq, events_applied, dead_lettered FROM projector_positions
                  WHERE consumer = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(|e| e.to_string())?;
        let position_of = |key: &String| {
            rows.iter()
                .find(|r| r.get::<_, String>(0) == *key)
                .map_or(0, |r| r.get::<_, i64>(1))
        };
        let projector = ReaderRows {
            positions: keys.iter().map(position_of).collect(),
            applied: rows.iter().map(|r| r.get::<_, i64>(2)).sum(),
            dead_lettered: rows.iter().map(|r| r.get::<_, i64>(3)).sum(),
        };
        let reconciler = read_reconciler(&client, &app.settings.reconciler_schemas).await?;
        Ok(Positions {
            projector,
            reconciler,
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err("PostgreSQL did not answer within 2 s".into()))
}

/// The reconciler's positions (one schema per partition) and its outboxes, when its schemas are
/// in this database. A follow-up held until the reconciler has read further (`hold_until_seq`)
/// is waiting for the reconciler, not for the drainer, so only publishable rows count toward the
/// outbox's age.
async fn read_reconciler(
    client: &deadpool_postgres::Object,
    schemas: &[String],
) -> Result<Option<ReconcilerRead>, String> {
    let Some(first) = schemas.first() else {
        return Ok(None);
    };
    let mut read = ReconcilerRead {
        schema: first.clone(),
        positions: Vec::with_capacity(schemas.len()),
        outbox_unpublished: 0,
        outbox_oldest_age_s: None,
    };
    // No reconciler has started when none of the schemas exists (one or one per partition).
    let mut any = false;
    for schema in schemas {
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
            // A partition whose reconciler has not started yet is at 0.
            read.positions.push(0);
            continue;
        }
        any = true;
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
        read.positions.push(row.get(0));
        read.outbox_unpublished += row.get::<_, i64>(1);
        if let Some(age) = row.get::<_, Option<f64>>(2) {
            let age = age.max(0.0);
            read.outbox_oldest_age_s = Some(read.outbox_oldest_age_s.map_or(age, |o| o.max(age)));
        }
    }
    Ok(any.then_some(read))
}
