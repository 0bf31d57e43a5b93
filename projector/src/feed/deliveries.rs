//! Where a pull consumer's deliveries come from: async-nats' pull stream on the client's
//! connection, or pull requests and deliveries on a plain connection of the reader's own
//! ([`crate::feed::wire`]). The history reader and the live cursor both read through this, and check
//! what it hands out (consumer sequence +1) the same way whichever it is.

use crate::error::ProjectorError;
use crate::feed::cursor::{delivered, incoming, js_err, DeliveryInfo};
use crate::feed::wire::{self, Endpoint, WireError};
use crate::store::batch::Incoming;
use async_nats::jetstream::consumer::{pull, Consumer};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// The server sends a heartbeat after this long without a delivery; two missed ones break the
/// consumer.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long a pull request waits on the server for messages before it expires.
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// A delivery, or why the consumer is broken (the reader reopens or replaces it).
pub(crate) type Next = Result<(Incoming, DeliveryInfo), String>;

/// Where a consumer's deliveries come from.
pub(crate) enum Deliveries {
    /// async-nats' pull stream, on the client's connection.
    Client(Box<pull::Stream>),
    /// Pull requests and deliveries on a plain connection of the reader's own.
    Wire(WirePull),
}

impl Deliveries {
    /// The deliveries of `consumer`, pulled `batch` at a time: over a connection of their own to
    /// `wire` if there is one (which becomes `None` when that connection cannot be made, so that
    /// a reopened reader does not try again), over the consumer's client otherwise.
    pub async fn open(
        consumer: &Consumer<pull::Config>,
        wire: &mut Option<Endpoint>,
        batch: usize,
        name: &str,
    ) -> Result<Self, async_nats::Error> {
        let info = consumer.cached_info();
        if let Some(endpoint) = wire.as_ref() {
            match WirePull::open(endpoint, &info.stream_name, &info.name, batch, name).await {
                Ok(pull) => return Ok(Self::Wire(pull)),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "reading over the NATS client instead of a connection of its own"
                    );
                    *wire = None;
                }
            }
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await?;
        Ok(Self::Client(Box::new(messages)))
    }

    /// Whether deliveries come over a connection of their own.
    pub fn over_wire(&self) -> bool {
        matches!(self, Self::Wire(_))
    }

    /// The next delivery (waiting as long as it takes), or why the consumer is broken; an error
    /// for a delivery that is not one.
    pub async fn next(&mut self) -> Result<Next, ProjectorError> {
        match self {
            Self::Client(messages) => match messages.next().await {
                Some(Ok(message)) => incoming(&message).map(Ok),
                Some(Err(e)) => Ok(Err(e.to_string())),
                None => Ok(Err("the message stream ended".to_owned())),
            },
            Self::Wire(pull) => pull.next().await,
        }
    }
}

/// A pull consumer drained over a [`wire::Connection`]: requests of `batch` messages,
/// the next one sent when half of those requested have arrived (as async-nats does), with
/// heartbeats while the server has nothing to send.
pub(crate) struct WirePull {
    conn: wire::Connection,
    /// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`
    request: String,
    inbox: String,
    /// Messages requested and neither delivered nor expired.
    requested: usize,
    /// When the connection last brought anything.
    heard: Instant,
    /// When [`WirePull::next`] was last called.
    called: Instant,
    batch: usize,
}

impl WirePull {
    async fn open(
        endpoint: &Endpoint,
        stream: &str,
        consumer: &str,
        batch: usize,
        name: &str,
    ) -> Result<Self, WireError> {
        let mut conn = wire::Connection::open(endpoint, name).await?;
        let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
        conn.subscribe(&inbox, 1);
        Ok(Self {
            conn,
            request: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            requested: 0,
            heard: Instant::now(),
            called: Instant::now(),
            batch: batch.max(1),
        })
    }

    async fn next(&mut self) -> Result<Next, ProjectorError> {
        // Silence while nobody was listening (the caller busy elsewhere, say a rebuild waiting
        // for the database) is no sign of a broken consumer: heartbeats count from here then.
        let now = Instant::now();
        if now.duration_since(self.called) > HEARTBEAT {
            self.heard = self.heard.max(now);
        }
        self.called = now;
        loop {
            if self.requested <= self.batch / 2 {
                let request = serde_json::json!({
                    "batch": self.batch,
                    "expires": PULL_EXPIRES.as_nanos() as u64,
                    "idle_heartbeat": HEARTBEAT.as_nanos() as u64,
                });
                self.conn
                    .publish(&self.request, &self.inbox, request.to_string().as_bytes());
                self.requested += self.batch;
            }
            let frame = match self.conn.buffered() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    // Only a read from the socket can wait, so only it needs a deadline.
                    let deadline = self.heard + 2 * HEARTBEAT;
                    match tokio::time::timeout_at(deadline, self.conn.fill()).await {
                        Ok(Ok(())) => {
                            self.heard = Instant::now();
                            continue;
                        }
                        Ok(Err(e)) => return Ok(Err(e.to_string())),
                        Err(_) => return Ok(Err("two heartbeats missed".to_owned())),
                    }
                }
                Err(e) => return Ok(Err(e.to_string())),
            };
            if !frame.reply.is_empty() {
                self.requested = self.requested.saturating_sub(1);
                return delivery(&frame).map(Ok);
            }
            match frame.status() {
                Some(100) => {}
                // A request expired: what it did not deliver is no longer requested.
                Some(408) => {
                    let undelivered = frame
                        .header("Nats-Pending-Messages")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(self.batch);
                    self.requested = self.requested.saturating_sub(undelivered);
                }
                Some(code) => return Ok(Err(format!("status {code} {}", frame.description()))),
                None => {
                    return Ok(Err(
                        "a message that is neither a delivery nor a status".into()
                    ))
                }
            }
        }
    }
}

/// A JetStream delivery as the batch path takes it.
fn delivery(frame: &wire::Frame) -> Result<(Incoming, DeliveryInfo), ProjectorError> {
    fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, ProjectorError> {
        std::str::from_utf8(bytes)
            .map_err(|_| js_err("reading a delivery", format!("its {what} is not UTF-8")))
    }
    // A copy, so that the read buffer goes as soon as its deliveries are parsed: a slice would
    // keep all of it (subjects, headers, neighbours) for as long as the batch lives.
    delivered(
        text(&frame.subject, "subject")?,
        text(&frame.reply, "reply subject")?,
        Bytes::copy_from_slice(&frame.payload),
    )
}
