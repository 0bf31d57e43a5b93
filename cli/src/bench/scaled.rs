//! `bench ingest --replicas R --partitions P --instances N`: end-to-end ingest on a scaled-out
//! setup against the single node, measured back to back in alternating rounds.
//!
//! Each phase starts its own private nats-servers ([`localnats::PrivateNats`]: R nodes on free
//! loopback ports, each with its own store, mapping producers' subjects into P partitions),
//! creates a stream of R replicas and P partitions (waiting, with a deadline, for its leader to
//! be elected) and a scratch database, starts N `runledger worker` processes sharing the
//! partitions and waits until they hold fair shares. Then the workload is published through the
//! `Publisher` and timed until every partition's projector position reaches the last event
//! published to that partition (all read models committed). CPU per event is read from /proc
//! for the workers (summed), the nats-servers (summed) and PostgreSQL, and from `getrusage` for
//! this process (the publisher). The single node (R1, P1, one worker on one private server) runs
//! the same workload the same way, so the ratio shows the overhead of replication, partitions
//! and instances. Servers, stores, stream and database are removed whatever happens, on an
//! error or at SIGINT/SIGTERM during a phase too.

use super::scratch::{self, Scratch};
use super::{cpu, median, print_table};
use crate::settings::{DbArgs, NatsArgs};
use anyhow::Context as _;
use events::Subjects;
use localnats::PrivateNats;
use projector::membership::position_key;
use std::collections::BTreeMap;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The position key of the workers' projector (`runledger worker`'s default).
const PROJECTOR: &str = "runledger-projector";
/// The end-to-end ratio the scaled-out setup should reach against the single node.
const TARGET_RATIO: f64 = 0.5;
/// How long a stream's leader election, or the instances' sharing out, may take.
const SETUP_WITHIN: Duration = Duration::from_secs(60);

/// Stream replicas, partitions and instances of one setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub replicas: usize,
    pub partitions: u32,
    pub instances: usize,
}

impl Topology {
    /// One server, one partition, one instance.
    pub const SINGLE: Self = Self {
        replicas: 1,
        partitions: 1,
        instances: 1,
    };

    /// `R3×P8×2`: replicas, partitions, instances.
    pub fn label(&self) -> String {
        format!("R{}×P{}×{}", self.replicas, self.partitions, self.instances)
    }
}

/// What one phase measured; CPU in µs per event.
#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    /// Events per second from the first publish to every partition's position at its last event.
    rate: f64,
    /// Seconds until the last publish was acknowledged.
    published_s: f64,
    runledger_cpu: f64,
    nats_cpu: f64,
    /// Every PostgreSQL process on the machine (other clients of the server count too).
    postgres_cpu: f64,
    /// The backends serving the phase's database only (what a shared server's other clients
    /// do not move; the server's background writers are left out).
    backends_cpu: f64,
    publisher_cpu: f64,
}

/// Runs the single node and `target` alternately, `repeat` rounds each, on `events`.
pub async fn compare(
    nats: &NatsArgs,
    db: &DbArgs,
    repeat: usize,
    target: Topology,
    events: &[events::Event],
    description: &str,
) -> anyhow::Result<ExitCode> {
    let mut interrupt = Interrupt::listen()?;
    let mut single = Vec::with_capacity(repeat);
    let mut scaled = Vec::with_capacity(repeat);
    for round in 0..repeat {
        // Alternate which goes first, so a drift of the machine weighs on both alike.
        let order = if round % 2 == 0 {
            [Topology::SINGLE, target]
        } else {
            [target, Topology::SINGLE]
        };
        for topology in order {
            eprintln!("round {}: {} ...", round + 1, topology.label());
            let phase = measure(nats, db, topology, events, &mut interrupt)
                .await
                .with_context(|| format!("round {}, {}", round + 1, topology.label()))?;
            eprintln!(
                "round {}: {}: {:.0} events/s (all published after {:.2} s); CPU µs/event: runledger {:.2}, nats-server {:.2}, PostgreSQL backends {:.2} (all PostgreSQL {:.2}), publisher {:.2}",
                round + 1,
                topology.label(),
                phase.rate,
                phase.published_s,
                phase.runledger_cpu,
                phase.nats_cpu,
                phase.backends_cpu,
                phase.postgres_cpu,
                phase.publisher_cpu,
            );
            if topology == target && target != Topology::SINGLE {
                scaled.push(phase);
            } else {
                single.push(phase);
            }
        }
    }
    report(target, repeat, events.len(), description, &single, &scaled);
    Ok(ExitCode::SUCCESS)
}

