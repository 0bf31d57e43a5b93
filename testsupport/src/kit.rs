//! The end-to-end kit every crate's tests start from: a fresh migrated database, a unique stream
//! (on the shared server or a private one; partitioned with `RUNLEDGER_TEST_PARTITIONS` > 1)
//! with its subjects and a publisher; the projector and the reconciler built on them (one per
//! partition) and driven step by step; and the stream's history read back.
//! No sleeps: the steps wait for what they need, with deadlines.

use crate::{Deadline, Projectors, Reconcilers, TestDb, TestStream};
use events::tick::{ReconcilerTicked, TICK_COMPANY};
use events::{CompanyId, Event, EventData, EventId, Subjects, TickId};
use producers::{Publisher, PublisherSettings};
use projector::feed::{Feed, FeedSpec, Incoming, Parsed, Reader};
use projector::{Outcome, ProjectorSettings};
use reconciler::engine::{Policy, SOURCE};
use reconciler::ReconcilerSettings;
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

    /// On the shared NATS server, unpartitioned whatever `RUNLEDGER_TEST_PARTITIONS` says (for
    /// tests of the one-partition layout itself).
    pub async fn unpartitioned() -> Self {
        let ts = TestStream::unpartitioned()
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
        // Every partition's projector and reconciler may hold a connection at once.
        let pool = db.pool_of(8.max(2 * subjects.partitions() as usize + 4));
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

    /// Publishes `events` in order; the stream sequence of the last one. A tick of the one
    /// clock of an unpartitioned stream goes, with partitions, to every partition's clock
    /// ([`Kit::ticks`]).
    pub async fn publish(&self, events: &[Event]) -> u64 {
        let events: Vec<Event> = events.iter().flat_map(|e| self.ticks(e)).collect();
        let mut last = 0;
        for r in self.publisher.publish_all(&events).await {
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

    /// A reader of this kit's stream as a process of the `runledger` binary at `binary`:
    /// `runledger <single>` (`project`, `reconcile`), or with partitions a `runledger worker`
    /// instance named `instance` whose partitions are free again 2 s after it is killed. The
    /// caller adds its own settings and spawns it.
    pub fn reader_process(
        &self,
        binary: &str,
        single: &str,
        instance: &str,
    ) -> std::process::Command {
        let mut command = std::process::Command::new(binary);
        if self.partitions() > 1 {
            command
                .arg("worker")
                .env("RUNLEDGER_PARTITIONS", self.partitions().to_string())
                .env("RUNLEDGER_INSTANCE_NAME", instance)
                .env("RUNLEDGER_LEASE_TTL", "2s");
        } else {
            command.arg(single);
        }
        command
            .env("NATS_URL", &self.ts.url)
            .env("DATABASE_URL", self.db.url())
            .env("RUNLEDGER_STREAM", &self.ts.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", &self.ts.prefix)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }

    /// How many partitions the stream is split into.
    pub fn partitions(&self) -> u32 {
        self.subjects.partitions()
    }

    /// `event` as the stream's clocks see it: with partitions, a tick of the unpartitioned
    /// clock becomes the same slot's tick of every partition's clock (ids derived from the
    /// tick's and the partition); anything else (and every event at P = 1) stays as it is.
    pub fn ticks(&self, event: &Event) -> Vec<Event> {
        match &event.data {
            EventData::ReconcilerTicked(tick)
                if self.subjects.is_partitioned() && tick.partition.is_none() =>
            {
                (0..self.partitions())
                    .map(|p| partition_tick(event, tick, p))
                    .collect()
            }
            _ => vec![event.clone()],
        }
    }

    /// `events` as the partition of `company` reads them: its ticks are its partition's (see
    /// [`Kit::ticks`]); the same events at P = 1.
    pub fn as_read_by(&self, company: CompanyId, events: &[Event]) -> Vec<Event> {
        let partition = self.subjects.partition_of(company);
        events
            .iter()
            .flat_map(|e| self.ticks(e))
            .filter(|e| {
                e.company_id != TICK_COMPANY
                    || !self.subjects.is_partitioned()
                    || self.subjects.partition_of_event(e) == partition
            })
            .collect()
    }

    /// The projector's settings for this stream (of the whole stream; [`Projectors::settings`]
    /// derives each partition's).
    pub fn projector_settings(&self) -> ProjectorSettings {
        ProjectorSettings::new(&self.ts.stream, self.subjects.clone())
    }

    /// The projector of the `public` schema, one per partition, started.
    pub async fn projector(&self) -> Projectors {
        Projectors::start(self.pool.clone(), self.js(), self.projector_settings()).await
    }

    /// The reconciler schema of `company`'s partition.
    pub fn reconciler_schema_of(&self, company: CompanyId) -> String {
        self.reconciler_schemas()[self.subjects.partition_of(company) as usize].clone()
    }

    /// The projector's position row of `company`'s partition.
    pub fn projector_position_key(&self, company: CompanyId) -> String {
        crate::readers::position_key(
            &self.projector_settings().consumer,
            &self.subjects,
            self.subjects.partition_of(company),
        )
    }

    /// The reconciler's schemas, one per partition in partition order.
    pub fn reconciler_schemas(&self) -> Vec<String> {
        Reconcilers::settings(&self.reconciler_settings(Policy::default()))
            .into_iter()
            .map(|s| s.schema)
            .collect()
    }

    /// The reconciler's settings for this stream, with `policy` and no clock of its own (tests
    /// publish their ticks); [`Reconcilers::settings`] derives each partition's.
    pub fn reconciler_settings(&self, policy: Policy) -> ReconcilerSettings {
        let mut settings = ReconcilerSettings::new(&self.ts.stream, self.subjects.clone());
        settings.policy = policy;
        settings.tick_interval = None;
        settings
    }

    /// The reconciler with `policy`, one per partition, started.
    pub async fn reconciler(&self, policy: Policy) -> Reconcilers {
        Reconcilers::start(
            self.pool.clone(),
            self.js(),
            self.reconciler_settings(policy),
        )
        .await
    }

    /// Steps `projector` until every partition has caught up with the stream's last sequence,
    /// and checks that nothing is left after it.
    pub async fn drain(&self, projector: &mut Projectors) {
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
    pub async fn settle(&self, reconciler: &mut Reconcilers, projector: Option<&mut Projectors>) {
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
                .drain_outboxes()
                .await
                .expect("the outboxes drain");
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

/// Steps `projector` until every partition has caught up with `target`, then checks that
/// nothing is left after it.
pub async fn step_to(projector: &mut Projectors, target: u64) {
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

/// The tick of `tick`'s slot on partition `p`'s clock.
fn partition_tick(event: &Event, tick: &ReconcilerTicked, p: u32) -> Event {
    let tick_id = TickId(uuid::Uuid::new_v5(
        &tick.tick_id.0,
        format!("p{p}").as_bytes(),
    ));
    let mut partitioned = event.clone();
    partitioned.id = EventId::derived(EventId(tick_id.0), "reconciler.ticked");
    partitioned.data = EventData::ReconcilerTicked(ReconcilerTicked {
        tick_id,
        partition: Some(p),
        ..tick.clone()
    });
    partitioned
}
