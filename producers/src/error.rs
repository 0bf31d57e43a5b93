//! Errors of the publishing side, split by what a caller can do about them.

use events::ContractError;
use thiserror::Error;

/// Why one event was not stored.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The event breaks the contract; it was not sent. Fix the event; retrying is pointless.
    #[error("invalid event: {0}")]
    Invalid(#[from] ContractError),
    /// The server refused the event (no stream captures the subject, payload too large, ...).
    /// Not retryable as is.
    #[error("rejected by JetStream: {0}")]
    Rejected(String),
    /// No acknowledgement after every attempt. The event may or may not be stored; publishing it
    /// again with the same id is safe within the stream's duplicate window.
    #[error("no acknowledgement after {attempts} attempts ({last})")]
    Unacknowledged { attempts: u32, last: String },
}

impl PublishError {
    /// Whether publishing the same event again could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unacknowledged { .. })
    }
}

/// Why the stream could not be set up as asked.
#[derive(Debug, Error)]
pub enum StreamError {
    /// Talking to JetStream failed (not reachable, JetStream disabled, permissions).
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The server accepted the request but did not apply a setting (older servers silently
    /// ignore settings they do not know). The stream cannot give the guarantees runledger needs.
    #[error("stream `{stream}`: the server did not apply `{setting}` (asked {asked}, got {got}); nats-server 2.9 or newer is required")]
    NotApplied {
        stream: String,
        setting: &'static str,
        asked: String,
        got: String,
    },
    /// The stream was set up with another partition count. It is fixed at setup: use the count
    /// it records, or set up a new stream and replay into it.
    #[error("stream `{stream}` was set up with {recorded} partition(s), not {asked}: set RUNLEDGER_PARTITIONS={recorded} (the count is fixed when the stream is set up)")]
    Partitions {
        stream: String,
        recorded: u32,
        asked: u32,
    },
    /// The servers do not map producers' subjects into partitions as runledger computes them.
    #[error("the NATS servers do not partition subjects as runledger expects ({problem}); add to every server's configuration: mappings = {{ \"{from}\": \"{to}\" }} (see docs/operations.md)")]
    Mapping {
        problem: String,
        from: String,
        to: String,
    },
}
