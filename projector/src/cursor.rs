//! A consumer's read position in the stream, owned by PostgreSQL.
//!
//! The projector and the reconciler each keep their position in their own database, in the same
//! transaction as what they derive from the events. JetStream only has to hand out the events
//! after that position, in order, without gaps, so the consumer is a cursor and nothing more: a
//! durable pull consumer (named, so `nats consumer ls` shows who reads) recreated at
//! `position + 1` whenever a reader starts, with `AckPolicy::None`. Nothing is acknowledged,
//! before or after commit: progress is the stored position, and redelivery is re-reading from it.
//! Not tracking acks also makes delivery cheaper for the server (no pending set, no ack traffic),
//! which is what a reader following a busy stream spends most of its time waiting for.
//!
//! Without acks the server never redelivers, so a delivery lost on the way (a reconnect while a
//! pull request is open) would silently become a gap. Every delivery carries the consumer's
//! delivery sequence, which increases by exactly one per message: [`Cursor::next`] checks it and
//! reports a gap as an error, and the reader starts again from its stored position.

use crate::batch::Incoming;
use crate::error::ProjectorError;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Context;
use chrono::DateTime;
use events::Subjects;
use futures::StreamExt;

/// A JetStream failure, with what was being done.
pub(crate) fn js_err(context: &str, e: impl std::fmt::Display) -> ProjectorError {
    ProjectorError::JetStream(format!("{context}: {e}"))
}

/// One event as delivered, with the server's view of what is still to come.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub incoming: Incoming,
    /// Events after this one that match the consumer's filter, when the server sent it.
    pub pending: u64,
}

/// Events after a stored position, in stream order, gap-checked.
pub struct Cursor {
    messages: pull::Stream,
    /// Delivery sequence of the last event handed out (0: none yet).
    delivered: u64,
    /// An error was reported: nothing more is handed out (reopen at the stored position).
    failed: bool,
}

impl Cursor {
    /// Positions the consumer `consumer` of `stream` right after `position` (which the caller's
    /// database owns): any previous consumer of that name is replaced, since it is only a cursor.
    /// `batch_size` is how many events one pull request asks for.
    pub async fn open(
        js: &Context,
        stream: &str,
        consumer: &str,
        subjects: &Subjects,
        position: i64,
        batch_size: usize,
    ) -> Result<Self, ProjectorError> {
        let stream = js
            .get_stream(stream)
            .await
            .map_err(|e| js_err(&format!("opening stream `{stream}`"), e))?;
        let _ = stream.delete_consumer(consumer).await;
        let deliver_policy = if position <= 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: position as u64 + 1,
            }
        };
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(consumer.to_owned()),
                deliver_policy,
                ack_policy: AckPolicy::None,
                filter_subject: subjects.all(),
                ..Default::default()
            })
            .await
            .map_err(|e| js_err(&format!("creating the consumer `{consumer}`"), e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch_size.max(1))
            .messages()
            .await
            .map_err(|e| js_err("opening the message stream", e))?;
        Ok(Self {
            messages,
            delivered: 0,
            failed: false,
        })
    }

    /// The next event (waiting as long as it takes); an error for a broken stream or a gap, and
    /// after that an error on every call: events after a failure would not follow on.
    pub async fn next(&mut self) -> Result<Delivery, ProjectorError> {
        if self.failed {
            return Err(ProjectorError::JetStream(
                "this cursor failed before; reopen it at the stored position".into(),
            ));
        }
        let delivery = self.receive().await;
        self.failed = delivery.is_err();
        delivery
    }

    async fn receive(&mut self) -> Result<Delivery, ProjectorError> {
        let message = match self.messages.next().await {
            None => return Err(js_err("message stream", "ended")),
            Some(Err(e)) => return Err(js_err("receiving", e)),
            Some(Ok(message)) => message,
        };
        let (incoming, info) = incoming(&message)?;
        if info.consumer_sequence != self.delivered + 1 {
            return Err(ProjectorError::JetStream(format!(
                "delivery {} arrived after delivery {}: events were lost on the way; \
                 reading again from the stored position",
                info.consumer_sequence, self.delivered
            )));
        }
        self.delivered = info.consumer_sequence;
        Ok(Delivery {
            incoming,
            pending: info.pending,
        })
    }
}

/// The sequences of a delivery that readers check.
pub(crate) struct DeliveryInfo {
    pub consumer_sequence: u64,
    pub pending: u64,
}

/// A delivered message as the batch path takes it, stamped with JetStream's stored time.
pub(crate) fn incoming(
    message: &async_nats::jetstream::Message,
) -> Result<(Incoming, DeliveryInfo), ProjectorError> {
    let info = message
        .info()
        .map_err(|e| js_err("reading message metadata", e))?;
    let stored_at = DateTime::from_timestamp_nanos(
        i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
    );
    let incoming = Incoming {
        seq: info.stream_sequence,
        subject: message.subject.to_string(),
        payload: message.payload.clone(),
        stored_at,
    };
    Ok((
        incoming,
        DeliveryInfo {
            consumer_sequence: info.consumer_sequence,
            pending: info.pending,
        },
    ))
}
