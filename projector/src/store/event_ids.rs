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
//! is the same content. The canonical encoding is MessagePack with field names ([`digest`]):
//! every value typed, every field named, so two different events never encode alike, and about
//! 40% fewer instructions to write than JSON (every folded event is digested). Rows written before
//! carry the digest of the event's JSON encoding ([`json_digest`]); a repeat is compared with
//! that too, so those rows keep their meaning without a migration.
//!
//! A rebuild asks differently ([`Lookup::Rebuild`]): its `folded_events` has no primary key
//! while it fills (the key is created at the end, with the other deferred indexes), because
//! keeping a B-tree of random UUIDs up to date was the largest PostgreSQL cost of a rebuild
//! (about 4 µs per event, measured). Instead the rebuild keeps a 64-bit key of every id it has
//! folded in memory ([`RebuildIds`], in sorted arrays: 8 bytes per event): an id whose key is unknown was
//! never folded; an id whose key is known (a repeat, or two ids sharing a key) is looked up in
//! the table, exactly. Such a lookup scans the table, so when a history repeats ids in many
//! batches the rebuild creates the key early ([`RebuildIds::wants_key`]) and probes it from
//! then on, as a live writer does.

use crate::error::ProjectorError;
use crate::store::key_set::KeySet;
use events::Event;
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// SHA-256 of an event's canonical encoding.
pub type Digest = [u8; 32];

