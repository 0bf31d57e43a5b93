//! End-to-end harness: a fresh database and a unique stream per test, the projector (schema
//! `public`) and the reconciler (schema `runledger_reconciler`) driven step by step, and the
//! outbox drained explicitly. No sleeps: `settle` steps until the stream stops growing.

use events::{Event, EventType, Subjects};
use producers::{ensure_stream, Publisher, PublisherSettings, StreamSettings};
use projector::feed::history::HistoryReader;
use projector::{Projector, ProjectorSettings};
use reconciler::engine::{Policy, SOURCE};
use reconciler::{Outcome, Reconciler, ReconcilerSettings};
use serde_json::Value;
use std::time::Duration;
use testsupport::{Deadline, TestDb, TestStream};
use uuid::Uuid;

pub struct Harness {
    /// Kept alive for the test; the database is dropped with it.
    pub _db: TestDb,
    pub ts: TestStream,
    pub pool: deadpool_postgres::Pool,
    pub publisher: Publisher,
    pub projector: Projector,
    pub reconciler: Reconciler,
    pub subjects: Subjects,
}

impl Harness {
    pub async fn new(policy: Policy) -> Self {
        let db = TestDb::new()
            .await
            .expect("PostgreSQL is needed (README: test command starts it)");
        let ts = TestStream::new()
            .await
            .expect("NATS is needed (README: test command starts it)");
        let subjects = Subjects::new(&ts.prefix).unwrap();
        let js = ts.jetstream();
        ensure_stream(
            &js,
            &StreamSettings {
                name: ts.stream.clone(),
                subjects: subjects.clone(),
                duplicate_window: Duration::from_secs(120),
            },
        )
        .await
        .unwrap();
        let pool = db.pool();
        projector::store::migrate::migrate(&mut pool.get().await.unwrap(), "public")
            .await
            .unwrap();
        let publisher = Publisher::new(js.clone(), subjects.clone(), PublisherSettings::default());
        let projector = Projector::start(
            pool.clone(),
            js.clone(),
            ProjectorSettings::new(&ts.stream, subjects.clone()),
        )
        .await
        .unwrap();
        let mut settings = ReconcilerSettings::new(&ts.stream, subjects.clone());
        settings.policy = policy;
        settings.tick_interval = None;
        let reconciler = Reconciler::start(pool.clone(), js, settings).await.unwrap();
        Self {
            _db: db,
            ts,
            pool,
            publisher,
            projector,
            reconciler,
            subjects,
        }
    }

    pub async fn publish(&self, events: &[Event]) {
        for r in self.publisher.publish_all(events).await {
            r.expect("published");
        }
    }

    pub async fn last_seq(&self) -> i64 {
        projector::live::stream_last_seq(&self.ts.jetstream(), &self.ts.stream)
            .await
            .unwrap() as i64
    }

    /// Steps the reconciler to the end of the stream and drains its outbox until nothing new is
    /// published, then brings the projector to the end of the stream.
    pub async fn settle(&mut self) {
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            let last = self.last_seq().await;
            while self.reconciler.position().await.unwrap() < last {
                assert!(!deadline.passed(), "the reconciler did not reach {last}");
                let _ = self
                    .reconciler
                    .step(Duration::from_millis(200))
                    .await
                    .unwrap();
            }
            let published = self.reconciler.outbox().drain().await.unwrap();
            if published == 0 && self.last_seq().await == last {
                break;
            }
        }
        assert_eq!(
            self.reconciler
                .step(Duration::from_millis(20))
                .await
                .unwrap(),
            Outcome::Idle
        );
        let last = self.last_seq().await;
        while self.projector.position().await.unwrap() < last {
            assert!(!deadline.passed(), "the projector did not reach {last}");
            let _ = self
                .projector
                .step(Duration::from_millis(200))
                .await
                .unwrap();
        }
    }

    /// Every event in the stream, in order.
    pub async fn history(&self) -> Vec<Event> {
        let last = self.last_seq().await as u64;
        let mut reader = HistoryReader::open(
            &self.ts.jetstream(),
            None,
            &self.ts.stream,
            &self.subjects,
            1,
        )
        .await
        .unwrap();
        let mut events = Vec::new();
        let mut seen = 0;
        let deadline = Deadline::after(Duration::from_secs(10));
        while seen < last {
            assert!(!deadline.passed(), "history ended before {last}");
            // a short idle: the batch ends as soon as the stream has nothing more to give
            let batch = reader
                .next_batch(1000, Duration::from_millis(100))
                .await
                .unwrap();
            for m in batch {
                seen = m.seq;
                if let Ok(e) = Event::from_slice(&m.payload) {
                    events.push(e);
                }
            }
        }
        events
    }

    /// The reconciler's follow-ups in the stream (ticks excluded), in stream order.
    pub async fn follow_ups(&self) -> Vec<Event> {
        self.history()
            .await
            .into_iter()
            .filter(|e| e.source == SOURCE && e.event_type() != EventType::ReconcilerTicked)
            .collect()
    }

    /// One row of the projector's read models as JSON.
    pub async fn row(&self, table: &str, key: &str, id: Uuid) -> Value {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(
                &format!("SELECT to_jsonb(t) FROM public.{table} t WHERE {key} = $1"),
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The comments on an issue, oldest first.
    pub async fn comments(&self, issue: Uuid) -> Vec<Value> {
        self.json_rows(
            "SELECT to_jsonb(c) FROM issue_comments c WHERE issue_id = $1 ORDER BY seq",
            issue,
        )
        .await
    }

    /// Rows of a query returning one JSON column.
    pub async fn json_rows(&self, sql: &str, id: Uuid) -> Vec<Value> {
        self.pool
            .get()
            .await
            .unwrap()
            .query(sql, &[&id])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}
