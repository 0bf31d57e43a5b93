//! Test support: every test gets its own PostgreSQL database and its own JetStream stream and
//! subject prefix (or private `nats-server`s, a cluster of them too), so tests run in parallel against real services and
//! leave nothing behind (everything is dropped on `Drop`). [`Kit`] builds the end-to-end setup
//! on them that every crate's tests share.
//!
//! Services are found through `RUNLEDGER_TEST_DATABASE_URL` (an admin connection, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `RUNLEDGER_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`). The README's test command starts both before running the tests.

mod db;
mod kit;
mod nats;
mod poll;
mod postgres;
mod private;

pub use db::TestDb;
pub use kit::{step_to, Kit};
pub use localnats::PrivateNats;
pub use nats::TestStream;
pub use poll::{eventually, Deadline};
pub use postgres::PrivatePostgres;
pub use private::NatsServer;