fn report(
    target: Topology,
    repeat: usize,
    total: usize,
    description: &str,
    single: &[Phase],
    scaled: &[Phase],
) {
    let m = |phases: &[Phase], f: fn(&Phase) -> f64| -> f64 {
        median(&phases.iter().map(f).collect::<Vec<_>>())
    };
    let (one, many) = (Topology::SINGLE.label(), target.label());
    let ratio = m(scaled, |p| p.rate) / m(single, |p| p.rate);
    let per_round: Vec<f64> = single
        .iter()
        .zip(scaled)
        .map(|(s, t)| t.rate / s.rate)
        .collect();
    let mut rows: Vec<(String, f64, &str)> = vec![
        (
            format!("{one} end-to-end"),
            m(single, |p| p.rate),
            "events/s",
        ),
        (
            format!("{many} end-to-end"),
            m(scaled, |p| p.rate),
            "events/s",
        ),
        (format!("ratio {many} / {one}"), ratio, ""),
    ];
    type Cpu = fn(&Phase) -> f64;
    let per_event: [(&str, Cpu); 5] = [
        ("runledger", |p| p.runledger_cpu),
        ("nats-server", |p| p.nats_cpu),
        ("PG backends", |p| p.backends_cpu),
        ("all PostgreSQL", |p| p.postgres_cpu),
        ("publisher", |p| p.publisher_cpu),
    ];
    for (what, cpu) in per_event {
        for (setup, phases) in [(&one, single), (&many, scaled)] {
            rows.push((format!("{setup} {what} CPU/event"), m(phases, cpu), "µs"));
        }
    }
    let rows: Vec<(&str, f64, &str)> = rows.iter().map(|(n, v, u)| (n.as_str(), *v, *u)).collect();
    print_table(
        &format!("bench ingest: {total} events ({description}), {many} against {one}, median of {repeat} alternated rounds"),
        &rows,
    );
    println!(
        "  target: {many} ≥ {TARGET_RATIO}× {one} end-to-end: {}",
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "MISSED"
        }
    );
    let samples = |phases: &[Phase]| {
        serde_json::json!({
            "end_to_end_eps": phases.iter().map(|p| p.rate).collect::<Vec<_>>(),
            "published_s": phases.iter().map(|p| p.published_s).collect::<Vec<_>>(),
            "runledger_cpu_us_per_event": phases.iter().map(|p| p.runledger_cpu).collect::<Vec<_>>(),
            "nats_cpu_us_per_event": phases.iter().map(|p| p.nats_cpu).collect::<Vec<_>>(),
            "postgres_cpu_us_per_event": phases.iter().map(|p| p.postgres_cpu).collect::<Vec<_>>(),
            "postgres_backends_cpu_us_per_event": phases.iter().map(|p| p.backends_cpu).collect::<Vec<_>>(),
            "publisher_cpu_us_per_event": phases.iter().map(|p| p.publisher_cpu).collect::<Vec<_>>(),
        })
    };
    let medians = |phases: &[Phase]| {
        serde_json::json!({
            "end_to_end_eps": m(phases, |p| p.rate),
            "runledger_cpu_us_per_event": m(phases, |p| p.runledger_cpu),
            "nats_cpu_us_per_event": m(phases, |p| p.nats_cpu),
            "postgres_cpu_us_per_event": m(phases, |p| p.postgres_cpu),
            "postgres_backends_cpu_us_per_event": m(phases, |p| p.backends_cpu),
            "publisher_cpu_us_per_event": m(phases, |p| p.publisher_cpu),
        })
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "ingest", "events": total, "workload": description, "repeat": repeat,
            "replicas": target.replicas, "partitions": target.partitions,
            "instances": target.instances,
            "single": medians(single), "scaled": medians(scaled),
            "ratio_end_to_end": ratio, "ratio_per_round": per_round,
            "target_ratio": TARGET_RATIO, "target_met": ratio >= TARGET_RATIO,
            "samples": {"single": samples(single), "scaled": samples(scaled)},
        })
    );
}

