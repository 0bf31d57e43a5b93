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

/// The reconciler's own tables.
pub const RECONCILER_STATE: projector::migrate::MigrationSet = projector::migrate::MigrationSet {
    name: "reconciler",
    table: "reconciler_migrations",
    migrations: RECONCILER_MIGRATIONS,
};

/// Brings `schema` up to date (created if missing); returns the reconciler versions applied.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Vec<i32>, ReconcilerError> {
    projector::migrate::migrate(client, schema).await?;
    Ok(projector::migrate::apply(client, schema, &RECONCILER_STATE).await?)
}
