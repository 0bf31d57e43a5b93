//! The reconciler's integration tests: the reference's scenario catalogue as data
//! (`scenarios.rs`), run through the in-memory simulator (`decisions.rs`) and end to end through
//! real NATS JetStream and PostgreSQL (`e2e.rs`), which must agree exactly.

mod decisions;
mod e2e;
mod explanations;
mod harness;
mod hold;
mod poison;
mod recovery;
mod scenarios;
mod world;
