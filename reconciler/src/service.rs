//! The live reconciler: a thin I/O shell around [`process_batch`] and the [`Outbox`].
//!
//! On start it migrates its schema, holds follow-ups a previous incarnation may have published
//! until it has read up to the current stream head, and opens its [`Feed`] after the stored
//! position: PostgreSQL owns the position, nothing is acknowledged to JetStream.
//! [`Reconciler::step`] takes a batch and decides it in one transaction (after any failure the
//! next step opens a new feed at the stored position); [`Outbox::drain`] publishes what the
//! decisions wrote. [`Reconciler::run`] loops over both and runs the [`Ticker`], and outlives
//! every dependency fault, backing off between attempts.

use crate::batch::{process_batch, BatchReport, BatchTarget};
use crate::engine::Policy;
use crate::error::ReconcilerError;
use crate::migrate::{migrate, DEFAULT_CONSUMER, DEFAULT_SCHEMA};
use crate::outbox::Outbox;
use crate::state;
use crate::tick::Ticker;
use async_nats::jetstream::Context;
use deadpool_postgres::Pool;
use events::Subjects;
use producers::{Publisher, PublisherSettings};
use projector::feed::{Feed, FeedSpec, Reader};
use projector::live::Backoff;
use projector::live::TaskObserver;
use projector::store::lease::{self, Fence};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// How the reconciler reads, decides and ticks.
#[derive(Clone, Debug)]
pub struct ReconcilerSettings {
    /// Durable consumer name; also the key of the position row.
    pub consumer: String,
    pub stream: String,
    pub subjects: Subjects,
    /// Schema of the private fold, the ledger and the outbox (never the projector's).
    pub schema: String,
    /// Most events per transaction.
    pub batch_size: usize,
    /// How long to wait for more events after the first of a batch.
    pub linger: Duration,
    /// The rules' settings.
    pub policy: Policy,
    /// Clock interval (`None`: publish no ticks; another reconciler or clock does).
    pub tick_interval: Option<Duration>,
    /// The one partition this reconciler decides, with its own clock (`None`: the whole
    /// stream). Its schema, position row and consumer are the partition's own.
    pub partition: Option<u32>,
    /// The lease a shared partition's batches and outbox must still hold.
    pub fence: Option<Fence>,
}

impl ReconcilerSettings {
    /// Defaults: consumer `runledger-reconciler`, schema `runledger_reconciler`, batches of up to
    /// 500 events with 2 ms linger (decisions are latency-bound), a tick every 30 s.
    pub fn new(stream: &str, subjects: Subjects) -> Self {
        Self {
            consumer: DEFAULT_CONSUMER.into(),
            stream: stream.to_owned(),
            subjects,
            schema: DEFAULT_SCHEMA.into(),
            batch_size: 500,
            linger: Duration::from_millis(2),
            policy: Policy::default(),
            tick_interval: Some(Duration::from_secs(30)),
            partition: None,
            fence: None,
        }
    }

    /// The settings of partition `partition`'s reconciler: its own schema
    /// ([`crate::migrate::partition_schema`]), position row and consumer, and its own clock
    /// (without partitions: these settings, for the whole stream).
    pub fn for_partition(&self, partition: u32) -> Self {
        Self {
            consumer: projector::membership::position_key(
                &self.consumer,
                &self.subjects,
                partition,
            ),
            schema: crate::migrate::partition_schema(&self.schema, &self.subjects, partition),
            partition: Some(partition).filter(|_| self.subjects.is_partitioned()),
            ..self.clone()
        }
    }

    fn feed(&self) -> FeedSpec {
        FeedSpec {
            stream: self.stream.clone(),
            subjects: self.subjects.clone(),
            reader: Reader::Durable(self.consumer.clone()),
            batch_size: self.batch_size,
            linger: self.linger,
        }
    }

    /// The batch target of these settings.
    pub fn target(&self) -> BatchTarget {
        BatchTarget {
            consumer: self.consumer.clone(),
            stream: self.stream.clone(),
            subjects: self.subjects.clone(),
            schema: self.schema.clone(),
            policy: self.policy.clone(),
            decide_from: 0,
            fence: self.fence.clone(),
        }
    }
}

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A batch was decided and committed.
    Decided(BatchReport),
    /// Nothing arrived within the wait.
    Idle,
}

