//! `runledger migrate`: applies pending migrations to the read-model schema and to the
//! reconciler's schema (creating the database if it is the default one and missing) and says
//! which were applied (with partitions, every partition's reconciler schema). The reconciler
//! also migrates its schema when it starts; doing it here first lets a deployment migrate
//! everything in one step before starting services.

use crate::db;
use crate::settings::{DbArgs, ReconcilerSchemaArgs};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub reconciler: ReconcilerSchemaArgs,
    /// Partitions the stream is split into: above 1, each partition's reconciler schema
    /// (`<reconciler schema>_p<n>`) is migrated, as `runledger worker` uses them.
    #[arg(long, env = "RUNLEDGER_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(events::MAX_PARTITIONS)))]
    pub partitions: u32,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reconciler_schema = args.reconciler.schema_beside(&args.db)?;
    let url = args.db.url_or_default();
    if args.db.url.is_none() {
        db::create_database_if_missing(&url).await?;
    }
    let mut client = db::connect(&url).await?;
    let applied = projector::store::migrate::migrate(&mut client, &args.db.schema).await?;
    if applied.is_empty() {
        println!("schema `{}` is up to date", args.db.schema);
    } else {
        println!(
            "schema `{}`: applied migrations {applied:?}",
            args.db.schema
        );
    }
    for schema in reconciler::migrate::partition_schemas(reconciler_schema, args.partitions) {
        let applied = reconciler::migrate::migrate(&mut client, &schema).await?;
        if applied.is_empty() {
            println!("reconciler schema `{schema}` is up to date");
        } else {
            println!(
                "reconciler schema `{schema}`: applied read-model migrations {:?}, \
                 reconciler migrations {:?}",
                applied.read_models, applied.state
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
