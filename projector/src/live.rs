//! The live projector: a thin I/O shell around [`apply_batch`](crate::store::batch::apply_batch).
//!
//! On start it reads its position from PostgreSQL and opens its [`Cursor`] at the next sequence:
//! PostgreSQL owns the position, so a fresh or restored database is always caught up from the
//! right place, and nothing is acknowledged to JetStream. Each [`Projector::step`] reads a batch
//! (up to `batch_size` events, or whatever arrived within `linger` of the first) and applies it in
//! one transaction; a failed batch, or a gap in the deliveries, reopens the cursor at the stored
//! position.

use crate::error::ProjectorError;
use crate::feed::cursor::{js_err, Cursor};
use crate::store;
use crate::store::batch::{apply_prepared, BatchReport, CommitMode, Prepared, Session, Target};
use async_nats::jetstream::{self, Context};
use deadpool_postgres::Pool;
use events::Subjects;
use futures::FutureExt;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How the projector reads and batches.
#[derive(Clone, Debug)]
pub struct ProjectorSettings {
    /// Durable consumer name; also the key of the position row.
    pub consumer: String,
    pub stream: String,
    pub subjects: Subjects,
    /// Most events per transaction.
    pub batch_size: usize,
    /// How long to wait for more events after the first of a batch.
    pub linger: Duration,
}

impl ProjectorSettings {
    pub fn new(stream: &str, subjects: Subjects) -> Self {
        Self {
            consumer: "runledger-projector".into(),
            stream: stream.to_owned(),
            subjects,
            batch_size: 5000,
            linger: Duration::from_millis(20),
        }
    }

    fn target(&self) -> Target {
        Target {
            consumer: self.consumer.clone(),
            stream: self.stream.clone(),
            subjects: self.subjects.clone(),
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

pub struct Projector {
    pool: Pool,
    js: Context,
    settings: ProjectorSettings,
    feed: Feed,
    /// The rows of the last batches, kept for the next ones.
    session: Session,
    /// A batch failed: batches already read ahead must not be applied; read again from the
    /// stored position first.
    stale_feed: bool,
    /// Told about every committed batch (metrics); never about anything that can fail.
    observer: Option<BatchObserver>,
}

/// A batch read and parsed ahead.
type Fetched = Result<Prepared, ProjectorError>;

/// Reads and parses the next batch while the current one is in the database.
struct Feed {
    rx: mpsc::Receiver<Fetched>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fetch(cursor: &mut Cursor, settings: &ProjectorSettings) -> Fetched {
    let target = settings.target();
    let mut batch = Prepared::with_capacity(settings.batch_size.min(16_384));
    let mut deadline = None;
    while batch.len() < settings.batch_size {
        let delivery = match deadline {
            None => cursor.next().await?,
            // A delivery already received is taken without arming a timer.
            Some(deadline) => match cursor.next().now_or_never() {
                Some(delivery) => delivery?,
                None => match tokio::time::timeout_at(deadline, cursor.next()).await {
                    Err(_) => break,
                    Ok(delivery) => delivery?,
                },
            },
        };
        // Parsed as it arrives, between polls of the cursor (which is when it asks for more).
        batch.push(&target, delivery.incoming);
        if deadline.is_none() {
            deadline = Some(Instant::now() + settings.linger);
        }
    }
    Ok(batch)
}

impl Projector {
    /// Positions the consumer after the stored position. The schema must be migrated.
    pub async fn start(
        pool: Pool,
        js: Context,
        settings: ProjectorSettings,
    ) -> Result<Self, ProjectorError> {
        let feed = Self::subscribe(&pool, &js, &settings).await?;
        Ok(Self {
            pool,
            js,
            settings,
            feed,
            session: Session::new(CommitMode::Synchronous),
            stale_feed: false,
            observer: None,
        })
    }

    async fn subscribe(
        pool: &Pool,
        js: &Context,
        settings: &ProjectorSettings,
    ) -> Result<Feed, ProjectorError> {
        let position = {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let position = store::lock_position(&tx, &settings.consumer, &settings.stream)
                .await?
                .last_seq;
            tx.commit().await?;
            position
        };
        // Through the client's connection, not one of its own (`crate::feed::wire`): reading is not what
        // limits ingest (docs/benchmarks.md, fifth round), and the client stays attached through
        // a server restart where a wire connection would break the feed.
        let mut cursor = Cursor::open(
            js,
            None,
            &settings.stream,
            &settings.consumer,
            &settings.subjects,
            position,
            settings.batch_size,
        )
        .await?;
        let (tx, rx) = mpsc::channel(2);
        let settings = settings.clone();
        let task = tokio::spawn(async move {
            loop {
                let fetched = fetch(&mut cursor, &settings).await;
                let failed = fetched.is_err();
                if tx.send(fetched).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Feed { rx, task })
    }

    /// Calls `observer` with every committed batch and how long it took (for metrics).
    pub fn observe(
        mut self,
        observer: impl Fn(&BatchReport, Duration) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The stored position.
    pub async fn position(&self) -> Result<i64, ProjectorError> {
        let client = self.pool.get().await?;
        Ok(store::position(&client, &self.settings.consumer)
            .await?
            .unwrap_or(0))
    }

    /// Applies the next batch (waiting up to `wait` for it).
    pub async fn step(&mut self, wait: Duration) -> Result<Outcome, ProjectorError> {
        if self.stale_feed {
            // The old cursor must be gone before its consumer is recreated, or its pull requests
            // could take deliveries of the new one.
            self.feed.task.abort();
            let _ = (&mut self.feed.task).await;
            self.feed = Self::subscribe(&self.pool, &self.js, &self.settings).await?;
            self.stale_feed = false;
        }
        let result = self.step_inner(wait).await;
        if result.is_err() {
            self.stale_feed = true;
        }
        result
    }

    async fn step_inner(&mut self, wait: Duration) -> Result<Outcome, ProjectorError> {
        let batch = match tokio::time::timeout(wait, self.feed.rx.recv()).await {
            Err(_) => return Ok(Outcome::Idle),
            Ok(None) => return Err(js_err("message feed", "stopped")),
            Ok(Some(fetched)) => fetched?,
        };
        let began = std::time::Instant::now();
        let report = {
            let mut client = self.pool.get().await?;
            apply_prepared(
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

    /// Steps until `shutdown` turns true. A failed batch is rolled back and read again from the
    /// stored position after a pause.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        tracing::info!(stream = %self.settings.stream, consumer = %self.settings.consumer, "projector started");
        while !*shutdown.borrow() {
            let step = tokio::select! {
                step = self.step(Duration::from_millis(500)) => step,
                _ = shutdown.changed() => break,
            };
            match step {
                Ok(Outcome::Applied(report)) => tracing::debug!(
                    applied = report.applied,
                    skipped = report.skipped,
                    dead_lettered = report.dead_lettered,
                    position = report.position,
                    "batch committed"
                ),
                Ok(Outcome::Idle) => {}
                Err(e) => {
                    // The next step reads again from the stored position.
                    tracing::warn!(error = %e, "batch failed; resuming from the stored position");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::info!("projector stopped");
        Ok(())
    }
}

/// The stream's last sequence (for lag).
pub async fn stream_last_seq(js: &jetstream::Context, stream: &str) -> Result<u64, ProjectorError> {
    let mut stream = js
        .get_stream(stream)
        .await
        .map_err(|e| js_err(&format!("opening stream `{stream}`"), e))?;
    let info = stream.info().await.map_err(|e| js_err("stream info", e))?;
    Ok(info.state.last_sequence)
}
