//! Reading history: an ordered JetStream consumer from a given sequence, handed out in batches.
//! This is read-only by construction — it exposes no way to publish — and it is what replay and
//! backfill are built on.

use crate::batch::Incoming;
use crate::error::ProjectorError;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::Context;
use events::Subjects;
use futures::{FutureExt, StreamExt};
use std::time::Duration;

/// Batches of stored events, in stream order, starting at a sequence.
pub struct HistoryReader {
    messages: pull::Ordered,
}

impl HistoryReader {
    /// Opens `stream` at sequence `from` (1 = the beginning).
    pub async fn open(
        js: &Context,
        stream: &str,
        subjects: &Subjects,
        from: u64,
    ) -> Result<Self, ProjectorError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            ProjectorError::JetStream(format!("{what}: {e}"))
        };
        let stream = js
            .get_stream(stream)
            .await
            .map_err(|e| err(&format!("opening stream `{stream}`"), &e))?;
        let deliver_policy = if from <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: from,
            }
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy,
                filter_subject: subjects.all(),
                ..Default::default()
            })
            .await
            .map_err(|e| err("creating an ordered consumer", &e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| err("opening the ordered consumer", &e))?;
        Ok(Self { messages })
    }

    /// Up to `max` events; waits at most `idle` for the first and between events.
    pub async fn next_batch(
        &mut self,
        max: usize,
        idle: Duration,
    ) -> Result<Vec<Incoming>, ProjectorError> {
        let mut batch = Vec::with_capacity(max.min(4096));
        while batch.len() < max {
            // A message already received is taken without arming a timer (most of them, when
            // reading history): the timeout is only for waiting.
            let next = match self.messages.next().now_or_never() {
                Some(next) => next,
                None => tokio::time::timeout(idle, self.messages.next())
                    .await
                    .unwrap_or_default(),
            };
            let message = match next {
                None => break,
                Some(Err(e)) => {
                    return Err(ProjectorError::JetStream(format!("reading history: {e}")))
                }
                Some(Ok(m)) => m,
            };
            batch.push(crate::cursor::incoming(&message)?.0);
        }
        Ok(batch)
    }
}
