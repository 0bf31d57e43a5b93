//! A rebuild writes its scratch schema without the indexes only readers use, and creates them
//! once it has caught up, before anything compares, swaps or reports the build.
//!
//! Why: a replay inserts every row once and updates most a few times, and each secondary index
//! costs a btree insertion per row version. The run rows' five secondary indexes made the run
//! upsert the largest single cost of a replay batch; building an index once over the finished
//! table is one sort. This is what `pg_restore` does for the same reason.
//!
//! Kept while building: unique indexes (they enforce the model's keys) and the indexes the
//! projector's own loads use ([`KEPT`]), except the keys in [`DEFERRED_KEYS`], whose uniqueness
//! the rebuild keeps by itself meanwhile. The dropped indexes' definitions are recorded in the
//! scratch schema itself, in the same transaction that drops them, so a rebuild interrupted by a
//! crash and resumed later still restores exactly what the migrations created.

use crate::error::ProjectorError;
use tokio_postgres::Client;

/// Non-unique indexes the projector's loads rely on (`store::load`: an issue's deferred wakeups).
pub const KEPT: &[&str] = &["wakeups_issue_status_idx"];

/// Table and constraint of the unique keys a rebuild creates at the end all the same:
/// `folded_events`' primary key (a B-tree of random UUIDs, the costliest index to keep up to
/// date; the rebuild knows the ids it folded: [`crate::store::event_ids::RebuildIds`]).
pub const DEFERRED_KEYS: &[(&str, &str)] = &[("folded_events", FOLDED_EVENTS_KEY)];

/// The primary key of `folded_events`, which a rebuild whose history repeats ids often creates
/// early ([`restore_one`]).
pub const FOLDED_EVENTS_KEY: &str = "folded_events_pkey";

/// Drops the secondary indexes of `schema`, recording their definitions in
/// `<schema>.replay_deferred_indexes`. Idempotent (a resumed rebuild finds them dropped).
pub async fn defer(client: &mut Client, schema: &str) -> Result<(), ProjectorError> {
    crate::store::migrate::check_schema_name(schema)?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.replay_deferred_indexes (
             name text PRIMARY KEY, definition text NOT NULL)"
    ))
    .await?;
    let kept: Vec<&str> = KEPT.to_vec();
    let dropped = tx
        .query(
            &format!(
                "INSERT INTO {schema}.replay_deferred_indexes (name, definition)
                 SELECT i.relname, pg_get_indexdef(i.oid)
                 FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid
                 JOIN pg_namespace n ON n.oid = i.relnamespace
                 WHERE n.nspname = $1 AND NOT x.indisunique AND NOT x.indisprimary
                   AND i.relname <> ALL($2)
                 ON CONFLICT DO NOTHING
                 RETURNING name"
            ),
            &[&schema, &kept],
        )
        .await?;
    for row in &dropped {
        let name: String = row.get(0);
        tx.batch_execute(&format!("DROP INDEX {schema}.{name}"))
            .await?;
    }
    for (table, constraint) in DEFERRED_KEYS {
        tx.execute(
            &format!(
                "INSERT INTO {schema}.replay_deferred_indexes (name, definition)
                 SELECT c.conname, format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s',
                                          n.nspname, t.relname, c.conname,
                                          pg_get_constraintdef(c.oid))
                 FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 WHERE n.nspname = $1 AND t.relname = $2 AND c.conname = $3
                 ON CONFLICT DO NOTHING"
            ),
            &[&schema, table, constraint],
        )
        .await?;
        tx.batch_execute(&format!(
            "ALTER TABLE {schema}.{table} DROP CONSTRAINT IF EXISTS {constraint}"
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Creates one deferred index or key now, before the rest, and removes its record (a rebuild
/// that finds probing a key cheaper than going without it). False if it was not deferred.
pub async fn restore_one(
    client: &mut Client,
    schema: &str,
    name: &str,
) -> Result<bool, ProjectorError> {
    crate::store::migrate::check_schema_name(schema)?;
    let tx = client.transaction().await?;
    let definition = tx
        .query_opt(
            &format!(
                "DELETE FROM {schema}.replay_deferred_indexes WHERE name = $1 RETURNING definition"
            ),
            &[&name],
        )
        .await?;
    let Some(definition) = definition else {
        return Ok(false);
    };
    tx.batch_execute(definition.get::<_, &str>(0)).await?;
    tx.commit().await?;
    Ok(true)
}

/// Creates the indexes [`defer`] dropped and removes its record. Returns how many it created.
pub async fn restore(client: &mut Client, schema: &str) -> Result<usize, ProjectorError> {
    crate::store::migrate::check_schema_name(schema)?;
    let tx = client.transaction().await?;
    let exists: bool = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{schema}.replay_deferred_indexes")],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let rows = tx
        .query(
            &format!("SELECT definition FROM {schema}.replay_deferred_indexes ORDER BY name"),
            &[],
        )
        .await?;
    for row in &rows {
        tx.batch_execute(row.get::<_, &str>(0)).await?;
    }
    tx.batch_execute(&format!("DROP TABLE {schema}.replay_deferred_indexes"))
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}
