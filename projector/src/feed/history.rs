//! Reading history: every event of the stream from a given sequence, in order, handed out in
//! batches. This is read-only by construction — it exposes no way to publish — and it is what
//! replay and backfill are built on.
//!
//! The reader is an ordered consumer of its own making: an ephemeral pull consumer without acks
//! whose deliveries are checked to follow on (consumer sequence +1, as [`crate::feed::cursor`] does), and
//! which is replaced by a new one at the next stream sequence when they do not, or when the
//! consumer breaks (deleted, heartbeats missed, server restarted). async-nats' own ordered consumer
//! does the same, but pulls 500 events at a time, parses every delivery's metadata once more and
//! wraps it in one more stream. With pulls of 2,000, nats-server delivered a rebuild's events for
//! about a third less CPU each (docs/benchmarks.md, fourth round).

use crate::error::ProjectorError;
use crate::feed::cursor::{deliver_after, js_err};
use crate::feed::deliveries::Deliveries;
use crate::feed::wire::Endpoint;
use crate::store::batch::Incoming;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::{stream, Context};
use events::Subjects;
use futures::FutureExt;
use std::time::Duration;

/// Events one pull request asks for (the next is sent when half of them have arrived).
const PULL_BATCH: usize = 2000;

/// Consumers replaced in a row, without an event in between, before the reader gives up.
const MAX_REPLACEMENTS: u32 = 5;

/// Batches of stored events, in stream order, starting at a sequence.
pub struct HistoryReader {
    stream: stream::Stream,
    filter: String,
    /// Where deliveries come over: a plain connection of the reader's own when there is one.
    wire: Option<Endpoint>,
    messages: Deliveries,
    consumer: String,
    /// Consumer sequence of the last event the current consumer delivered (0: none yet).
    delivered: u64,
    /// Stream sequence of the last event handed out (`from - 1` before the first).
    last_seq: u64,
    /// Consumers replaced since the last event was handed out.
    replacements: u32,
}

impl HistoryReader {
    /// Opens `stream` at sequence `from` (1 = the beginning). With `wire`, deliveries come over a
    /// plain connection of the reader's own ([`crate::feed::wire`]), and over `js`'s client when that
    /// connection cannot be made (the server wants TLS, say); without, always over `js`'s.
    pub async fn open(
        js: &Context,
        wire: Option<&Endpoint>,
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
        let mut wire = wire.cloned();
        let (consumer, messages) = consume(&stream, &filter, last_seq, &mut wire).await?;
        Ok(Self {
            stream,
            filter,
            wire,
            messages,
            consumer,
            delivered: 0,
            last_seq,
            replacements: 0,
        })
    }

    /// Whether deliveries come over the reader's own connection ([`crate::feed::wire`]).
    pub fn over_wire(&self) -> bool {
        self.messages.over_wire()
    }

    /// Up to `max` events; waits at most `idle` for the first and between events.
    pub async fn next_batch(
        &mut self,
        max: usize,
        idle: Duration,
    ) -> Result<Vec<Incoming>, ProjectorError> {
        let mut batch = Vec::with_capacity(max.min(4096));
        self.fill(max, idle, |event| batch.push(event)).await?;
        Ok(batch)
    }

    /// Hands up to `max` events to `sink` as each arrives, and returns how many; waits at most
    /// `idle` for the first and between events.
    ///
    /// Why a sink: whatever the caller does with an event (a rebuild parses it) happens between
    /// two polls of the consumer, which is when the next pull request goes out. Work done only
    /// after a whole batch has been read would leave the server without a pull request to serve
    /// for that long (parsing 10,000 events takes ~15 ms; a pull request's 2,000 are delivered
    /// in less). Measured alone, the gain did not show above the noise (docs/benchmarks.md,
    /// fifth round).
    pub async fn fill(
        &mut self,
        max: usize,
        idle: Duration,
        mut sink: impl FnMut(Incoming),
    ) -> Result<usize, ProjectorError> {
        let mut count = 0;
        while count < max {
            // A message already received is taken without arming a timer (most of them, when
            // reading history): the timeout is only for waiting.
            let next = match self.messages.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout(idle, self.messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let broken = match next? {
                Ok((event, info)) => {
                    if info.consumer_sequence == self.delivered + 1 {
                        self.delivered = info.consumer_sequence;
                        self.last_seq = event.seq;
                        self.replacements = 0;
                        sink(event);
                        count += 1;
                        continue;
                    }
                    format!(
                        "delivery {} arrived after delivery {}",
                        info.consumer_sequence, self.delivered
                    )
                }
                Err(broken) => broken,
            };
            self.replace(&broken).await?;
            if count > 0 {
                break;
            }
        }
        Ok(count)
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
        let (consumer, messages) =
            consume(&self.stream, &self.filter, self.last_seq, &mut self.wire).await?;
        self.consumer = consumer;
        self.messages = messages;
        self.delivered = 0;
        Ok(())
    }
}

/// An ephemeral consumer delivering the events after `last_seq`, and its messages: over a
/// connection of its own to `wire` if there is one (which becomes `None` when that connection
/// cannot be made, so a replacement does not try again), over the stream's client otherwise.
async fn consume(
    stream: &stream::Stream,
    filter: &str,
    last_seq: u64,
    wire: &mut Option<Endpoint>,
) -> Result<(String, Deliveries), ProjectorError> {
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
    let messages = Deliveries::open(&consumer, wire, PULL_BATCH, "runledger history reader")
        .await
        .map_err(|e| js_err("opening the history consumer", e))?;
    Ok((name, messages))
}
