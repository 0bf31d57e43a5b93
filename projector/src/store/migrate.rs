//! Schema migrations: the SQL files under `migrations/`, embedded in the binary, applied in order
//! inside one transaction under an advisory lock (two processes starting at once apply them once),
//! and recorded in `schema_migrations`. The SQL is schema-agnostic, so the same migrations build
//! the live schema and a replay's scratch schema.

use crate::error::ProjectorError;
use tokio_postgres::Client;

/// (version, name, SQL), in order. Append only; never edit an applied migration.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "read_models",
        include_str!("../../../migrations/0001_read_models.sql"),
    ),
    (
        2,
        "ledger_order_index",
        include_str!("../../../migrations/0002_ledger_order_index.sql"),
    ),
    (
        3,
        "ledger_labels",
        include_str!("../../../migrations/0003_ledger_labels.sql"),
    ),
    (
        4,
        "position_writer",
        include_str!("../../../migrations/0004_position_writer.sql"),
    ),
    (
        5,
        "event_ids",
        include_str!("../../../migrations/0005_event_ids.sql"),
    ),
    (
        6,
        "decisions",
        include_str!("../../../migrations/0006_decisions.sql"),
    ),
];

/// Checks that `schema` is a plain lowercase SQL identifier (it is interpolated into SQL).
pub fn check_schema_name(schema: &str) -> Result<(), ProjectorError> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ProjectorError::Config(format!(
            "schema name `{schema}` must be a lowercase SQL identifier (letters, digits, `_`)"
        )))
    }
}

/// A list of migrations and the table that records which were applied. The read models are
/// one set; a service with tables of its own (the reconciler) brings another.
pub struct MigrationSet {
    /// Names the advisory lock and error messages.
    pub name: &'static str,
    /// Table recording the applied versions (in the migrated schema).
    pub table: &'static str,
    pub migrations: &'static [(i32, &'static str, &'static str)],
}

/// The read models.
pub const READ_MODELS: MigrationSet = MigrationSet {
    name: "read_models",
    table: "schema_migrations",
    migrations: MIGRATIONS,
};

/// Applies the pending read-model migrations to `schema` (created if missing); returns the
/// versions applied.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i32>, ProjectorError> {
    apply(client, schema, &READ_MODELS).await
}

/// Applies the pending migrations of `set` to `schema` (created if missing), in one transaction
/// under an advisory lock; returns the versions applied.
pub async fn apply(
    client: &mut Client,
    schema: &str,
    set: &MigrationSet,
) -> Result<Vec<i32>, ProjectorError> {
    check_schema_name(schema)?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('runledger.migrate.' || $1::text || '.' || $2::text))",
        &[&set.name, &schema],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS {table} (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        table = set.table
    ))
    .await?;
    let applied: Vec<i32> = tx
        .query(&format!("SELECT version FROM {}", set.table), &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly = Vec::new();
    for (version, name, sql) in set.migrations {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            ProjectorError::Migration(format!(
                "{} migration {version} ({name}) failed: {e}",
                set.name
            ))
        })?;
        tx.execute(
            &format!("INSERT INTO {} (version, name) VALUES ($1, $2)", set.table),
            &[version, name],
        )
        .await?;
        newly.push(*version);
    }
    tx.commit().await?;
    Ok(newly)
}
