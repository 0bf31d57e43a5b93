//! `bench ingest`: from the first publish to the projector's position reaching the last event
//! (all read models committed), against raw publish and raw COPY of the same volume; with
//! replicas, partitions or instances, a scaled-out setup against the single node instead
//! ([`super::scaled`]).

use super::scaled::{self, Topology};
use super::scratch::Scratch;
use super::{ceiling, cpu, median, print_table};
use crate::settings::{DbArgs, NatsArgs};
use bytes::Bytes;
use producers::workload::{Mix, Workload};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Runs in the workload (each: run.started + 20 heartbeats + run.finished, 64 in flight
    /// per company).
    #[arg(long, default_value_t = 2000)]
    pub runs: usize,
    /// Companies the runs are spread over, their events interleaved (partitions split the work
    /// by company). Default: 1 on the single node, 64 when comparing a scaled-out setup.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub companies: Option<u64>,
    /// Stream replicas: above 1, a private JetStream cluster of this many nats-server nodes.
    /// With replicas, partitions or instances above 1, that setup is measured against the
    /// single node (R1, one partition, one instance), alternating rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Partitions of the stream (the servers map each company to one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(events::MAX_PARTITIONS)))]
    pub partitions: u32,
    /// `runledger worker` processes sharing the partitions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub instances: u16,
}

impl Args {
    /// The setup to compare with the single node, if any.
    fn scaled(&self) -> Option<Topology> {
        let topology = Topology {
            replicas: usize::from(self.replicas),
            partitions: self.partitions,
            instances: usize::from(self.instances),
        };
        (topology != Topology::SINGLE).then_some(topology)
    }
}

/// The benchmark mix's `runs` spread over `companies` companies (the first with today's
/// seed), one event of each in turn.
fn workload(runs: usize, companies: usize) -> Vec<events::Event> {
    let mut sources: Vec<Workload> = (0..companies)
        .map(|c| {
            let share = runs / companies + usize::from(c < runs % companies);
            Workload::new(&Mix::benchmark(share), 42 + c as u64)
        })
        .collect();
    let mut events = Vec::new();
    loop {
        let before = events.len();
        events.extend(sources.iter_mut().filter_map(Iterator::next));
        if events.len() == before {
            return events;
        }
    }
}

