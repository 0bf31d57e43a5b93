//! `bench replay`: rebuild throughput of `runledger replay` (run as a child process, so its peak
//! RSS is its own) from a pre-filled stream, against an ordered JetStream read and COPY.

use super::scratch::Scratch;
use super::{busy_percent, ceiling, cpu, machine_ticks, median, print_table};
use crate::settings::{DbArgs, NatsArgs};
use producers::workload::{Mix, Workload};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the pre-filled stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per replay transaction (passed to `runledger replay --replay-batch-size`).
    #[arg(long = "replay-batch-size", default_value_t = 10_000)]
    pub batch_size: usize,
}

pub async fn run(
    nats: &NatsArgs,
    db: &DbArgs,
    repeat: usize,
    args: Args,
) -> anyhow::Result<ExitCode> {
    let scratch = Scratch::new(nats, db).await?;
    let result = measure(nats, &scratch, repeat, &args).await;
    scratch.cleanup().await;
    result
}

async fn measure(
    nats: &NatsArgs,
    scratch: &Scratch,
    repeat: usize,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    // ~22 events per run in the benchmark mix
    let runs = (args.events as usize / 22).max(1);
    let publisher = scratch.publisher();
    let mut workload = Workload::new(&Mix::benchmark(runs), 7).take(args.events as usize);
    let mut total = 0u64;
    eprintln!("pre-filling {} events ...", args.events);
    loop {
        let chunk: Vec<events::Event> = workload.by_ref().take(10_000).collect();
        if chunk.is_empty() {
            break;
        }
        for r in publisher.publish_all(&chunk).await {
            r?;
        }
        total += chunk.len() as u64;
    }
    let pool = scratch.pool().await?;
    let (mut read, mut copy, mut rebuild, mut rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_us, mut busy, mut pg_us) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..repeat {
        eprintln!("round {}: raw read ...", round + 1);
        read.push(ceiling::raw_read(&scratch.js, &scratch.stream, &scratch.subjects, total).await?);
        eprintln!("round {}: raw read done", round + 1);
        copy.push(ceiling::raw_copy(&**pool.get().await?, total as usize).await?);
        eprintln!("round {}: replay ...", round + 1);
        let into = format!("bench_replay_{round}");
        let ticks = machine_ticks();
        let pg_before = cpu::postgres_seconds();
        let output = tokio::process::Command::new(std::env::current_exe()?)
            .args([
                "replay",
                "--to-seq",
                &total.to_string(),
                "--into",
                &into,
                "--json",
                "--replay-batch-size",
                &args.batch_size.to_string(),
            ])
            .env("NATS_URL", nats.url_or_default())
            .env("DATABASE_URL", &scratch.database_url)
            .env("RUNLEDGER_STREAM", &scratch.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", scratch.subjects.prefix())
            .output()
            .await?;
        busy.push(busy_percent(ticks, machine_ticks()));
        pg_us.push((cpu::postgres_seconds() - pg_before) * 1e6 / total as f64);
        anyhow::ensure!(
            output.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .last()
                .unwrap_or("{}"),
        )?;
        eprintln!("round {}: replay done", round + 1);
        rebuild.push(summary["events_per_sec"].as_f64().unwrap_or(0.0));
        rss.push(summary["peak_rss_kib"].as_f64().unwrap_or(0.0) / 1024.0);
        cpu_us.push(summary["cpu_seconds"].as_f64().unwrap_or(f64::NAN) * 1e6 / total as f64);
        pool.get()
            .await?
            .batch_execute(&format!("DROP SCHEMA {into} CASCADE"))
            .await?;
        eprintln!(
            "round {}: read {:.0}/s, copy {:.0}/s, replay {:.0}/s, peak RSS {:.0} MiB, replay CPU {:.2} µs/event, PostgreSQL CPU {:.2} µs/event, machine {:.0}% busy",
            round + 1,
            read[round],
            copy[round],
            rebuild[round],
            rss[round],
            cpu_us[round],
            pg_us[round],
            busy[round]
        );
    }
    let (r, c, b, m) = (median(&read), median(&copy), median(&rebuild), median(&rss));
    let (u, y, g) = (median(&cpu_us), median(&busy), median(&pg_us));
    let floor = r.min(c);
    print_table(
        &format!("bench replay: {total} events, median of {repeat}"),
        &[
            ("raw ordered JetStream read", r, "events/s"),
            ("raw PostgreSQL binary COPY", c, "rows/s"),
            (
                "replay (rebuild all read models)",
                b,
                "events/s (target ≥ 50,000)",
            ),
            ("ratio replay / lower raw ceiling", b / floor, ""),
            ("replay peak RSS", m, "MiB (target < 150)"),
            ("replay process CPU per event", u, "µs (target ≤ 5)"),
            ("PostgreSQL CPU per event", g, "µs"),
            ("machine busy during the replay", y, "% of all cores"),
        ],
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "replay", "events": total, "repeat": repeat,
            "raw_read_eps": r, "raw_copy_rows_per_sec": c, "replay_eps": b,
            "ratio_replay_vs_lower_ceiling": b / floor, "peak_rss_mib": m,
            "replay_cpu_us_per_event": u, "postgres_cpu_us_per_event": g, "machine_busy_percent": y,
            "samples": {"raw_read": read, "raw_copy": copy, "replay": rebuild, "peak_rss_mib": rss,
                        "replay_cpu_us_per_event": cpu_us, "postgres_cpu_us_per_event": pg_us,
                        "machine_busy_percent": busy},
        })
    );
    Ok(ExitCode::SUCCESS)
}
