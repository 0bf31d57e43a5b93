//! Prometheus metrics. Two sources:
//!
//! - read at scrape time from PostgreSQL and NATS: projector positions, events applied, dead
//!   letters, live runs, the stream's last sequence and the lag;
//! - counted in process by a [`Registry`]: HTTP requests and their latency, open SSE streams (the
//!   API feeds these itself), and projector batches (events by type, batch size and latency) and
//!   reconciler decisions by rule, which the projector and reconciler tasks feed through
//!   [`Registry::record_projector_batch`] and [`Registry::record_reconciler_decision`]. A family
//!   that nothing feeds is left out, not reported as zero.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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

/// A cumulative histogram with fixed buckets.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_SIZES: &[f64] = &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

#[derive(Default)]
struct Fed {
    projector: Option<ProjectorCounts>,
    reconciler: Option<BTreeMap<String, u64>>,
}

struct ProjectorCounts {
    events_by_type: BTreeMap<String, u64>,
    batch_size: Histogram,
    batch_seconds: Histogram,
}

impl Default for ProjectorCounts {
    fn default() -> Self {
        Self {
            events_by_type: BTreeMap::new(),
            batch_size: Histogram::new(BATCH_SIZES),
            batch_seconds: Histogram::new(SECONDS),
        }
    }
}

#[derive(Default)]
struct Http {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

/// In-process counters, shared (`Arc<Registry>`) by the API and the tasks that feed it.
#[derive(Default)]
pub struct Registry {
    fed: Mutex<Fed>,
    http: Mutex<Http>,
    sse_clients: AtomicI64,
}

/// Decrements the open-stream gauge when the stream ends.
pub struct SseGuard<'a>(&'a AtomicI64);

impl Drop for SseGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Registry {
    /// Marks the projector metrics as fed (they are rendered, as zeros until the first batch).
    pub fn attach_projector(&self) {
        let mut fed = self.fed.lock().expect("metrics lock");
        fed.projector.get_or_insert_with(ProjectorCounts::default);
    }

    /// Marks the reconciler metrics as fed.
    pub fn attach_reconciler(&self) {
        let mut fed = self.fed.lock().expect("metrics lock");
        fed.reconciler.get_or_insert_with(BTreeMap::new);
    }

    /// One committed projector batch: events applied by type, messages in the batch, and how
    /// long it took.
    pub fn record_batch<'a>(
        &self,
        by_type: impl IntoIterator<Item = (&'a str, usize)>,
        messages: usize,
        elapsed: Duration,
    ) {
        let mut fed = self.fed.lock().expect("metrics lock");
        let counts = fed.projector.get_or_insert_with(ProjectorCounts::default);
        for (event_type, n) in by_type {
            *counts
                .events_by_type
                .entry(event_type.to_owned())
                .or_default() += n as u64;
        }
        counts.batch_size.observe(messages as f64);
        counts.batch_seconds.observe(elapsed.as_secs_f64());
    }

    /// A projector batch report, as [`projector::Projector::step`] returns it.
    pub fn record_projector_batch(&self, report: &projector::BatchReport, elapsed: Duration) {
        self.record_batch(
            report.by_type.iter().map(|(t, n)| (*t, *n)),
            report.applied + report.skipped + report.dead_lettered,
            elapsed,
        );
    }

