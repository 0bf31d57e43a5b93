//! `runledger status`: where the stream is, where the projector is, the lag between them and how
//! many events were dead-lettered.

use crate::db;
use crate::settings::{DbArgs, NatsArgs, ProjectorArgs, StreamArgs};
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
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = args.nats.connect("runledger status").await?;
    let js = async_nats::jetstream::new(client);
    let last = projector::shell::stream_last_seq(&js, &args.stream.stream).await?;
    let pg = db::connect(&args.db.url_or_default()).await?;
    projector::migrate::check_schema_name(&args.db.schema)?;
    let schema = &args.db.schema;
    let row = pg
        .query_opt(
            &format!(
                "SELECT last_seq, events_applied, dead_lettered FROM {schema}.projector_positions WHERE consumer = $1"
            ),
            &[&args.projector.name],
        )
        .await?;
    let (position, applied, dead) = row.map_or((0, 0, 0), |r| {
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))
    });
    let lag = (last as i64 - position).max(0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "stream": args.stream.stream,
                "stream_last_seq": last,
                "projector_position": position,
                "lag": lag,
                "events_applied": applied,
                "dead_letters": dead,
            })
        );
    } else {
        println!(
            "stream              {} (last sequence {last})",
            args.stream.stream
        );
        println!("projector position  {position}");
        println!("lag                 {lag}");
        println!("events applied      {applied}");
        println!("dead letters        {dead}");
    }
    Ok(ExitCode::SUCCESS)
}