pub struct Reconciler {
    pool: Pool,
    js: Context,
    settings: ReconcilerSettings,
    /// `None` after a failed step: the next step opens a new one at the stored position, so
    /// events read ahead of a failed batch are never skipped.
    feed: Option<Feed>,
    outbox: Outbox,
    /// Told about every decided batch (metrics).
    observer: Option<BatchObserver>,
    /// Told how each step and each outbox drain ended (health).
    task_observer: Option<TaskObserver>,
}

/// Receives every decided batch.
type BatchObserver = Box<dyn Fn(&BatchReport) + Send + Sync>;

impl Reconciler {
    /// Migrates the schema, holds a previous incarnation's unpublished follow-ups until the
    /// current head is read, and positions the consumer after the stored position.
    pub async fn start(
        pool: Pool,
        js: Context,
        settings: ReconcilerSettings,
    ) -> Result<Self, ReconcilerError> {
        {
            let mut client = pool.get().await?;
            migrate(&mut client, &settings.schema).await?;
            // What an earlier incarnation can have published before this one started: up to
            // the stream's head, or a partition's last event (its reader never reads further).
            let head = match settings.partition {
                Some(p) => {
                    let filter = settings.subjects.partition_filter(p);
                    projector::feed::last_seq_of(&js, &settings.stream, &filter).await?
                }
                None => projector::feed::stream_last_seq(&js, &settings.stream).await?,
            };
            state::hold_unpublished(&**client, &settings.schema, head as i64).await?;
        }
        let feed = Self::open_feed(&pool, &js, &settings).await?;
        let publisher = Publisher::new(
            js.clone(),
            settings.subjects.clone(),
            PublisherSettings::default(),
        );
        let outbox = Outbox::new(
            pool.clone(),
            &settings.schema,
            &settings.consumer,
            publisher,
        )?
        .fenced(settings.fence.clone());
        Ok(Self {
            pool,
            js,
            settings,
            feed: Some(feed),
            outbox,
            observer: None,
            task_observer: None,
        })
    }