    /// The reconciler decided by `rule` (e.g. `process_lost_retry`).
    pub fn record_reconciler_decision(&self, rule: &str) {
        let mut fed = self.fed.lock().expect("metrics lock");
        *fed.reconciler
            .get_or_insert_with(BTreeMap::new)
            .entry(rule.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn record_http(&self, route: &str, status: u16, elapsed: Duration) {
        let mut http = self.http.lock().expect("metrics lock");
        *http.requests.entry((route.to_owned(), status)).or_default() += 1;
        http.latency
            .entry(route.to_owned())
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn sse_connected(&self) -> SseGuard<'_> {
        self.sse_clients.fetch_add(1, Ordering::Relaxed);
        SseGuard(&self.sse_clients)
    }

    /// The Prometheus text exposition.
    pub fn render(
        &self,
        db: Option<&DbSnapshot>,
        consumer: &str,
        stream_last_seq: Option<i64>,
        polled_position: i64,
        min_seq_waiters: usize,
    ) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "runledger_postgres_up",
            "gauge",
            "1 when PostgreSQL answered this scrape.",
        );
        let _ = writeln!(out, "runledger_postgres_up {}", u8::from(db.is_some()));
        if let Some(db) = db {
            family(
                &mut out,
                "runledger_projector_position",
                "gauge",
                "Stream sequence of the last event the projector committed.",
            );
            for (c, seq, _, _) in &db.positions {
                let _ = writeln!(
                    out,
                    "runledger_projector_position{{consumer=\"{}\"}} {seq}",
                    label(c)
                );
            }
            family(
                &mut out,
                "runledger_projector_events_applied_total",
                "counter",
                "Events folded into the read models.",
            );
            for (c, _, applied, _) in &db.positions {
                let _ = writeln!(
                    out,
                    "runledger_projector_events_applied_total{{consumer=\"{}\"}} {applied}",
                    label(c)
                );
            }
            family(
                &mut out,
                "runledger_projector_dead_lettered_total",
                "counter",
                "Events the projector wrote to dead_letters.",
            );
            for (c, _, _, dead) in &db.positions {
                let _ = writeln!(
                    out,
                    "runledger_projector_dead_lettered_total{{consumer=\"{}\"}} {dead}",
                    label(c)
                );
            }
            family(
                &mut out,
                "runledger_dead_letters",
                "gauge",
                "Rows in dead_letters.",
            );
            let _ = writeln!(out, "runledger_dead_letters {}", db.dead_letters);
            family(
                &mut out,
                "runledger_live_runs",
                "gauge",
                "Queued or running runs.",
            );
            let _ = writeln!(out, "runledger_live_runs {}", db.live_runs);
        }
        if let Some(last) = stream_last_seq {
            family(
                &mut out,
                "runledger_stream_last_seq",
                "gauge",
                "Last sequence in the JetStream stream.",
            );
            let _ = writeln!(out, "runledger_stream_last_seq {last}");
            let position = db
                .and_then(|db| db.positions.iter().find(|p| p.0 == consumer).map(|p| p.1))
                .unwrap_or(polled_position);
            family(
                &mut out,
                "runledger_projector_lag",
                "gauge",
                "Events in the stream not yet committed by the projector.",
            );
            let _ = writeln!(
                out,
                "runledger_projector_lag{{consumer=\"{}\"}} {}",
                label(consumer),
                (last - position).max(0)
            );
        }
        {
            let fed = self.fed.lock().expect("metrics lock");
            if let Some(p) = &fed.projector {
                family(
                    &mut out,
                    "runledger_projector_events_total",
                    "counter",
                    "Events projected by this process, by type.",
                );
                for (t, n) in &p.events_by_type {
                    let _ = writeln!(
                        out,
                        "runledger_projector_events_total{{type=\"{}\"}} {n}",
                        label(t)
                    );
                }
                family(
                    &mut out,
                    "runledger_projector_batch_size",
                    "histogram",
                    "Messages per committed batch.",
                );
                p.batch_size
                    .render(&mut out, "runledger_projector_batch_size", "");
                family(
                    &mut out,
                    "runledger_projector_batch_duration_seconds",
                    "histogram",
                    "Time to apply and commit a batch.",
                );
                p.batch_seconds
                    .render(&mut out, "runledger_projector_batch_duration_seconds", "");
            }
            if let Some(r) = &fed.reconciler {
                family(
                    &mut out,
                    "runledger_reconciler_decisions_total",
                    "counter",
                    "Follow-ups the reconciler decided, by rule.",
                );
                for (rule, n) in r {
                    let _ = writeln!(
                        out,
                        "runledger_reconciler_decisions_total{{rule=\"{}\"}} {n}",
                        label(rule)
                    );
                }
            }
        }
        {
            let http = self.http.lock().expect("metrics lock");
            family(
                &mut out,
                "runledger_http_requests_total",
                "counter",
                "Read API requests by route and status.",
            );
            for ((route, status), n) in &http.requests {
                let _ = writeln!(
                    out,
                    "runledger_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    label(route)
                );
            }
            family(
                &mut out,
                "runledger_http_request_duration_seconds",
                "histogram",
                "Read API latency by route (SSE: the whole stream).",
            );
            for (route, h) in &http.latency {
                h.render(
                    &mut out,
                    "runledger_http_request_duration_seconds",
                    &format!("route=\"{}\"", label(route)),
                );
            }
        }
        family(
            &mut out,
            "runledger_min_seq_waiting_requests",
            "gauge",
            "Requests waiting for ?min_seq.",
        );
        let _ = writeln!(out, "runledger_min_seq_waiting_requests {min_seq_waiters}");
        family(
            &mut out,
            "runledger_sse_clients",
            "gauge",
            "Open ledger event streams.",
        );
        let _ = writeln!(
            out,
            "runledger_sse_clients {}",
            self.sse_clients.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfed_families_are_left_out_and_fed_ones_render() {
        let r = Registry::default();
        let text = r.render(None, "c", None, 0, 0);
        assert!(text.contains("runledger_postgres_up 0"));
        assert!(!text.contains("runledger_projector_events_total"));
        assert!(!text.contains("runledger_reconciler_decisions_total"));

        r.record_batch(
            [("run.finished", 3), ("run.started", 2)],
            5,
            Duration::from_millis(3),
        );
        r.record_reconciler_decision("process_lost_retry");
        r.record_http("/v1/x", 200, Duration::from_millis(2));
        let db = DbSnapshot {
            positions: vec![("c".into(), 40, 38, 2)],
            dead_letters: 2,
            live_runs: 1,
        };
        let text = r.render(Some(&db), "c", Some(45), 0, 1);
        assert!(text.contains("runledger_projector_events_total{type=\"run.finished\"} 3"));
        assert!(text.contains("runledger_projector_batch_size_bucket{le=\"5\"} 1"));
        assert!(text.contains("runledger_projector_batch_size_bucket{le=\"1\"} 0"));
        assert!(text.contains("runledger_projector_batch_duration_seconds_count 1"));
        assert!(
            text.contains("runledger_reconciler_decisions_total{rule=\"process_lost_retry\"} 1")
        );
        assert!(text.contains("runledger_projector_lag{consumer=\"c\"} 5"));
        assert!(text.contains("runledger_http_requests_total{route=\"/v1/x\",status=\"200\"} 1"));
        assert!(text.contains(
            "runledger_http_request_duration_seconds_bucket{route=\"/v1/x\",le=\"0.0025\"} 1"
        ));
        assert!(text.contains("runledger_min_seq_waiting_requests 1"));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
