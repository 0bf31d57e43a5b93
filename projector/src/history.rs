//! Reading history: every event of the stream from a given sequence, in order, handed out in
//! batches. This is read-only by construction — it exposes no way to publish — and it is what
//! replay and backfill are built on.
//!
//! The reader is an ordered consumer of its own making: an ephemeral pull consumer without acks
//! whose deliveries are checked to follow on (consumer sequence +1, as [`crate::cursor`] does), and
//! which is replaced by a new one at the next stream sequence when they do not, or when the
//! consumer breaks (deleted, heartbeats missed, server restarted). async-nats' own ordered consumer
//! does the same, but pulls 500 events at a time, parses every delivery's metadata once more and
//! wraps it in one more stream. With pulls of 2,000, nats-server delivered a rebuild's events for
//! about a third less CPU each (docs/benchmarks.md, fourth round).

use crate::batch::Incoming;
use crate::cursor::{deliver_after, incoming, js_err};
use crate::error::ProjectorError;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::{stream, Context};
use events::Subjects;
use futures::{FutureExt, StreamExt};
use std::time::Duration;

/// Events one pull request asks for (the next is sent when half of them have arrived).
const PULL_BATCH: usize = 2000;

/// Consumers replaced in a row, without an event in between, before the reader gives up.
const MAX_REPLACEMENTS: u32 = 5;

/// Batches of stored events, in stream order, starting at a sequence.
pub struct HistoryReader {
    stream: stream::Stream,
    filter: String,
    messages: pull::Stream,
    consumer: String,
    /// Consumer sequence of the last event the current consumer delivered (0: none yet).
    delivered: u64,
    /// Stream sequence of the last event handed out (`from - 1` before the first).
    last_seq: u64,
    /// Consumers replaced since the last event was handed out.
    replacements: u32,
}

impl HistoryReader {
    /// Opens `stream` at sequence `from` (1 = the beginning).
    pub async fn open(
        js: &Context,
        stream: &str,
        subjects: &Subjects,
        from: u64,
    ) -> Result<Self, ProjectorError> {
        let stream = js
            .get_stream(stream)
            .await
            .map_err(|e| js_err(&format!("opening stream `{stream}`"), e))?;
        let filter = subjects.all();
        let last_seq = from.max(1) - 1;
        let (consumer, messages) = consume(&stream, &filter, last_seq).await?;
        Ok(Self {
            stream,
            filter,
            messages,
            consumer,
            delivered: 0,
            last_seq,
            replacements: 0,
        })
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
                None => match tokio::time::timeout(idle, self.messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let broken = match next {
                Some(Ok(message)) => {
                    let (event, info) = incoming(&message)?;
                    if info.consumer_sequence == self.delivered + 1 {
                        self.delivered = info.consumer_sequence;
                        self.last_seq = event.seq;
                        self.replacements = 0;
                        batch.push(event);
                        continue;
                    }
                    format!(
                        "delivery {} arrived after delivery {}",
                        info.consumer_sequence, self.delivered
                    )
                }
                Some(Err(e)) => e.to_string(),
                None => "the message stream ended".to_owned(),
            };
            self.replace(&broken).await?;
            if !batch.is_empty() {
                break;
            }
        }
        Ok(batch)
    }

    /// Replaces the consumer with one that starts right after the last event handed out.
    async fn replace(&mut self, why: &str) -> Result<(), ProjectorError> {
        self.replacements += 1;
        if self.replacements > MAX_REPLACEMENTS {
            return Err(js_err(
                &format!(
                    "reading history after sequence {} ({} consumers in a row failed)",
                    self.last_seq, MAX_REPLACEMENTS
                ),
                why,
            ));
        }
        tracing::debug!(after = self.last_seq, why, "replacing the history consumer");
        if self.replacements > 1 {
            tokio::time::sleep(Duration::from_millis(100 << self.replacements)).await;
        }
        let _ = self.stream.delete_consumer(&self.consumer).await;
        let (consumer, messages) = consume(&self.stream, &self.filter, self.last_seq).await?;
        self.consumer = consumer;
        self.messages = messages;
        self.delivered = 0;
        Ok(())
    }
}

/// An ephemeral consumer delivering the events after `last_seq`, and its messages.
async fn consume(
    stream: &stream::Stream,
    filter: &str,
    last_seq: u64,
) -> Result<(String, pull::Stream), ProjectorError> {
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: deliver_after(last_seq),
            ack_policy: AckPolicy::None,
            filter_subject: filter.to_owned(),
            // Gone by itself when a reader stops without deleting it.
            inactive_threshold: Duration::from_secs(30),
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| js_err("creating a history consumer", e))?;
    let name = consumer.cached_info().name.clone();
    let messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| js_err("opening the history consumer", e))?;
    Ok((name, messages))
}