    /// Calls `observer` with every decided batch (for metrics).
    pub fn observe(mut self, observer: impl Fn(&BatchReport) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Calls `observer` after every step (task `reconciler`) and every outbox drain (task
    /// `outbox`), with the error of a failed one.
    pub fn observe_steps(mut self, observer: TaskObserver) -> Self {
        self.task_observer = Some(observer);
        self
    }

    async fn open_feed(
        pool: &Pool,
        js: &Context,
        settings: &ReconcilerSettings,
    ) -> Result<Feed, ReconcilerError> {
        let position = {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let position =
                state::begin_batch(&tx, &settings.schema, &settings.consumer, &settings.stream)
                    .await?;
            // A decider that lost its partition must not even replace the consumer the new
            // owner reads with.
            if let Some(fence) = &settings.fence {
                lease::check(&*tx, fence).await?;
            }
            tx.commit().await?;
            position
        };
        let after = position.max(0) as u64;
        Ok(match settings.partition {
            Some(p) => Feed::open_partition(js, settings.feed(), p, after).await?,
            None => Feed::open(js, settings.feed(), after).await?,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ReconcilerSettings {
        &self.settings
    }

    /// The outbox drainer of this reconciler.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The stored position.
    pub async fn position(&self) -> Result<i64, ReconcilerError> {
        let client = self.pool.get().await?;
        Ok(
            state::position(&**client, &self.settings.schema, &self.settings.consumer)
                .await?
                .unwrap_or(0),
        )
    }

    /// Takes one batch (waiting up to `wait` for its first event) and decides it. After an
    /// error the next step reads again from the stored position.
    pub async fn step(&mut self, wait: Duration) -> Result<Outcome, ReconcilerError> {
        let result = self.step_inner(wait).await;
        if result.is_err() {
            // Whatever was read ahead must not be decided after a failure.
            if let Some(feed) = self.feed.take() {
                feed.close().await;
            }
        }
        result
    }

    async fn step_inner(&mut self, wait: Duration) -> Result<Outcome, ReconcilerError> {
        let feed = match &mut self.feed {
            Some(feed) => feed,
            None => self
                .feed
                .insert(Self::open_feed(&self.pool, &self.js, &self.settings).await?),
        };
        let Some(batch) = feed.next(wait).await? else {
            return Ok(Outcome::Idle);
        };
        let head = feed.head();
        let began = Instant::now();
        let report = {
            let mut client = self.pool.get().await?;
            process_batch(&mut client, &self.settings.target(), &batch, head).await?
        };
        tracing::trace!(
            events = batch.len(),
            decisions = report.decisions,
            elapsed_us = began.elapsed().as_micros() as u64,
            "batch committed"
        );
        Ok(Outcome::Decided(report))
    }

    /// Steps and drains until `shutdown` turns true; runs the clock if configured. A failed
    /// batch is rolled back and read again from the stored position after a pause.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ReconcilerError> {
        tracing::info!(
            stream = %self.settings.stream,
            schema = %self.settings.schema,
            consumer = %self.settings.consumer,
            "reconciler started"
        );
        // The clock and the drainer stop with the reconciler: at shutdown, or when its
        // partition turns out to be another instance's.
        let (stop_beside, beside) = watch::channel(false);
        let stop_beside = Arc::new(stop_beside);
        let forward = {
            let stop = stop_beside.clone();
            let mut outer = shutdown.clone();
            tokio::spawn(async move {
                let _ = outer.wait_for(|stop| *stop).await;
                stop.send_replace(true);
            })
        };
        let ticker = self.settings.tick_interval.map(|interval| {
            let publisher = Publisher::new(
                self.js.clone(),
                self.settings.subjects.clone(),
                PublisherSettings::default(),
            );
            let ticker = Ticker::new(publisher, interval).for_partition(self.settings.partition);
            tokio::spawn(ticker.run(beside.clone()))
        });
        // The drainer publishes concurrently, woken after every batch that decided follow-ups
        // and at least once a second (rows held while catching up become publishable as the
        // position passes them): consuming never waits for publish acks.
        let wake = Arc::new(Notify::new());
        let drainer = tokio::spawn(drain_loop(
            self.outbox.clone(),
            wake.clone(),
            self.task_observer.clone(),
            beside.clone(),
        ));
        let mut backoff = Backoff::default();
        while !*shutdown.borrow() {
            let step = tokio::select! {
                step = self.step(Duration::from_millis(500)) => step,
                _ = shutdown.changed() => break,
            };
            if let Some(observer) = &self.task_observer {
                let error = step.as_ref().err().map(ToString::to_string);
                observer("reconciler", error.as_deref());
            }
            match step {
                Ok(Outcome::Decided(report)) => {
                    backoff.reset();
                    if let Some(observer) = &self.observer {
                        observer(&report);
                    }
                    if report.follow_ups > 0 {
                        wake.notify_one();
                    }
                    tracing::debug!(
                        folded = report.folded,
                        decisions = report.decisions,
                        follow_ups = report.follow_ups,
                        position = report.position,
                        "batch decided"
                    );
                }
                Ok(Outcome::Idle) => backoff.reset(),
                Err(e) if e.is_fenced() => {
                    tracing::warn!(error = %e, "reconciler stopped: its partition has another owner");
                    stop_beside.send_replace(true);
                    forward.abort();
                    let _ = drainer.await;
                    if let Some(ticker) = ticker {
                        let _ = ticker.await;
                    }
                    return Err(e);
                }
                Err(e) => {
                    // The next step opens a new feed at the stored position.
                    let pause = backoff.pause();
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "reconciler step failed; resuming from the stored position");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
        stop_beside.send_replace(true);
        forward.abort();
        let _ = drainer.await;
        if let Some(ticker) = ticker {
            let _ = ticker.await;
        }
        tracing::info!("reconciler stopped");
        Ok(())
    }
}

/// Drains the outbox whenever woken, and at least once a second, until `shutdown` turns true.
async fn drain_loop(
    outbox: Outbox,
    wake: Arc<Notify>,
    observer: Option<TaskObserver>,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let began = Instant::now();
        let drained = outbox.drain().await;
        if let Some(observer) = &observer {
            let error = drained.as_ref().err().map(ToString::to_string);
            observer("outbox", error.as_deref());
        }
        match drained {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                published = n,
                elapsed_us = began.elapsed().as_micros() as u64,
                "follow-ups published"
            ),
            Err(e) => tracing::warn!(error = %e, "publishing follow-ups failed; will retry"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => break,
        }
    }
}
