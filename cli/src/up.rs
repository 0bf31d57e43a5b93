//! `runledger up`: migrations, the stream, the projector, the watchdog, the reconciler and the read
//! API with its dashboard in one process, on the configured servers or on the embedded default
//! (private servers started under `./.runledger/`).

use crate::infra::{self, EmbeddedArgs};
use crate::settings::{DbArgs, NatsArgs, ProjectorArgs, ReconcilerArgs, StreamArgs};
use crate::supervise::Supervisor;
use crate::{db, shutdown};
use projector::live::TaskObserver;
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
    // Bad API tokens fail here, before any server starts or any migration runs.
    args.http
        .settings(&args.stream, &args.projector.position, None)?;
    let mapping = args.stream.subjects()?.mapping();
    let mut infra = infra::resolve(&args.nats, &args.db, &args.embedded, mapping).await?;
    let result = serve(&args, &mut infra, stop).await;
    infra.stop().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve(
    args: &Args,
    infra: &mut infra::Infra,
    signal: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tasks = Supervisor::new(signal);
    // One registry: the projector and the reconciler feed it, the API serves it on /metrics
    // and /healthz reports the tasks that are failing.
    let metrics = std::sync::Arc::new(api::metrics::Registry::default());
    let health: TaskObserver = {
        let metrics = metrics.clone();
        std::sync::Arc::new(move |task, failure| metrics.record_task(task, failure))
    };
    tasks.observe(health.clone());
    // Settings first: a wrong one fails at once, before any server is asked.
    let reconciler_settings = args.reconciler.settings(&args.stream, &args.db)?;
    let projector_settings = args.projector.settings(&args.stream)?;
    let api_settings = args.http.settings(
        &args.stream,
        &args.projector.position,
        Some(&reconciler_settings.schema),
    )?;
    let mut nats = args.nats.clone();
    nats.url = Some(infra.nats_url.clone());
    let client = nats.connect("runledger up").await?;
    let js = async_nats::jetstream::new(client);
    let partitioned = args.stream.partitions > 1;
    let size = if partitioned {
        crate::worker::pool_size(args.stream.partitions) + 4
    } else {
        8
    };
    let pool = db::pool(&infra.database_url, &args.db.schema, size)?;
    // The stream and the read models, tried again while a server is unreachable.
    const SETUP: &str = "setup";
    let Some(ready) = tasks
        .until_ready(SETUP, || async {
            args.stream.ensure(&js).await?;
            let mut client = pool.get().await?;
            Ok(projector::store::migrate::migrate(&mut client, &args.db.schema).await?)
        })
        .await
    else {
        return Ok(());
    };
    let applied = ready?;
    health(SETUP, None);
    tracing::info!(?applied, schema = %args.db.schema, "migrations up to date");

    let api = crate::serve::Beside::bind(
        &infra.database_url,
        &args.db.schema,
        Some(js.client()),
        &args.http,
        api_settings,
        metrics.clone(),
    )
    .await?;
    infra.announce(api.addr())?;
    tasks.spawn("api", move |stop| api.serve(stop));

    let watchdog_settings = args.watchdog.settings(&args.stream)?;
    let (watchdog_pool, watchdog_js) = (pool.clone(), js.clone());
    tasks.spawn("watchdog", move |stop| {
        let watchdog = producers::watchdog::Watchdog::new(
            watchdog_pool.clone(),
            watchdog_js.clone(),
            watchdog_settings.clone(),
        );
        Box::pin(async move {
            watchdog.run(stop).await;
            Ok(())
        })
    });

    if partitioned {
        // The projector and the reconciler of the partitions this instance owns; other
        // instances (`runledger up` or `runledger worker`) share the rest.
        let instance = args.instance.clone();
        tasks.spawn("partitions", move |stop| {
            let instance = crate::worker::Instance {
                pool: pool.clone(),
                js: js.clone(),
                projector: projector_settings.clone(),
                reconciler: reconciler_settings.clone(),
                args: instance.clone(),
                metrics: Some(metrics.clone()),
            };
            Box::pin(instance.run(Default::default(), stop))
        });
        return tasks.wait().await;
    }

    let (reconciler_pool, reconciler_js) = (pool.clone(), js.clone());
    let (reconciler_metrics, reconciler_health) = (metrics.clone(), health.clone());
    tasks.spawn("reconciler", move |stop| {
        let (pool, js, settings) = (
            reconciler_pool.clone(),
            reconciler_js.clone(),
            reconciler_settings.clone(),
        );
        let (metrics, health) = (reconciler_metrics.clone(), reconciler_health.clone());
        Box::pin(async move {
            let reconciler = reconciler::Reconciler::start(pool, js, settings)
                .await?
                .observe(move |report| {
                    for (rule, n) in &report.by_rule {
                        metrics.record_reconciler_decisions(rule, *n);
                    }
                })
                .observe_steps(health);
            reconciler.run(stop).await?;
            Ok(())
        })
    });

    let projector_metrics = metrics.clone();
    tasks.spawn("projector", move |stop| {
        let (pool, js, settings) = (pool.clone(), js.clone(), projector_settings.clone());
        let (metrics, health) = (projector_metrics.clone(), health.clone());
        Box::pin(async move {
            let projector = projector::Projector::start(pool, js, settings)
                .await?
                .observe(move |report, took| metrics.record_projector_batch(report, took))
                .observe_steps(health);
            projector.run(stop).await?;
            Ok(())
        })
    });
    tasks.wait().await
}
