//! Process probing: is the process a run recorded still the SAME process, alive?
//!
//! The rules (each a pure function below, tested without processes):
//! - `kill(pid, 0)` failing with `ESRCH` means gone; `EPERM` means it exists (another user's
//!   process counts as alive);
//! - a zombie (exited, not yet reaped) counts as dead;
//! - a process whose start time (field 22 of `/proc/<pid>/stat`) differs from the one recorded
//!   at spawn is an unrelated process that reused the pid: the run's process is gone;
//! - a supervisor counts as alive only if it is alive, started no later than the agent, and (when
//!   the agent is alive) is still the agent's parent — a killed supervisor's child is reparented.
//!
//! Who is in a process group is a question of its own: see [`super::group`].

use super::stat::{self, ProcStat};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::io;

/// What `kill(pid, 0)` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalProbe {
    /// The process exists and may be signalled.
    Exists,
    /// The process exists but belongs to someone else (`EPERM`): alive.
    PermissionDenied,
    /// No such process (`ESRCH`).
    NoSuchProcess,
}

/// What reading `/proc/<pid>/stat` gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatProbe {
    Read(ProcStat),
    /// The file is gone: the process exited between the two probes.
    NotFound,
    /// Not readable (e.g. `/proc` mounted with `hidepid`): nothing more can be verified.
    Unreadable,
}

/// The verdict on one recorded process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running. `stat` is `None` when only `kill(pid, 0)` could be checked.
    Alive { stat: Option<ProcStat> },
    /// No process has this pid.
    Gone,
    /// The process exited and waits to be reaped.
    Zombie,
    /// Another process (started at `started_at`, not at the recorded time) now has the pid.
    Reused { started_at: u64 },
}

impl Liveness {
    pub fn is_alive(&self) -> bool {
        matches!(self, Self::Alive { .. })
    }

    /// A short word for events and logs: `alive`, `exited`, `zombie`, `pid_reused`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Alive { .. } => "alive",
            Self::Gone => "exited",
            Self::Zombie => "zombie",
            Self::Reused { .. } => "pid_reused",
        }
    }

    fn stat(&self) -> Option<&ProcStat> {
        match self {
            Self::Alive { stat } => stat.as_ref(),
            _ => None,
        }
    }
}

/// The pure decision from the two probes and the start time recorded at spawn.
pub fn classify(signal: SignalProbe, stat: StatProbe, expected_start: Option<u64>) -> Liveness {
    if signal == SignalProbe::NoSuchProcess {
        return Liveness::Gone;
    }
    match stat {
        StatProbe::NotFound => Liveness::Gone,
        StatProbe::Unreadable => Liveness::Alive { stat: None },
        StatProbe::Read(stat) => match expected_start {
            // Checked before the zombie state: a reused pid is not the run's, dead or alive.
            Some(expected) if stat.starttime != expected => Liveness::Reused {
                started_at: stat.starttime,
            },
            _ if stat.is_dead() => Liveness::Zombie,
            _ => Liveness::Alive { stat: Some(stat) },
        },
    }
}

/// Whether the supervisor of a run still supervises it, from its own probe (made without an
/// expected start time, which `run.started` does not carry for it), the agent's probe and the
/// agent's recorded start time.
pub fn supervisor_alive(
    supervisor_pid: i32,
    supervisor: &Liveness,
    agent: &Liveness,
    agent_started_at: Option<u64>,
) -> bool {
    if !supervisor.is_alive() {
        return false;
    }
    // The supervisor spawned the agent, so it started first; a later process reused the pid.
    if let (Some(stat), Some(agent_start)) = (supervisor.stat(), agent_started_at) {
        if stat.starttime > agent_start {
            return false;
        }
    }
    // A live agent whose parent is someone else was reparented: its supervisor died.
    if let Some(agent) = agent.stat() {
        if agent.ppid != supervisor_pid {
            return false;
        }
    }
    true
}

/// What a `kill(…, 0)` answered.
pub(super) fn signal_probe(result: nix::Result<()>) -> SignalProbe {
    match result {
        Ok(()) => SignalProbe::Exists,
        Err(Errno::EPERM) => SignalProbe::PermissionDenied,
        Err(_) => SignalProbe::NoSuchProcess,
    }
}

fn stat_probe(pid: i32) -> StatProbe {
    match stat::read(pid) {
        Ok(stat) => StatProbe::Read(stat),
        Err(e) if e.kind() == io::ErrorKind::NotFound => StatProbe::NotFound,
        Err(_) => StatProbe::Unreadable,
    }
}

