//! Terminating what is left of a run's process group: SIGTERM to the group, poll every 100 ms,
//! SIGKILL at 2 s (the reference's policy). Used by the watchdog for orphaned descendants and
//! cancels without a supervisor, and by the supervisor for what an agent leaves behind.
//!
//! A group is only signalled when every live member started at or after the run's process:
//! otherwise the group number belongs to someone else now and nothing is sent.

use super::probe::{group_members, GroupMembers};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::time::Instant;

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
    let group = Pid::from_raw(pgid);
    let _ = killpg(group, Signal::SIGTERM);
    let started = Instant::now();
    let alive = |m: &GroupMembers| !m.ours.is_empty() || !m.foreign.is_empty();
    let mut killed = false;
    loop {
        tokio::time::sleep(policy.poll).await;
        let now = group_members(pgid, not_before);
        if !alive(&now) {
            return GroupTermination::Terminated {
                members: found.ours,
                killed,
            };
        }
        let elapsed = started.elapsed();
        if !killed && elapsed >= policy.kill_after {
            let _ = killpg(group, Signal::SIGKILL);
            killed = true;
        } else if killed && elapsed >= policy.kill_after * 2 {
            let mut members = now.ours;
            members.extend(now.foreign);
            return GroupTermination::Survived { members };
        }
    }
}
