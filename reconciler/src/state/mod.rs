//! The reconciler's state in PostgreSQL, on the caller's transaction (whose `search_path` is the
//! reconciler's schema): its position, the rows and ledger entries one decision reads, and the
//! decision's writes (outbox rows and ledger changes).
//!
//! Loading is scoped to the trigger: an ended run reads its run, agent and issue, the issue's
//! keyed wakeups and summary document, and the issue's ledger entries; a tick reads the
//! stranded-issue candidates with their agents, live and newest runs and deferred wakeups, plus
//! the detached runs. The engine sees the same rows the in-memory simulator would consider.
//!
//! This file opens a batch and keeps the position; `load.rs` reads what a decision needs,
//! `write.rs` writes what it decided.

mod load;
mod write;

pub use load::{load_for_run_ends, load_sweep};
pub use write::{mark_seen, write_decisions, Decided};

use crate::engine::ledger::{Deferral, Grant, Ledger, Pending, SummaryState};
use crate::engine::{Decision, CAUSE_ATTRIBUTE, RULE_ATTRIBUTE};
use crate::error::ReconcilerError;
use chrono::{DateTime, Utc};
use events::{Event, EventId, EventType, Subjects};
use futures::try_join;
use projector::fold::model::{AgentRow, DocumentRow, IssueRow, Model, RunRow, WakeupRow};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

type Param<'a> = &'a (dyn ToSql + Sync);

/// The reconciler's transactions: pooled, with the connection's prepared-statement cache (its
/// statements run on every batch; planning them once per connection saves most of their cost).
pub type Tx<'a> = deadpool_postgres::Transaction<'a>;

async fn query(tx: &Tx<'_>, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, ReconcilerError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, params).await?)
}

async fn execute(tx: &Tx<'_>, sql: &str, params: &[Param<'_>]) -> Result<u64, ReconcilerError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&statement, params).await?)
}

async fn rows<T: DeserializeOwned>(
    tx: &Tx<'_>,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<T>, ReconcilerError> {
    query(tx, sql, params)
        .await?
        .iter()
        .map(|row| {
            serde_json::from_value(row.get::<_, serde_json::Value>(0)).map_err(|e| {
                ReconcilerError::Config(format!("read model row does not match its type: {e}"))
            })
        })
        .collect()
}

/// Starts a batch on `tx` in one flight: the reconciler's schema, asynchronous commit (see
/// below), the batch lock of `schema` + `consumer` (a second reconciler on the same state
/// waits here instead of deciding the same events twice) and the stored position. The
/// statements are sent together and PostgreSQL runs them in order, so each sees what the one
/// before did; values travel as parameters.
///
/// Asynchronous commit: a crash of PostgreSQL may lose the last few commits, but never part of
/// one (fold, decisions, outbox and position stay together), and deciding those events again
/// yields the same follow-ups with the same ids, which JetStream and the outbox's hold
/// deduplicate. So the reconciler does not wait for a WAL flush per batch.
pub async fn begin_batch(
    tx: &Tx<'_>,
    schema: &str,
    consumer: &str,
    stream: &str,
) -> Result<i64, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    let lock = format!("runledger.reconciler.{schema}.{consumer}");
    let set = format!("SET LOCAL search_path TO {schema}; SET LOCAL synchronous_commit TO off");
    let lock_params = [(&lock as &(dyn ToSql + Sync), Type::TEXT)];
    let insert_params = [
        (&consumer as &(dyn ToSql + Sync), Type::TEXT),
        (&stream, Type::TEXT),
    ];
    let select_params = [(&consumer as &(dyn ToSql + Sync), Type::TEXT)];
    let (_, _, _, row) = try_join!(
        tx.batch_execute(&set),
        tx.execute_typed("SELECT pg_advisory_xact_lock(hashtext($1))", &lock_params,),
        tx.execute_typed(
            "INSERT INTO reconciler_positions (consumer, stream, last_seq)
             VALUES ($1, $2, 0) ON CONFLICT (consumer) DO NOTHING",
            &insert_params,
        ),
        tx.query_typed_one(
            "SELECT stream, last_seq FROM reconciler_positions WHERE consumer = $1",
            &select_params,
        ),
    )?;
    let stored: String = row.get(0);
    if stored != stream {
        return Err(ReconcilerError::Config(format!(
            "this reconciler state was built from stream `{stored}`, not `{stream}`; \
             use another schema for another stream"
        )));
    }
    Ok(row.get(1))
}

/// Moves the position and adds to the counters.
pub async fn advance_position(
    tx: &Tx<'_>,
    consumer: &str,
    last_seq: i64,
    events: i64,
    follow_ups: i64,
) -> Result<(), ReconcilerError> {
    execute(
        tx,
        "UPDATE reconciler_positions
         SET last_seq = $2, events_seen = events_seen + $3, follow_ups = follow_ups + $4
         WHERE consumer = $1",
        &[&consumer, &last_seq, &events, &follow_ups],
    )
    .await?;
    Ok(())
}

/// The stored position of `consumer` in `schema`, without locking.
pub async fn position(
    client: &impl GenericClient,
    schema: &str,
    consumer: &str,
) -> Result<Option<i64>, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    let row = client
        .query_opt(
            &format!("SELECT last_seq FROM {schema}.reconciler_positions WHERE consumer = $1"),
            &[&consumer],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Where a reconciler is, for `runledger status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Its schema does not exist yet: it never started and nothing migrated it.
    NoSchema,
    /// Its schema exists but it has no position yet: it has decided no batch.
    NoPosition,
    /// It has decided up to here.
    At(Position),
}

/// A reconciler's stored position and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The stream its state was built from.
    pub stream: String,
    /// Its position: the last stream sequence decided.
    pub last_seq: i64,
    /// Events it has read.
    pub events_seen: i64,
    /// Follow-ups it has decided.
    pub follow_ups: i64,
    /// Outbox rows (follow-ups of every reconciler on this schema) not yet published.
    pub unpublished: i64,
}

/// The progress of `consumer` in `schema`. Read-only and without locks.
pub async fn progress(
    client: &impl GenericClient,
    schema: &str,
    consumer: &str,
) -> Result<Progress, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    let table = format!("{schema}.reconciler_positions");
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .await?
        .get(0);
    if exists.is_none() {
        return Ok(Progress::NoSchema);
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT stream, last_seq, events_seen, follow_ups,
                        (SELECT count(*) FROM {schema}.outbox WHERE NOT published)
                 FROM {table} WHERE consumer = $1"
            ),
            &[&consumer],
        )
        .await?;
    Ok(row.map_or(Progress::NoPosition, |r| {
        Progress::At(Position {
            stream: r.get(0),
            last_seq: r.get(1),
            events_seen: r.get(2),
            follow_ups: r.get(3),
            unpublished: r.get(4),
        })
    }))
}

/// Holds every unpublished follow-up until the position reaches `head` (called on start: the
/// follow-ups of a previous incarnation may already be in the stream, beyond `head` none are).
pub async fn hold_unpublished(
    client: &impl GenericClient,
    schema: &str,
    head: i64,
) -> Result<u64, ReconcilerError> {
    projector::store::migrate::check_schema_name(schema)?;
    Ok(client
        .execute(
            &format!(
                "UPDATE {schema}.outbox SET hold_until_seq = GREATEST(hold_until_seq, $1)
                 WHERE NOT published"
            ),
            &[&head],
        )
        .await?)
}
