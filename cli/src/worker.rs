//! `runledger worker`: one instance of the partitioned projector and reconciler. Any number of
//! instances share the stream's partitions through PostgreSQL leases (`projector::membership`):
//! each partition's projector and reconciler run in the instance that holds the partition's
//! lease, with a position row, consumer, reconciler schema and clock of their own, and every
//! batch proves in its transaction that the lease is still the instance's. A dead instance's
//! partitions are taken over within the lease time plus one round (6 s + 2 s by default); a new
//! instance gets a fair share. `runledger up` runs the same with its other parts.

use crate::settings::{
    parse_duration, DbArgs, NatsArgs, ProjectorArgs, ReconcilerArgs, StreamArgs,
};
use crate::{db, shutdown};
use deadpool_postgres::Pool;
use projector::membership::{Membership, MembershipSettings};
use projector::workers::{self, Role, Running};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub projector: ProjectorArgs,
    #[command(flatten)]
    pub reconciler: ReconcilerArgs,
    #[command(flatten)]
    pub instance: InstanceArgs,
}

/// How an instance takes part in sharing the partitions.
#[derive(clap::Args, Clone, Debug)]
pub struct InstanceArgs {
    /// The instance's name in `runledger status` (with its host and pid).
    #[arg(
        id = "instance_name",
        long = "instance-name",
        env = "RUNLEDGER_INSTANCE_NAME",
        default_value = "runledger"
    )]
    pub name: String,
    /// How long a partition's lease lasts without renewal: a dead instance's partitions are
    /// taken over within this and a third of it. Renewed every third of it.
    #[arg(long = "lease-ttl", env = "RUNLEDGER_LEASE_TTL", default_value = "6s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = shutdown::on_signal();
    let client = args.nats.connect("runledger worker").await?;
    let js = async_nats::jetstream::new(client);
    args.stream.ensure(&js).await?;
    let partitions = args.stream.partitions;
    let pool = db::pool(
        &args.db.url_or_default(),
        &args.db.schema,
        pool_size(partitions),
    )?;
    {
        let mut client = pool.get().await?;
        projector::store::migrate::migrate(&mut client, &args.db.schema).await?;
    }
    let instance = Instance {
        pool,
        js,
        projector: args.projector.settings(&args.stream)?,
        reconciler: args.reconciler.settings(&args.stream, &args.db)?,
        args: args.instance.clone(),
        metrics: None,
    };
    instance.run(Running::default(), stop).await?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses to run a reader of the whole stream alone on a partitioned stream (its partitions
/// are shared by instances).
pub fn unpartitioned(stream: &StreamArgs, command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        stream.partitions == 1,
        "`runledger {command}` reads an unpartitioned stream; with RUNLEDGER_PARTITIONS={} run \
         `runledger worker` instances (or `runledger up`), which share the partitions",
        stream.partitions
    );
    Ok(())
}

/// Connections an instance may use: one per partition worker that can own a batch at a time,
/// both readers, plus the rounds and the drainers.
pub fn pool_size(partitions: u32) -> usize {
    2 * partitions as usize + 4
}

/// One instance: its workers' settings and dependencies.
pub struct Instance {
    pub pool: Pool,
    pub js: async_nats::jetstream::Context,
    /// The projector's settings; each partition's worker gets its own position key.
    pub projector: projector::ProjectorSettings,
    /// The reconciler's settings; each partition's worker gets its own schema and position key.
    pub reconciler: reconciler::ReconcilerSettings,
    pub args: InstanceArgs,
    /// Fed by every worker, labelled by partition (`runledger up` serves it).
    pub metrics: Option<Arc<api::metrics::Registry>>,
}

impl Instance {
    /// Joins, runs the owned partitions' workers until `stop`, then leaves.
    pub async fn run(self, running: Running, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let partitions = self.projector.subjects.partitions();
        let mut settings = MembershipSettings::new(
            &self.args.name,
            vec![
                (self.projector.consumer.clone(), partitions),
                (self.reconciler.consumer.clone(), partitions),
            ],
        );
        settings.ttl = self.args.lease_ttl;
        let membership = Membership::join(self.pool.clone(), settings).await?;
        let roles = vec![self.projector_role(), self.reconciler_role()];
        workers::run(membership, roles, running, stop).await?;
        Ok(())
    }

    fn projector_role(&self) -> Role {
        let (pool, js, base, metrics) = (
            self.pool.clone(),
            self.js.clone(),
            self.projector.clone(),
            self.metrics.clone(),
        );
        Role {
            name: base.consumer.clone(),
            start: Arc::new(move |fence, stop| {
                let (pool, js, metrics) = (pool.clone(), js.clone(), metrics.clone());
                let partition = fence.partition;
                let mut settings = base.for_partition(partition);
                settings.fence = Some(fence);
                Box::pin(async move {
                    let projector = match projector::Projector::start(pool, js, settings).await {
                        Ok(projector) => projector,
                        Err(e) => {
                            tracing::warn!(error = %e, partition, "projector could not start; trying again next round");
                            return;
                        }
                    };
                    let projector = match metrics {
                        Some(metrics) => projector.observe(move |report, took| {
                            metrics.record_projector_batch(report, took)
                        }),
                        None => projector,
                    };
                    if let Err(e) = projector.run(stop).await {
                        tracing::warn!(error = %e, partition, "projector stopped");
                    }
                })
            }),
        }
    }

    fn reconciler_role(&self) -> Role {
        let (pool, js, base, metrics) = (
            self.pool.clone(),
            self.js.clone(),
            self.reconciler.clone(),
            self.metrics.clone(),
        );
        Role {
            name: base.consumer.clone(),
            start: Arc::new(move |fence, stop| {
                let (pool, js, metrics) = (pool.clone(), js.clone(), metrics.clone());
                let partition = fence.partition;
                let mut settings = base.for_partition(partition);
                settings.fence = Some(fence);
                Box::pin(async move {
                    let reconciler = match reconciler::Reconciler::start(pool, js, settings).await {
                        Ok(reconciler) => reconciler,
                        Err(e) => {
                            tracing::warn!(error = %e, partition, "reconciler could not start; trying again next round");
                            return;
                        }
                    };
                    let reconciler = match metrics {
                        Some(metrics) => reconciler.observe(move |report| {
                            for (rule, n) in &report.by_rule {
                                metrics.record_reconciler_decisions(rule, *n);
                            }
                        }),
                        None => reconciler,
                    };
                    if let Err(e) = reconciler.run(stop).await {
                        tracing::warn!(error = %e, partition, "reconciler stopped");
                    }
                })
            }),
        }
    }
}
