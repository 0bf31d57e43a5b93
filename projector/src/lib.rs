//! The projector folds every runledger event, exactly once, into PostgreSQL read models.
//!
//! Layout: [`fold`] is the pure part (`apply(model, seq, event)`, no I/O); [`store`] loads the
//! rows a batch touches and writes the changed ones back with set-based statements; [`batch`]
//! runs load → fold → write → position in ONE transaction, keeping the rows it committed in a
//! [`cache`] for the next batch; [`shell`] reads batches from
//! JetStream through a [`cursor`]. PostgreSQL, not the JetStream consumer, owns the position.

pub mod batch;
pub mod cache;
mod cells;
pub mod checksum;
mod columns;
pub mod cursor;
mod deliveries;
mod error;
pub mod fold;
pub mod history;
pub mod indexes;
pub mod migrate;
pub mod model;
pub mod replay;
pub mod shell;
pub mod stop;
pub mod store;
pub mod wire;

pub use batch::{apply_batch, BatchReport, CommitMode, Incoming, Session, Target};
pub use error::ProjectorError;
pub use shell::{Outcome, Projector, ProjectorSettings};
