//! The reconciler's schema: the read-model migrations (its private fold uses the projector's
//! tables) plus its own state (`migrations/reconciler/`), applied only to its schema and recorded
//! in `reconciler_migrations`. It is a schema of its own, never the projector's: a replay swaps
//! the projector's schema wholesale, which must not take the reconciler's decisions with it.

use crate::error::ReconcilerError;
use tokio_postgres::Client;

/// Default schema of the reconciler's state.
pub const DEFAULT_SCHEMA: &str = "runledger_reconciler";

/// The schema of partition `partition`'s reconciler: `base` without partitions, `<base>_p<n>`
/// with them (each partition's private state, outbox and clock apart).
pub fn partition_schema(base: &str, subjects: &events::Subjects, partition: u32) -> String {
    if subjects.is_partitioned() {
        numbered(base, partition)
    } else {
        base.to_owned()
    }
}

/// Every partition's reconciler schema of a stream split into `partitions` (`base` alone
/// without partitions), in partition order: what `runledger migrate` prepares.
pub fn partition_schemas(base: &str, partitions: u32) -> Vec<String> {
    if partitions <= 1 {
        return vec![base.to_owned()];
    }
    (0..partitions).map(|p| numbered(base, p)).collect()
}

fn numbered(base: &str, partition: u32) -> String {
    format!("{base}_p{partition}")
}

/// Default durable consumer name of the reconciler, also the key of its position row.
pub const DEFAULT_CONSUMER: &str = "runledger-reconciler";

/// (version, name, SQL), in order. Append only; never edit an applied migration.
pub const RECONCILER_MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "reconciler_state",
        include_str!("../../migrations/reconciler/0001_reconciler_state.sql"),
    ),
    (
        2,
        "deferrals",
        include_str!("../../migrations/reconciler/0002_deferrals.sql"),
    ),
    (
        3,
        "outbox_written_at",
        include_str!("../../migrations/reconciler/0003_outbox_written_at.sql"),
    ),
];

/// The reconciler's own tables.
pub const RECONCILER_STATE: projector::store::migrate::MigrationSet =
    projector::store::migrate::MigrationSet {
        name: "reconciler",
        table: "reconciler_migrations",
        migrations: RECONCILER_MIGRATIONS,
    };

/// The versions one [`migrate`] applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Read-model migrations (the private fold's tables).
    pub read_models: Vec<i32>,
    /// The reconciler's own migrations.
    pub state: Vec<i32>,
}

impl Applied {
    /// Whether the schema was already up to date.
    pub fn is_empty(&self) -> bool {
        self.read_models.is_empty() && self.state.is_empty()
    }
}

/// Brings `schema` up to date (created if missing). Idempotent: the reconciler runs it on every
/// start, `runledger migrate` ahead of time.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<Applied, ReconcilerError> {
    let read_models = projector::store::migrate::migrate(client, schema).await?;
    let state = projector::store::migrate::apply(client, schema, &RECONCILER_STATE).await?;
    Ok(Applied { read_models, state })
}
