//! The live projector: a thin I/O shell around [`apply_batch`](crate::batch::apply_batch).
//!
//! On start it reads its position from PostgreSQL and (re)creates its durable JetStream pull
//! consumer at the next sequence: PostgreSQL owns the position, so a fresh or restored database
//! is always caught up from the right place. Each [`Projector::step`] reads a batch (up to
//! `batch_size` events, or whatever arrived within `linger` of the first), applies it in one
//! transaction and acks the last message after commit (`AckPolicy::All` acks the batch).

use crate::batch::{apply_batch, BatchReport, Incoming, Target};
use crate::error::ProjectorError;
use crate::store;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use chrono::DateTime;
use deadpool_postgres::Pool;
use events::Subjects;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::watch;
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
            batch_size: 1000,
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

pub struct Projector {
    pool: Pool,
    js: Context,
    settings: ProjectorSettings,
    messages: pull::Stream,
}

fn js_err(context: &str, e: impl std::fmt::Display) -> ProjectorError {
    ProjectorError::JetStream(format!("{context}: {e}"))
}

impl Projector {
    /// Positions the consumer after the stored position. The schema must be migrated.
    pub async fn start(
        pool: Pool,
        js: Context,
        settings: ProjectorSettings,
    ) -> Result<Self, ProjectorError> {
        let messages = Self::subscribe(&pool, &js, &settings).await?;
        Ok(Self {
            pool,
            js,
            settings,
            messages,
        })
    }

    async fn subscribe(
        pool: &Pool,
        js: &Context,
        settings: &ProjectorSettings,
    ) -> Result<pull::Stream, ProjectorError> {
        let position = {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let position = store::lock_position(&tx, &settings.consumer, &settings.stream).await?;
            tx.commit().await?;
            position
        };
        let stream = js
            .get_stream(&settings.stream)
            .await
            .map_err(|e| js_err(&format!("opening stream `{}`", settings.stream), e))?;
        // The consumer is only a cursor; its state is rebuilt from the stored position.
        let _ = stream.delete_consumer(&settings.consumer).await;
        let deliver_policy = if position <= 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: position as u64 + 1,
            }
        };
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(settings.consumer.clone()),
                deliver_policy,
                ack_policy: AckPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: (settings.batch_size as i64 * 4).max(1000),
                filter_subject: settings.subjects.all(),
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("creating the projector consumer", e))?;
        consumer
            .stream()
            .max_messages_per_batch(settings.batch_size)
            .messages()
            .await
            .map_err(|e| js_err("opening the message stream", e))
    }

    /// The stored position.
    pub async fn position(&self) -> Result<i64, ProjectorError> {
        let client = self.pool.get().await?;
        Ok(store::position(&client, &self.settings.consumer)
            .await?
            .unwrap_or(0))
    }

    /// Reads one batch (waiting up to `wait` for its first event), applies it and acks it.
    pub async fn step(&mut self, wait: Duration) -> Result<Outcome, ProjectorError> {
        let mut batch = Vec::new();
        let mut last = None;
        let first_deadline = Instant::now() + wait;
        let mut deadline = first_deadline;
        while batch.len() < self.settings.batch_size {
            let next = match tokio::time::timeout_at(deadline, self.messages.next()).await {
                Err(_) => break,
                Ok(None) => return Err(js_err("message stream", "ended")),
                Ok(Some(Err(e))) => return Err(js_err("receiving", e)),
                Ok(Some(Ok(message))) => message,
            };
            let info = next
                .info()
                .map_err(|e| js_err("reading message metadata", e))?;
            let stored_at = DateTime::from_timestamp_nanos(
                i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
            );
            batch.push(Incoming {
                seq: info.stream_sequence,
                subject: next.subject.to_string(),
                payload: next.payload.clone(),
                stored_at,
            });
            if last.is_none() {
                deadline = Instant::now() + self.settings.linger;
            }
            last = Some(next);
        }
        let Some(last) = last else {
            return Ok(Outcome::Idle);
        };
        let report = {
            let mut client = self.pool.get().await?;
            apply_batch(&mut client, &self.settings.target(), &batch).await?
        };
        last.ack().await.map_err(|e| js_err("acking", e))?;
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
                    tracing::warn!(error = %e, "batch failed; resuming from the stored position");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match Self::subscribe(&self.pool, &self.js, &self.settings).await {
                        Ok(messages) => self.messages = messages,
                        Err(e) => tracing::warn!(error = %e, "could not resubscribe yet"),
                    }
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
