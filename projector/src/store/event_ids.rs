//! Idempotence by CloudEvent id. JetStream drops a repeated `Nats-Msg-Id` only within its
//! duplicate window (two minutes by default), and only when the header is set; an event re-sent
//! later, under another header or without one, is stored again. Every batch therefore records the
//! id of each event it folds, with a digest of the event's content (`folded_events`, in the same
//! transaction), and before folding looks up the ids of its events: one already folded with the
//! same content is skipped (counted as skipped, like a redelivery), one with other content is
//! dead-lettered as a conflict. Ids are recorded only for events that were folded, so a
//! dead-lettered event can be sent again, fixed, under its id.
//!
//! The digest is SHA-256 of the event's canonical encoding (as parsed, upcast and normalised),
//! so the same event re-serialised by another producer, with its attributes in another order,
//! is the same content.

use crate::error::ProjectorError;
use events::Event;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// SHA-256 of an event's canonical encoding.
pub type Digest = [u8; 32];

/// The digest of `event`'s content.
pub fn digest(event: &Event) -> Digest {
    Sha256::digest(event.to_vec()).into()
}

/// What to do with an event, by its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Never folded: fold it (and [`FoldedIds::folded`] it if the fold accepts it).
    New(Digest),
    /// Folded already, with the same content, at this sequence: skip it.
    Duplicate(i64),
    /// Folded already with other content: dead-letter it with this reason.
    Conflict(String),
}

/// The ids a batch's events may repeat, and the ids the batch folds.
#[derive(Debug, Default)]
pub struct FoldedIds {
    known: HashMap<Uuid, (Digest, i64)>,
    new: Vec<(Uuid, Digest, i64)>,
}

impl FoldedIds {
    /// Loads which of `events`' ids were folded before (one statement).
    pub async fn load<'e>(
        tx: &Transaction<'_>,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<Self, ProjectorError> {
        let ids: Vec<Uuid> = events.into_iter().map(|e| e.id.0).collect();
        let mut known = HashMap::new();
        if !ids.is_empty() {
            // One index probe per id, whatever the planner thinks of the table: during a
            // rebuild it grows from empty faster than statistics follow, and `= ANY($1)` with
            // thousands of ids was planned as a scan of the whole table per batch (quadratic:
            // a 1,000,000-event replay spent most of its time there). `OFFSET 0` keeps the
            // lateral subquery from being flattened into a join the planner could hash.
            let rows = tx
                .query_typed(
                    "SELECT f.event_id, f.digest, f.seq
                       FROM unnest($1::uuid[]) AS asked(id)
                       CROSS JOIN LATERAL (
                           SELECT event_id, digest, seq FROM folded_events
                            WHERE event_id = asked.id OFFSET 0
                       ) f",
                    &[(&ids, Type::UUID_ARRAY)],
                )
                .await?;
            for row in rows {
                let digest: Vec<u8> = row.get(1);
                let digest: Digest = digest.try_into().unwrap_or([0; 32]);
                known.insert(row.get(0), (digest, row.get(2)));
            }
        }
        Ok(Self {
            known,
            new: Vec::new(),
        })
    }

    /// What to do with `event` (earlier events of the batch count as folded once
    /// [`FoldedIds::folded`] was called for them).
    pub fn verdict(&self, event: &Event) -> Verdict {
        let digest = digest(event);
        match self.known.get(&event.id.0) {
            None => Verdict::New(digest),
            Some((known, seq)) if *known == digest => Verdict::Duplicate(*seq),
            Some((_, seq)) => Verdict::Conflict(format!(
                "conflict: event id {} was folded at sequence {seq} with other content",
                event.id
            )),
        }
    }

    /// Records that `event_id`, with `digest`, was folded at `seq`.
    pub fn folded(&mut self, event_id: Uuid, digest: Digest, seq: i64) {
        self.known.insert(event_id, (digest, seq));
        self.new.push((event_id, digest, seq));
    }

    /// Writes the ids folded in this batch. A concurrent writer that folded the same id first
    /// (another partition) makes this fail with a unique violation: the batch is retried and
    /// then sees the id.
    pub async fn write(&self, tx: &Transaction<'_>) -> Result<(), ProjectorError> {
        if self.new.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = self.new.iter().map(|r| r.0).collect();
        let digests: Vec<&[u8]> = self.new.iter().map(|r| &r.1[..]).collect();
        let seqs: Vec<i64> = self.new.iter().map(|r| r.2).collect();
        tx.execute_typed(
            "INSERT INTO folded_events (event_id, digest, seq)
             SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::bigint[])",
            &[
                (&ids, Type::UUID_ARRAY),
                (&digests, Type::BYTEA_ARRAY),
                (&seqs, Type::INT8_ARRAY),
            ],
        )
        .await?;
        Ok(())
    }
}