pub async fn run(
    nats: &NatsArgs,
    db: &DbArgs,
    repeat: usize,
    args: Args,
) -> anyhow::Result<ExitCode> {
    let scaled = args.scaled();
    let companies = args
        .companies
        .unwrap_or(if scaled.is_some() { 64 } else { 1 }) as usize;
    let events = workload(args.runs, companies);
    if let Some(target) = scaled {
        let description = format!("{} runs over {companies} companies", args.runs);
        return scaled::compare(nats, db, repeat, target, &events, &description).await;
    }
    let total = events.len();
    let (mut publish, mut publish_read, mut alone, mut copy, mut e2e) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut projector_cpu, mut postgres_cpu, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..repeat {
        // Each phase has its own scratch stream and database, removed whatever the phase returns.
        // raw publish of the same payloads, then raw COPY
        let scratch = Scratch::new(nats, db).await?;
        let result = async {
            let messages = raw_messages(&events, &scratch);
            eprintln!("round {}: raw publish ...", round + 1);
            let rate = ceiling::raw_publish(&scratch.js, &messages).await?;
            eprintln!("round {}: raw publish done", round + 1);
            let pool = scratch.pool().await?;
            let copied = ceiling::raw_copy(&**pool.get().await?, total).await?;
            Ok::<_, anyhow::Error>((rate, copied))
        }
        .await;
        scratch.cleanup().await;
        let (rate, copied) = result?;
        publish.push(rate);
        copy.push(copied);

        // raw publish while a raw reader on another connection reads every message back
        publish_read.push(publish_and_read(nats, db, &events, round).await?);

        // the Publisher alone (serialize, validate, dedup ids), no projector reading
        let scratch = Scratch::new(nats, db).await?;
        let result = async {
            let publisher = scratch.publisher();
            eprintln!("round {}: Publisher alone ...", round + 1);
            let started = Instant::now();
            for r in publisher.publish_all(&events).await {
                r?;
            }
            eprintln!("round {}: Publisher alone done", round + 1);
            Ok::<_, anyhow::Error>(total as f64 / started.elapsed().as_secs_f64())
        }
        .await;
        scratch.cleanup().await;
        alone.push(result?);

        // end to end: publish through the Publisher while the projector folds
        let scratch = Scratch::new(nats, db).await?;
        let result = end_to_end(nats, &scratch, &events, round).await;
        scratch.cleanup().await;
        let measured = result?;
        e2e.push(measured.rate);
        projector_cpu.push(measured.projector_cpu_us);
        postgres_cpu.push(measured.postgres_cpu_us);
        rss.push(measured.peak_rss_mib);
        eprintln!(
            "round {}: publish {:.0}/s, publish+read {:.0}/s, Publisher alone {:.0}/s, copy {:.0}/s, end-to-end {:.0}/s, projector CPU {:.2} µs/event, PostgreSQL CPU {:.2} µs/event, projector peak RSS {:.0} MiB",
            round + 1,
            publish[round],
            publish_read[round],
            alone[round],
            copy[round],
            e2e[round],
            projector_cpu[round],
            postgres_cpu[round],
            rss[round]
        );
    }
    let (p, pr, a, c, e) = (
        median(&publish),
        median(&publish_read),
        median(&alone),
        median(&copy),
        median(&e2e),
    );
    print_table(
        &format!(
            "bench ingest: {total} events ({} runs, {companies} companies), median of {repeat}",
            args.runs
        ),
        &[
            ("raw JetStream publish", p, "events/s"),
            ("raw publish while a raw reader reads", pr, "events/s"),
            ("Publisher alone (no projector)", a, "events/s"),
            ("raw PostgreSQL binary COPY", c, "rows/s"),
            ("end-to-end (published → committed)", e, "events/s"),
            ("ratio end-to-end / raw publish", e / p, ""),
            ("ratio end-to-end / publish+read", e / pr, ""),
            (
                "projector process CPU per event",
                median(&projector_cpu),
                "µs",
            ),
            ("PostgreSQL CPU per event", median(&postgres_cpu), "µs"),
            ("projector peak RSS", median(&rss), "MiB"),
        ],
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "ingest", "events": total, "runs": args.runs, "repeat": repeat,
            "raw_publish_eps": p, "raw_publish_and_read_eps": pr, "publisher_alone_eps": a,
            "raw_copy_rows_per_sec": c, "end_to_end_eps": e,
            "ratio_end_to_end_vs_publish": e / p, "ratio_end_to_end_vs_publish_and_read": e / pr,
            "projector_cpu_us_per_event": median(&projector_cpu),
            "postgres_cpu_us_per_event": median(&postgres_cpu), "projector_peak_rss_mib": median(&rss),
            "samples": {"raw_publish": publish, "raw_publish_and_read": publish_read,
                        "publisher_alone": alone, "raw_copy": copy, "end_to_end": e2e,
                        "projector_cpu_us_per_event": projector_cpu,
                        "postgres_cpu_us_per_event": postgres_cpu, "projector_peak_rss_mib": rss},
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// What the end-to-end phase measured.
struct EndToEnd {
    /// Events per second from the first publish to the projector's position reaching the last.
    rate: f64,
    /// CPU µs per event of the projector's process (`runledger project`) and of PostgreSQL.
    projector_cpu_us: f64,
    postgres_cpu_us: f64,
    /// The projector process's peak RSS.
    peak_rss_mib: f64,
}

/// Publishes `events` through the `Publisher` while `runledger project`, a process of its own as
/// in production, folds them.
async fn end_to_end(
    nats: &NatsArgs,
    scratch: &Scratch,
    events: &[events::Event],
    round: usize,
) -> anyhow::Result<EndToEnd> {
    let pool = scratch.pool().await?;
    {
        let mut client = pool.get().await?;
        projector::store::migrate::migrate(&mut client, "public").await?;
    }
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("project")
        .env("NATS_URL", nats.url_or_default())
        .env("DATABASE_URL", &scratch.database_url)
        .env("RUNLEDGER_STREAM", &scratch.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", scratch.subjects.prefix())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let publisher = scratch.publisher();
    eprintln!("round {}: end to end ...", round + 1);
    let pg_before = cpu::postgres_seconds();
    let started = Instant::now();
    let measured = async {
        let mut last = 0;
        for r in publisher.publish_all(events).await {
            last = r?.sequence;
        }
        let published = started.elapsed().as_secs_f64();
        let client = pool.get().await?;
        loop {
            let position = projector::store::position(&client, "runledger-projector")
                .await?
                .unwrap_or(0);
            if position >= last as i64 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the projector did not catch up in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let done = started.elapsed().as_secs_f64();
        let process = producers::process::stat::read(pid)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        eprintln!(
            "round {}: all published after {published:.2} s, all committed after {done:.2} s",
            round + 1
        );
        let per_event = 1e6 / events.len() as f64;
        Ok(EndToEnd {
            rate: events.len() as f64 / done,
            projector_cpu_us: process.cpu_ticks as f64 * cpu::tick_seconds() * per_event,
            postgres_cpu_us: (cpu::postgres_seconds() - pg_before) * per_event,
            peak_rss_mib: peak_kib(&status) / 1024.0,
        })
    }
    .await;
    let _ = child.kill().await;
    measured
}

/// `VmHWM` (peak resident set) of a `/proc/<pid>/status` text, in KiB.
fn peak_kib(status: &str) -> f64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Raw publish of `events` while a raw reader reads them back, in a scratch stream of its own.
/// Events per second.
async fn publish_and_read(
    nats: &NatsArgs,
    db: &DbArgs,
    events: &[events::Event],
    round: usize,
) -> anyhow::Result<f64> {
    let scratch = Scratch::new(nats, db).await?;
    let result = async {
        let messages = raw_messages(events, &scratch);
        let reader = async_nats::jetstream::new(nats.connect("runledger bench reader").await?);
        eprintln!("round {}: raw publish and read ...", round + 1);
        let rate = ceiling::raw_publish_and_read(
            &scratch.js,
            &reader,
            &scratch.stream,
            &scratch.subjects,
            &messages,
        )
        .await?;
        eprintln!("round {}: raw publish and read done", round + 1);
        Ok::<_, anyhow::Error>(rate)
    }
    .await;
    scratch.cleanup().await;
    result
}

/// The benchmark's events as raw JetStream messages (subject, message id, payload) for `scratch`.
fn raw_messages(events: &[events::Event], scratch: &Scratch) -> Vec<(String, String, Bytes)> {
    events
        .iter()
        .map(|e| {
            (
                scratch.subjects.of(e),
                e.id.to_string(),
                Bytes::from(e.to_vec()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{workload, Args, Topology};
    use clap::Parser;

    #[derive(Parser)]
    struct Ingest {
        #[command(flatten)]
        args: Args,
    }

    fn refused(args: &[&str]) -> String {
        match Ingest::try_parse_from(std::iter::once("ingest").chain(args.iter().copied())) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn out_of_range_setups_are_refused_by_name() {
        let e = refused(&["--instances", "0"]);
        assert!(e.contains("--instances") && e.contains("1..=64"), "{e}");
        let e = refused(&["--replicas", "6"]);
        assert!(e.contains("--replicas") && e.contains("1..=5"), "{e}");
        let e = refused(&["--partitions", "0"]);
        assert!(e.contains("--partitions"), "{e}");
        let e = refused(&["--companies", "0"]);
        assert!(e.contains("--companies"), "{e}");
    }

    #[test]
    fn the_defaults_are_the_single_node_and_anything_else_is_compared_with_it() {
        assert_eq!(Ingest::parse_from(["ingest"]).args.scaled(), None);
        let args = Ingest::parse_from([
            "ingest",
            "--replicas",
            "3",
            "--partitions",
            "8",
            "--instances",
            "2",
        ])
        .args;
        let expected = Topology {
            replicas: 3,
            partitions: 8,
            instances: 2,
        };
        assert_eq!(args.scaled(), Some(expected));
    }

    #[test]
    fn the_workload_spreads_the_runs_over_the_companies() {
        let one = workload(10, 1);
        let many = workload(10, 4);
        let companies: std::collections::BTreeSet<_> = many.iter().map(|e| e.company_id).collect();
        assert_eq!(companies.len(), 4);
        assert!(
            companies.contains(&one[0].company_id),
            "the first company is today's"
        );
        // Interleaved: the first four events belong to four companies.
        let first: std::collections::BTreeSet<_> = many[..4].iter().map(|e| e.company_id).collect();
        assert_eq!(first.len(), 4);
    }
}