/// One phase on its own servers, stream and database, all removed whatever happens.
async fn measure(
    nats: &NatsArgs,
    db: &DbArgs,
    topology: Topology,
    events: &[events::Event],
    interrupt: &mut Interrupt,
) -> anyhow::Result<Phase> {
    let subjects = Subjects::new(&scratch::prefix())?.partitioned(topology.partitions)?;
    // Killed and its stores removed when dropped, on every path out of here.
    let servers = PrivateNats::start(topology.replicas, subjects.mapping().as_slice()).await?;
    let mut private = nats.clone();
    private.url = Some(servers.url());
    let scratch = Scratch::with_stream(&private, db, subjects, topology.replicas).await?;
    // Interrupted, the phase is dropped (its workers killed) and the cleanup still runs.
    let result = tokio::select! {
        result = phase(&servers, &scratch, topology, events) => result,
        signal = interrupt.recv() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    scratch.cleanup().await;
    drop(servers);
    result
}

async fn phase(
    servers: &PrivateNats,
    scratch: &Scratch,
    topology: Topology,
    events: &[events::Event],
) -> anyhow::Result<Phase> {
    scratch
        .wait_for_leader(topology.replicas, SETUP_WITHIN)
        .await?;
    let pool = scratch.pool().await?;
    // Killed when dropped (kill_on_drop), on every path out of here.
    let mut workers = (0..topology.instances)
        .map(|n| worker(servers, scratch, topology, n))
        .collect::<anyhow::Result<Vec<Child>>>()?;
    let client = pool.get().await?;
    shared_out(&client, &mut workers, topology).await?;
    let subjects = &scratch.subjects;
    let keys: Vec<String> = (0..subjects.partitions())
        .map(|p| position_key(PROJECTOR, subjects, p))
        .collect();

    let worker_pids: Vec<i32> = workers
        .iter()
        .filter_map(|w| w.id().map(|p| p as i32))
        .collect();
    let nats_pids: Vec<i32> = servers.pids().into_iter().map(|p| p as i32).collect();
    let (workers_before, nats_before) = (cpu_ticks(&worker_pids)?, cpu_ticks(&nats_pids)?);
    let (pg_before, self_before) = (cpu::postgres_seconds(), crate::replay::cpu_seconds());
    let backends_before = backend_ticks(&client).await?;
    let publisher = scratch.publisher();
    let started = Instant::now();
    // The last stream sequence published to each partition.
    let mut last: BTreeMap<u32, i64> = BTreeMap::new();
    for (event, ack) in events.iter().zip(publisher.publish_all(events).await) {
        let sequence = ack?.sequence as i64;
        let partition = subjects.partition_of_event(event);
        let entry = last.entry(partition).or_default();
        *entry = (*entry).max(sequence);
    }
    let published_s = started.elapsed().as_secs_f64();
    loop {
        let rows = client
            .query(
                "SELECT consumer, last_seq FROM projector_positions WHERE consumer = ANY($1)",
                &[&keys],
            )
            .await?;
        let positions: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let behind = last
            .iter()
            .filter(|(p, seq)| positions.get(&keys[**p as usize]).copied().unwrap_or(0) < **seq)
            .count();
        if behind == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{behind} partition(s) did not catch up in 10 minutes"
        );
        alive(&mut workers)?;
        tokio::time::sleep(Duration::from_millis(2)).await; // poll interval
    }
    let done = started.elapsed().as_secs_f64();
    let tick = cpu::tick_seconds();
    let per_event = 1e6 / events.len() as f64;
    let phase = Phase {
        rate: events.len() as f64 / done,
        published_s,
        runledger_cpu: (cpu_ticks(&worker_pids)? - workers_before) as f64 * tick * per_event,
        nats_cpu: (cpu_ticks(&nats_pids)? - nats_before) as f64 * tick * per_event,
        postgres_cpu: (cpu::postgres_seconds() - pg_before) * per_event,
        backends_cpu: backend_ticks(&client)
            .await?
            .iter()
            .map(|(pid, ticks)| ticks - backends_before.get(pid).copied().unwrap_or(0).min(*ticks))
            .sum::<u64>() as f64
            * tick
            * per_event,
        publisher_cpu: (crate::replay::cpu_seconds() - self_before) * per_event,
    };
    for mut w in workers {
        let _ = w.kill().await;
    }
    Ok(phase)
}

