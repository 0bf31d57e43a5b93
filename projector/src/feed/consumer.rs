//! One JetStream pull consumer positioned after a stored sequence, drained through async-nats'
//! pull stream and checked so that nothing is lost on the way.
//!
//! PostgreSQL owns every reader's position, so a consumer is only a cursor: created at
//! `position + 1` whenever a reader starts, with `AckPolicy::None`. Nothing is acknowledged,
//! before or after commit; redelivery is re-reading from the stored position. Without acks the
//! server never redelivers, so a delivery lost on the way (a reconnect while a pull request is
//! open) would silently become a gap: every delivery carries the consumer's delivery sequence,
//! which increases by exactly one per message, and [`Consumer::next`] reports anything else as
//! a broken consumer.

use super::batch::Incoming;
use super::FeedError;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use chrono::DateTime;
use futures::StreamExt;
use std::time::Duration;

/// The server sends a heartbeat after this long without a delivery; two missed ones break the
/// consumer (async-nats reports them).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long a pull request waits on the server for messages before it expires.
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// Who reads, which decides the consumer's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reader {
    /// A live reader: a durable consumer of this name (`nats consumer ls` shows who reads),
    /// replaced whenever the reader opens it. A broken consumer is the caller's to reopen at its
    /// stored position.
    Durable(String),
    /// A read-only rebuild: an ephemeral in-memory consumer, gone by itself when the reader
    /// stops; a broken one is replaced at the next sequence by the feed.
    History,
}

/// Delivery of the events after stream sequence `seq` (0: all of them).
fn deliver_after(seq: u64) -> DeliverPolicy {
    match seq {
        0 => DeliverPolicy::All,
        seq => DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
    }
}

/// A consumer's deliveries, gap-checked.
pub(super) struct Consumer {
    messages: pull::Stream,
    /// The consumer's name (ephemeral ones are deleted when replaced).
    name: String,
    /// Delivery sequence of the last message handed out (0: none yet).
    delivered: u64,
}

impl Consumer {
    /// Creates `reader`'s consumer on `stream` for `filter`, delivering the events after
    /// `after`, and starts pulling `batch` messages at a time.
    pub async fn open(
        stream: &Stream,
        reader: &Reader,
        filter: &str,
        after: u64,
        batch: usize,
    ) -> Result<Self, FeedError> {
        let config = match reader {
            Reader::Durable(name) => {
                // Only a cursor: whatever position an earlier one had is not ours.
                let _ = stream.delete_consumer(name).await;
                pull::Config {
                    durable_name: Some(name.clone()),
                    deliver_policy: deliver_after(after),
                    ack_policy: AckPolicy::None,
                    filter_subject: filter.to_owned(),
                    ..Default::default()
                }
            }
            Reader::History => pull::Config {
                deliver_policy: deliver_after(after),
                ack_policy: AckPolicy::None,
                filter_subject: filter.to_owned(),
                // Gone by itself when a reader stops without deleting it.
                inactive_threshold: Duration::from_secs(30),
                num_replicas: 1,
                memory_storage: true,
                ..Default::default()
            },
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| FeedError::Open(format!("creating a consumer after {after}: {e}")))?;
        let name = consumer.cached_info().name.clone();
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch.max(1))
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| FeedError::Open(format!("pulling from consumer `{name}`: {e}")))?;
        Ok(Self {
            messages,
            name,
            delivered: 0,
        })
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message and the server's count of those still to come after it (waiting as long
    /// as it takes), or why the consumer is broken.
    pub async fn next(&mut self) -> Result<(Incoming, u64), FeedError> {
        let message = match self.messages.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(FeedError::Broken(e.to_string())),
            None => return Err(FeedError::Broken("the message stream ended".into())),
        };
        let info = message
            .info()
            .map_err(|e| FeedError::Broken(format!("reading a delivery's metadata: {e}")))?;
        if info.consumer_sequence != self.delivered + 1 {
            return Err(FeedError::Gap {
                delivered: info.consumer_sequence,
                after: self.delivered,
            });
        }
        self.delivered = info.consumer_sequence;
        let nanos = info.published.unix_timestamp_nanos();
        // Microseconds, as PostgreSQL keeps it (dead letters are stamped with it).
        let micros = i64::try_from(nanos / 1000).unwrap_or(i64::MAX);
        let stored_at = DateTime::from_timestamp_micros(micros).unwrap_or_default();
        let incoming = Incoming {
            seq: info.stream_sequence,
            subject: message.subject.as_str().to_owned(),
            payload: message.payload.clone(),
            stored_at,
        };
        Ok((incoming, info.pending))
    }
}
