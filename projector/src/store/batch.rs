//! One batch, exactly once: in ONE transaction, lock the position, skip what is at or below it,
//! parse (bad input becomes a dead letter), load, fold, write and advance the position. Until
//! this returns, nothing has happened: a failed batch is read again from the stored position.
//! This path writes read models and nothing else: it cannot publish, so a replay through it
//! cannot re-fire side effects.

use crate::error::ProjectorError;
use crate::fold::model::{DeadLetterRow, Time};
use crate::fold::{self, Touched};
use crate::store;
use crate::store::cache::RowCache;
use bytes::Bytes;
use chrono::{DurationRound, TimeDelta};
use events::{Event, Subjects};
use std::collections::BTreeMap;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// One message read from the stream.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
    /// When JetStream stored it (dead letters are stamped with this, not with "now").
    pub stored_at: Time,
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events folded into the read models.
    pub applied: usize,
    /// Events at or below the stored position (redeliveries, duplicates).
    pub skipped: usize,
    pub dead_lettered: usize,
    /// The position after the batch.
    pub position: i64,
    /// Applied events by type.
    pub by_type: BTreeMap<&'static str, usize>,
}

/// Where the batch goes: the consumer name owning the position row and the stream it reads.
#[derive(Clone, Debug)]
pub struct Target {
    pub consumer: String,
    pub stream: String,
    pub subjects: Subjects,
}

/// Stored times are microseconds; folding truncated times keeps live and rebuilt rows identical
/// whatever the batch boundaries.
fn micros(time: Time) -> Time {
    time.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(time)
}

enum Parsed {
    Event(Box<Event>),
    Dead(String),
}

fn parse(target: &Target, message: &Incoming) -> Parsed {
    match Event::from_slice(&message.payload) {
        Err(e) => Parsed::Dead(e.to_string()),
        Ok(mut event) => {
            if !target.subjects.is_subject_of(&event, &message.subject) {
                return Parsed::Dead(format!(
                    "published on `{}` but this event belongs on `{}`",
                    message.subject,
                    target.subjects.of(&event)
                ));
            }
            event.time = micros(event.time);
            if let events::EventData::RunActivity(a) = &mut event.data {
                a.at = micros(a.at);
            }
            if let events::EventData::RunLivenessClassified(l) = &mut event.data {
                l.last_useful_action_at = l.last_useful_action_at.map(micros);
            }
            Parsed::Event(Box::new(event))
        }
    }
}

/// A batch parsed and ready to apply. Preparing is pure CPU work, so it can run while the
/// previous batch is in the database.
pub struct Prepared {
    messages: Vec<Incoming>,
    parsed: Vec<Parsed>,
}

impl Prepared {
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

    /// Splits off the messages after sequence `seq` (they keep their parse).
    pub fn split_after(&mut self, seq: u64) -> Prepared {
        let at = self.messages.partition_point(|m| m.seq <= seq);
        Prepared {
            messages: self.messages.split_off(at),
            parsed: self.parsed.split_off(at),
        }
    }
}

/// Parses a batch (stream order).
pub fn prepare(target: &Target, messages: Vec<Incoming>) -> Prepared {
    let parsed = messages.iter().map(|m| parse(target, m)).collect();
    Prepared { messages, parsed }
}

impl Prepared {
    /// An empty batch with room for `capacity` messages.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            messages: Vec::with_capacity(capacity),
            parsed: Vec::with_capacity(capacity),
        }
    }

    /// Parses `message` and appends it (messages must be pushed in stream order).
    pub fn push(&mut self, target: &Target, message: Incoming) {
        self.parsed.push(parse(target, &message));
        self.messages.push(message);
    }
}

/// How a writer's batches commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// Each commit waits for its WAL flush: what the live read models and their readers need.
    Synchronous,
    /// Commits return before their WAL flush (`synchronous_commit = off`). A database crash may
    /// lose the last commits, but whole batches only, rows and position together, so the writer
    /// resumes from an earlier position and ends identical. For a replay's scratch schema, which
    /// nobody reads until the swap (itself a synchronous commit, which flushes everything before it).
    Asynchronous,
}

/// What one writer keeps from batch to batch.
#[derive(Debug)]
pub struct Session {
    pub cache: RowCache,
    pub commit: CommitMode,
}

impl Session {
    /// Rows kept between batches by default (all tables together); a few MiB.
    pub const CACHE_ROWS: usize = 10_000;