/// SIGINT and SIGTERM, listened for from the start of the run: one that arrives while servers
/// start is kept, and interrupts the phase as soon as it runs (then everything is cleaned up).
struct Interrupt {
    int: Signal,
    term: Signal,
}

impl Interrupt {
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next (or an undelivered) signal, naming it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// A `runledger worker` on the phase's servers, stream and database, without a clock (ticks
/// would add events of their own).
fn worker(
    servers: &PrivateNats,
    scratch: &Scratch,
    topology: Topology,
    n: usize,
) -> anyhow::Result<Child> {
    Command::new(std::env::current_exe()?)
        .arg("worker")
        .env("NATS_URL", servers.url())
        .env("DATABASE_URL", &scratch.database_url)
        .env("RUNLEDGER_STREAM", &scratch.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", scratch.subjects.prefix())
        .env("RUNLEDGER_PARTITIONS", topology.partitions.to_string())
        .env("RUNLEDGER_STREAM_REPLICAS", topology.replicas.to_string())
        .env("RUNLEDGER_INSTANCE_NAME", format!("bench-{n}"))
        .env("RUNLEDGER_TICK_INTERVAL", "0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting `runledger worker`")
}

/// Fails if a worker has exited.
fn alive(workers: &mut [Child]) -> anyhow::Result<()> {
    for w in workers {
        if let Some(status) = w.try_wait()? {
            anyhow::bail!("a `runledger worker` exited ({status})");
        }
    }
    Ok(())
}

/// Waits until the instances have set up their schema and every partition of both readers is
/// leased, each instance holding no more than its fair share (so the measurement does not
/// include joining and handing partitions over), polling until a deadline.
async fn shared_out(
    client: &tokio_postgres::Client,
    workers: &mut [Child],
    topology: Topology,
) -> anyhow::Result<()> {
    let total = 2 * i64::from(topology.partitions);
    let share = 2 * i64::from(topology.partitions.div_ceil(topology.instances as u32));
    let owners = topology.instances.min(topology.partitions as usize) as i64;
    let began = Instant::now();
    loop {
        alive(workers)?;
        let mut held_by: BTreeMap<String, i64> = BTreeMap::new();
        for lease in projector::store::lease::leases(client).await? {
            if let (Some(owner), false) = (lease.owner, lease.expired) {
                *held_by.entry(owner).or_default() += 1;
            }
        }
        let held: i64 = held_by.values().sum();
        let distinct = held_by.len() as i64;
        let most = held_by.values().copied().max().unwrap_or(0);
        if held == total && distinct >= owners && most <= share {
            return Ok(());
        }
        let seen = format!(
            "{held} of {total} leases held by {distinct} instance(s), at most {most} by one"
        );
        anyhow::ensure!(
            began.elapsed() < SETUP_WITHIN,
            "the instances did not share the partitions out within {SETUP_WITHIN:?} ({seen})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

/// CPU clock ticks each PostgreSQL backend serving the client's database has used so far, by
/// pid (a backend that exits in between is not counted; the workers' pools keep theirs). Empty
/// where the server's processes are not visible (another machine).
async fn backend_ticks(client: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<i32, u64>> {
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let pid: i32 = r.get(0);
            let stat = producers::process::stat::read(pid).ok()?;
            (stat.comm == "postgres").then_some((pid, stat.cpu_ticks))
        })
        .collect())
}

/// CPU clock ticks the processes have used so far (user and system), summed.
fn cpu_ticks(pids: &[i32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|&pid| Ok(producers::process::stat::read(pid)?.cpu_ticks))
        .sum()
}
