//! `bench reconcile`: from a `run.process_lost` being published to the reconciler publishing its
//! retry `wakeup.requested`, over many trials, while ~1,000 background events per second flow
//! (the benchmark workload: heartbeats, and finishes whose plans earn continuations) and the
//! projector folds everything on the same database. Reports p50/p99; the target is p99 < 100 ms.

use super::scratch::Scratch;
use super::{median, print_table};
use crate::settings::{parse_duration, DbArgs, NatsArgs};
use chrono::Utc;
use events::issue::IssueCreated;
use events::run::{RunProcessLost, RunQueued, RunStarted};
use events::*;
use futures::StreamExt;
use producers::workload::{Mix, Workload};
use producers::Publisher;
use projector::{Projector, ProjectorSettings};
use reconciler::engine::{CAUSE_ATTRIBUTE, SOURCE};
use reconciler::{Reconciler, ReconcilerSettings};
use serde_json::Map;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Process losses to time.
    #[arg(long, default_value_t = 200)]
    pub trials: usize,
    /// Background events per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: usize,
    /// Pause between trials.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub gap: Duration,
    /// Do not run the projector beside the reconciler (isolates the reconciler's own cost).
    #[arg(long)]
    pub without_projector: bool,
}

pub async fn run(nats: &NatsArgs, db: &DbArgs, args: Args) -> anyhow::Result<ExitCode> {
    let scratch = Scratch::new(nats, db).await?;
    let result = measure(nats, &scratch, &args).await;
    scratch.cleanup().await;
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Publishes the benchmark workload at `rate` events per second until `stop` turns true.
pub(super) async fn background(
    publisher: Publisher,
    rate: usize,
    seed: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let mut workload = Workload::new(&Mix::benchmark(usize::MAX / 64), seed);
    let per_tick = (rate / 100).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0;
    while !*stop.borrow() {
        interval.tick().await;
        let chunk: Vec<Event> = workload.by_ref().take(per_tick).collect();
        for r in publisher.publish_all(&chunk).await {
            if r.is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

async fn measure(nats: &NatsArgs, scratch: &Scratch, args: &Args) -> anyhow::Result<ExitCode> {
    let pool = scratch.pool().await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let projector_task = if args.without_projector {
        None
    } else {
        let projector = Projector::start(
            pool.clone(),
            scratch.js.clone(),
            ProjectorSettings::new(&scratch.stream, scratch.subjects.clone()),
        )
        .await?;
        Some(tokio::spawn(projector.run(stop_rx.clone())))
    };
    let mut settings = ReconcilerSettings::new(&scratch.stream, scratch.subjects.clone());
    settings.tick_interval = None;
    // Its own connection, as in a deployment: the background publisher's traffic shares no
    // socket with the reconciler's consumer and outbox.
    let own = async_nats::jetstream::new(nats.connect("runledger bench reconciler").await?);
    let reconciler = Reconciler::start(pool.clone(), own, settings).await?;
    let reconciler_task = tokio::spawn(reconciler.run(stop_rx.clone()));
    let publisher = scratch.publisher();
    let background_task = tokio::spawn(background(publisher.clone(), args.rate, 7, stop_rx));

    let company = CompanyId::new_random();
    let agent = AgentId::new_random();
    let event = |data| Event::new(company, "runledger-bench", Utc::now(), data);
    publisher
        .publish(&event(EventData::AgentRegistered(agent::AgentRegistered {
            agent_id: agent,
            name: "bench-agent".into(),
            role: "engineer".into(),
            adapter_type: "codex_local".into(),
            adapter_config: Map::new(),
            status: AgentStatus::Idle,
            extra: Map::new(),
        })))
        .await?;
    let mut wakeups = scratch
        .client
        .subscribe(format!("{}.{company}.wakeup.>", scratch.subjects.prefix()))
        .await?;
    let began = Instant::now();
    let mut latencies = Vec::with_capacity(args.trials);
    for trial in 0..args.trials {
        // Each trial is its own issue: storm control rations wakeups per issue.
        let issue = IssueId::new_random();
        let run = RunId::new_random();
        let setup = [
            event(EventData::IssueCreated(IssueCreated {
                issue_id: issue,
                identifier: format!("BENCH-{trial}"),
                title: "Implement feature".into(),
                description: None,
                status: IssueStatus::InProgress,
                priority: Priority::Medium,
                assignee_agent_id: Some(agent),
                assignee_user_id: None,
                parent_id: None,
                extra: Map::new(),
            })),
            event(EventData::RunQueued(RunQueued {
                run_id: run,
                agent_id: agent,
                wakeup_id: None,
                issue_id: Some(issue),
                invocation_source: InvocationSource::Assignment,
                trigger_detail: TriggerDetail::System,
                context: Map::new(),
                retry_of_run_id: None,
                process_loss_retry_count: 0,
                continuation_attempt: 0,
                extra: Map::new(),
            })),
            event(EventData::RunStarted(RunStarted {
                run_id: run,
                agent_id: agent,
                issue_id: Some(issue),
                host: "bench-host".into(),
                pid: Some(4242),
                pgid: Some(4242),
                process_started_at: None,
                supervisor_pid: None,
                extra: Map::new(),
            })),
        ];
        for r in publisher.publish_all(&setup).await {
            r?;
        }
        tokio::time::sleep(args.gap).await;
        let lost = event(EventData::RunProcessLost(RunProcessLost {
            run_id: run,
            pid: Some(4242),
            pgid: Some(4242),
            descendant_group_terminated: false,
            message: "Process lost -- child pid 4242 is no longer running".into(),
            extra: Map::new(),
        }));
        let cause = lost.id.to_string();
        let t0 = Instant::now();
        publisher.publish(&lost).await?;
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(message) = wakeups.next().await {
                let Ok(e) = Event::from_slice(&message.payload) else {
                    continue;
                };
                let caused = e.extensions.get(CAUSE_ATTRIBUTE).and_then(|v| v.as_str());
                if e.source == SOURCE && caused == Some(cause.as_str()) {
                    return true;
                }
            }
            false
        })
        .await;
        anyhow::ensure!(
            matches!(found, Ok(true)),
            "trial {trial}: no retry wakeup within 30 s"
        );
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let sent = background_task.await.unwrap_or(0);
    let _ = reconciler_task.await;
    if let Some(task) = projector_task {
        let _ = task.await;
    }

    let mut sorted = latencies.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    let max = sorted.last().copied().unwrap_or(0.0);
    let background_rate = sent as f64 / elapsed;
    print_table(
        &format!(
            "bench reconcile: {} process losses, {:.0} background events/s, projector {}",
            latencies.len(),
            background_rate,
            if args.without_projector { "off" } else { "on" }
        ),
        &[
            ("process_lost → retry wakeup p50", p50, "ms"),
            ("process_lost → retry wakeup p99", p99, "ms (target < 100)"),
            ("process_lost → retry wakeup max", max, "ms"),
            ("median", median(&latencies), "ms"),
        ],
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "reconcile", "trials": latencies.len(), "background_eps": background_rate,
            "projector": !args.without_projector,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max, "samples_ms": latencies,
        })
    );
    Ok(ExitCode::SUCCESS)
}
