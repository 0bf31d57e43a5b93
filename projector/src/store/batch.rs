//! One batch, exactly once: in ONE transaction, lock the position, skip what is at or below it,
//! load, fold (what the feed could not parse, or the fold rejects, becomes a dead letter), write
//! and advance the position. Until
//! this returns, nothing has happened: a failed batch is read again from the stored position.
//! This path writes read models and nothing else: it cannot publish, so a replay through it
//! cannot re-fire side effects.

use crate::error::ProjectorError;
use crate::feed::{Batch, Incoming, Parsed};
use crate::fold::{self, Touched};
use crate::store;
use crate::store::cache::RowCache;
use crate::store::event_ids::{FoldedIds, Lookup, Verdict};
use crate::store::lease::{self, Fence};
use events::Subjects;
use std::collections::BTreeMap;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

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
    /// The lease this writer must still own for a batch to commit (`None`: an unshared
    /// writer, e.g. a replay or a single projector). Checked inside every batch's transaction.
    pub fence: Option<Fence>,
    /// How the batches learn which event ids were folded before.
    pub ids: Lookup,
}

impl Session {
    /// Rows kept between batches by default (all tables together); a few MiB.
    pub const CACHE_ROWS: usize = 10_000;

    pub fn new(commit: CommitMode) -> Self {
        Self {
            cache: RowCache::new(Self::CACHE_ROWS),
            commit,
            fence: None,
            ids: Lookup::Table,
        }
    }

    /// The same writer, fenced: every batch first proves it still owns `fence`'s partition.
    pub fn fenced(self, fence: Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self
        }
    }

    /// No rows kept between batches: every batch loads what it needs.
    pub fn uncached() -> Self {
        Self {
            cache: RowCache::new(0),
            commit: CommitMode::Synchronous,
            fence: None,
            ids: Lookup::Table,
        }
    }
}

/// Applies `messages` (in stream order) in one transaction.
pub async fn apply_batch(
    client: &mut Client,
    target: &Target,
    messages: &[Incoming],
) -> Result<BatchReport, ProjectorError> {
    apply(
        client,
        target,
        &Batch::parse(&target.subjects, messages.to_vec()),
        &mut Session::uncached(),
    )
    .await
}

/// Applies a batch read from the feed in one transaction. A failed batch empties the session's
/// cache. When PostgreSQL refuses the batch's data ([`ProjectorError::refused_data`]: something
/// `events::bounds` did not foresee), the batch is bisected: its halves are applied in turn, down
/// to the one event whose rows are refused, which is dead-lettered with PostgreSQL's reason; every
/// other event is applied. A poison event costs about 2·log2(batch) transactions, once.
pub async fn apply(
    client: &mut Client,
    target: &Target,
    batch: &Batch,
    session: &mut Session,
) -> Result<BatchReport, ProjectorError> {
    let applied = apply_in_transaction(client, target, batch, session).await;
    if applied.is_err() {
        session.cache.clear();
    }
    match applied {
        Err(e) => match e.refused_data() {
            Some(reason) => bisect(client, target, batch, session, reason).await,
            None => Err(e),
        },
        ok => ok,
    }
}

/// Applies `batch`, which PostgreSQL refused for `reason`, in ever smaller parts
/// ([`Bisection`]); a single refused event is dead-lettered.
async fn bisect(
    client: &mut Client,
    target: &Target,
    batch: &Batch,
    session: &mut Session,
    reason: String,
) -> Result<BatchReport, ProjectorError> {
    tracing::info!(events = batch.len(), %reason, "PostgreSQL refused a batch; bisecting it");
    let mut bisection = Bisection::new(batch);
    let mut report = BatchReport::default();
    while let Some(part) = bisection.next_part() {
        let applied = match apply_in_transaction(client, target, &part, session).await {
            Ok(applied) => applied,
            Err(e) => {
                session.cache.clear();
                let Some(reason) = e.refused_data() else {
                    return Err(e);
                };
                let Some(refused) = bisection.refused(part, &reason) else {
                    continue;
                };
                apply_in_transaction(client, target, &refused, session)
                    .await
                    .inspect_err(|_| session.cache.clear())?
            }
        };
        report = report.merge(applied);
    }
    Ok(report)
}

/// How every writer of a batch bisects it when PostgreSQL refuses its data: the parts come in
/// stream order (without recursion: the futures of nested batches would not fit a thread's
/// stack); a refused part is split in two, and a single refused event comes back as a dead letter
/// with PostgreSQL's reason, to be applied as such.
pub struct Bisection {
    /// Parts still to apply, the next one last.
    pending: Vec<Batch>,
}

impl Bisection {
    pub fn new(batch: &Batch) -> Self {
        let (first, second) = batch.halves();
        Self {
            pending: vec![second, first],
        }
    }

    /// The next part to apply.
    pub fn next_part(&mut self) -> Option<Batch> {
        while let Some(part) = self.pending.pop() {
            if !part.is_empty() {
                return Some(part);
            }
        }
        None
    }

