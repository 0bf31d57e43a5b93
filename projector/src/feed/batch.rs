//! What the feed hands out: messages as stored in the stream, each parsed once into an event (or
//! the reason it is a dead letter), in stream order. The projector, the reconciler and every
//! rebuild take these; nothing else parses an event read from the stream.

use crate::fold::model::{DeadLetterRow, Time};
use bytes::Bytes;
use chrono::{DurationRound, TimeDelta};
use events::{Event, EventData, Subjects};

/// One message read from the stream.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
    /// When JetStream stored it (dead letters are stamped with this, not with "now").
    pub stored_at: Time,
}

/// A message parsed: the event, normalised, or why it cannot be one.
#[derive(Clone, Debug)]
pub enum Parsed {
    Event(Box<Event>),
    Dead(String),
}

impl Parsed {
    /// The event, unless the message is a dead letter.
    pub fn event(&self) -> Option<&Event> {
        match self {
            Parsed::Event(event) => Some(event),
            Parsed::Dead(_) => None,
        }
    }
}

impl Incoming {
    /// The message as a dead letter with `reason`. The subject and the reason are text columns
    /// (the payload is kept as bytes): a NUL in either (a reason may quote the bad value) is
    /// written as `\u0000`, so the dead letter itself can always be stored.
    pub fn dead_letter(&self, reason: &str) -> DeadLetterRow {
        let storable = |text: &str| text.replace('\0', "\\u0000");
        DeadLetterRow {
            seq: self.seq as i64,
            subject: storable(&self.subject),
            payload: self.payload.to_vec(),
            reason: storable(reason),
            at: self.stored_at,
        }
    }
}

/// Parses a message of a stream with `subjects`: a valid event on the subject it belongs on,
/// within what the read models can store (`events::bounds`, against the time the stream stored
/// it, so every reader and every replay decides alike), with its times normalised
/// ([`normalize`]); anything else is a dead letter with its reason.
pub fn parse(subjects: &Subjects, message: &Incoming) -> Parsed {
    match Event::from_slice(&message.payload) {
        Err(e) => Parsed::Dead(e.to_string()),
        Ok(mut event) => {
            if !subjects.is_subject_of(&event, &message.subject) {
                return Parsed::Dead(format!(
                    "published on `{}` but this event belongs on `{}`",
                    message.subject,
                    subjects.of(&event)
                ));
            }
            if let Err(e) = event.check_bounds(&message.payload, message.stored_at) {
                return Parsed::Dead(e.to_string());
            }
            normalize(&mut event);
            Parsed::Event(Box::new(event))
        }
    }
}

/// Truncates every time of `event` to microseconds, as PostgreSQL stores them: folding
/// truncated times keeps live and rebuilt rows, the reconciler's private fold and its follow-ups
/// identical to the microsecond, whatever the batch boundaries.
pub fn normalize(event: &mut Event) {
    fn micros(time: Time) -> Time {
        time.duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or(time)
    }
    event.time = micros(event.time);
    match &mut event.data {
        EventData::RunActivity(a) => a.at = micros(a.at),
        EventData::RunLivenessClassified(l) => {
            l.last_useful_action_at = l.last_useful_action_at.map(micros)
        }
        EventData::ReconcilerTicked(t) => t.at = micros(t.at),
        EventData::IssueFollowUpRefused(r) => r.retry_after = r.retry_after.map(micros),
        EventData::IssueFollowUpDeferred(d) => d.due_at = micros(d.due_at),
        _ => {}
    }
}

/// Messages in stream order with their parse.
#[derive(Debug, Default)]
pub struct Batch {
    messages: Vec<Incoming>,
    parsed: Vec<Parsed>,
}

impl Batch {
    /// An empty batch with room for `capacity` messages.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            messages: Vec::with_capacity(capacity),
            parsed: Vec::with_capacity(capacity),
        }
    }

    /// Parses `messages` (stream order).
    pub fn parse(subjects: &Subjects, messages: Vec<Incoming>) -> Self {
        let parsed = messages.iter().map(|m| parse(subjects, m)).collect();
        Self { messages, parsed }
    }

    /// Parses `message` and appends it (messages must be pushed in stream order).
    pub fn push(&mut self, subjects: &Subjects, message: Incoming) {
        self.parsed.push(parse(subjects, &message));
        self.messages.push(message);
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Sequence of the last message.
    pub fn last_seq(&self) -> Option<u64> {
        self.messages.last().map(|m| m.seq)
    }

    /// The messages and their parse, in stream order.
    pub fn iter(&self) -> impl Iterator<Item = (&Incoming, &Parsed)> {
        self.messages.iter().zip(&self.parsed)
    }

    /// The messages.
    pub fn messages(&self) -> &[Incoming] {
        &self.messages
    }

    /// The first half of the messages and the rest, with their parse (for bisecting a batch that
    /// PostgreSQL refused).
    pub fn halves(&self) -> (Batch, Batch) {
        let at = self.messages.len() / 2;
        let part = |range: std::ops::Range<usize>| Batch {
            messages: self.messages[range.clone()].to_vec(),
            parsed: self.parsed[range].to_vec(),
        };
        (part(0..at), part(at..self.messages.len()))
    }

    /// The same messages, every one a dead letter with `reason`.
    pub fn refused(&self, reason: &str) -> Batch {
        Batch {
            messages: self.messages.clone(),
            parsed: vec![Parsed::Dead(reason.to_owned()); self.messages.len()],
        }
    }

    /// Splits off the messages after sequence `seq` (they keep their parse).
    pub fn split_after(&mut self, seq: u64) -> Batch {
        let at = self.messages.partition_point(|m| m.seq <= seq);
        Batch {
            messages: self.messages.split_off(at),
            parsed: self.parsed.split_off(at),
        }
    }
}
