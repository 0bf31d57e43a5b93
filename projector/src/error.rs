//! Projector errors. None of them is about a bad event (those become dead letters); they are
//! about the infrastructure, and the caller retries the batch or stops.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProjectorError {
    /// PostgreSQL failed; the batch's transaction was rolled back and the position did not move,
    /// so the same events are read again from the stored position. Retry after a pause.
    #[error("PostgreSQL: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// Reading the stream failed (the feed could not be opened, its consumer broke, deliveries
    /// had a gap). A new feed is opened at the stored position, so at worst events are read again
    /// and skipped by position.
    #[error("JetStream: {0}")]
    Feed(#[from] crate::feed::FeedError),
    /// JetStream failed otherwise (stream info).
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A migration failed; the schema is unchanged.
    #[error("{0}")]
    Migration(String),
    /// This instance no longer owns the partition it was writing (another took it over after
    /// its lease ran out): nothing was committed; stop writing to the partition.
    #[error("the lease of `{role}` partition {partition} is no longer this instance's")]
    Fenced { role: String, partition: u32 },
    /// Settings or stored state do not fit together; fix the configuration.
    #[error("configuration: {0}")]
    Config(String),
}

impl ProjectorError {
    /// What PostgreSQL said, when it refused the data itself rather than failed: SQLSTATE class
    /// 22 (data exception: a NUL byte, a number out of range, an invalid time) or 54 (program
    /// limit exceeded: an index entry too large). The same rows will always be refused, so the
    /// batch is bisected to dead-letter the event that carries them instead of retried.
    pub fn refused_data(&self) -> Option<String> {
        match self {
            Self::Postgres(e) => refused_data(e),
            _ => None,
        }
    }
}

/// The outcome of statements pipelined in one transaction. When several fail, the first to fail
/// is the cause and the others only follow from it ("current transaction is aborted", or a
/// connection closed under a `COPY` that began after the failure), and any of them may come back
/// first: a refusal of the data (`refused`) is the cause whenever one is there, so a batch that
/// holds a poison event is bisected, not retried forever on a fresh connection each time.
pub fn pipelined<E>(
    outcomes: impl IntoIterator<Item = Result<(), E>>,
    refused: impl Fn(&E) -> bool,
) -> Result<(), E> {
    let mut first = None;
    for outcome in outcomes {
        if let Err(e) = outcome {
            if refused(&e) {
                return Err(e);
            }
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// See [`ProjectorError::refused_data`].
pub fn refused_data(e: &tokio_postgres::Error) -> Option<String> {
    let code = e.code()?.code();
    (code.starts_with("22") || code.starts_with("54")).then(|| describe(e))
}

impl From<deadpool_postgres::PoolError> for ProjectorError {
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
