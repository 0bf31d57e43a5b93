//! `runledger project`: the projector alone (for running it on its own host or scaling the
//! other parts separately). Applies pending migrations first.

use crate::settings::{DbArgs, NatsArgs, ProjectorArgs, StreamArgs};
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
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::worker::unpartitioned(&args.stream, "project")?;
    let stop = shutdown::on_signal();
    let client = args.nats.connect("runledger project").await?;
    let js = async_nats::jetstream::new(client);
    args.stream.ensure(&js).await?;
    let pool = db::pool(&args.db.url_or_default(), &args.db.schema, 4)?;
    {
        let mut client = pool.get().await?;
        projector::store::migrate::migrate(&mut client, &args.db.schema).await?;
    }
    let projector =
        projector::Projector::start(pool, js, args.projector.settings(&args.stream)?).await?;
    projector.run(stop).await?;
    Ok(ExitCode::SUCCESS)
}
