//! The I/O half of a batch: load the rows the batch touches, write back the ones the fold
//! changed, and move the position — all on the caller's transaction.
//!
//! One set-based statement per table and batch. Rows are loaded as JSON (`to_json`, decoded
//! straight into the row types) and written as typed column arrays ([`crate::store::columns`]); both
//! take their column names from the row types, so the Rust structs and the SQL columns cannot
//! silently drift (an unknown column is an error).

pub mod batch;
pub mod cache;
mod cells;
pub mod checksum;
mod columns;
pub mod event_ids;
pub mod indexes;
mod key_set;
pub mod lease;
pub mod migrate;
pub mod notify;

use crate::error::ProjectorError;
use crate::fold::model::*;
use crate::fold::Touched;
use crate::store::cache::RowCache;
use crate::store::columns::{insert, OnConflict::*};
use serde::de::DeserializeOwned;
use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::Transaction;
use uuid::Uuid;

fn dedup(ids: impl IntoIterator<Item = Uuid>) -> Vec<Uuid> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn load_rows<T: DeserializeOwned>(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<T>, ProjectorError> {
    // Typed: one round trip, no prepared statement to create and close.
    let rows = tx.query_typed(sql, params).await?;
    rows.iter()
        .map(|row| {
            row.try_get::<_, Json<T>>(0).map(|r| r.0).map_err(|e| {
                ProjectorError::Config(format!("read model row does not match its type: {e}"))
            })
        })
        .collect()
}

/// Loads every row the batch's events touch, plus the rows the rules reach through them (a
/// run's agent, issue and wakeup; an issue's deferred wakeups; keyed documents).
pub async fn load(tx: &Transaction<'_>, touched: &Touched) -> Result<Model, ProjectorError> {
    load_through(tx, touched, &mut RowCache::new(0)).await
}

/// [`load`], taking what `cache` holds from it instead of from the database (the caller has
/// checked the cache against the locked position row: [`RowCache::begin`]).
pub async fn load_through(
    tx: &Transaction<'_>,
    touched: &Touched,
    cache: &mut RowCache,
) -> Result<Model, ProjectorError> {
    let mut model = Model::default();
    let run_ids = dedup(touched.runs.iter().copied());
    let missing_runs = cache.take_runs(&mut model, &run_ids);
    if !missing_runs.is_empty() {
        let runs: Vec<RunRow> = load_rows(
            tx,
            "SELECT to_json(r) FROM runs r WHERE run_id = ANY($1)",
            &[(&missing_runs, Type::UUID_ARRAY)],
        )
        .await?;
        model
            .runs
            .extend(runs.into_iter().map(|r| (r.run_id, Box::new(r))));
        model.absent_runs = missing_runs
            .into_iter()
            .filter(|id| !model.runs.contains_key(id))
            .collect();
    }
    let runs = model.runs.values();
    let agent_ids = dedup(
        touched
            .agents
            .iter()
            .copied()
            .chain(runs.clone().filter_map(|r| r.agent_id)),
    );
    let issue_ids = dedup(
        touched
            .issues
            .iter()
            .copied()
            .chain(runs.clone().filter_map(|r| r.issue_id)),
    );
    let wakeup_ids = dedup(
        touched
            .wakeups
            .iter()
            .copied()
            .chain(runs.filter_map(|r| r.wakeup_id)),
    );
    let misses = cache.take_related(&mut model, &agent_ids, &issue_ids, &wakeup_ids);
    let document_ids = dedup(touched.documents.iter().copied());
    let key_issues: Vec<Uuid> = touched.document_keys.iter().map(|(i, _)| *i).collect();
    let keys: Vec<&str> = touched
        .document_keys
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    let children = dedup(touched.children.iter().copied());

    let uuids = Type::UUID_ARRAY;
    let agent_params = [(&misses.agents as &(dyn ToSql + Sync), uuids.clone())];
    let issue_params = [(&misses.issues as &(dyn ToSql + Sync), uuids.clone())];
    let wakeup_params = [
        (&misses.wakeups as &(dyn ToSql + Sync), uuids.clone()),
        (&misses.deferred_of, uuids.clone()),
    ];
    let document_params = [
        (&document_ids as &(dyn ToSql + Sync), uuids.clone()),
        (&key_issues, uuids.clone()),
        (&keys, Type::TEXT_ARRAY),
    ];
    let (agents, issues, wakeups, documents, known) = futures::try_join!(
        load_some::<AgentRow>(
            tx,
            !misses.agents.is_empty(),
            "SELECT to_json(a) FROM agents a WHERE agent_id = ANY($1)",
            &agent_params
        ),
        load_some::<IssueRow>(
            tx,
            !misses.issues.is_empty(),
            "SELECT to_json(i) FROM issues i WHERE issue_id = ANY($1)",
            &issue_params
        ),
        load_some::<WakeupRow>(
            tx,
            !(misses.wakeups.is_empty() && misses.deferred_of.is_empty()),
            "SELECT to_json(w) FROM wakeup_requests w
             WHERE wakeup_id = ANY($1) OR (issue_id = ANY($2) AND status = 'deferred_issue_execution')",
            &wakeup_params
        ),
        load_some::<DocumentRow>(
            tx,
            !(document_ids.is_empty() && keys.is_empty()),
            "SELECT to_json(d) FROM documents d
             WHERE document_id = ANY($1)
                OR (issue_id, key) IN (SELECT * FROM unnest($2::uuid[], $3::text[]))",
            &document_params
        ),
        async {
            if children.is_empty() {
                return Ok(Vec::new());
            }
            let rows = tx
                .query_typed(
                    "SELECT comment_id FROM issue_comments WHERE comment_id = ANY($1)
                     UNION ALL SELECT work_product_id FROM issue_work_products WHERE work_product_id = ANY($1)
                     UNION ALL SELECT revision_id FROM document_revisions WHERE revision_id = ANY($1)",
                    &[(&children, Type::UUID_ARRAY)],
                )
                .await?;
            Ok::<_, ProjectorError>(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect::<Vec<_>>())
        },
    )?;
    model
        .agents
        .extend(agents.into_iter().map(|r| (r.agent_id, r)));
    model
        .issues
        .extend(issues.into_iter().map(|r| (r.issue_id, r)));
    // A deferred wakeup the cache handed over may come back from the query too: same row.
    for w in wakeups {
        model.wakeups.entry(w.wakeup_id).or_insert(w);
    }
    model.documents = documents.into_iter().map(|r| (r.document_id, r)).collect();
    model.known_children = known.into_iter().collect();
    Ok(model)
}

/// [`load_rows`] when `needed`, else nothing (no round trip for an empty id list).
async fn load_some<T: DeserializeOwned>(
    tx: &Transaction<'_>,
    needed: bool,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<T>, ProjectorError> {
    if needed {
        load_rows(tx, sql, params).await
    } else {
        Ok(Vec::new())
    }
}

fn dirty<'a, T, R: Borrow<T>>(rows: &'a HashMap<Uuid, R>, ids: &BTreeSet<Uuid>) -> Vec<&'a T> {
    ids.iter()
        .filter_map(|id| rows.get(id))
        .map(Borrow::borrow)
        .collect()
}

