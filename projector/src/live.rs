//! The live projector: a thin I/O shell around [`store::batch::apply`](crate::store::batch::apply).
//!
//! It opens a [`Feed`] after the position stored in PostgreSQL (PostgreSQL owns the position,
//! so a fresh or restored database is always caught up from the right place, and nothing is
//! acknowledged to JetStream). Each [`Projector::step`] takes the next batch and applies it in
//! one transaction. After any failure — a broken feed, a failed batch, the database away — the
//! feed is dropped and the next step opens a new one at the stored position, so events read
//! ahead of a failed batch are never skipped. [`Projector::run`] steps until shutdown and
//! outlives every dependency fault, backing off between attempts.

use crate::error::ProjectorError;
use crate::feed::{Feed, FeedSpec, Reader};
use crate::store;
use crate::store::batch::{apply, BatchReport, CommitMode, Session, Target};
use crate::store::lease::{self, Fence};
use async_nats::jetstream::Context;
use deadpool_postgres::Pool;
use events::Subjects;
use std::time::Duration;
use tokio::sync::watch;

/// How the projector reads and batches.
#[derive(Clone, Debug)]
pub struct ProjectorSettings {
    /// Durable consumer name; also the key of the position row.
    pub consumer: String,
    pub stream: String,
    pub subjects: Subjects,
    /// Most events per transaction.
    pub batch_size: usize,
    /// How long a batch waits for events the server says are on their way.
    pub linger: Duration,
    /// The one partition this projector folds (`None`: the whole stream). Its position row and
    /// consumer are named for it ([`crate::membership::position_key`]).
    pub partition: Option<u32>,
    /// The lease a shared partition's batches must still hold to commit.
    pub fence: Option<Fence>,
}

impl ProjectorSettings {
    pub fn new(stream: &str, subjects: Subjects) -> Self {
        Self {
            consumer: "runledger-projector".into(),
            stream: stream.to_owned(),
            subjects,
            batch_size: 5000,
            linger: Duration::from_millis(20),
            partition: None,
            fence: None,
        }
    }

    /// The settings of partition `partition`'s projector: its own position row and consumer
    /// ([`crate::membership::position_key`]: the base name without partitions).
    pub fn for_partition(&self, partition: u32) -> Self {
        Self {
            consumer: crate::membership::position_key(&self.consumer, &self.subjects, partition),
            partition: Some(partition),
            ..self.clone()
        }
    }