/// Probes `pid` now. Non-positive pids are never signalled (`kill(0)` and `kill(-1)` would
/// address groups) and count as gone.
pub fn probe(pid: i32, expected_start: Option<u64>) -> Liveness {
    if pid <= 0 {
        return Liveness::Gone;
    }
    let signal = signal_probe(kill(Pid::from_raw(pid), None));
    if signal == SignalProbe::NoSuchProcess {
        return Liveness::Gone;
    }
    classify(signal, stat_probe(pid), expected_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esrch_is_gone_whatever_proc_says() {
        let s = StatProbe::Read(ProcStat::of(10, 'S', 1, 10, 5));
        assert_eq!(
            classify(SignalProbe::NoSuchProcess, s, Some(5)),
            Liveness::Gone
        );
    }

    #[test]
    fn eperm_counts_as_alive() {
        let s = ProcStat::of(10, 'S', 1, 10, 5);
        assert_eq!(
            classify(
                SignalProbe::PermissionDenied,
                StatProbe::Read(s.clone()),
                Some(5)
            ),
            Liveness::Alive { stat: Some(s) }
        );
        assert_eq!(
            classify(
                SignalProbe::PermissionDenied,
                StatProbe::Unreadable,
                Some(5)
            ),
            Liveness::Alive { stat: None }
        );
    }

    #[test]
    fn a_zombie_counts_as_dead() {
        let l = classify(
            SignalProbe::Exists,
            StatProbe::Read(ProcStat::of(10, 'Z', 1, 10, 5)),
            Some(5),
        );
        assert_eq!(l, Liveness::Zombie);
        assert!(!l.is_alive());
    }

    #[test]
    fn another_start_time_is_a_reused_pid_not_the_run() {
        let l = classify(
            SignalProbe::Exists,
            StatProbe::Read(ProcStat::of(10, 'S', 1, 10, 99)),
            Some(5),
        );
        assert_eq!(l, Liveness::Reused { started_at: 99 });
        assert!(!l.is_alive());
        assert_eq!(l.as_str(), "pid_reused");
    }

    #[test]
    fn without_a_recorded_start_time_a_live_pid_is_alive() {
        let s = ProcStat::of(10, 'R', 1, 10, 99);
        assert!(classify(SignalProbe::Exists, StatProbe::Read(s), None).is_alive());
    }

    #[test]
    fn exiting_between_the_probes_is_gone() {
        assert_eq!(
            classify(SignalProbe::Exists, StatProbe::NotFound, Some(5)),
            Liveness::Gone
        );
    }

    #[test]
    fn the_supervisor_must_be_alive_older_than_the_agent_and_its_parent() {
        let sup = |start| Liveness::Alive {
            stat: Some(ProcStat::of(100, 'S', 1, 100, start)),
        };
        let agent = |ppid| Liveness::Alive {
            stat: Some(ProcStat::of(200, 'S', ppid, 200, 50)),
        };
        assert!(supervisor_alive(100, &sup(40), &agent(100), Some(50)));
        assert!(
            !supervisor_alive(100, &sup(40), &agent(1), Some(50)),
            "reparented agent"
        );
        assert!(
            !supervisor_alive(100, &sup(60), &agent(100), Some(50)),
            "younger than the agent: a reused pid"
        );
        assert!(
            supervisor_alive(100, &sup(40), &Liveness::Gone, Some(50)),
            "agent gone: the supervisor is finishing the run"
        );
        assert!(!supervisor_alive(
            100,
            &Liveness::Zombie,
            &agent(100),
            Some(50)
        ));
        assert!(!supervisor_alive(
            100,
            &Liveness::Gone,
            &agent(100),
            Some(50)
        ));
        assert!(supervisor_alive(
            100,
            &Liveness::Alive { stat: None },
            &Liveness::Alive { stat: None },
            None
        ));
    }

    #[test]
    fn probes_real_processes() {
        let me = std::process::id() as i32;
        let start = stat::start_time(me).unwrap();
        assert!(probe(me, Some(start)).is_alive());
        assert_eq!(
            probe(me, Some(start + 1)),
            Liveness::Reused { started_at: start }
        );
        assert_eq!(probe(0, None), Liveness::Gone);
        assert_eq!(probe(-1, None), Liveness::Gone);
    }
}
