//! Operating-system processes as runledger sees them, for the supervisor and the watchdog alike:
//! the fields of `/proc/<pid>/stat` ([`stat`]), whether a recorded process is still the same
//! process and alive ([`probe`]), and who is left in a process group and how that is terminated
//! ([`group`]). The supervisor records its agent's start time with them and reaps what the agent
//! leaves behind; the watchdog probes runs and reaps orphaned groups with the same code.

pub mod group;
pub mod probe;
pub mod stat;
