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

use crate::error::ProjectorError;
use crate::feed::deliveries::Deliveries;
use crate::feed::wire::Endpoint;
use crate::store::batch::Incoming;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::Context;
use chrono::DateTime;
use events::Subjects;

/// Delivery of the events after stream sequence `seq` (0: all of them).
pub(crate) fn deliver_after(seq: u64) -> DeliverPolicy {
    match seq {
        0 => DeliverPolicy::All,
        seq => DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
    }
}

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
    messages: Deliveries,
    /// Delivery sequence of the last event handed out (0: none yet).
    delivered: u64,
    /// An error was reported: nothing more is handed out (reopen at the stored position).
    failed: bool,
}

impl Cursor {
    /// Positions the consumer `consumer` of `stream` right after `position` (which the caller's
    /// database owns): any previous consumer of that name is replaced, since it is only a cursor.
    /// `batch_size` is how many events one pull request asks for. With `wire`, deliveries come
    /// over a plain connection of the cursor's own ([`crate::feed::wire`]) when it can be made.
    pub async fn open(
        js: &Context,
        wire: Option<&Endpoint>,
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
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(consumer.to_owned()),
                deliver_policy: deliver_after(position.max(0) as u64),
                ack_policy: AckPolicy::None,
                filter_subject: subjects.all(),
                ..Default::default()
            })
            .await
            .map_err(|e| js_err(&format!("creating the consumer `{consumer}`"), e))?;
        let messages = Deliveries::open(
            &consumer,
            &mut wire.cloned(),
            batch_size.max(1),
            "runledger cursor",
        )
        .await
        .map_err(|e| js_err("opening the message stream", e))?;
        Ok(Self {
            messages,
            delivered: 0,
            failed: false,
        })
    }

    /// Whether deliveries come over the cursor's own connection ([`crate::feed::wire`]).
    pub fn over_wire(&self) -> bool {
        self.messages.over_wire()
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
        let (incoming, info) = match self.messages.next().await? {
            Ok(delivery) => delivery,
            Err(broken) => return Err(js_err("receiving", broken)),
        };
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

/// What a delivery's `$JS.ACK` reply subject says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeliveryInfo {
    pub stream_sequence: u64,
    pub consumer_sequence: u64,
    /// Messages after this one that match the consumer's filter.
    pub pending: u64,
    /// When JetStream stored the message, in nanoseconds since the Unix epoch.
    pub stored_nanos: i64,
}

impl DeliveryInfo {
    /// Reads the reply subject of a JetStream delivery, in either layout of ADR-15:
    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>` or the one with
    /// `<domain>.<account hash>.` before the stream name (and possibly more tokens after
    /// `<pending>`). Every reader parses this once per event, so it is read in one pass without
    /// building anything (async-nats' `Message::info` also builds a date the projector only
    /// turns back into nanoseconds).
    pub(crate) fn parse(reply: &str) -> Option<Self> {
        let rest = reply.strip_prefix("$JS.ACK.")?;
        let mut tokens = [""; 12];
        let mut count = 0;
        for token in rest.split('.') {
            if count == tokens.len() {
                break;
            }
            tokens[count] = token;
            count += 1;
        }
        // Skip `<stream>.<consumer>.<delivered>`, and the domain and account hash before them.
        let numbers = match count {
            7 => &tokens[3..7],
            n if n >= 9 => &tokens[5..9],
            _ => return None,
        };
        let number = |token: &str| -> Option<u64> {
            if token.is_empty() || token.len() > 19 || !token.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(
                token
                    .bytes()
                    .fold(0u64, |n, b| n * 10 + u64::from(b - b'0')),
            )
        };
        Some(Self {
            stream_sequence: number(numbers[0])?,
            consumer_sequence: number(numbers[1])?,
            stored_nanos: i64::try_from(number(numbers[2])?).ok()?,
            pending: number(numbers[3])?,
        })
    }
}

/// A delivered message as the batch path takes it, stamped with JetStream's stored time.
pub(crate) fn incoming(
    message: &async_nats::jetstream::Message,
) -> Result<(Incoming, DeliveryInfo), ProjectorError> {
    let reply = message.reply.as_deref().unwrap_or_default();
    delivered(&message.subject, reply, message.payload.clone())
}

/// A delivery from its subject, its `$JS.ACK` reply subject and its payload, whichever
/// connection it came over.
pub(crate) fn delivered(
    subject: &str,
    reply: &str,
    payload: bytes::Bytes,
) -> Result<(Incoming, DeliveryInfo), ProjectorError> {
    let info = DeliveryInfo::parse(reply).ok_or_else(|| {
        js_err(
            "reading message metadata",
            format!("`{reply}` is not a JetStream delivery's reply subject"),
        )
    })?;
    let incoming = Incoming {
        seq: info.stream_sequence,
        subject: subject.to_owned(),
        payload,
        stored_at: DateTime::from_timestamp_nanos(info.stored_nanos),
    };
    Ok((incoming, info))
}

#[cfg(test)]
mod tests {
    use super::DeliveryInfo;

    #[test]
    fn reads_both_reply_subject_layouts() {
        let expected = DeliveryInfo {
            stream_sequence: 1234,
            consumer_sequence: 77,
            pending: 9,
            stored_nanos: 1_764_633_600_123_456_789,
        };
        let old = "$JS.ACK.EVENTS.reader.1.1234.77.1764633600123456789.9";
        assert_eq!(DeliveryInfo::parse(old), Some(expected));
        let new = "$JS.ACK.hub.ACCHASH.EVENTS.reader.1.1234.77.1764633600123456789.9";
        assert_eq!(DeliveryInfo::parse(new), Some(expected));
        let longer = "$JS.ACK._.ACCHASH.EVENTS.reader.3.1234.77.1764633600123456789.9.r4nd0m.x";
        assert_eq!(DeliveryInfo::parse(longer), Some(expected));
    }

    #[test]
    fn rejects_what_is_not_a_delivery() {
        for reply in [
            "",
            "_INBOX.abc",
            "$JS.ACK.EVENTS.reader.1.1234.77.1764633600123456789",
            "$JS.ACK.EVENTS.reader.1.1234.77.1764633600123456789.9.extra",
            "$JS.ACK.EVENTS.reader.1.12x4.77.1764633600123456789.9",
            "$JS.ACK.EVENTS.reader.1.-1.77.1764633600123456789.9",
            "$JS.ACK.EVENTS.reader.1..77.1764633600123456789.9",
            "$JS.ACK.EVENTS.reader.1.1234.77.99999999999999999999.9",
            "$JS.ACK.EVENTS.reader.1.1234.77.9999999999999999999.9",
        ] {
            assert_eq!(DeliveryInfo::parse(reply), None, "{reply}");
        }
    }
}
