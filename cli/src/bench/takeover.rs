//! `bench takeover`: how long the partitions of an instance killed with SIGKILL stay without an
//! owner. Two `runledger worker` instances share 8 partitions of a stream on a private
//! nats-server (which applies the partition mapping); one is killed with SIGKILL, and the time
//! until every partition of both readers (projector and reconciler) is leased again by a live
//! instance is measured; a new instance then joins, the shares settle, and the next kill
//! follows. Leases expire `--lease-ttl` after their last renewal (renewed every third of it), so
//! the takeover is bounded by the TTL plus one membership round; the figure to compare is the
//! TTL.

use super::scratch::Scratch;
use super::{median, print_table};
use crate::settings::{parse_duration, DbArgs, NatsArgs};
use anyhow::Context as _;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(clap::Args)]
pub struct Args {
    /// Instances killed (one at a time).
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Partitions of the stream.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Lease time-to-live of the instances.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
}

pub async fn run(nats: &NatsArgs, db: &DbArgs, args: Args) -> anyhow::Result<ExitCode> {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let prefix = format!("rltakeover_{tag}");
    let subjects = events::Subjects::new(&prefix)?.partitioned(args.partitions)?;
    // Stopped and its store removed when dropped, whatever happens.
    let server = localnats::PrivateNats::start(1, subjects.mapping().as_slice()).await?;
    let mut private = nats.clone();
    private.url = Some(server.url());
    let result = match Scratch::new(&private, db).await {
        Ok(scratch) => {
            let setup = Setup {
                nats_url: server.url(),
                database_url: scratch.database_url.clone(),
                stream: format!("RLTAKEOVER_{}", tag.to_uppercase()),
                prefix,
                args: &args,
            };
            let result = measure(&setup).await;
            scratch.cleanup().await;
            result
        }
        Err(e) => Err(e),
    };
    drop(server);
    result
}

struct Setup<'a> {
    nats_url: String,
    database_url: String,
    stream: String,
    prefix: String,
    args: &'a Args,
}

impl Setup<'_> {
    fn instance(&self, n: usize) -> anyhow::Result<Child> {
        Command::new(std::env::current_exe()?)
            .arg("worker")
            .env("NATS_URL", &self.nats_url)
            .env("DATABASE_URL", &self.database_url)
            .env("RUNLEDGER_STREAM", &self.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", &self.prefix)
            .env("RUNLEDGER_PARTITIONS", self.args.partitions.to_string())
            .env("RUNLEDGER_INSTANCE_NAME", format!("bench-{n}"))
            .env(
                "RUNLEDGER_LEASE_TTL",
                format!("{}ms", self.args.lease_ttl.as_millis()),
            )
            .env("RUNLEDGER_TICK_INTERVAL", "0s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting `runledger worker`")
    }
}

/// (leases held by a live lease, distinct owners among them, leases held by `excluded`'s pid).
async fn leases(client: &tokio_postgres::Client, excluded: i32) -> anyhow::Result<(i64, i64, i64)> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE i.pid <> $1),
                    count(DISTINCT l.owner) FILTER (WHERE i.pid <> $1),
                    count(*) FILTER (WHERE i.pid = $1)
               FROM runledger_cluster.leases l
               JOIN runledger_cluster.instances i ON i.instance = l.owner
              WHERE l.expires_at > now()",
            &[&excluded],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Waits until every lease is held by a live instance other than `excluded`'s pid, by at least
/// `owners` instances; how long that took.
async fn settled(
    client: &tokio_postgres::Client,
    total: i64,
    owners: i64,
    excluded: i32,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let began = Instant::now();
    loop {
        if let Ok((held, distinct, _)) = leases(client, excluded).await {
            if held == total && distinct >= owners {
                return Ok(began.elapsed());
            }
        }
        anyhow::ensure!(
            began.elapsed() < limit,
            "the partitions were not all leased by {owners} instance(s) within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

async fn measure(setup: &Setup<'_>) -> anyhow::Result<ExitCode> {
    let args = setup.args;
    let total = 2 * i64::from(args.partitions);
    let limit = args.lease_ttl * 4 + Duration::from_secs(30);
    let mut instances = vec![setup.instance(0)?, setup.instance(1)?];
    let (client, conn) =
        tokio_postgres::connect(&setup.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    // The instances create the schema; wait for it, then for fair shares.
    let began = Instant::now();
    loop {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('runledger_cluster.leases') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if exists {
            break;
        }
        anyhow::ensure!(
            began.elapsed() < limit,
            "the instances never set up their schema"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
    settled(&client, total, 2, -1, limit).await?;
    let mut takeovers = Vec::with_capacity(args.kills);
    for n in 0..args.kills {
        let mut victim = instances.remove(0);
        let pid = victim.id().context("a running instance has a pid")? as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let _ = victim.wait().await;
        let took = settled(&client, total, 1, pid, limit).await?;
        takeovers.push(took.as_secs_f64() * 1e3);
        eprintln!("kill {}: partitions leased again after {took:?}", n + 1);
        instances.push(setup.instance(n + 2)?);
        settled(&client, total, 2, pid, limit).await?;
    }
    drop(instances);
    let mut sorted = takeovers.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1];
    let ttl_ms = args.lease_ttl.as_secs_f64() * 1e3;
    print_table(
        &format!(
            "bench takeover: {} kills, {} partitions × 2 readers, lease TTL {:?}",
            args.kills, args.partitions, args.lease_ttl
        ),
        &[
            ("takeover p50", median(&takeovers), "ms"),
            ("takeover p99", p99, "ms"),
            ("lease TTL", ttl_ms, "ms"),
        ],
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "takeover",
            "kills": args.kills,
            "partitions": args.partitions,
            "lease_ttl_ms": ttl_ms,
            "takeover_p50_ms": median(&takeovers),
            "takeover_p99_ms": p99,
            "samples_ms": takeovers,
        })
    );
    Ok(ExitCode::SUCCESS)
}
