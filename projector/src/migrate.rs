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
        include_str!("../../migrations/0001_read_models.sql"),
    ),
    (
        2,
        "ledger_order_index",
        include_str!("../../migrations/0002_ledger_order_index.sql"),
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

/// Applies the pending migrations to `schema` (created if missing); returns the versions applied.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i32>, ProjectorError> {
    check_schema_name(schema)?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('runledger.migrate.' || $1::text))",
        &[&schema],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            ProjectorError::Migration(format!("migration {version} ({name}) failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        newly.push(*version);
    }
    tx.commit().await?;
    Ok(newly)
}
