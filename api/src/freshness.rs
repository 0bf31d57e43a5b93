//! How fresh a response is, and read-your-writes.
//!
//! Every response reflects one projector position (`projector_positions.last_seq`): the data and
//! the position are read in one snapshot (one statement for the hot ledger read, a read-only
//! `REPEATABLE READ` transaction where a route needs several), so the number is exact, and it is
//! returned in the `X-Runledger-Position` header and the body's `position`. A producer that just
//! published event N passes `?min_seq=N`: the request waits (up to the configured wait) until the
//! projector has committed N, then reads; otherwise it gets 503 `not_reached`.
//!
//! With P partitions the projector keeps one position row per partition, each the sequence of
//! its partition's last folded event; the position a response reports is then the stream
//! sequence up to which every partition has folded everything
//! ([`projector::feed::caught_up`], which asks the stream for each partition's next event).
//! The poller computes it; a snapshot reports it when the snapshot holds at least the rows it
//! was computed from, and otherwise the lowest partition position (everything up to it is
//! folded too): never more than the snapshot holds.
//!
//! One shared poller per server ([`Positions`]) reads the position every `poll_interval`, faster
//! while someone waits for `min_seq`, and at once when the projector's commit notification wakes
//! it ([`crate::listen`]; then it polls only every `fallback_poll`); SSE streams follow it
//! instead of polling on their own.

use crate::error::ApiError;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use deadpool_postgres::{Object, Pool, Transaction};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_postgres::IsolationLevel;

/// The response header carrying the projector position.
pub const POSITION_HEADER: HeaderName = HeaderName::from_static("x-runledger-position");

/// Poll interval while a `min_seq` request waits.
const HURRIED: Duration = Duration::from_millis(10);

/// The position rows `$1` names, in its order (0 where none is stored yet).
pub(crate) const POSITIONS_SQL: &str = "SELECT ARRAY(
    SELECT COALESCE((SELECT last_seq FROM projector_positions WHERE consumer = k), 0)
    FROM unnest($1::text[]) WITH ORDINALITY AS t(k, i) ORDER BY i)";

/// Which stream the projector reads, and which position rows it keeps there.
#[derive(Clone)]
pub struct Reader {
    /// Every partition's position row, in partition order (one without partitions).
    pub keys: Vec<String>,
    pub stream: String,
    pub subjects: events::Subjects,
    /// For the partitions' next events (without it, the lowest partition position is reported).
    pub nats: Option<async_nats::Client>,
}

impl Reader {
    /// The position rows of `consumer` on a stream with `subjects`.
    pub fn keys(consumer: &str, subjects: &events::Subjects) -> Vec<String> {
        (0..subjects.partitions())
            .map(|p| projector::membership::position_key(consumer, subjects, p))
            .collect()
    }

    /// The stream position `positions` (one per key) have all caught up with.
    async fn caught_up(&self, positions: &[i64]) -> i64 {
        caught_up(self.nats.as_ref(), &self.stream, &self.subjects, positions).await
    }
}

/// The stream position a reader's partition positions (in partition order) have all caught up
/// with ([`projector::feed::caught_up`]): the position itself without partitions, and the lowest
/// partition position (everything up to it is read too) when NATS cannot say.
pub(crate) async fn caught_up(
    nats: Option<&async_nats::Client>,
    stream: &str,
    subjects: &events::Subjects,
    positions: &[i64],
) -> i64 {
    let lowest = positions.iter().copied().min().unwrap_or(0);
    let Some(client) = nats.filter(|_| subjects.is_partitioned()) else {
        return lowest;
    };
    let js = async_nats::jetstream::new(client.clone());
    let asked = projector::feed::caught_up(&js, stream, subjects, positions);
    match tokio::time::timeout(Duration::from_secs(2), asked).await {
        Ok(Ok(caught_up)) => caught_up.max(lowest),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "partitions' next events unknown: the lowest position");
            lowest
        }
        Err(_) => lowest,
    }
}

/// The latest projector position, shared by all requests and SSE streams.
pub struct Positions {
    tx: watch::Sender<i64>,
    /// The partition positions the latest position was computed from.
    basis: std::sync::Mutex<Vec<i64>>,
    hurry: Notify,
    waiters: AtomicUsize,
    /// The listener hears the projector's commits: polling is only a fallback.
    listening: AtomicBool,
    interval: Duration,
}