/// Writes what the fold changed, except the rows that cannot exist yet ([`write_new`]), in
/// statements pipelined together with the rest of the batch's.
pub async fn write(tx: &Transaction<'_>, model: &Model) -> Result<(), ProjectorError> {
    let d = &model.dirty;
    let a = &model.appends;
    let agents = dirty(&model.agents, &d.agents);
    let issues = dirty(&model.issues, &d.issues);
    let runs: Vec<&RunRow> = dirty::<RunRow, _>(&model.runs, &d.runs)
        .into_iter()
        .filter(|r| !model.absent_runs.contains(&r.run_id))
        .collect();
    let wakeups = dirty(&model.wakeups, &d.wakeups);
    let documents = dirty(&model.documents, &d.documents);
    // Pipelined; see [`crate::pipelined`] for which failure is reported.
    type Write<'w> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), ProjectorError>> + Send + 'w>,
    >;
    let writes: Vec<Write<'_>> = vec![
        Box::pin(insert(tx, "agents", &agents, UpdateByKey("agent_id"))),
        Box::pin(insert(tx, "issues", &issues, UpdateByKey("issue_id"))),
        Box::pin(insert(tx, "runs", &runs, UpdateByKey("run_id"))),
        Box::pin(insert(
            tx,
            "wakeup_requests",
            &wakeups,
            UpdateByKey("wakeup_id"),
        )),
        Box::pin(insert(
            tx,
            "documents",
            &documents,
            UpdateByKey("document_id"),
        )),
        Box::pin(insert(tx, "issue_comments", &a.comments, Ignore)),
        Box::pin(insert(tx, "issue_work_products", &a.work_products, Ignore)),
        Box::pin(insert(tx, "document_revisions", &a.revisions, Ignore)),
        Box::pin(insert(tx, "activity_log", &a.activity, Ignore)),
        Box::pin(insert(tx, "decisions", &a.decisions, Ignore)),
        Box::pin(insert_issue_runs(tx, &a.issue_runs)),
        Box::pin(insert_dead_letters(tx, &a.dead_letters)),
    ];
    crate::pipelined(futures::future::join_all(writes).await, |e| {
        e.refused_data().is_some()
    })
}

/// Writes the rows that cannot exist yet with `COPY`: the runs that began in the batch and the
/// run timeline (keyed by run, stream sequence and ordinal within the event: each event is
/// folded once). Called after every other statement of the batch succeeded: a `COPY` sent into a
/// transaction that a pipelined statement already failed leaves the connection unusable, and
/// the refusal that failed it ([`crate::pipelined`]) would be lost with it.
pub async fn write_new(tx: &Transaction<'_>, model: &Model) -> Result<(), ProjectorError> {
    let new_runs: Vec<&RunRow> = dirty::<RunRow, _>(&model.runs, &model.dirty.runs)
        .into_iter()
        .filter(|r| model.absent_runs.contains(&r.run_id))
        .collect();
    insert(tx, "runs", &new_runs, Impossible).await?;
    insert(tx, "run_events", &model.appends.run_events, Impossible).await
}

