//! `runledger migrate`: applies pending migrations (creating the database if it is the default
//! one and missing) and says which were applied.

use crate::db;
use crate::settings::DbArgs;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = args.db.url_or_default();
    if args.db.url.is_none() {
        db::create_database_if_missing(&url).await?;
    }
    let mut client = db::connect(&url).await?;
    let applied = projector::migrate::migrate(&mut client, &args.db.schema).await?;
    if applied.is_empty() {
        println!("schema `{}` is up to date", args.db.schema);
    } else {
        println!(
            "schema `{}`: applied migrations {applied:?}",
            args.db.schema
        );
    }
    Ok(ExitCode::SUCCESS)
}
