//! Reconciler errors. A bad event is never one of them (it becomes a dead letter of the private
//! fold and changes nothing); these are about the infrastructure, and say what the caller does.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReconcilerError {
    /// PostgreSQL failed. The batch's transaction (fold, decisions, outbox, position) was rolled
    /// back and the position did not move, so the same events are decided again: retry after a
    /// pause.
    #[error("PostgreSQL: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The private fold's store or migrations failed; same handling as [`Self::Postgres`].
    #[error("{0}")]
    Projector(#[from] projector::ProjectorError),
    /// No connection could be taken from the pool; retry after a pause.
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// Reading the stream failed (the feed could not be opened, its consumer broke, deliveries
    /// had a gap). Nothing is acknowledged to JetStream; PostgreSQL owns the position, so a new
    /// feed opened at the stored position reads again what was not committed.
    #[error("JetStream: {0}")]
    Feed(#[from] projector::feed::FeedError),
    /// History ended before a position it was expected to reach (dry run).
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A follow-up could not be published. It stays in the outbox and is published again with
    /// the same id (deduplicated by JetStream): drain again later.
    #[error("publishing a follow-up: {0}")]
    Publish(#[from] producers::PublishError),
    /// This instance no longer owns the partition it was deciding (another took it over after
    /// its lease ran out): nothing was committed; stop deciding the partition.
    #[error("the lease of `{role}` partition {partition} is no longer this instance's")]
    Fenced { role: String, partition: u32 },
    /// Settings or stored state do not fit together; fix the configuration.
    #[error("configuration: {0}")]
    Config(String),
}

impl ReconcilerError {
    /// What PostgreSQL said, when it refused the batch's data itself (SQLSTATE class 22 or 54,
    /// see [`projector::ProjectorError::refused_data`]): the batch is bisected, not retried.
    pub fn refused_data(&self) -> Option<String> {
        match self {
            Self::Postgres(e) => projector::refused_data(e),
            Self::Projector(e) => e.refused_data(),
            _ => None,
        }
    }

    /// A fenced-off partition, whether the reconciler's own check or the private fold's found it.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            Self::Fenced { .. } | Self::Projector(projector::ProjectorError::Fenced { .. })
        )
    }
}

impl From<deadpool_postgres::PoolError> for ReconcilerError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Pool(e.to_string())
    }
}

/// tokio-postgres prints only "db error"; say what the server said.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}
