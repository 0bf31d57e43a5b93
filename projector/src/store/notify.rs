//! Telling readers the position moved: every live batch transaction sends a PostgreSQL
//! notification, delivered when (and only if) it commits, so a reader that listens (the read
//! API's position poller) learns of a commit within milliseconds instead of at its next poll.
//!
//! One channel for every schema and consumer; the payload names both, so a listener keeps only
//! its own: `{"schema": "public", "consumer": "runledger-projector", "position": 42}`.
//! A notification is a hint, never the data: listeners read the position (and the rows) in
//! their own snapshot afterwards, and keep a slow poll for notifications lost while they were
//! disconnected.

use crate::error::ProjectorError;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// The channel (`LISTEN runledger_positions`).
pub const CHANNEL: &str = "runledger_positions";

/// A notification's payload.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct PositionMoved {
    /// The schema of the read models (the batch's `current_schema()`).
    pub schema: String,
    /// The position row's key.
    pub consumer: String,
    pub position: i64,
}

impl PositionMoved {
    /// Reads a payload; `None` for anything else sent on the channel.
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

/// Queues the notification on the batch's transaction (sent at commit).
pub async fn position_moved(
    tx: &Transaction<'_>,
    consumer: &str,
    position: i64,
) -> Result<(), ProjectorError> {
    tx.execute_typed(
        "SELECT pg_notify('runledger_positions', json_build_object(
             'schema', current_schema(), 'consumer', $1::text, 'position', $2::int8)::text)",
        &[(&consumer, Type::TEXT), (&position, Type::INT8)],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_payload_and_nothing_else() {
        assert_eq!(
            PositionMoved::parse(r#"{"schema":"public","consumer":"p","position":7}"#),
            Some(PositionMoved {
                schema: "public".into(),
                consumer: "p".into(),
                position: 7
            })
        );
        assert_eq!(PositionMoved::parse("7"), None);
    }
}
