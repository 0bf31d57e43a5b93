//! `runledger replay`: rebuild the read models from history into a fresh schema, check parity
//! with the live schema at the same position and swap atomically; or build as of a sequence
//! (`--to-seq`), continue an interrupted build (`--from-seq`), or report what a rebuild would
//! change (`--dry-run`). Progress: a bar on a terminal, structured log lines otherwise.

use crate::db;
use crate::settings::{DbArgs, NatsArgs, ProjectorNameArgs, StreamArgs};
use indicatif::{ProgressBar, ProgressStyle};
use projector::replay::{replay, Progress, ReplayMode, ReplayOutcome, ReplayPlan, TableDiff};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub projector: ProjectorNameArgs,
    /// Schema to build into [default: <schema>_replay]. An existing one is continued from its
    /// own position (a replay interrupted at any point resumes).
    #[arg(long)]
    pub into: Option<String>,
    /// Continue a build from this sequence (the schema must already hold everything before it).
    #[arg(long = "from-seq")]
    pub from_seq: Option<u64>,
    /// Build the read models as of this sequence and stop (no parity check, no swap).
    #[arg(long = "to-seq")]
    pub to_seq: Option<u64>,
    /// Rebuild, report what would change against the live schema, swap nothing, drop the build.
    #[arg(long = "dry-run", conflicts_with_all = ["to_seq", "force"])]
    pub dry_run: bool,
    /// Swap even when the rebuild differs from the live schema (e.g. after a fold fix).
    #[arg(long)]
    pub force: bool,
    /// Events per transaction while rebuilding.
    #[arg(
        id = "replay_batch_size",
        long = "replay-batch-size",
        default_value_t = 10_000
    )]
    pub batch_size: usize,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

struct Reporter {
    bar: Option<ProgressBar>,
    last_log: Instant,
}

impl Reporter {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            bar
        });
        Self {
            bar,
            last_log: Instant::now(),
        }
    }

    fn update(&mut self, p: &Progress) {
        let rate = p.applied as f64 / p.elapsed.as_secs_f64().max(1e-3);
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.target.max(0) as u64);
                bar.set_position(p.position.max(0) as u64);
            }
            None if self.last_log.elapsed() >= Duration::from_secs(2) => {
                self.last_log = Instant::now();
                let eta = (p.target - p.position).max(0) as f64 / rate.max(1.0);
                tracing::info!(
                    position = p.position,
                    target = p.target,
                    events_per_sec = rate as u64,
                    eta_sec = eta as u64,
                    "replaying"
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let nats = args.nats.connect("runledger replay").await?;
    let js = async_nats::jetstream::new(nats);
    args.stream.check(&js).await?;
    let url = args.db.url_or_default();
    let into = args
        .into
        .clone()
        .unwrap_or_else(|| format!("{}_replay", args.db.schema));
    let live = db::pool(&url, &args.db.schema, 2)?;
    let scratch = db::pool(&url, &into, 2)?;
    let mode = if args.dry_run {
        ReplayMode::DryRun
    } else if args.to_seq.is_some() {
        ReplayMode::BuildOnly
    } else {
        ReplayMode::Swap { force: args.force }
    };
    let plan = ReplayPlan {
        live_schema: args.db.schema.clone(),
        into: into.clone(),
        consumer: args.projector.name.clone(),
        stream: args.stream.stream.clone(),
        subjects: args.stream.subjects()?,
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        batch_size: args.batch_size.max(1),
        mode,
    };
    let started = Instant::now();
    let mut reporter = Reporter::new();
    let mut applied = 0;
    let outcome = replay(&live, &scratch, &js, &plan, |p| {
        applied = p.applied;
        reporter.update(p);
    })
    .await;
    reporter.finish();
    let outcome = outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = applied as f64 / elapsed.max(1e-3);
    let peak_rss_kib = peak_rss_kib();
    let cpu_seconds = cpu_seconds();
    let (kind, position, tables, ok) = match &outcome {
        ReplayOutcome::Swapped {
            position,
            previous_schema,
            tables,
        } => {
            eprintln!("swapped: `{into}` is now `{}`; the previous read models are in `{previous_schema}`", args.db.schema);
            ("swapped", *position, tables.clone(), true)
        }
        ReplayOutcome::DryRun { position, tables } => ("dry_run", *position, tables.clone(), true),
        ReplayOutcome::Built { position, schema } => {
            eprintln!("built `{schema}` as of sequence {position}");
            ("built", *position, Vec::new(), true)
        }
        ReplayOutcome::ParityFailed { position, tables } => {
            eprintln!("parity failed: the rebuild differs from `{}`; nothing swapped (`{into}` kept; --force swaps anyway)", args.db.schema);
            ("parity_failed", *position, tables.clone(), false)
        }
    };
    if args.json {
        let tables: Vec<_> = tables
            .iter()
            .map(|t| serde_json::json!({"table": t.table, "live_rows": t.live_rows, "rebuilt_rows": t.rebuilt_rows, "only_live": t.only_live, "only_rebuilt": t.only_rebuilt, "equal": t.equal()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"outcome": kind, "position": position, "events": applied, "seconds": elapsed, "events_per_sec": rate, "peak_rss_kib": peak_rss_kib, "cpu_seconds": cpu_seconds, "tables": tables})
        );
    } else {
        println!("{kind} at sequence {position}: {applied} events in {elapsed:.1} s ({rate:.0} events/s), peak RSS {} MiB, CPU {cpu_seconds:.1} s", peak_rss_kib / 1024);
        print_tables(&tables);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_tables(tables: &[TableDiff]) {
    if tables.is_empty() {
        return;
    }
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>12}  same",
        "table", "live", "rebuilt", "only live", "only rebuilt"
    );
    for t in tables {
        println!(
            "{:<22} {:>10} {:>10} {:>10} {:>12}  {}",
            t.table,
            t.live_rows,
            t.rebuilt_rows,
            t.only_live,
            t.only_rebuilt,
            if t.equal() { "yes" } else { "NO" }
        );
    }
}

/// This process's peak resident set size (VmHWM), in KiB.
/// CPU time (user + system) this process has used so far, in seconds; 0 where unknown.
pub fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(u.user_time()) + seconds(u.system_time())
    })
}

pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