    pub fn new(commit: CommitMode) -> Self {
        Self {
            cache: RowCache::new(Self::CACHE_ROWS),
            commit,
        }
    }

    /// No rows kept between batches: every batch loads what it needs.
    pub fn uncached() -> Self {
        Self {
            cache: RowCache::new(0),
            commit: CommitMode::Synchronous,
        }
    }
}

/// Applies `messages` (in stream order) in one transaction.
pub async fn apply_batch(
    client: &mut Client,
    target: &Target,
    messages: &[Incoming],
) -> Result<BatchReport, ProjectorError> {
    apply_prepared(
        client,
        target,
        &prepare(target, messages.to_vec()),
        &mut Session::uncached(),
    )
    .await
}

/// Applies a prepared batch in one transaction. A failed batch empties the session's cache.
pub async fn apply_prepared(
    client: &mut Client,
    target: &Target,
    batch: &Prepared,
    session: &mut Session,
) -> Result<BatchReport, ProjectorError> {
    let applied = apply_in_transaction(client, target, batch, session).await;
    if applied.is_err() {
        session.cache.clear();
    }
    applied
}

async fn apply_in_transaction(
    client: &mut Client,
    target: &Target,
    batch: &Prepared,
    session: &mut Session,
) -> Result<BatchReport, ProjectorError> {
    let tx = client.transaction().await?;
    // The lock is taken before any table is named, so a replay's schema swap (which holds this
    // lock) is seen by the next batch: its table names resolve after the swap, in the new schema.
    // The statements after it go out in the same flight (one round trip, not four): PostgreSQL
    // reads and parses each only once the one before has finished, so they still resolve after
    // the lock is granted.
    let commit_mode = async {
        if session.commit == CommitMode::Asynchronous {
            tx.batch_execute("SET LOCAL synchronous_commit TO off")
                .await?;
        }
        Ok::<_, tokio_postgres::Error>(())
    };
    let (_, _, locked) = futures::try_join!(
        async {
            tx.execute_typed(
                "SELECT pg_advisory_xact_lock(hashtext('runledger.projector.' || current_schema() || '.' || $1::text))",
                &[(&target.consumer, Type::TEXT)],
            )
            .await
            .map_err(ProjectorError::from)
        },
        async { commit_mode.await.map_err(ProjectorError::from) },
        store::lock_position(&tx, &target.consumer, &target.stream),
    )?;
    let position = locked.last_seq;
    let cache = &mut session.cache;
    cache.begin(position, locked.writer);
    // Messages come in stream order; one at or below the position, or repeated within the
    // batch, was applied already. Folding each sequence once is what keeps appended rows unique.
    let mut newest = position;
    let fresh: Vec<(&Incoming, &Parsed)> = batch
        .messages
        .iter()
        .zip(&batch.parsed)
        .filter(|(m, _)| {
            let seq = m.seq as i64;
            let fresh = seq > newest;
            newest = newest.max(seq);
            fresh
        })
        .collect();
    let mut report = BatchReport {
        skipped: batch.messages.len() - fresh.len(),
        position,
        ..BatchReport::default()
    };
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(report);
    }
    let mut touched = Touched::default();
    for (_, p) in &fresh {
        if let Parsed::Event(e) = p {
            touched.add(e);
        }
    }
    let mut model = store::load_through(&tx, &touched, cache).await?;
    let mut dead = Vec::new();
    for (message, p) in &fresh {
        let reason = match p {
            Parsed::Dead(reason) => reason.clone(),
            Parsed::Event(event) => match fold::apply(&mut model, message.seq as i64, event) {
                Ok(()) => {
                    report.applied += 1;
                    *report
                        .by_type
                        .entry(event.event_type().as_str())
                        .or_default() += 1;
                    continue;
                }
                Err(rejection) => rejection.0,
            },
        };
        dead.push(DeadLetterRow {
            seq: message.seq as i64,
            subject: message.subject.clone(),
            payload: message.payload.to_vec(),
            reason,
            at: micros(message.stored_at),
        });
    }
    report.dead_lettered = dead.len();
    model.appends.dead_letters = dead;
    let last = fresh.last().map_or(position, |(m, _)| m.seq as i64);
    futures::try_join!(
        store::write(&tx, &model),
        store::advance_position(
            &tx,
            &target.consumer,
            cache.writer(),
            last,
            report.applied as i64,
            report.dead_lettered as i64,
        ),
    )?;
    tx.commit().await?;
    cache.keep(model, last);
    report.position = last;
    Ok(report)
}
