//! PostgreSQL's CPU time on this machine, for the benchmarks' "CPU per event" (runledger's own
//! is `getrusage`'s, [`crate::replay::cpu_seconds`]), read from /proc. A backend's time moves into its postmaster's
//! "children" time when it exits, so the postmasters' children time plus every live PostgreSQL
//! process's own time is a total that only grows, whatever connections come and go. Other
//! clients of the same server count too: measure on an otherwise idle server.

use producers::process::stat;

/// Seconds per clock tick of /proc's times.
pub fn tick_seconds() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => 1.0 / hz as f64,
        _ => 0.01,
    }
}

/// CPU seconds all PostgreSQL processes on this machine have used so far (NaN when none is
/// visible, e.g. the server runs elsewhere).
pub fn postgres_seconds() -> f64 {
    let all = stat::all();
    let postgres: Vec<&stat::ProcStat> = all.iter().filter(|p| p.comm == "postgres").collect();
    if postgres.is_empty() {
        return f64::NAN;
    }
    let is_postgres = |pid: i32| postgres.iter().any(|p| p.pid == pid);
    let ticks: u64 = postgres
        .iter()
        .map(|p| {
            let children = if is_postgres(p.ppid) {
                0
            } else {
                p.children_cpu_ticks
            };
            p.cpu_ticks + children
        })
        .sum();
    ticks as f64 * tick_seconds()
}
