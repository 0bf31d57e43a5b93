//! `bench live`: from publishing an event to a dashboard's Server-Sent Events stream delivering
//! it, while ~1,000 background events per second flow through the same projector. The projector
//! runs with its default batching, the read API on a loopback port; each trial publishes a
//! `run.queued` for the watched issue and waits for the `ledger` event naming that run. Measured
//! twice in the same run: with the API woken by the projector's commit notifications (what
//! `runledger up` and `serve` do) and with its 250 ms position poll alone (the ceiling it
//! replaces). Target: p99 < 50 ms with notifications.

use super::reconcile::background;
use super::scratch::Scratch;
use super::{median, print_table};
use crate::settings::{parse_duration, DbArgs, NatsArgs};
use chrono::Utc;
use events::*;
use projector::{Projector, ProjectorSettings};
use serde_json::{json, Map};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Events timed per mode.
    #[arg(long, default_value_t = 300)]
    pub trials: usize,
    /// Background events per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: usize,
    /// Pause between trials.
    #[arg(long, default_value = "30ms", value_parser = parse_duration)]
    pub gap: Duration,
}

const ADMIN: &str = "bench-admin-token-0123456789";

pub async fn run(nats: &NatsArgs, db: &DbArgs, args: Args) -> anyhow::Result<ExitCode> {
    let scratch = Scratch::new(nats, db).await?;
    let result = measure(&scratch, &args).await;
    scratch.cleanup().await;
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A `text/event-stream` read as blocks (`event:`/`id:`/`data:` lines up to a blank line).
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next block, or an error when the stream ends or says nothing for 30 s.
    async fn next(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                return Ok(self.buffer.drain(..end + 2).collect());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .map_err(|_| anyhow::anyhow!("the event stream said nothing for 30 s"))??
                .ok_or_else(|| anyhow::anyhow!("the event stream ended"))?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Latencies (ms) of `trials` events, with or without the commit notifications.
async fn trials(scratch: &Scratch, args: &Args, notified: bool) -> anyhow::Result<(Vec<f64>, f64)> {
    let pool = scratch.pool().await?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let projector = Projector::start(
        pool.clone(),
        scratch.js.clone(),
        ProjectorSettings::new(&scratch.stream, scratch.subjects.clone()),
    )
    .await?;
    let projector = tokio::spawn(projector.run(stop_rx.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let settings = api::ApiSettings::new(api::Tokens::admin(ADMIN)?, &scratch.stream);
    let mut state = api::ApiState::new(pool.clone(), None, settings);
    if notified {
        state.listen = Some(crate::db::config(&scratch.database_url)?);
    }
    let server = tokio::spawn(api::serve(listener, state, stop_rx.clone()));
    let publisher = scratch.publisher();

    // The watched issue, projected before the stream opens.
    let (company, agent, issue) = (
        CompanyId::new_random(),
        AgentId::new_random(),
        IssueId::new_random(),
    );
    let event = |data| Event::new(company, "runledger-bench", Utc::now(), data);
    let setup = [
        event(EventData::AgentRegistered(agent::AgentRegistered {
            agent_id: agent,
            name: "bench-agent".into(),
            role: "engineer".into(),
            adapter_type: "codex_local".into(),
            adapter_config: Map::new(),
            status: AgentStatus::Idle,
            extra: Map::new(),
        })),
        event(EventData::IssueCreated(issue::IssueCreated {
            issue_id: issue,
            identifier: "LIVE-1".into(),
            title: "Watched issue".into(),
            description: None,
            status: IssueStatus::InProgress,
            priority: Priority::Medium,
            assignee_agent_id: Some(agent),
            assignee_user_id: None,
            parent_id: None,
            extra: Map::new(),
        })),
    ];
    let mut last = 0;
    for r in publisher.publish_all(&setup).await {
        last = r?.sequence;
    }
    let http = reqwest::Client::new();
    let path = format!("{base}/v1/companies/{company}/issues/{issue}/runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = http
            .get(format!("{path}?min_seq={last}"))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        if reply.status().is_success() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the issue was never projected");
    }
    let response = http
        .get(format!("{path}/stream"))
        .bearer_auth(ADMIN)
        .send()
        .await?
        .error_for_status()?;
    let mut stream = Events {
        response,
        buffer: String::new(),
    };
    stream.next().await?; // ready

    // Another seed per mode: the stream's duplicate window would drop a repeated workload.
    let seed = if notified { 11 } else { 13 };
    let background = tokio::spawn(background(publisher.clone(), args.rate, seed, stop_rx));
    // Let the background load settle in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = Instant::now();
    let mut latencies = Vec::with_capacity(args.trials);
    for _ in 0..args.trials {
        let run = RunId::new_random();
        let queued = event(EventData::RunQueued(events::run::RunQueued {
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
        }));
        let wanted = run.to_string();
        let t0 = Instant::now();
        publisher.publish(&queued).await?;
        loop {
            let block = stream.next().await?;
            if block.contains("event: ledger") && block.contains(&wanted) {
                break;
            }
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(args.gap).await;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let sent = background.await.unwrap_or(0);
    drop(stream);
    let _ = server.await;
    let _ = projector.await;
    Ok((latencies, sent as f64 / elapsed))
}

async fn measure(scratch: &Scratch, args: &Args) -> anyhow::Result<ExitCode> {
    let (notified, rate_notified) = trials(scratch, args, true).await?;
    let (polled, rate_polled) = trials(scratch, args, false).await?;
    let stats = |samples: &[f64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        (
            percentile(&sorted, 50.0),
            percentile(&sorted, 99.0),
            sorted.last().copied().unwrap_or(0.0),
        )
    };
    let (n50, n99, nmax) = stats(&notified);
    let (p50, p99, pmax) = stats(&polled);
    print_table(
        &format!(
            "bench live: {} events per mode, {:.0} / {:.0} background events/s",
            args.trials, rate_notified, rate_polled
        ),
        &[
            ("publish → SSE, notified p50", n50, "ms"),
            ("publish → SSE, notified p99", n99, "ms (target < 50)"),
            ("publish → SSE, notified max", nmax, "ms"),
            ("publish → SSE, 250 ms poll p50", p50, "ms"),
            ("publish → SSE, 250 ms poll p99", p99, "ms"),
            ("publish → SSE, 250 ms poll max", pmax, "ms"),
            ("notified median", median(&notified), "ms"),
        ],
    );
    println!(
        "{}",
        json!({
            "bench": "live", "trials": args.trials,
            "background_eps": [rate_notified, rate_polled],
            "notified": {"p50_ms": n50, "p99_ms": n99, "max_ms": nmax},
            "polled": {"p50_ms": p50, "p99_ms": p99, "max_ms": pmax},
            "target_p99_ms": 50.0, "meets_target": n99 < 50.0,
        })
    );
    Ok(ExitCode::SUCCESS)
}
