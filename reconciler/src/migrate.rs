//! The reconciler's schema: the read-model migrations (its private fold uses the projector's
//! tables) plus its own state (`migrations/reconciler/`), applied only to its schema and recorded
//! in `reconciler_migrations`. It is a schema of its own, never the projector's: a replay swaps
//! the projector's schema wholesale, which must not take the reconciler's decisions with it.

use crate::error::ReconcilerError;
use tokio_postgres::Client;

/// Default schema of the reconciler's state.
pub const DEFAULT_SCHEMA: &str = "runledger_reconciler";

/// (version, name, SQL), in order. Append only; never edit an applied migration.
pub const RECONCILER_MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "reconciler_state",
    include_str!("../../migrations/reconciler/0001_reconciler_state.sql"),
)];

/// Brings `schema` up to date (created if missing); returns the reconciler versions applied.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i32>, ReconcilerError> {
    projector::migrate::migrate(client, schema).await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('runledger.migrate.reconciler.' || $1::text))",
        &[&schema],
    )
    .await?;
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS reconciler_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM reconciler_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly = Vec::new();
    for (version, name, sql) in RECONCILER_MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            ReconcilerError::Config(format!(
                "reconciler migration {version} ({name}) failed: {e}"
            ))
        })?;
        tx.execute(
            "INSERT INTO reconciler_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        newly.push(*version);
    }
    tx.commit().await?;
    Ok(newly)
}
