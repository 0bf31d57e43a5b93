//! `/proc/<pid>/stat`: the few fields runledger needs to tell processes apart. The start time
//! (field 22, clock ticks since boot) is the pid-reuse guard recorded in `run.started`: a process
//! with the same pid but another start time is not the run's. The parser is pure and tested; the
//! readers are thin wrappers over the file system.

use std::io;
use std::path::Path;

/// The parsed fields of one `/proc/<pid>/stat` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// The command name (field 2, without the parentheses; may contain spaces).
    pub comm: String,
    /// The state letter (field 3): `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Parent pid (field 4).
    pub ppid: i32,
    /// Process group id (field 5).
    pub pgrp: i32,
    /// Start time in clock ticks since boot (field 22).
    pub starttime: u64,
    /// CPU time it used, in clock ticks: user and system (fields 14, 15), and that of its
    /// children it has waited for (fields 16, 17).
    pub cpu_ticks: u64,
    pub children_cpu_ticks: u64,
}

impl ProcStat {
    /// Exited: a zombie (not yet reaped by its parent) or being torn down. Counts as dead.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

#[cfg(test)]
impl ProcStat {
    /// The fields the rules built on a stat line look at, for their tests.
    pub(crate) fn of(pid: i32, state: char, ppid: i32, pgrp: i32, starttime: u64) -> Self {
        Self {
            pid,
            comm: "x".into(),
            state,
            ppid,
            pgrp,
            starttime,
            cpu_ticks: 0,
            children_cpu_ticks: 0,
        }
    }
}

/// Why a stat line could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed /proc stat line: {0}")]
pub struct MalformedStat(pub String);

/// Parses one `/proc/<pid>/stat` line. The command name is found by the LAST `)`, because it
/// may itself contain spaces and parentheses.
pub fn parse(line: &str) -> Result<ProcStat, MalformedStat> {
    let bad = |what: &str| MalformedStat(format!("{what} in `{}`", line.trim_end()));
    let open = line.find('(').ok_or_else(|| bad("no `(`"))?;
    let close = line.rfind(')').ok_or_else(|| bad("no `)`"))?;
    if close < open {
        return Err(bad("`)` before `(`"));
    }
    let pid = line[..open]
        .trim()
        .parse()
        .map_err(|_| bad("no numeric pid"))?;
    let comm = line[open + 1..close].to_owned();
    // Fields after the command name, starting with field 3 (state) at index 0.
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| bad("too few fields"))
    };
    let state = field(3)?.chars().next().ok_or_else(|| bad("empty state"))?;
    let ppid = field(4)?.parse().map_err(|_| bad("bad ppid"))?;
    let pgrp = field(5)?.parse().map_err(|_| bad("bad pgrp"))?;
    let starttime = field(22)?.parse().map_err(|_| bad("bad starttime"))?;
    let ticks = |n: usize| -> Result<u64, MalformedStat> {
        field(n)?.parse().map_err(|_| bad("bad cpu time"))
    };
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
        starttime,
        cpu_ticks: ticks(14)? + ticks(15)?,
        children_cpu_ticks: ticks(16)? + ticks(17)?,
    })
}

/// Reads `/proc/<pid>/stat`. `NotFound` means no such process (any more).
pub fn read(pid: i32) -> io::Result<ProcStat> {
    read_from(Path::new("/proc"), pid)
}

/// Reads `<proc_root>/<pid>/stat`.
pub fn read_from(proc_root: &Path, pid: i32) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))?;
    parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The start time of `pid` (clock ticks since boot), if it can be read.
pub fn start_time(pid: i32) -> Option<u64> {
    read(pid).ok().map(|s| s.starttime)
}

/// Every process visible in `/proc` whose stat line could be read (processes that exit during
/// the scan are skipped).
pub fn all() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| read(pid).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLEEP: &str = "4242 (sleep) S 4200 4242 4200 34816 4242 4194304 92 0 0 0 7 3 2 1 20 0 1 0 123456789 8486912 192 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn parses_the_fields_runledger_uses() {
        let s = parse(SLEEP).unwrap();
        assert_eq!(
            s,
            ProcStat {
                pid: 4242,
                comm: "sleep".into(),
                state: 'S',
                ppid: 4200,
                pgrp: 4242,
                starttime: 123_456_789,
                cpu_ticks: 10,
                children_cpu_ticks: 3,
            }
        );
        assert!(!s.is_dead());
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped_whole() {
        let line = SLEEP.replace("(sleep)", "(my (odd) name)");
        let s = parse(&line).unwrap();
        assert_eq!(s.comm, "my (odd) name");
        assert_eq!(s.ppid, 4200);
        assert_eq!(s.starttime, 123_456_789);
    }

    #[test]
    fn zombies_and_dead_processes_count_as_dead() {
        for state in ['Z', 'X'] {
            let line = SLEEP.replace(") S ", &format!(") {state} "));
            assert!(parse(&line).unwrap().is_dead(), "state {state}");
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse("").is_err());
        assert!(parse("12 (x) S 1 2").is_err(), "too short");
        assert!(parse("x (y) S 1 2 3").is_err(), "pid not a number");
        assert!(parse(") 12 (").is_err());
    }

    #[test]
    fn reads_the_current_process() {
        let me = read(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert!(!me.is_dead());
        assert!(me.starttime > 0);
        assert_eq!(start_time(me.pid), Some(me.starttime));
        assert!(all().iter().any(|s| s.pid == me.pid));
    }

    #[test]
    fn a_missing_process_is_not_found() {
        let err = read_from(Path::new("/nonexistent-proc"), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