/// The digest of `event`'s content: SHA-256 of its MessagePack encoding with field names.
pub fn digest(event: &Event) -> Digest {
    thread_local! {
        // Every event folded is digested: its encoding goes into one buffer per thread, reused,
        // instead of a vector grown afresh for each.
        static ENCODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    ENCODED.with_borrow_mut(|encoded| {
        encoded.clear();
        rmp_serde::encode::write_named(&mut *encoded, event).expect("events always serialize");
        let digest = Sha256::digest(&encoded[..]).into();
        if encoded.capacity() > 1 << 16 {
            // An unusually large event's buffer is not kept.
            *encoded = Vec::new();
        }
        digest
    })
}

/// The digest rows written before the MessagePack encoding carry: SHA-256 of the event's JSON
/// encoding ([`Event::to_vec`]). Computed only for a repeat whose digest differs.
fn json_digest(event: &Event) -> Digest {
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
    /// Loads which of `events`' ids were folded before (one statement), from the table's
    /// primary key.
    pub async fn load<'e>(
        tx: &Transaction<'_>,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<Self, ProjectorError> {
        Self::load_with(tx, events, &Lookup::Table).await
    }

    /// Loads which of `events`' ids were folded before, as `lookup` says (one statement, none
    /// for a rebuild's batch that repeats no id).
    pub async fn load_with<'e>(
        tx: &Transaction<'_>,
        events: impl IntoIterator<Item = &'e Event>,
        lookup: &Lookup,
    ) -> Result<Self, ProjectorError> {
        let ids: Vec<Uuid> = events.into_iter().map(|e| e.id.0).collect();
        let Lookup::Rebuild(rebuild) = lookup else {
            return Self::probe(tx, ids).await;
        };
        // `None` once the table has its key again: it is probed then.
        let candidates: Option<Vec<Uuid>> = {
            let state = RebuildIds::lock(rebuild);
            (!state.keyed).then(|| {
                state
                    .keys
                    .known(ids.iter().map(|id| (key(*id), *id)).collect())
            })
        };
        let Some(candidates) = candidates else {
            return Self::probe(tx, ids).await;
        };
        if candidates.is_empty() {
            return Ok(Self::default());
        }
        RebuildIds::lock(rebuild).scans += 1;
        let rows = tx
            .query_typed(
                "SELECT event_id, digest, seq FROM folded_events WHERE event_id = ANY($1)",
                &[(&candidates, Type::UUID_ARRAY)],
            )
            .await?;
        Ok(Self::from_rows(rows))
    }

    /// One index probe per id.
    async fn probe(tx: &Transaction<'_>, ids: Vec<Uuid>) -> Result<Self, ProjectorError> {
        let mut rows = Vec::new();
        if !ids.is_empty() {
            // One index probe per id, whatever the planner thinks of the table: during a
            // rebuild it grows from empty faster than statistics follow, and `= ANY($1)` with
            // thousands of ids was planned as a scan of the whole table per batch (quadratic:
            // a 1,000,000-event replay spent most of its time there). `OFFSET 0` keeps the
            // lateral subquery from being flattened into a join the planner could hash.
            rows = tx
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
        }
        Ok(Self::from_rows(rows))
    }

    fn from_rows(rows: Vec<tokio_postgres::Row>) -> Self {
        let mut known = HashMap::new();
        for row in rows {
            let digest: Vec<u8> = row.get(1);
            let digest: Digest = digest.try_into().unwrap_or([0; 32]);
            known.insert(row.get(0), (digest, row.get(2)));
        }
        Self {
            known,
            new: Vec::new(),
        }
    }

    /// What to do with `event` (earlier events of the batch count as folded once
    /// [`FoldedIds::folded`] was called for them).
    pub fn verdict(&self, event: &Event) -> Verdict {
        let digest = digest(event);
        match self.known.get(&event.id.0) {
            None => Verdict::New(digest),
            Some((known, seq)) if *known == digest || *known == json_digest(event) => {
                Verdict::Duplicate(*seq)
            }
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

    /// After the batch's transaction committed: a rebuild remembers the ids it folded.
    pub fn committed(&self, lookup: &Lookup) {
        if let Lookup::Rebuild(rebuild) = lookup {
            let mut state = RebuildIds::lock(rebuild);
            if !state.keyed {
                state
                    .keys
                    .extend(self.new.iter().map(|(id, _, _)| key(*id)));
            }
        }
    }
}

/// How a writer learns which ids were folded before.
#[derive(Clone, Debug, Default)]
pub enum Lookup {
    /// From the primary key of `folded_events` (live writers).
    #[default]
    Table,
    /// A rebuild's: the ids it folded, in memory (shared by the rebuild's partitions).
    Rebuild(Arc<Mutex<RebuildIds>>),
}

/// The key a rebuild keeps of an id: its two halves folded (a repeat is always found; two ids
/// sharing a key only cost a lookup).
fn key(id: Uuid) -> u64 {
    let bits = id.as_u128();
    (bits >> 64) as u64 ^ bits as u64
}

/// What a rebuild knows of the ids it has folded while `folded_events` has no primary key.
#[derive(Debug, Default)]
pub struct RebuildIds {
    keys: KeySet,
    /// Batches that looked ids up in the table (each a scan of it).
    scans: u32,
    /// The primary key exists again: probe it.
    keyed: bool,
}

/// Batches that may scan the table before the rebuild creates the primary key.
const SCANS_BEFORE_KEY: u32 = 8;

impl RebuildIds {
    /// The ids `schema.folded_events` holds already (a rebuild resumed after a crash, or a
    /// backfill), or none of them when the table has its primary key (it is probed then).
    pub async fn open(
        client: &tokio_postgres::Client,
        schema: &str,
    ) -> Result<Arc<Mutex<Self>>, ProjectorError> {
        crate::store::migrate::check_schema_name(schema)?;
        let keyed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint c
                                  JOIN pg_class t ON t.oid = c.conrelid
                                  JOIN pg_namespace n ON n.oid = t.relnamespace
                                 WHERE n.nspname = $1 AND t.relname = 'folded_events'
                                   AND c.contype = 'p')",
                &[&schema],
            )
            .await?
            .get(0);
        let mut keys = KeySet::default();
        if !keyed {
            use futures::TryStreamExt;
            let rows = client
                .query_raw(
                    &format!("SELECT event_id FROM {schema}.folded_events"),
                    std::iter::empty::<i32>(),
                )
                .await?;
            let mut rows = std::pin::pin!(rows);
            let mut folded = Vec::new();
            while let Some(row) = rows.try_next().await? {
                folded.push(key(row.get(0)));
            }
            keys = KeySet::from_keys(folded);
        }
        Ok(Arc::new(Mutex::new(Self {
            keys,
            scans: 0,
            keyed,
        })))
    }

    fn lock(this: &Mutex<Self>) -> MutexGuard<'_, Self> {
        // The state is a set of keys and counters: a panic elsewhere cannot leave it half-made.
        this.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for `more` ids at once (a rebuild that knows how many events it will fold
    /// grows its set once instead of doubling it, and holds one table instead of two at its
    /// peak).
    pub fn reserve(this: &Mutex<Self>, more: usize) {
        let mut state = Self::lock(this);
        if !state.keyed {
            state.keys.reserve(more);
        }
    }

    /// Whether so many batches scanned the table that probing its primary key is cheaper.
    pub fn wants_key(this: &Mutex<Self>) -> bool {
        let state = Self::lock(this);
        !state.keyed && state.scans >= SCANS_BEFORE_KEY
    }

    /// From now on the table has its primary key: later batches probe it, and the keys kept in
    /// memory are freed.
    pub fn keyed(this: &Mutex<Self>) {
        let mut state = Self::lock(this);
        state.keyed = true;
        state.keys = KeySet::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_digest_is_sha256_of_the_canonical_encoding_whatever_came_before() {
        let big = {
            let mut event = events::examples::event(events::EventType::IssueCommentAdded);
            if let events::EventData::IssueCommentAdded(c) = &mut event.data {
                c.body = "x".repeat(100_000);
            }
            event
        };
        // A large event first (its buffer is not kept), then every type: each digest is the
        // digest of the event's own bytes, nothing left over from the one before.
        for event in std::iter::once(big.clone())
            .chain(
                events::EventType::ALL
                    .iter()
                    .map(|t| events::examples::event(*t)),
            )
            .chain(std::iter::once(big))
        {
            let encoded = rmp_serde::encode::to_vec_named(&event).unwrap();
            let expected: Digest = Sha256::digest(encoded).into();
            assert_eq!(digest(&event), expected, "{}", event.event_type().as_str());
        }
    }

    #[test]
    fn a_repeat_is_compared_with_the_json_digest_of_rows_written_before() {
        let event = events::examples::event(events::EventType::RunActivity);
        let mut other = event.clone();
        other.source = format!("{}/elsewhere", event.source);
        for stored in [digest(&event), json_digest(&event)] {
            let ids = FoldedIds {
                known: HashMap::from([(event.id.0, (stored, 7))]),
                new: Vec::new(),
            };
            assert_eq!(ids.verdict(&event), Verdict::Duplicate(7));
            assert!(matches!(ids.verdict(&other), Verdict::Conflict(_)));
        }
    }

    #[test]
    fn events_that_differ_only_in_a_value_s_type_or_place_digest_differently() {
        // JSON tells `true` from `1` and `"1"`, and a value in one optional field from the
        // same value in another; the canonical encoding must as well.
        let base = events::examples::event(events::EventType::RunActivity);
        let with = |name: &str, value: serde_json::Value| {
            let mut event = base.clone();
            event.extensions.insert(name.to_owned(), value);
            event
        };
        let variants = [
            with("x", serde_json::json!(true)),
            with("x", serde_json::json!(1)),
            with("x", serde_json::json!(1.0)),
            with("x", serde_json::json!("1")),
            with("x", serde_json::json!([1])),
            with("x", serde_json::json!({"1": 1})),
            with("y", serde_json::json!(true)),
            base.clone(),
        ];
        let finished = |signal: Option<&str>, error: Option<&str>| {
            let mut event = events::examples::event(events::EventType::RunFinished);
            if let events::EventData::RunFinished(f) = &mut event.data {
                f.signal = signal.map(str::to_owned);
                f.error = error.map(str::to_owned);
            }
            event
        };
        let variants: Vec<Event> = variants
            .into_iter()
            .chain([finished(Some("x"), None), finished(None, Some("x"))])
            .collect();
        let digests: HashSet<Digest> = variants.iter().map(digest).collect();
        assert_eq!(digests.len(), variants.len());
    }
}