async fn insert_issue_runs(
    tx: &Transaction<'_>,
    links: &BTreeSet<(Uuid, Uuid, Uuid)>,
) -> Result<(), ProjectorError> {
    if links.is_empty() {
        return Ok(());
    }
    let issues: Vec<Uuid> = links.iter().map(|l| l.0).collect();
    let runs: Vec<Uuid> = links.iter().map(|l| l.1).collect();
    let companies: Vec<Uuid> = links.iter().map(|l| l.2).collect();
    tx.execute_typed(
        "INSERT INTO issue_runs (issue_id, run_id, company_id)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING",
        &[
            (&issues, Type::UUID_ARRAY),
            (&runs, Type::UUID_ARRAY),
            (&companies, Type::UUID_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

/// Dead letters keep the raw bytes, which JSON cannot carry: typed arrays instead.
async fn insert_dead_letters(
    tx: &Transaction<'_>,
    rows: &[DeadLetterRow],
) -> Result<(), ProjectorError> {
    if rows.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let subjects: Vec<&str> = rows.iter().map(|r| r.subject.as_str()).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload.as_slice()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    let times: Vec<Time> = rows.iter().map(|r| r.at).collect();
    tx.execute_typed(
        "INSERT INTO dead_letters (seq, subject, payload, reason, at)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::timestamptz[])
         ON CONFLICT DO NOTHING",
        &[
            (&seqs, Type::INT8_ARRAY),
            (&subjects, Type::TEXT_ARRAY),
            (&payloads, Type::BYTEA_ARRAY),
            (&reasons, Type::TEXT_ARRAY),
            (&times, Type::TIMESTAMPTZ_ARRAY),
        ],
    )
    .await?;
    Ok(())
}

/// The position row as a batch finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub last_seq: i64,
    /// The writer whose commit left it there (see [`RowCache`]); `None` for a new row.
    pub writer: Option<Uuid>,
}

/// The projector's position, locked for this transaction (a second projector on the same
/// database waits here instead of applying the same events twice).
pub async fn lock_position(
    tx: &Transaction<'_>,
    consumer: &str,
    stream: &str,
) -> Result<Position, ProjectorError> {
    // Both in one flight: PostgreSQL runs them in order, the second sees the row the first made.
    let insert_params = [
        (&consumer as &(dyn ToSql + Sync), Type::TEXT),
        (&stream, Type::TEXT),
    ];
    let select_params = [(&consumer as &(dyn ToSql + Sync), Type::TEXT)];
    let (_, row) = futures::try_join!(
        tx.execute_typed(
            "INSERT INTO projector_positions (consumer, stream, last_seq) VALUES ($1, $2, 0)
             ON CONFLICT (consumer) DO NOTHING",
            &insert_params,
        ),
        tx.query_typed_one(
            "SELECT stream, last_seq, writer FROM projector_positions WHERE consumer = $1 FOR UPDATE",
            &select_params,
        ),
    )?;
    let stored: String = row.get(0);
    if stored != stream {
        return Err(ProjectorError::Config(format!(
            "this database was projected from stream `{stored}`, not `{stream}`; \
             use a fresh database (or schema) for another stream"
        )));
    }
    Ok(Position {
        last_seq: row.get(1),
        writer: row.get(2),
    })
}

/// Moves the position to `last_seq`, stamps it with `writer` and adds to the counters.
pub async fn advance_position(
    tx: &Transaction<'_>,
    consumer: &str,
    writer: Uuid,
    last_seq: i64,
    applied: i64,
    dead_lettered: i64,
) -> Result<(), ProjectorError> {
    tx.execute_typed(
        "UPDATE projector_positions
         SET last_seq = $2, writer = $5,
             events_applied = events_applied + $3, dead_lettered = dead_lettered + $4
         WHERE consumer = $1",
        &[
            (&consumer, Type::TEXT),
            (&last_seq, Type::INT8),
            (&applied, Type::INT8),
            (&dead_lettered, Type::INT8),
            (&writer, Type::UUID),
        ],
    )
    .await?;
    Ok(())
}

/// Waits until every commit so far, asynchronous ones included, is on disk: a synchronous commit
/// that writes (the position row, unchanged) flushes the WAL up to itself.
pub async fn flush_position(
    client: &mut tokio_postgres::Client,
    consumer: &str,
) -> Result<(), ProjectorError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit TO on")
        .await?;
    tx.execute(
        "UPDATE projector_positions SET last_seq = last_seq WHERE consumer = $1",
        &[&consumer],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The stored position without locking (for status and waiting).
pub async fn position(
    client: &tokio_postgres::Client,
    consumer: &str,
) -> Result<Option<i64>, ProjectorError> {
    let row = client
        .query_opt(
            "SELECT last_seq FROM projector_positions WHERE consumer = $1",
            &[&consumer],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
