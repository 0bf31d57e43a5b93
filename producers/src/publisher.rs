//! [`Publisher`]: validated, deduplicated, pipelined publishing.

use crate::error::PublishError;
use async_nats::jetstream::context::{
    GetStreamByNameErrorKind, PublishAckFuture, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::Context;
use bytes::Bytes;
use events::{ContractError, Event, Subjects, MAX_EVENT_BYTES};
use futures::stream::{FuturesOrdered, StreamExt};
use std::time::Duration;

/// How long a publish waits for a stream between leaders (a JetStream cluster elects a new one
/// within seconds of losing a node).
const LEADER_WAIT: Duration = Duration::from_secs(20);

/// How a [`Publisher`] behaves.
#[derive(Clone, Debug)]
pub struct PublisherSettings {
    /// Publishes whose acks are awaited at once. Pipelining is what makes bulk publishing fast;
    /// the bound keeps memory and server load flat.
    pub max_in_flight: usize,
    /// Attempts per event before giving up (each after an ack timeout).
    pub max_attempts: u32,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_attempts: 5,
        }
    }
}

/// The stored position of a published event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Stream sequence of the event (of the first copy, for a duplicate).
    pub sequence: u64,
    /// The stream already held an event with this id; nothing new was stored.
    pub duplicate: bool,
}

/// Publishes runledger events into the stream.
#[derive(Clone)]
pub struct Publisher {
    js: Context,
    subjects: Subjects,
    settings: PublisherSettings,
}

/// An event already encoded: the subject, id and exact bytes it is published with (an outbox
/// keeps these and publishes them as they are, never parsed and encoded again).
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The subject.
    pub subject: String,
    /// The event id, sent as `Nats-Msg-Id`.
    pub id: String,
    /// The event's bytes.
    pub payload: Bytes,
}

type Prepared = Encoded;

impl Publisher {
    pub fn new(js: Context, subjects: Subjects, settings: PublisherSettings) -> Self {
        Self {
            js,
            subjects,
            settings,
        }
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    fn prepare(&self, event: &Event) -> Result<Prepared, PublishError> {
        let payload = event.to_vec();
        if payload.len() > MAX_EVENT_BYTES {
            return Err(ContractError::TooLarge {
                size: payload.len(),
                limit: MAX_EVENT_BYTES,
            }
            .into());
        }
        Ok(Prepared {
            subject: self.subjects.of(event),
            id: event.id.to_string(),
            payload: payload.into(),
        })
    }

    async fn send(
        &self,
        p: &Prepared,
    ) -> Result<PublishAckFuture, async_nats::jetstream::context::PublishError> {
        self.js
            .send_publish(
                p.subject.clone(),
                PublishMessage::build()
                    .payload(p.payload.clone())
                    .message_id(&p.id),
            )
            .await
    }

    /// Publishes one event and waits for its ack.
    pub async fn publish(&self, event: &Event) -> Result<PublishOutcome, PublishError> {
        let mut results = self.publish_all(std::slice::from_ref(event)).await;
        results.pop().expect("one result per event")
    }

    /// Publishes `events` in order with up to `max_in_flight` acks outstanding; returns one
    /// result per event, in input order. A failure of one event does not stop the others.
    pub async fn publish_all(&self, events: &[Event]) -> Vec<Result<PublishOutcome, PublishError>> {
        // Each event is encoded just before it is sent, so encoding overlaps the acks in flight.
        self.publish_prepared(events.iter().map(|event| self.prepare(event)))
            .await
    }

    /// Publishes already encoded events as they are (subject, id and bytes), like
    /// [`Publisher::publish_all`].
    pub async fn publish_encoded(
        &self,
        events: Vec<Encoded>,
    ) -> Vec<Result<PublishOutcome, PublishError>> {
        self.publish_prepared(events.into_iter().map(|e| {
            if e.payload.len() > MAX_EVENT_BYTES {
                return Err(ContractError::TooLarge {
                    size: e.payload.len(),
                    limit: MAX_EVENT_BYTES,
                }
                .into());
            }
            Ok(e)
        }))
        .await
    }

    async fn publish_prepared(
        &self,
        events: impl ExactSizeIterator<Item = Result<Prepared, PublishError>>,
    ) -> Vec<Result<PublishOutcome, PublishError>> {
        let mut results: Vec<Option<Result<PublishOutcome, PublishError>>> =
            (0..events.len()).map(|_| None).collect();
        // Sends happen here, in input order; only the acks are awaited concurrently.
        let mut in_flight = FuturesOrdered::new();
        for (index, prepared) in events.enumerate() {
            let p = match prepared {
                Ok(p) => p,
                Err(e) => {
                    results[index] = Some(Err(e));
                    continue;
                }
            };
            while in_flight.len() >= self.settings.max_in_flight.max(1) {
                if let Some((i, r)) = in_flight.next().await {
                    results[i] = Some(r);
                }
            }
            let first = self.send(&p).await;
            in_flight.push_back(async move {
                let first = match first {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                (index, self.settle(&p, first).await)
            });
        }
        while let Some((i, r)) = in_flight.next().await {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect()
    }

    /// Whether a stream captures the publisher's subjects (or the servers cannot say now, which
    /// during a leader election is likely too).
    async fn stream_exists(&self) -> bool {
        match self.js.stream_by_subject(self.subjects.all()).await {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                GetStreamByNameErrorKind::NotFound | GetStreamByNameErrorKind::InvalidSubject
            ),
        }
    }

    /// Turns the first attempt's result into the event's result, retrying timeouts with the
    /// same id and payload (within the duplicate window the stream stores it once).
    async fn settle(
        &self,
        p: &Prepared,
        first: Result<PublishAck, async_nats::jetstream::context::PublishError>,
    ) -> Result<PublishOutcome, PublishError> {
        let mut attempt = 1;
        let mut outcome = first;
        let started = tokio::time::Instant::now();
        loop {
            let err = match outcome {
                Ok(ack) => {
                    // A retry that finds the id stored almost always finds its own earlier
                    // attempt (the ack was lost, not the write): that is a new event, not a
                    // duplicate of somebody else's.
                    return Ok(PublishOutcome {
                        sequence: ack.sequence,
                        duplicate: ack.duplicate && attempt == 1,
                    });
                }
                Err(err) => err,
            };
            let retryable = matches!(
                err.kind(),
                PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::MaxAckPending
            );
            // Nobody answered: either no stream captures the subject (rejected at once), or
            // the stream is between leaders (a cluster node died): retried under the same id
            // until a new leader answers, for at most `LEADER_WAIT`.
            let leaderless = err.kind() == PublishErrorKind::StreamNotFound
                && started.elapsed() < LEADER_WAIT
                && self.stream_exists().await;
            if leaderless {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
                attempt += 1;
                outcome = match self.send(p).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                continue;
            }
            if !retryable {
                return Err(PublishError::Rejected(err.to_string()));
            }
            if attempt >= self.settings.max_attempts {
                return Err(PublishError::Unacknowledged {
                    attempts: attempt,
                    last: err.to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            attempt += 1;
            outcome = match self.send(p).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
        }
    }
}
