//! How a supervised run ended, as the caller (`runledger run`) needs it: the agent's exit, the
//! `run.finished` payload and whether the ledger got it, and the supervisor's exit code.

use super::delivery::{Delivery, Undelivered};
use super::termination::Exit;
use crate::process::group::GroupTermination;
use events::run::RunFinished;
use events::RunId;

/// Exit code of the supervisor when `run.finished` could not be published before the deadline
/// (`EX_TEMPFAIL`): the ledger does not know how the run ended.
pub const UNDELIVERED_EXIT_CODE: i32 = 75;
/// Exit code when the command could not be found (as in a shell).
pub const NOT_FOUND_EXIT_CODE: i32 = 127;
/// Exit code when the command was found but could not be started (as in a shell).
pub const NOT_STARTED_EXIT_CODE: i32 = 126;

/// How a supervised run ended.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: RunId,
    /// The agent's pid (`None` if it could not be started).
    pub pid: Option<i32>,
    /// How the agent process ended (`None` if it could not be started).
    pub exit: Option<Exit>,
    /// The `run.finished` payload published (or attempted).
    pub finished: RunFinished,
    /// `run.started` delivery (`None` if the agent could not be started).
    pub started_event: Option<Result<Delivery, Undelivered>>,
    /// `run.finished` delivery.
    pub final_event: Result<Delivery, Undelivered>,
    /// What happened to processes the agent left in its group.
    pub leftovers: GroupTermination,
    /// Why the command could not be started, if it could not.
    pub spawn_error: Option<std::io::ErrorKind>,
}

impl RunReport {
    /// The supervisor's exit code: the agent's (or 128 + signal); 126/127 if it could not be
    /// started; [`UNDELIVERED_EXIT_CODE`] if `run.finished` was not acknowledged in time.
    pub fn exit_code(&self) -> i32 {
        if self.final_event.is_err() {
            return UNDELIVERED_EXIT_CODE;
        }
        match (&self.exit, self.spawn_error) {
            (Some(exit), _) => exit.shell_code(),
            (None, Some(std::io::ErrorKind::NotFound)) => NOT_FOUND_EXIT_CODE,
            (None, _) => NOT_STARTED_EXIT_CODE,
        }
    }
}
