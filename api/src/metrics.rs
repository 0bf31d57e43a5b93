//! Prometheus metrics, encoded by `prometheus-client` in the Prometheus text format. Two sources:
//!
//! - read at scrape time from PostgreSQL and NATS: projector positions, events applied, dead
//!   letters, live runs, the stream's last sequence and the lag (a fresh set of families per
//!   scrape, from the values just read);
//! - counted in process by a [`Registry`]: HTTP requests and their latency, open SSE streams (the
//!   API feeds these itself), and projector batches (events by type, batch size and latency) and
//!   reconciler decisions by rule, which `runledger up` feeds through
//!   [`Registry::record_projector_batch`] and [`Registry::record_reconciler_decisions`]. A family
//!   that nothing feeds is left out, not reported as zero.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `Content-Type` of what [`Registry::render`] returns.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Read from PostgreSQL at scrape time.
#[derive(Clone, Debug, Default)]
pub struct DbSnapshot {
    /// (consumer, last_seq, events_applied, dead_lettered) per projector position row.
    pub positions: Vec<(String, i64, i64, i64)>,
    /// Rows in `dead_letters`.
    pub dead_letters: i64,
    /// Queued or running runs.
    pub live_runs: i64,
}

const SECONDS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_SIZES: [f64; 9] = [1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReaderLabel {
    reader: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

/// What the projector task feeds.
#[derive(Clone)]
struct ProjectorFamilies {
    events_by_type: Family<TypeLabel, Counter>,
    batch_size: Histogram,
    batch_seconds: Histogram,
}

impl Default for ProjectorFamilies {
    fn default() -> Self {
        Self {
            events_by_type: Family::default(),
            batch_size: Histogram::new(BATCH_SIZES),
            batch_seconds: seconds_histogram(),
        }
    }
}

/// In-process metrics, shared (`Arc<Registry>`) by the API and the tasks that feed it.
pub struct Registry {
    /// Set by the first projector batch (or [`Registry::attach_projector`]).
    projector: OnceLock<ProjectorFamilies>,
    /// Set by the first reconciler batch (or [`Registry::attach_reconciler`]).
    reconciler: OnceLock<Family<RuleLabel, Counter>>,
    http_requests: Family<RequestLabels, Counter>,
    http_latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    sse_clients: Gauge,
    /// Failures of this process's tasks (projector, reconciler, outbox...), by task.
    task_failures: Family<TaskLabel, Counter>,
    /// The tasks whose last attempt failed, with the failure.
    failing: Mutex<BTreeMap<String, Failing>>,
}

/// A task failing since `since`, `failures` times in a row, last with `error`.
struct Failing {
    since: Instant,
    failures: u64,
    error: String,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            projector: OnceLock::new(),
            reconciler: OnceLock::new(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(seconds_histogram),
            sse_clients: Gauge::default(),
            task_failures: Family::default(),
            failing: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Decrements the open-stream gauge when the stream ends.
pub struct SseGuard(Gauge);

impl Drop for SseGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Registry {
    /// Marks the projector metrics as fed (they are rendered, as zeros until the first batch).
    pub fn attach_projector(&self) {
        self.projector.get_or_init(ProjectorFamilies::default);
    }

    /// Marks the reconciler metrics as fed.
    pub fn attach_reconciler(&self) {
        self.reconciler.get_or_init(Family::default);
    }

    /// One committed projector batch: events applied by type, messages in the batch, and how
    /// long it took.
    pub fn record_batch<'a>(
        &self,
        by_type: impl IntoIterator<Item = (&'a str, usize)>,
        messages: usize,
        elapsed: Duration,
    ) {
        let families = self.projector.get_or_init(ProjectorFamilies::default);
        for (event_type, n) in by_type {
            families
                .events_by_type
                .get_or_create(&TypeLabel {
                    r#type: event_type.to_owned(),
                })
                .inc_by(n as u64);
        }
        families.batch_size.observe(messages as f64);
        families.batch_seconds.observe(elapsed.as_secs_f64());
    }

    /// A projector batch report, as [`projector::Projector::step`] returns it.
    pub fn record_projector_batch(&self, report: &projector::BatchReport, elapsed: Duration) {
        self.record_batch(
            report.by_type.iter().map(|(t, n)| (*t, *n)),
            report.applied + report.skipped + report.dead_lettered,
            elapsed,
        );
    }

    /// The reconciler decided `n` follow-ups by `rule` (e.g. `process_lost_retry`).
    pub fn record_reconciler_decisions(&self, rule: &str, n: usize) {
        self.reconciler
            .get_or_init(Family::default)
            .get_or_create(&RuleLabel {
                rule: rule.to_owned(),
            })
            .inc_by(n as u64);
    }

    /// The outcome of one attempt of a task of this process: `None` for a success (which clears
    /// the task's failure), or the error it failed with (counted, and reported by `/healthz`
    /// until the task succeeds again).
    pub fn record_task(&self, task: &str, failure: Option<&str>) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match failure {
            None => {
                failing.remove(task);
            }
            Some(error) => {
                self.task_failures
                    .get_or_create(&TaskLabel {
                        task: task.to_owned(),
                    })
                    .inc();
                let entry = failing.entry(task.to_owned()).or_insert_with(|| Failing {
                    since: Instant::now(),
                    failures: 0,
                    error: String::new(),
                });
                entry.failures += 1;
                entry.error = error.to_owned();
            }
        }
    }

    /// The tasks whose last attempt failed.
    pub fn failing_tasks(&self) -> Vec<crate::model::TaskFailure> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing
            .iter()
            .map(|(task, f)| crate::model::TaskFailure {
                task: task.clone(),
                error: f.error.clone(),
                failing_for_s: f.since.elapsed().as_secs_f64(),
                failures: f.failures,
            })
            .collect()
    }

    pub(crate) fn record_http(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn sse_connected(&self) -> SseGuard {
        self.sse_clients.inc();
        SseGuard(self.sse_clients.clone())
    }

    /// The Prometheus text exposition ([`CONTENT_TYPE`]).
    pub fn render(
        &self,
        db: Option<&DbSnapshot>,
        consumer: &str,
        stream_last_seq: Option<i64>,
        polled_position: i64,
        min_seq_waiters: usize,
        health: Option<&crate::model::Health>,
    ) -> String {
        // Help texts without their final period: the encoder adds it.
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register(
            "runledger_postgres_up",
            "1 when PostgreSQL answered this scrape",
            gauge(i64::from(db.is_some())),
        );
        if let Some(db) = db {
            let positions = Family::<ConsumerLabel, Gauge>::default();
            let applied = Family::<ConsumerLabel, Counter>::default();
            let dead = Family::<ConsumerLabel, Counter>::default();
            for (c, seq, events_applied, dead_lettered) in &db.positions {
                let label = ConsumerLabel {
                    consumer: c.clone(),
                };
                positions.get_or_create(&label).set(*seq);
                applied.get_or_create(&label).inc_by(count(*events_applied));
                dead.get_or_create(&label).inc_by(count(*dead_lettered));
            }
            registry.register(
                "runledger_projector_position",
                "Stream sequence of the last event the projector committed",
                positions,
            );
            registry.register(
                "runledger_projector_events_applied",
                "Events folded into the read models",
                applied,
            );
            registry.register(
                "runledger_projector_dead_lettered",
                "Events the projector wrote to dead_letters",
                dead,
            );
            registry.register(
                "runledger_dead_letters",
                "Rows in dead_letters",
                gauge(db.dead_letters),
            );
            registry.register(
                "runledger_live_runs",
                "Queued or running runs",
                gauge(db.live_runs),
            );
        }
        if let Some(last) = stream_last_seq {
            registry.register(
                "runledger_stream_last_seq",
                "Last sequence in the JetStream stream",
                gauge(last),
            );
            let position = db
                .and_then(|db| db.positions.iter().find(|p| p.0 == consumer).map(|p| p.1))
                .unwrap_or(polled_position);
            let lag = Family::<ConsumerLabel, Gauge>::default();
            lag.get_or_create(&ConsumerLabel {
                consumer: consumer.to_owned(),
            })
            .set((last - position).max(0));
            registry.register(
                "runledger_projector_lag",
                "Events in the stream not yet committed by the projector",
                lag,
            );
        }
        if let Some(p) = self.projector.get() {
            registry.register(
                "runledger_projector_events",
                "Events projected by this process, by type",
                p.events_by_type.clone(),
            );
            registry.register(
                "runledger_projector_batch_size",
                "Messages per committed batch",
                p.batch_size.clone(),
            );
            registry.register(
                "runledger_projector_batch_duration_seconds",
                "Time to apply and commit a batch",
                p.batch_seconds.clone(),
            );
        }
        if let Some(decisions) = self.reconciler.get() {
            registry.register(
                "runledger_reconciler_decisions",
                "Follow-ups the reconciler decided, by rule",
                decisions.clone(),
            );
        }
        registry.register(
            "runledger_http_requests",
            "Read API requests by route and status",
            self.http_requests.clone(),
        );
        registry.register(
            "runledger_http_request_duration_seconds",
            "Read API latency by route (SSE: the whole stream)",
            self.http_latency.clone(),
        );
        registry.register(
            "runledger_min_seq_waiting_requests",
            "Requests waiting for ?min_seq",
            gauge(min_seq_waiters as i64),
        );
        registry.register(
            "runledger_sse_clients",
            "Open ledger event streams",
            self.sse_clients.clone(),
        );
        registry.register(
            "runledger_task_failures",
            "Failed attempts of this process's tasks (each is retried), by task",
            self.task_failures.clone(),
        );
        if let Some(health) = health {
            register_health(&mut registry, health);
        }
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// What `/healthz` found, as gauges: stalls, waiting ages, the outbox and failing tasks.
fn register_health(
    registry: &mut prometheus_client::registry::Registry,
    health: &crate::model::Health,
) {
    let stalled = Family::<ReaderLabel, Gauge>::default();
    let waiting = Family::<ReaderLabel, Gauge<f64, AtomicU64>>::default();
    let readers = [
        health
            .projector
            .as_ref()
            .map(|p| ("projector", p.stalled, p.oldest_unread_age_s)),
        health
            .reconciler
            .as_ref()
            .map(|r| ("reconciler", r.stalled, r.oldest_unread_age_s)),
    ];
    for (reader, is_stalled, age) in readers.into_iter().flatten() {
        let label = ReaderLabel {
            reader: reader.to_owned(),
        };
        stalled.get_or_create(&label).set(i64::from(is_stalled));
        waiting.get_or_create(&label).set(age.unwrap_or(0.0));
    }
    registry.register(
        "runledger_stalled",
        "1 when the reader's oldest unread event, or the reconciler's oldest publishable follow-up, waited longer than the stall threshold",
        stalled,
    );
    registry.register(
        "runledger_oldest_unread_age_seconds",
        "How long the reader's oldest unread event has been in the stream (0 without lag)",
        waiting,
    );
    if let Some(r) = &health.reconciler {
        registry.register(
            "runledger_outbox_unpublished",
            "Follow-ups decided and not yet published",
            gauge(r.outbox_unpublished),
        );
        let age = Gauge::<f64, AtomicU64>::default();
        age.set(r.outbox_oldest_age_s.unwrap_or(0.0));
        registry.register(
            "runledger_outbox_oldest_age_seconds",
            "How long the oldest publishable follow-up has waited (0 when none waits)",
            age,
        );
    }
    let failing = Family::<TaskLabel, Gauge>::default();
    for task in &health.failing {
        failing
            .get_or_create(&TaskLabel {
                task: task.task.clone(),
            })
            .set(1);
    }
    registry.register(
        "runledger_task_failing",
        "1 while a task of this process is retrying after a failure",
        failing,
    );
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

/// A counter read from PostgreSQL (never negative there).
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfed_families_are_left_out_and_fed_ones_render() {
        let r = Registry::default();
        let text = r.render(None, "c", None, 0, 0, None);
        assert!(text.contains("runledger_postgres_up 0"));
        assert!(!text.contains("runledger_projector_events_total"));
        assert!(!text.contains("runledger_reconciler_decisions_total"));

        r.record_batch(
            [("run.finished", 3), ("run.started", 2)],
            5,
            Duration::from_millis(3),
        );
        r.record_reconciler_decisions("process_lost_retry", 1);
        r.record_http("/v1/x", 200, Duration::from_millis(2));
        let _stream = r.sse_connected();
        let db = DbSnapshot {
            positions: vec![("a\"b\\c\nd".into(), 40, 38, 2)],
            dead_letters: 2,
            live_runs: 1,
        };
        let text = r.render(Some(&db), "a\"b\\c\nd", Some(45), 0, 1, None);
        for expected in [
            "# HELP runledger_projector_events_total Events projected by this process, by type.\n\
             # TYPE runledger_projector_events_total counter\n",
            "runledger_projector_events_total{type=\"run.finished\"} 3\n",
            "# TYPE runledger_projector_batch_size histogram\n",
            "runledger_projector_batch_size_bucket{le=\"5\"} 1\n",
            "runledger_projector_batch_size_bucket{le=\"1\"} 0\n",
            "runledger_projector_batch_duration_seconds_count 1\n",
            "runledger_reconciler_decisions_total{rule=\"process_lost_retry\"} 1\n",
            "runledger_projector_lag{consumer=\"a\\\"b\\\\c\\nd\"} 5\n",
            "runledger_projector_events_applied_total{consumer=\"a\\\"b\\\\c\\nd\"} 38\n",
            "runledger_http_requests_total{route=\"/v1/x\",status=\"200\"} 1\n",
            "runledger_http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.0025\"} 1\n",
            "# TYPE runledger_min_seq_waiting_requests gauge\nrunledger_min_seq_waiting_requests 1\n",
            "runledger_sse_clients 1\n",
        ] {
            assert!(text.contains(expected), "{expected}\n---\n{text}");
        }
        drop(_stream);
        assert!(r
            .render(None, "c", None, 0, 0, None)
            .contains("runledger_sse_clients 0\n"));
    }
}