impl Positions {
    /// Starts the poller; it stops when `shutdown` turns true. It polls every `interval`, or
    /// every `fallback` while [`Positions::set_listening`] says it is woken on commits.
    pub fn spawn(
        pool: Pool,
        reader: Reader,
        interval: Duration,
        fallback: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let positions = Arc::new(Self {
            tx: watch::channel(0).0,
            basis: std::sync::Mutex::new(Vec::new()),
            hurry: Notify::new(),
            waiters: AtomicUsize::new(0),
            listening: AtomicBool::new(false),
            interval,
        });
        let shared = positions.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match read_positions(&pool, &reader.keys).await {
                    Ok(positions) => {
                        let position = reader.caught_up(&positions).await;
                        *shared.basis.lock().expect("basis lock") = positions;
                        if failing {
                            tracing::info!("read API reads the projector position again");
                            failing = false;
                        }
                        shared.tx.send_if_modified(|current| {
                            let changed = *current != position;
                            *current = position;
                            changed
                        });
                    }
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "read API cannot read the projector position");
                        failing = true;
                    }
                    Err(_) => {}
                }
                let pause = if shared.waiters.load(Ordering::Relaxed) > 0 {
                    HURRIED
                } else if shared.listening.load(Ordering::Relaxed) {
                    fallback
                } else {
                    interval
                };
                if *shutdown.borrow() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shared.hurry.notified() => {}
                    // A dropped sender also ends the poller.
                    changed = shutdown.changed() => if changed.is_err() { break },
                }
            }
        });
        positions
    }

    /// Reads the position now (the projector said it moved, or its listener reconnected).
    pub fn wake(&self) {
        self.hurry.notify_one();
    }

    /// Whether commits wake the poller; when they stop doing so, it polls at its interval again
    /// from now on.
    pub fn set_listening(&self, listening: bool) {
        let was = self.listening.swap(listening, Ordering::Relaxed);
        if was && !listening {
            self.hurry.notify_one();
        }
    }

    /// Whether commits wake the poller now.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// The poll interval without notifications.
    pub fn poll_interval(&self) -> Duration {
        self.interval
    }

    /// The position of a snapshot holding these partition positions: the one last read if it
    /// was computed from positions the snapshot holds, else the lowest (one partition: its own).
    pub fn in_snapshot(&self, positions: &[i64]) -> i64 {
        let lowest = positions.iter().copied().min().unwrap_or(0);
        if positions.len() <= 1 {
            return lowest;
        }
        let basis = self.basis.lock().expect("basis lock");
        let held = basis.len() == positions.len()
            && basis.iter().zip(positions).all(|(was, now)| was <= now);
        if held {
            self.current().max(lowest)
        } else {
            lowest
        }
    }

    /// The position last read.
    pub fn current(&self) -> i64 {
        *self.tx.borrow()
    }

    /// Requests waiting for `min_seq` now.
    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Changes of the position.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.tx.subscribe()
    }

    /// Waits until the projector has reached `min_seq` (if given), up to `wait`.
    pub async fn reach(&self, min_seq: Option<i64>, wait: Duration) -> Result<(), ApiError> {
        let Some(min_seq) = min_seq else {
            return Ok(());
        };
        let mut rx = self.subscribe();
        if *rx.borrow_and_update() >= min_seq {
            return Ok(());
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _leave = Leave(&self.waiters);
        self.hurry.notify_one();
        let started = Instant::now();
        let deadline = started + wait;
        loop {
            if *rx.borrow_and_update() >= min_seq {
                return Ok(());
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Err(ApiError::NotReached {
            position: self.current(),
            min_seq,
            waited_ms: started.elapsed().as_millis(),
        })
    }
}

async fn read_positions(pool: &Pool, keys: &[String]) -> Result<Vec<i64>, ApiError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(POSITIONS_SQL).await?;
    Ok(client.query_one(&statement, &[&keys]).await?.get(0))
}

/// Starts a read-only `REPEATABLE READ` transaction: everything read in it, and the position,
/// come from one snapshot.
pub async fn snapshot(client: &mut Object) -> Result<Transaction<'_>, ApiError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// The projector position in this snapshot.
pub(crate) async fn position(tx: &Transaction<'_>, app: &crate::app::App) -> Result<i64, ApiError> {
    let statement = tx.prepare_cached(POSITIONS_SQL).await?;
    let keys = Reader::keys(&app.settings.consumer, &app.settings.subjects);
    let positions: Vec<i64> = tx.query_one(&statement, &[&keys]).await?.get(0);
    Ok(app.positions.in_snapshot(&positions))
}

/// A JSON response that says which projector position it reflects.
pub fn fresh<T: Serialize>(position: i64, body: T) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(POSITION_HEADER, HeaderValue::from(position));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(current: i64, basis: Vec<i64>) -> Positions {
        Positions {
            tx: watch::channel(current).0,
            basis: std::sync::Mutex::new(basis),
            hurry: Notify::new(),
            waiters: AtomicUsize::new(0),
            listening: AtomicBool::new(false),
            interval: Duration::from_millis(1),
        }
    }

    #[test]
    fn a_snapshot_reports_the_caught_up_position_only_when_it_holds_what_it_was_computed_from() {
        // Partitions at 40, 12 and 30; every one caught up with 40 (the others' next events
        // come after it).
        let polled = positions(40, vec![40, 12, 30]);
        assert_eq!(polled.in_snapshot(&[40, 12, 30]), 40);
        assert_eq!(polled.in_snapshot(&[44, 12, 31]), 40, "a newer snapshot");
        assert_eq!(
            polled.in_snapshot(&[35, 12, 30]),
            12,
            "an older snapshot: only the lowest partition position is sure"
        );
        assert_eq!(polled.in_snapshot(&[40, 12]), 12, "another partition count");
        // One partition: the snapshot's own position, whatever was polled.
        assert_eq!(positions(7, vec![7]).in_snapshot(&[9]), 9);
    }
}
