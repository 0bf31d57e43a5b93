//! Test support: every test gets its own PostgreSQL database and its own JetStream stream and
//! subject prefix (or private `nats-server`s, a cluster of them too), so tests run in parallel against real services and
//! leave nothing behind (everything is dropped on `Drop`). [`Kit`] builds the end-to-end setup
//! on them that every crate's tests share.
//!
//! Services are found through `RUNLEDGER_TEST_DATABASE_URL` (an admin connection, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `RUNLEDGER_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`). The README's test command starts both before running the tests.
//!
//! `RUNLEDGER_TEST_PARTITIONS` (default 1) is the partition count of every test stream that does
//! not choose its own: with P > 1 each [`TestStream`] is partitioned on a private server with the
//! mapping, and a [`Kit`]'s projector and reconciler are one per partition, as `runledger worker`
//! runs them, so the same tests assert the same behaviour at P = 1 and P = 8.

mod db;
mod kit;
mod nats;
mod poll;
mod postgres;
mod private;
mod readers;

pub use db::TestDb;
pub use kit::{step_to, Kit};
pub use localnats::PrivateNats;
pub use nats::TestStream;
pub use poll::{eventually, Deadline};
pub use postgres::PrivatePostgres;
pub use private::NatsServer;
pub use readers::{Projectors, Reconcilers};

/// The partition count tests run at: `RUNLEDGER_TEST_PARTITIONS`, default 1.
pub fn partitions() -> u32 {
    match std::env::var("RUNLEDGER_TEST_PARTITIONS") {
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|p| (1..=events::MAX_PARTITIONS).contains(p))
            .unwrap_or_else(|| {
                panic!("RUNLEDGER_TEST_PARTITIONS=`{text}` is not a partition count")
            }),
        Err(_) => 1,
    }
}
