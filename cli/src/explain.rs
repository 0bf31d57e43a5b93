//! `runledger explain --issue <id>` (or `--run <id>`): why the reconciler acted on an issue or a
//! run — each follow-up it published (emitted, refused, deferred, fired or dropped as moot) with
//! its rule, cause event, inputs and outcome, newest first. Reads the `decisions` read model with
//! the same query as `GET /v1/companies/{c}/issues/{i}/decisions`.

use crate::db;
use crate::settings::DbArgs;
use api::routes::decisions::{decision, Decision, SQL};
use std::process::ExitCode;
use uuid::Uuid;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["issue", "run"])))]
pub struct Args {
    #[command(flatten)]
    pub db: DbArgs,
    /// The issue whose decisions to explain.
    #[arg(long)]
    pub issue: Option<Uuid>,
    /// The run whose decisions to explain (the run the rules looked at, or the run they queued).
    #[arg(long)]
    pub run: Option<Uuid>,
    /// Decisions to print, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Print one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    projector::store::migrate::check_schema_name(&args.db.schema)?;
    let pg = db::connect(&args.db.url_or_default()).await?;
    pg.batch_execute(&format!("SET search_path TO {}", args.db.schema))
        .await?;
    let rows = pg
        .query(
            SQL,
            &[
                &None::<Uuid>,
                &args.issue,
                &args.run,
                &i64::MAX,
                &(args.limit - 1).max(0),
            ],
        )
        .await?;
    let decisions: Vec<Decision> = rows.iter().map(decision).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decisions)?);
        return Ok(ExitCode::SUCCESS);
    }
    let subject = match (args.issue, args.run) {
        (Some(issue), _) => format!("issue {issue}"),
        (None, Some(run)) => format!("run {run}"),
        (None, None) => unreachable!("clap requires --issue or --run"),
    };
    if decisions.is_empty() {
        println!("no decisions of the reconciler on {subject}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("decisions on {subject}, newest first");
    for d in &decisions {
        print!("{}", text(d));
    }
    Ok(ExitCode::SUCCESS)
}

/// One decision as a few lines of text.
pub fn text(d: &Decision) -> String {
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cause_seq = d
        .cause
        .seq
        .map_or_else(|| "?".to_owned(), |s| s.to_string());
    let inputs = d.inputs.as_object().map_or_else(String::new, |m| {
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "issue_id" | "run_id"))
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                v => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    let run = d.run_id.map_or_else(String::new, |r| format!(" run {r}"));
    format!(
        "\n#{} {} {} ({}){run}\n  {}\n  cause   {} #{cause_seq} at {}\n  inputs  {inputs}\n",
        d.seq,
        at(d.at),
        d.event_type,
        d.rule,
        d.sentence,
        d.cause.event_type,
        at(d.cause.time),
    )
}