    fn target(&self) -> Target {
        Target {
            consumer: self.consumer.clone(),
            stream: self.stream.clone(),
            subjects: self.subjects.clone(),
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
}

/// What one step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied(BatchReport),
    /// Nothing arrived within the wait.
    Idle,
}

/// Receives every committed batch and its duration.
type BatchObserver = Box<dyn Fn(&BatchReport, Duration) + Send + Sync>;

/// Told after every step of [`Projector::run`]: the task's name and, for a failed step, the
/// error (for health: a task is failing from a failed step until the next good one).
pub type TaskObserver = std::sync::Arc<dyn Fn(&'static str, Option<&str>) + Send + Sync>;

pub struct Projector {
    pool: Pool,
    js: Context,
    settings: ProjectorSettings,
    /// `None` after a failure: the next step opens a new feed at the stored position.
    feed: Option<Feed>,
    /// The rows of the last batches, kept for the next ones.
    session: Session,
    /// Told about every committed batch (metrics); never about anything that can fail.
    observer: Option<BatchObserver>,
    /// Told how each step of `run` ended (health).
    task_observer: Option<TaskObserver>,
}

impl Projector {
    /// Opens the feed after the stored position. The schema must be migrated.
    pub async fn start(
        pool: Pool,
        js: Context,
        settings: ProjectorSettings,
    ) -> Result<Self, ProjectorError> {
        let session = match &settings.fence {
            Some(fence) => Session::new(CommitMode::Synchronous).fenced(fence.clone()),
            None => Session::new(CommitMode::Synchronous),
        };
        let mut projector = Self {
            pool,
            js,
            settings,
            feed: None,
            session,
            observer: None,
            task_observer: None,
        };
        projector.feed = Some(projector.open_feed().await?);
        Ok(projector)
    }

    async fn open_feed(&self) -> Result<Feed, ProjectorError> {
        let position = {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // A writer that lost its partition must not even replace the consumer the new
            // owner reads with.
            if let Some(fence) = &self.settings.fence {
                lease::check(&*tx, fence).await?;
            }
            let position =
                store::lock_position(&tx, &self.settings.consumer, &self.settings.stream)
                    .await?
                    .last_seq;
            tx.commit().await?;
            position
        };
        let after = position.max(0) as u64;
        Ok(match self.settings.partition {
            Some(p) => Feed::open_partition(&self.js, self.settings.feed(), p, after).await?,
            None => Feed::open(&self.js, self.settings.feed(), after).await?,
        })
    }

    /// Calls `observer` with every committed batch and how long it took (for metrics).
    pub fn observe(
        mut self,
        observer: impl Fn(&BatchReport, Duration) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Calls `observer` after every step of [`Projector::run`], with the error of a failed one.
    pub fn observe_steps(mut self, observer: TaskObserver) -> Self {
        self.task_observer = Some(observer);
        self
    }

    /// The stored position.
    pub async fn position(&self) -> Result<i64, ProjectorError> {
        let client = self.pool.get().await?;
        Ok(store::position(&client, &self.settings.consumer)
            .await?
            .unwrap_or(0))
    }

    /// Applies the next batch (waiting up to `wait` for it). After an error the next step reads
    /// again from the stored position.
    pub async fn step(&mut self, wait: Duration) -> Result<Outcome, ProjectorError> {
        let result = self.step_inner(wait).await;
        if result.is_err() {
            // Whatever was read ahead must not be applied after a failure.
            if let Some(feed) = self.feed.take() {
                feed.close().await;
            }
        }
        result
    }

    async fn step_inner(&mut self, wait: Duration) -> Result<Outcome, ProjectorError> {
        let feed = match &mut self.feed {
            Some(feed) => feed,
            None => self.feed.insert(self.open_feed().await?),
        };
        let Some(batch) = feed.next(wait).await? else {
            return Ok(Outcome::Idle);
        };
        let began = std::time::Instant::now();
        let report = {
            let mut client = self.pool.get().await?;
            apply(
                &mut client,
                &self.settings.target(),
                &batch,
                &mut self.session,
            )
            .await?
        };
        if let Some(observer) = &self.observer {
            observer(&report, began.elapsed());
        }
        Ok(Outcome::Applied(report))
    }

    /// Steps until `shutdown` turns true, or until a batch finds the partition fenced off
    /// ([`ProjectorError::Fenced`], returned: the partition is another instance's now). A failed step (a batch rolled back, the feed broken,
    /// the database or NATS away) is tried again from the stored position after a pause that
    /// doubles up to 5 s while the failures last.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        tracing::info!(stream = %self.settings.stream, consumer = %self.settings.consumer, "projector started");
        let mut backoff = Backoff::default();
        while !*shutdown.borrow() {
            let step = tokio::select! {
                step = self.step(Duration::from_millis(500)) => step,
                _ = shutdown.changed() => break,
            };
            if let Some(observer) = &self.task_observer {
                let error = step.as_ref().err().map(ToString::to_string);
                observer("projector", error.as_deref());
            }
            match step {
                Ok(Outcome::Applied(report)) => {
                    backoff.reset();
                    tracing::debug!(
                        applied = report.applied,
                        skipped = report.skipped,
                        dead_lettered = report.dead_lettered,
                        position = report.position,
                        "batch committed"
                    );
                }
                Ok(Outcome::Idle) => backoff.reset(),
                Err(e @ ProjectorError::Fenced { .. }) => {
                    tracing::warn!(error = %e, "projector stopped: its partition has another owner");
                    return Err(e);
                }
                Err(e) => {
                    let pause = backoff.pause();
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "projector step failed; resuming from the stored position");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
        tracing::info!("projector stopped");
        Ok(())
    }
}

/// Pauses between failed attempts: 250 ms, doubling up to 5 s, back to 250 ms after a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const LONGEST: Duration = Duration::from_secs(5);

    /// The pause before the next attempt.
    pub fn pause(&mut self) -> Duration {
        let pause = Self::FIRST
            .saturating_mul(1 << self.failures.min(8))
            .min(Self::LONGEST);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// An attempt succeeded.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
