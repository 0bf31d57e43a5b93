//! `bench watchdog`: from `kill -9` of an agent process to its `run.process_lost` being
//! published, over many trials, with the watchdog sweeping at its normal interval. The original
//! orchestrator needed a 30 s scheduler tick plus a 5 minute staleness threshold for the same.

use super::scratch::Scratch;
use super::{median, print_table};
use crate::settings::{parse_duration, DbArgs, NatsArgs};
use chrono::Utc;
use events::run::RunStarted;
use events::*;
use futures::StreamExt;
use producers::watchdog::{Watchdog, WatchdogSettings};
use projector::{Projector, ProjectorSettings};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Kills to time.
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// The watchdog's sweep interval.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

pub async fn run(nats: &NatsArgs, db: &DbArgs, args: Args) -> anyhow::Result<ExitCode> {
    let scratch = Scratch::new(nats, db).await?;
    let result = measure(&scratch, &args).await;
    scratch.cleanup().await;
    result
}

/// The pid of a process that has exited and been reaped.
fn gone_pid() -> anyhow::Result<i32> {
    let mut child = std::process::Command::new("true").spawn()?;
    let pid = child.id() as i32;
    child.wait()?;
    Ok(pid)
}

async fn wait_for(sub: &mut async_nats::Subscriber, wanted: EventType) -> anyhow::Result<()> {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = sub.next().await {
            if Event::from_slice(&message.payload).is_ok_and(|e| e.event_type() == wanted) {
                return true;
            }
        }
        false
    })
    .await;
    anyhow::ensure!(matches!(found, Ok(true)), "no {wanted} within 30 s");
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn measure(scratch: &Scratch, args: &Args) -> anyhow::Result<ExitCode> {
    let pool = scratch.pool().await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let projector = Projector::start(
        pool.clone(),
        scratch.js.clone(),
        ProjectorSettings::new(&scratch.stream, scratch.subjects.clone()),
    )
    .await?;
    let projector_task = tokio::spawn(projector.run(stop_rx.clone()));
    let host = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut settings = WatchdogSettings::new(
        host.clone(),
        scratch.stream.clone(),
        scratch.subjects.clone(),
    );
    settings.interval = args.interval;
    let watchdog = Watchdog::new(pool.clone(), scratch.js.clone(), settings);
    let watchdog_task = tokio::spawn(watchdog.run(stop_rx));
    let publisher = scratch.publisher();
    let nats = scratch.client.clone();
    let company = CompanyId::new_random();
    let agent = AgentId::new_random();
    let mut latencies = Vec::new();
    for trial in 0..args.trials {
        let run = RunId::new_random();
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()?;
        let pid = child.id() as i32;
        let started = RunStarted {
            run_id: run,
            agent_id: agent,
            issue_id: None,
            host: host.clone(),
            pid: Some(pid),
            pgid: Some(pid),
            process_started_at: producers::process::stat::start_time(pid),
            // A supervisor that is already gone: the agent is detached, and its loss is the
            // watchdog's to report (a live supervisor reports its own child's end).
            supervisor_pid: Some(gone_pid()?),
            extra: Default::default(),
        };
        let mut sub = nats.subscribe(scratch.subjects.run(company, run)).await?;
        publisher
            .publish(&Event::new(
                company,
                "runledger-bench",
                Utc::now(),
                EventData::RunStarted(started),
            ))
            .await?;
        // the watchdog reads runs from the read model: wait until it is there
        let db = pool.get().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while db
            .query_opt(
                "SELECT 1 FROM runs WHERE run_id = $1 AND status = 'running'",
                &[&run.0],
            )
            .await?
            .is_none()
        {
            anyhow::ensure!(Instant::now() < deadline, "run.started was not projected");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wait_for(&mut sub, EventType::RunProcessDetached).await?;
        // kill at a spread of phases of the sweep interval
        let phase = Duration::from_millis(
            (trial as u64 * 7919) % (args.interval.as_millis().max(1) as u64),
        );
        tokio::time::sleep(phase).await;
        let killed = Instant::now();
        child.kill()?;
        child.wait()?;
        let lost = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(message) = sub.next().await {
                if let Ok(event) = Event::from_slice(&message.payload) {
                    if event.event_type() == EventType::RunProcessLost {
                        return Some(());
                    }
                }
            }
            None
        })
        .await;
        anyhow::ensure!(
            matches!(lost, Ok(Some(()))),
            "no run.process_lost within 30 s"
        );
        latencies.push(killed.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop_tx.send(true);
    let _ = projector_task.await;
    let _ = watchdog_task.await;
    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (median(&sorted), percentile(&sorted, 99.0));
    let interval_ms = args.interval.as_secs_f64() * 1000.0;
    print_table(
        &format!("bench watchdog: kill -9 → run.process_lost published, {} trials, interval {interval_ms:.0} ms", args.trials),
        &[
            ("p50", p50, "ms"),
            ("p99", p99, "ms"),
            ("p99 / interval", p99 / interval_ms, "(target ≤ 1.5)"),
            ("original (30 s tick + 5 min staleness)", 330_000.0, "ms worst case"),
        ],
    );
    println!(
        "{}",
        serde_json::json!({"bench": "watchdog", "trials": args.trials, "interval_ms": interval_ms, "p50_ms": p50, "p99_ms": p99, "ratio_p99_vs_interval": p99 / interval_ms, "samples_ms": latencies})
    );
    Ok(ExitCode::SUCCESS)
}
