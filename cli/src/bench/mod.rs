//! `runledger bench`: performance measured against raw ceilings taken on the same machine in
//! the same run, reported as medians and ratios (a noisy machine moves both alike). Each
//! workload sets up its own scratch stream and database and removes them afterwards.

mod ceiling;
mod cpu;
mod ingest;
mod ledger;
mod live;
mod reconcile;
mod replay;
mod scaled;
mod scratch;
mod takeover;
mod watchdog;

use crate::settings::{DbArgs, NatsArgs};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Times each measurement is repeated; medians are reported.
    #[arg(long, default_value_t = 3, global = true)]
    pub repeat: usize,
    #[command(subcommand)]
    pub workload: Workload,
}

#[derive(clap::Subcommand)]
pub enum Workload {
    /// End-to-end ingest (publish → projected and committed) vs raw JetStream publish and COPY;
    /// with --replicas/--partitions/--instances, a scaled-out setup vs the single node.
    Ingest(ingest::Args),
    /// Rebuild throughput from a pre-filled stream vs an ordered JetStream read and COPY.
    Replay(replay::Args),
    /// Detection delay: kill -9 of an agent process → run.process_lost published.
    Watchdog(watchdog::Args),
    /// Decision latency: run.process_lost published → its retry wakeup published, under load.
    Reconcile(reconcile::Args),
    /// Read latency of an issue's run ledger (8 rows) through the HTTP API, for 10,000 runs.
    Ledger(ledger::Args),
    /// Live updates: event published → delivered on an issue's SSE stream, under 1k events/s.
    Live(live::Args),
    /// Takeover: an instance killed with SIGKILL → all its partitions leased by another.
    Takeover(takeover::Args),
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let repeat = args.repeat.max(1);
    match args.workload {
        Workload::Ingest(w) => ingest::run(&args.nats, &args.db, repeat, w).await,
        Workload::Replay(w) => replay::run(&args.nats, &args.db, repeat, w).await,
        Workload::Watchdog(w) => watchdog::run(&args.nats, &args.db, w).await,
        Workload::Reconcile(w) => reconcile::run(&args.nats, &args.db, w).await,
        Workload::Ledger(w) => ledger::run(&args.nats, &args.db, repeat, w).await,
        Workload::Live(w) => live::run(&args.nats, &args.db, w).await,
        Workload::Takeover(w) => takeover::run(&args.nats, &args.db, w).await,
    }
}

/// The median of some measurements.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Busy and total CPU time of the whole machine so far (clock ticks, all cores), from
/// `/proc/stat`; `None` where there is no such file.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// How busy the machine was between two [`machine_ticks`] readings, in percent of all cores.
pub fn busy_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> f64 {
    match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

/// Prints rows of (name, value, unit) as a table.
pub fn print_table(title: &str, rows: &[(&str, f64, &str)]) {
    println!("{title}");
    for (name, value, unit) in rows {
        println!("  {name:<34} {value:>14.2} {unit}");
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
