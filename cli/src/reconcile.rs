//! `runledger reconcile`: the reconciler alone (its own consumer, schema, outbox and clock), or
//! with `--dry-run --from-seq N` a replay of history through the rules into a throwaway schema
//! that publishes nothing and prints how the follow-ups it would emit differ from the ones the
//! stream already holds (exit code 1 when they differ, like `diff`); with partitions, one dry run
//! per partition.

use crate::settings::{DbArgs, NatsArgs, ReconcilerArgs, StreamArgs};
use crate::{db, shutdown};
use reconciler::dry_run::{dry_run, DryRunPlan, FollowUp};
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
    pub reconciler: ReconcilerArgs,
    /// Replay history through the rules without publishing; print the difference between the
    /// follow-ups they would emit and those already in the stream.
    #[arg(long)]
    pub dry_run: bool,
    /// With `--dry-run`: compare the follow-ups of causes at or after this stream sequence (the
    /// state before it is still built from the beginning of the stream).
    #[arg(long, requires = "dry_run", default_value_t = 1)]
    pub from_seq: u64,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.dry_run {
        // Partitions are decided by `runledger worker`/`up` instances; a dry run covers them all.
        crate::worker::unpartitioned(&args.stream, "reconcile")?;
    }
    let settings = args.reconciler.settings(&args.stream, &args.db)?;
    let client = args.nats.connect("runledger reconcile").await?;
    let js = async_nats::jetstream::new(client);
    args.stream.ensure(&js).await?;
    let pool = db::pool(&args.db.url_or_default(), &args.db.schema, 4)?;
    if args.dry_run {
        return print_dry_run(&pool, &js, settings, args.from_seq).await;
    }
    let stop = shutdown::on_signal();
    let reconciler = reconciler::Reconciler::start(pool, js, settings).await?;
    reconciler.run(stop).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_rows(mark: char, what: &str, rows: &[FollowUp]) {
    for f in rows {
        println!(
            "{mark} {} {} (rule {}, cause seq {}) {what}",
            f.event_id, f.event_type, f.rule, f.cause_seq
        );
    }
}

/// The dry run of every partition (one, without partitions), each decided as its own reconciler
/// decides it; exit code 1 when any differs.
async fn print_dry_run(
    pool: &deadpool_postgres::Pool,
    js: &async_nats::jetstream::Context,
    settings: reconciler::ReconcilerSettings,
    from_seq: u64,
) -> anyhow::Result<ExitCode> {
    let partitioned = settings.subjects.is_partitioned();
    let mut clean = true;
    for partition in 0..settings.subjects.partitions() {
        if partitioned {
            println!("partition {partition}:");
        }
        let partition = partitioned.then_some(partition);
        clean &= print_one_dry_run(pool, js, &settings, from_seq, partition).await?;
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn print_one_dry_run(
    pool: &deadpool_postgres::Pool,
    js: &async_nats::jetstream::Context,
    settings: &reconciler::ReconcilerSettings,
    from_seq: u64,
    partition: Option<u32>,
) -> anyhow::Result<bool> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let plan = DryRunPlan {
        stream: settings.stream.clone(),
        subjects: settings.subjects.clone(),
        policy: settings.policy.clone(),
        from_seq: from_seq.max(1),
        scratch_schema: format!("{}_dry_{}", settings.schema, &tag[..8]),
        batch_size: settings.batch_size,
        partition,
    };
    let report = dry_run(pool, js, &plan).await?;
    println!(
        "dry run of causes {}..={}: {} follow-ups decided, {} in the stream, {} identical",
        plan.from_seq, report.position, report.would_emit, report.in_stream, report.identical
    );
    print_rows('+', "decided, not in the stream", &report.missing);
    print_rows('-', "in the stream, not decided", &report.unexpected);
    for (decided, found) in &report.changed {
        println!(
            "~ {} {} (rule {}, cause seq {}) decided differently: now {} {}, in the stream {} {}",
            decided.event_id,
            decided.event_type,
            decided.rule,
            decided.cause_seq,
            decided.event_type,
            decided.data,
            found.event_type,
            found.data
        );
    }
    Ok(report.is_clean())
}
