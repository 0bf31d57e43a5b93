//! The projector folds every runledger event, exactly once, into PostgreSQL read models.
//!
//! Layout, one folder per layer: [`fold`] is the pure part (`apply(model, seq, event)` over the
//! in-memory rows of [`fold::model`], no I/O); [`store`] is PostgreSQL (set-based loads and
//! writes, the exactly-once [`store::batch`] transaction that runs load → fold → write →
//! position, migrations, checksums); [`feed`] reads the stream. [`live`] (the live projector)
//! and [`replay`] (rebuilds) join the three; [`membership`] shares partitions between
//! instances and [`workers`] runs a worker per owned partition. PostgreSQL, not the JetStream consumer, owns the position.

mod error;
pub mod feed;
pub mod fold;
pub mod live;
pub mod membership;
pub mod replay;
pub mod store;
pub mod workers;

pub use error::{pipelined, refused_data, ProjectorError};
pub use feed::Incoming;
pub use live::{Outcome, Projector, ProjectorSettings};
pub use store::batch::{apply_batch, BatchReport, CommitMode, Session, Target};
