//! The end-to-end kit every crate's tests start from: a fresh migrated database, a unique stream
//! (on the shared server or a private one) with its subjects and a publisher; the projector and
//! the reconciler built on them and driven step by step; and the stream's history read back.
//! No sleeps: the steps wait for what they need, with deadlines.

use crate::{Deadline, TestDb, TestStream};
use events::{Event, Subjects};
use producers::{Publisher, PublisherSettings};
use projector::feed::{Feed, FeedSpec, Incoming, Parsed, Reader};
use projector::{Outcome, Projector, ProjectorSettings};
use reconciler::engine::{Policy, SOURCE};
use reconciler::{Reconciler, ReconcilerSettings};
use std::time::Duration;

/// A migrated database, a stream and a publisher, all gone when the test ends.
pub struct Kit {
    pub db: TestDb,
    pub ts: TestStream,
    pub subjects: Subjects,
    pub pool: deadpool_postgres::Pool,
    pub publisher: Publisher,
}

impl Kit {
    /// On the shared NATS server.
    pub async fn new() -> Self {
        let ts = TestStream::new()
            .await
            .expect("NATS is needed (scripts/services.sh starts it)");
        Self::with_stream(ts).await
    }

    /// On the NATS server at `url` (a private one).
    pub async fn on(url: &str) -> Self {
        let ts = TestStream::on(url)
            .await
            .expect("the NATS server of the test answers");
        Self::with_stream(ts).await
    }

    async fn with_stream(ts: TestStream) -> Self {
        let db = TestDb::new()
            .await
            .expect("PostgreSQL is needed (scripts/services.sh starts it)");
        let subjects = ts.create().await;
        let js = ts.jetstream();
        let pool = db.pool();
        projector::store::migrate::migrate(&mut pool.get().await.expect("a connection"), "public")
            .await
            .expect("the read models migrate");
        let publisher = Publisher::new(js, subjects.clone(), PublisherSettings::default());
        Self {
            db,
            ts,
            subjects,
            pool,
            publisher,
        }
    }

    /// The JetStream context of the test's connection.
    pub fn js(&self) -> async_nats::jetstream::Context {
        self.ts.jetstream()
    }

    /// Publishes `events` in order; the stream sequence of the last one.
    pub async fn publish(&self, events: &[Event]) -> u64 {
        let mut last = 0;
        for r in self.publisher.publish_all(events).await {
            last = r.expect("published").sequence;
        }
        last
    }

    /// Publishes raw bytes on a subject (bad input); its stream sequence.
    pub async fn publish_raw(&self, subject: &str, payload: &[u8]) -> u64 {
        self.js()
            .publish(subject.to_owned(), payload.to_vec().into())
            .await
            .expect("published")
            .await
            .expect("stored")
            .sequence
    }

    /// The stream's last sequence.
    pub async fn last_seq(&self) -> u64 {
        projector::feed::stream_last_seq(&self.js(), &self.ts.stream)
            .await
            .expect("stream info")
    }

    /// The projector's settings for this stream.
    pub fn projector_settings(&self) -> ProjectorSettings {
        ProjectorSettings::new(&self.ts.stream, self.subjects.clone())
    }

    /// A projector of the `public` schema, started.
    pub async fn projector(&self) -> Projector {
        Projector::start(self.pool.clone(), self.js(), self.projector_settings())
            .await
            .expect("the projector starts")
    }

    /// The reconciler's settings for this stream, with `policy` and no clock of its own (tests
    /// publish their ticks).
    pub fn reconciler_settings(&self, policy: Policy) -> ReconcilerSettings {
        let mut settings = ReconcilerSettings::new(&self.ts.stream, self.subjects.clone());
        settings.policy = policy;
        settings.tick_interval = None;
        settings
    }

    /// A reconciler with `policy`, started.
    pub async fn reconciler(&self, policy: Policy) -> Reconciler {
        Reconciler::start(
            self.pool.clone(),
            self.js(),
            self.reconciler_settings(policy),
        )
        .await
        .expect("the reconciler starts")
    }

    /// Steps `projector` until its position reaches the stream's last sequence, and checks that
    /// nothing is left after it.
    pub async fn drain(&self, projector: &mut Projector) {
        let last = self.last_seq().await;
        step_to(projector, last).await;
    }

    /// Every message of the stream, in order, as stored.
    pub async fn messages(&self) -> Vec<(Incoming, Parsed)> {
        let last = self.last_seq().await;
        let spec = FeedSpec {
            stream: self.ts.stream.clone(),
            subjects: self.subjects.clone(),
            reader: Reader::History,
            batch_size: 1000,
            linger: Duration::from_millis(5),
        };
        let mut feed = Feed::open(&self.js(), spec, 0).await.expect("a feed opens");
        let mut messages = Vec::new();
        let mut seen = 0;
        let deadline = Deadline::after(Duration::from_secs(30));
        while seen < last {
            assert!(!deadline.passed(), "history ended at {seen} before {last}");
            let Some(batch) = feed
                .next(Duration::from_millis(200))
                .await
                .expect("history reads")
            else {
                continue;
            };
            for (message, parsed) in batch.iter() {
                seen = message.seq;
                messages.push((message.clone(), parsed.clone()));
            }
        }
        messages
    }

    /// Every event of the stream, in order (messages that are not events left out).
    pub async fn history(&self) -> Vec<Event> {
        self.messages()
            .await
            .into_iter()
            .filter_map(|(_, parsed)| parsed.event().cloned())
            .collect()
    }

    /// The reconciler's follow-ups in the stream (ticks excluded), in stream order.
    pub async fn follow_ups(&self) -> Vec<Event> {
        self.history()
            .await
            .into_iter()
            .filter(|e| e.source == SOURCE && e.event_type() != events::EventType::ReconcilerTicked)
            .collect()
    }

    /// Steps the reconciler to the end of the stream and drains its outbox until nothing new is
    /// published, then brings `projector` (if given) to the end of the stream.
    pub async fn settle(&self, reconciler: &mut Reconciler, projector: Option<&mut Projector>) {
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            let last = self.last_seq().await as i64;
            while reconciler.position().await.expect("reconciler position") < last {
                assert!(!deadline.passed(), "the reconciler did not reach {last}");
                reconciler
                    .step(Duration::from_millis(200))
                    .await
                    .expect("the reconciler steps");
            }
            let published = reconciler
                .outbox()
                .drain()
                .await
                .expect("the outbox drains");
            if published == 0 && self.last_seq().await as i64 == last {
                break;
            }
        }
        assert_eq!(
            reconciler
                .step(Duration::from_millis(20))
                .await
                .expect("the reconciler steps"),
            reconciler::Outcome::Idle
        );
        if let Some(projector) = projector {
            self.drain(projector).await;
        }
    }
}

/// Steps `projector` until its stored position reaches `target`, then checks that nothing is
/// left after it.
pub async fn step_to(projector: &mut Projector, target: u64) {
    let deadline = Deadline::after(Duration::from_secs(30));
    while projector.position().await.expect("projector position") < target as i64 {
        assert!(!deadline.passed(), "the projector did not reach {target}");
        projector
            .step(Duration::from_millis(200))
            .await
            .expect("the projector steps");
    }
    assert_eq!(
        projector
            .step(Duration::from_millis(20))
            .await
            .expect("the projector steps"),
        Outcome::Idle
    );
}