    /// `part` was refused for `reason`: its halves come next, or, for a single event, the event
    /// as a dead letter (returned: apply it in place of `part`).
    pub fn refused(&mut self, part: Batch, reason: &str) -> Option<Batch> {
        if part.len() > 1 {
            let (first, second) = part.halves();
            self.pending.push(second);
            self.pending.push(first);
            return None;
        }
        if let Some(seq) = part.last_seq() {
            tracing::warn!(seq, %reason, "PostgreSQL refused an event's rows; dead-lettering it");
        }
        Some(part.refused(&format!("PostgreSQL refused the event's rows: {reason}")))
    }
}

impl BatchReport {
    /// This report followed by `next`'s (a later batch).
    fn merge(mut self, next: BatchReport) -> BatchReport {
        self.applied += next.applied;
        self.skipped += next.skipped;
        self.dead_lettered += next.dead_lettered;
        self.position = self.position.max(next.position);
        for (event_type, n) in next.by_type {
            *self.by_type.entry(event_type).or_default() += n;
        }
        self
    }
}

async fn apply_in_transaction(
    client: &mut Client,
    target: &Target,
    batch: &Batch,
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
    // A shared partition's writer proves, in this transaction, that it still owns the partition;
    // the lease row stays share-locked until the commit, so it cannot change hands before.
    let fenced = async {
        match &session.fence {
            Some(fence) => lease::check(&tx, fence).await,
            None => Ok(()),
        }
    };
    let (_, _, _, locked) = futures::try_join!(
        async {
            tx.execute_typed(
                "SELECT pg_advisory_xact_lock(hashtext('runledger.projector.' || current_schema() || '.' || $1::text))",
                &[(&target.consumer, Type::TEXT)],
            )
            .await
            .map_err(ProjectorError::from)
        },
        async { commit_mode.await.map_err(ProjectorError::from) },
        fenced,
        store::lock_position(&tx, &target.consumer, &target.stream),
    )?;
    let position = locked.last_seq;
    let cache = &mut session.cache;
    cache.begin(position, locked.writer);
    // Messages come in stream order; one at or below the position, or repeated within the
    // batch, was applied already. Folding each sequence once is what keeps appended rows unique.
    let mut newest = position;
    let fresh: Vec<(&Incoming, &Parsed)> = batch
        .iter()
        .filter(|(m, _)| {
            let seq = m.seq as i64;
            let fresh = seq > newest;
            newest = newest.max(seq);
            fresh
        })
        .collect();
    let mut report = BatchReport {
        skipped: batch.len() - fresh.len(),
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
    let (mut model, mut ids) = futures::try_join!(
        store::load_through(&tx, &touched, cache),
        FoldedIds::load_with(
            &tx,
            fresh.iter().filter_map(|(_, p)| p.event()),
            &session.ids
        ),
    )?;
    let mut dead = Vec::new();
    for (message, p) in &fresh {
        let reason = match p {
            Parsed::Dead(reason) => reason.clone(),
            Parsed::Event(event) => match ids.verdict(event) {
                Verdict::Duplicate(_) => {
                    report.skipped += 1;
                    continue;
                }
                Verdict::Conflict(reason) => reason,
                Verdict::New(digest) => match fold::apply(&mut model, message.seq as i64, event) {
                    Ok(()) => {
                        ids.folded(event.id.0, digest, message.seq as i64);
                        report.applied += 1;
                        *report
                            .by_type
                            .entry(event.event_type().as_str())
                            .or_default() += 1;
                        continue;
                    }
                    Err(rejection) => rejection.0,
                },
            },
        };
        dead.push(message.dead_letter(&reason));
    }
    report.dead_lettered = dead.len();
    model.appends.dead_letters = dead;
    let last = fresh.last().map_or(position, |(m, _)| m.seq as i64);
    // Live readers hear of the commit at once (a rebuild's scratch schema has none).
    let notify = async {
        match session.commit {
            CommitMode::Synchronous => {
                store::notify::position_moved(&tx, &target.consumer, last).await
            }
            CommitMode::Asynchronous => Ok(()),
        }
    };
    // Pipelined; see [`crate::pipelined`] for which failure is reported.
    let (written, ids_written, advanced, notified) = futures::join!(
        store::write(&tx, &model),
        ids.write(&tx),
        store::advance_position(
            &tx,
            &target.consumer,
            cache.writer(),
            last,
            report.applied as i64,
            report.dead_lettered as i64,
        ),
        notify,
    );
    crate::pipelined(
        [written, ids_written, advanced.map(drop), notified.map(drop)],
        |e| e.refused_data().is_some(),
    )?;
    store::write_new(&tx, &model).await?;
    tx.commit().await?;
    ids.committed(&session.ids);
    cache.keep(model, last);
    report.position = last;
    Ok(report)
}
