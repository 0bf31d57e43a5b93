//! A run's process group: who is still in it, and terminating what is left of it (SIGTERM to
//! the group, poll every 100 ms, SIGKILL at 2 s: the reference's policy). Used by the watchdog
//! for orphaned descendants and cancels without a supervisor, and by the supervisor for what an
//! agent leaves behind.
//!
//! Membership scans `/proc` for live members, because `kill(-pgid, 0)` also succeeds when only
//! zombies are left. A group is only signalled when every live member started at or after the
//! run's process: otherwise the group number belongs to someone else now and nothing is sent.

use super::probe::{signal_probe, SignalProbe};
use super::stat::{self, ProcStat};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;

/// The live members of one process group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMembers {
    /// Members started at or after the run's process: its descendants.
    pub ours: Vec<i32>,
    /// Members started before it: the group number now belongs to someone else.
    pub foreign: Vec<i32>,
}

impl GroupMembers {
    pub fn is_empty(&self) -> bool {
        self.ours.is_empty() && self.foreign.is_empty()
    }
}

/// Pure: the live (non-zombie) members of `pgid` among `stats`, split by start time.
pub fn partition_members(
    stats: impl IntoIterator<Item = ProcStat>,
    pgid: i32,
    not_before: Option<u64>,
) -> GroupMembers {
    let mut members = GroupMembers::default();
    for stat in stats {
        if stat.pgrp != pgid || stat.is_dead() {
            continue;
        }
        match not_before {
            Some(t) if stat.starttime < t => members.foreign.push(stat.pid),
            _ => members.ours.push(stat.pid),
        }
    }
    members
}

/// The live members of process group `pgid` now. `kill(-pgid, 0)` answers "nobody" cheaply;
/// otherwise `/proc` is scanned, since zombies keep a group signalable.
pub fn group_members(pgid: i32, not_before: Option<u64>) -> GroupMembers {
    if pgid <= 1 {
        return GroupMembers::default();
    }
    if signal_probe(killpg(Pid::from_raw(pgid), None)) == SignalProbe::NoSuchProcess {
        return GroupMembers::default();
    }
    partition_members(stat::all(), pgid, not_before)
}

/// Sends `signal` to the group (never to groups 0 or 1, which would address the caller's group
/// or init's).
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// How a group is terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupKill {
    /// Pause between membership checks.
    pub poll: Duration,
    /// When SIGKILL follows SIGTERM.
    pub kill_after: Duration,
}

impl Default for GroupKill {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(100),
            kill_after: Duration::from_secs(2),
        }
    }
}

/// What terminating a group did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupTermination {
    /// No live member: nothing to do.
    Empty,
    /// Live members that started before the run's process: not the run's group; untouched.
    NotOurs { members: Vec<i32> },
    /// The members found were terminated; `killed` says whether SIGKILL was needed.
    Terminated { members: Vec<i32>, killed: bool },
    /// Members were still alive after SIGKILL and the same wait again (e.g. stuck in the kernel).
    Survived { members: Vec<i32> },
}

impl GroupTermination {
    /// Whether live descendants were found and signalled.
    pub fn signalled(&self) -> bool {
        matches!(self, Self::Terminated { .. } | Self::Survived { .. })
    }
}

/// Terminates the live members of group `pgid` that started at or after `not_before` (the
/// run's process start time), if the group has no older member.
pub async fn terminate_group(
    pgid: i32,
    not_before: Option<u64>,
    policy: GroupKill,
) -> GroupTermination {
    let found = group_members(pgid, not_before);
    if found.is_empty() {
        return GroupTermination::Empty;
    }
    if !found.foreign.is_empty() {
        return GroupTermination::NotOurs {
            members: found.foreign,
        };
    }
    signal_group(pgid, Signal::SIGTERM);
    let started = Instant::now();
    let mut killed = false;
    loop {
        tokio::time::sleep(policy.poll).await;
        let now = group_members(pgid, not_before);
        if now.is_empty() {
            return GroupTermination::Terminated {
                members: found.ours,
                killed,
            };
        }
        let elapsed = started.elapsed();
        if !killed && elapsed >= policy.kill_after {
            signal_group(pgid, Signal::SIGKILL);
            killed = true;
        } else if killed && elapsed >= policy.kill_after * 2 {
            let mut members = now.ours;
            members.extend(now.foreign);
            return GroupTermination::Survived { members };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_members_skip_zombies_other_groups_and_split_by_start_time() {
        let stats = vec![
            ProcStat::of(10, 'Z', 1, 10, 50), // the exited leader
            ProcStat::of(11, 'S', 1, 10, 51), // its orphaned child
            ProcStat::of(12, 'S', 1, 12, 52), // another group
            ProcStat::of(13, 'S', 1, 10, 40), // started before the run's process
        ];
        let m = partition_members(stats.clone(), 10, Some(50));
        assert_eq!(m.ours, vec![11]);
        assert_eq!(m.foreign, vec![13]);
        let m = partition_members(stats, 10, None);
        assert_eq!(m.ours, vec![11, 13]);
        assert!(partition_members(Vec::new(), 10, None).is_empty());
    }

    #[test]
    fn groups_0_and_1_have_no_members() {
        assert!(group_members(0, None).is_empty());
        assert!(group_members(1, None).is_empty());
    }
}
