//! The publishing side of runledger: creating the stream and publishing events into it.
//!
//! Everything that writes to JetStream goes through [`Publisher`], which validates before
//! sending, uses the event id as `Nats-Msg-Id` (so a re-publish is stored once), pipelines with
//! a bounded number of acks in flight, and retries a timed-out publish with the same id — a
//! timeout does not mean the write failed, and the duplicate window makes the retry harmless.
//!
//! [`supervisor`] runs one agent process and publishes its run's lifecycle; [`watchdog`] checks
//! a host's supervisors and agent processes and reports the ones that were lost; both know
//! processes through [`process`].

mod error;
pub mod process;
mod publisher;
mod stop;
mod stream;
pub mod supervisor;
pub mod watchdog;
pub mod workload;

pub use error::{PublishError, StreamError};
pub use publisher::{Encoded, PublishOutcome, Publisher, PublisherSettings};
pub use stream::{
    check_partition_mapping, check_partitions, ensure_stream, StreamSettings,
    DEFAULT_DUPLICATE_WINDOW, DEFAULT_STREAM,
};
