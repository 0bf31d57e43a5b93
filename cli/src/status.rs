//! `runledger status`: where the stream is, where the projector and the reconciler are, their lag
//! behind the stream, how many events were dead-lettered and how many of the reconciler's
//! follow-ups are still waiting in its outbox; on a cluster the stream's leader and replicas,
//! and with partitions every partition's owner instance, position and lag in its own events (and
//! its reconciler's unpublished follow-ups) below the same summary of each reader as a whole:
//! the stream sequence every partition has caught up with, the stream's events after it, and
//! the partitions' counters summed.

use crate::db;
use crate::settings::{DbArgs, NatsArgs, ProjectorNameArgs, ReconcilerStateArgs, StreamArgs};
use reconciler::state::Progress;
use serde_json::json;
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
    pub projector: ProjectorNameArgs,
    #[command(flatten)]
    pub reconciler: ReconcilerStateArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reconciler_schema = args.reconciler.schema.schema_beside(&args.db)?;
    let client = args.nats.connect("runledger status").await?;
    let js = async_nats::jetstream::new(client);
    args.stream.check(&js).await?;
    let last = projector::feed::stream_last_seq(&js, &args.stream.stream).await? as i64;
    let pg = db::connect(&args.db.url_or_default()).await?;
    let schema = &args.db.schema;
    let cluster = crate::partitions::cluster(&js, &args.stream.stream).await?;
    let subjects = args.stream.subjects()?;
    // Each reader as a whole: its one position row, or with partitions all of them.
    let (whole, progress, partitions) = if subjects.is_partitioned() {
        let found = crate::partitions::partitions(
            &js,
            &pg,
            &args.stream.stream,
            &subjects,
            schema,
            &args.projector.name,
            (reconciler_schema, &args.reconciler.name),
        )
        .await?;
        (found.projector, found.reconciler, found.rows)
    } else {
        let whole =
            crate::partitions::projector_counters(&pg, schema, &args.projector.name).await?;
        let progress =
            reconciler::state::progress(&pg, reconciler_schema, &args.reconciler.name).await?;
        (whole, progress, Vec::new())
    };
    // A reader's lag: the stream's events after its position (with partitions, after the
    // sequence every partition has caught up with, as /healthz counts it; events of other
    // partitions among them may be read already: each partition's own are on its line).
    let projector_lag = lag(last, whole.position);
    let reconciler_lag = match &progress {
        Progress::At(at) => lag(last, at.last_seq),
        _ => 0,
    };
    let partitioned = subjects.is_partitioned();
    if args.json {
        println!(
            "{}",
            json!({
                "stream": args.stream.stream,
                "stream_last_seq": last,
                "projector_position": whole.position,
                "lag": projector_lag,
                "events_applied": whole.applied,
                "dead_letters": whole.dead_letters,
                "reconciler": reconciler_json(&args.reconciler, &progress, reconciler_lag),
                "cluster": cluster,
                "partitions": partitions,
            })
        );
    } else {
        println!(
            "stream              {} (last sequence {last})",
            args.stream.stream
        );
        println!("projector position  {}", whole.position);
        println!("lag                 {projector_lag}");
        println!("events applied      {}", whole.applied);
        println!("dead letters        {}", whole.dead_letters);
        print_reconciler(&args, partitioned, &progress, reconciler_lag);
        if let Some(cluster) = &cluster {
            println!(
                "cluster             {}",
                crate::partitions::describe_cluster(cluster)
            );
        }
        for p in &partitions {
            let unpublished = p["outbox_unpublished"]
                .as_i64()
                .map(|n| format!("  unpublished {n}"))
                .unwrap_or_default();
            // Numbers, not JSON values: these columns are padded.
            let number = |field: &str| p[field].as_i64().unwrap_or_default();
            println!(
                "{:<10} p{:<3}  owner {:<32} position {:<10} lag {:<8}{unpublished}",
                p["reader"].as_str().unwrap_or_default(),
                number("partition"),
                p["owner"].as_str().unwrap_or("none"),
                number("position"),
                number("lag")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How far `position` is behind the stream's `last` sequence.
fn lag(last: i64, position: i64) -> i64 {
    (last - position).max(0)
}

fn reconciler_json(
    state: &ReconcilerStateArgs,
    progress: &Progress,
    lag: i64,
) -> serde_json::Value {
    let mut value = json!({
        "schema": state.schema.schema,
        "name": state.name,
        "started": matches!(progress, Progress::At(_)),
    });
    if let Progress::At(at) = progress {
        value["stream"] = json!(at.stream);
        value["position"] = json!(at.last_seq);
        value["lag"] = json!(lag);
        value["events_seen"] = json!(at.events_seen);
        value["follow_ups"] = json!(at.follow_ups);
        value["outbox_unpublished"] = json!(at.unpublished);
    }
    value
}

fn print_reconciler(args: &Args, partitioned: bool, progress: &Progress, lag: i64) {
    let (schema, name) = (&args.reconciler.schema.schema, &args.reconciler.name);
    match progress {
        Progress::NoSchema if partitioned => {
            println!("reconciler: not started (no partition's schema `{schema}_p<n>` exists yet)")
        }
        Progress::NoSchema => {
            println!("reconciler: not started (schema `{schema}` does not exist yet)")
        }
        Progress::NoPosition if partitioned => println!(
            "reconciler: not started (no position of `{name}-p<n>` in any schema `{schema}_p<n>`)"
        ),
        Progress::NoPosition => {
            println!("reconciler: not started (no position of `{name}` in schema `{schema}`)")
        }
        Progress::At(at) => {
            println!("reconciler position {}", at.last_seq);
            println!("reconciler lag      {lag}");
            println!("follow-ups decided  {}", at.follow_ups);
            println!("outbox unpublished  {}", at.unpublished);
            if at.stream != args.stream.stream {
                println!(
                    "note: the reconciler's state was built from stream `{}`, not `{}`",
                    at.stream, args.stream.stream
                );
            }
        }
    }
}
