//! `runledger up`: migrations, the stream, the projector, the watchdog, the reconciler and the read
//! API with its dashboard in one process, on the configured servers or on the embedded default
//! (private servers started under `./.runledger/`).

use crate::infra::{self, EmbeddedArgs};
use crate::settings::{DbArgs, NatsArgs, ProjectorArgs, ReconcilerArgs, StreamArgs};
use crate::{db, shutdown};
use std::process::ExitCode;

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
    pub embedded: EmbeddedArgs,
    #[command(flatten)]
    pub watchdog: crate::watchdog::WatchdogArgs,
    #[command(flatten)]
    pub reconciler: ReconcilerArgs,
    // Boxed: keeps the `Command` variants of similar size.
    #[command(flatten)]
    pub http: Box<crate::serve::HttpArgs>,
    /// With partitions: how this instance shares them with other instances.
    #[command(flatten)]
    pub instance: crate::worker::InstanceArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = shutdown::on_signal();
    let mapping = args.stream.subjects()?.mapping();
    let infra = infra::resolve(&args.nats, &args.db, &args.embedded, mapping).await?;
    let result = serve(&args, &infra, stop).await;
    infra.stop().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve(
    args: &Args,
    infra: &infra::Infra,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut nats = args.nats.clone();
    nats.url = Some(infra.nats_url.clone());
    let client = nats.connect("runledger up").await?;
    let js = async_nats::jetstream::new(client);
    args.stream.ensure(&js).await?;
    let partitioned = args.stream.partitions > 1;
    let size = if partitioned {
        crate::worker::pool_size(args.stream.partitions) + 4
    } else {
        8
    };
    let pool = db::pool(&infra.database_url, &args.db.schema, size)?;
    let applied = {
        let mut client = pool.get().await?;
        projector::store::migrate::migrate(&mut client, &args.db.schema).await?
    };
    tracing::info!(?applied, schema = %args.db.schema, "migrations up to date");
    let watchdog = crate::watchdog::spawn_beside(
        pool.clone(),
        js.clone(),
        &args.watchdog,
        &args.stream,
        stop.clone(),
    )?;
    // One registry: the projector and the reconciler feed it, the API serves it on /metrics.
    let metrics = std::sync::Arc::new(api::metrics::Registry::default());
    if partitioned {
        // The projector and the reconciler of the partitions this instance owns; other
        // instances (`runledger up` or `runledger worker`) share the rest.
        let api = crate::serve::spawn_beside(
            &infra.database_url,
            &args.db.schema,
            Some(js.client()),
            &args.http,
            args.http.settings(&args.stream, &args.projector.position)?,
            metrics.clone(),
            stop.clone(),
        )
        .await?;
        let instance = crate::worker::Instance {
            pool,
            js,
            projector: args.projector.settings(&args.stream)?,
            reconciler: args.reconciler.settings(&args.stream, &args.db)?,
            args: args.instance.clone(),
            metrics: Some(metrics),
        };
        instance.run(Default::default(), stop).await?;
        let _ = watchdog.await;
        let _ = api.await;
        return Ok(());
    }
    let reconciler = reconciler::Reconciler::start(
        pool.clone(),
        js.clone(),
        args.reconciler.settings(&args.stream, &args.db)?,
    )
    .await?
    .observe({
        let metrics = metrics.clone();
        move |report| {
            for (rule, n) in &report.by_rule {
                metrics.record_reconciler_decisions(rule, *n);
            }
        }
    });
    let reconciler = tokio::spawn(reconciler.run(stop.clone()));
    let api = crate::serve::spawn_beside(
        &infra.database_url,
        &args.db.schema,
        Some(js.client()),
        &args.http,
        args.http.settings(&args.stream, &args.projector.position)?,
        metrics.clone(),
        stop.clone(),
    )
    .await?;
    let projector = projector::Projector::start(pool, js, args.projector.settings(&args.stream)?)
        .await?
        .observe(move |report, took| metrics.record_projector_batch(report, took));
    projector.run(stop).await?;
    if let Ok(Err(e)) = reconciler.await {
        tracing::warn!(error = %e, "reconciler stopped with an error");
    }
    let _ = watchdog.await;
    let _ = api.await;
    Ok(())
}
