//! `runledger run`: supervise one agent command as a run (`producers::supervisor`). This file
//! only turns flags into settings and the report into an exit code and messages; the protocol
//! an agent sees is documented in `docs/supervisor.md`.

use crate::settings::{parse_duration, NatsArgs, StreamArgs};
use crate::shutdown;
use crate::watchdog::HostArgs;
use anyhow::Context;
use events::{AgentId, CompanyId, IssueId, RunId};
use producers::supervisor::{Supervisor, SupervisorSettings};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

/// How runs are supervised (shared defaults; each can be set per host in the environment).
#[derive(clap::Args, Clone, Debug)]
pub struct SupervisionArgs {
    /// Between SIGTERM and SIGKILL when the agent is stopped (timeout, cancel, Ctrl-C).
    #[arg(long = "grace", env = "RUNLEDGER_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Between two `run.activity` heartbeats while the agent lives (0s: none).
    #[arg(long = "heartbeat-interval", env = "RUNLEDGER_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// How long `run.finished` is retried (same event id) when NATS is unreachable; keep it
    /// inside the stream's duplicate window.
    #[arg(long = "final-event-deadline", env = "RUNLEDGER_FINAL_EVENT_DEADLINE", default_value = "60s", value_parser = parse_duration)]
    pub final_event_deadline: Duration,
    /// Size of the stdout and stderr excerpts in `run.finished`, in bytes.
    #[arg(
        long = "excerpt-bytes",
        env = "RUNLEDGER_EXCERPT_BYTES",
        default_value_t = 4096
    )]
    pub excerpt_bytes: usize,
}

#[derive(clap::Args)]
#[command(
    after_help = "The agent gets RUNLEDGER_RUN_ID, RUNLEDGER_COMPANY_ID, RUNLEDGER_AGENT_ID, \
RUNLEDGER_ISSUE_ID, RUNLEDGER_HOST_ID, RUNLEDGER_RESULT_FILE, NATS_URL, RUNLEDGER_STREAM and \
RUNLEDGER_SUBJECT_PREFIX. It reports its result by writing a JSON object to $RUNLEDGER_RESULT_FILE \
or printing a last line `RUNLEDGER_RESULT {json}` (docs/supervisor.md).

Exit code: the agent's (128 + signal if it was killed); 126/127 if it could not be started; 75 if \
run.finished could not be published before --final-event-deadline.

Example:
  runledger run --company <uuid> --agent <uuid> --timeout-sec 600 -- codex exec 'fix the bug'"
)]
pub struct Args {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub host: HostArgs,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
    /// Company (tenant) id of the run, a UUID.
    #[arg(long, value_name = "UUID")]
    pub company: CompanyId,
    /// Agent running it, a UUID.
    #[arg(long, value_name = "UUID")]
    pub agent: AgentId,
    /// Run id, a UUID (e.g. of a run the reconciler queued) [default: a new one].
    #[arg(long, value_name = "UUID")]
    pub run: Option<RunId>,
    /// Issue the run works on, a UUID.
    #[arg(long, value_name = "UUID")]
    pub issue: Option<IssueId>,
    /// Stop the agent after this many seconds (outcome `timed_out`); 0: no limit.
    #[arg(long = "timeout-sec", value_name = "N", default_value_t = 0)]
    pub timeout_sec: u64,
    /// The agent command and its arguments.
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = shutdown::on_signal();
    let client = args.nats.connect("runledger run").await?;
    let js = async_nats::jetstream::new(client);
    let stream = args.stream.settings()?;
    producers::ensure_stream(&js, &stream)
        .await
        .with_context(|| format!("setting up stream `{}`", stream.name))?;
    let mut settings = SupervisorSettings::new(
        args.company,
        args.agent,
        args.host.host_id(),
        args.command.clone(),
    );
    settings.run = args.run.unwrap_or_else(RunId::new_random);
    settings.issue = args.issue;
    settings.timeout = (args.timeout_sec > 0).then(|| Duration::from_secs(args.timeout_sec));
    settings.grace = args.supervision.grace;
    settings.heartbeat_interval = args.supervision.heartbeat_interval;
    settings.final_event_deadline = args.supervision.final_event_deadline;
    settings.excerpt_bytes = args.supervision.excerpt_bytes;
    settings.env = vec![
        ("NATS_URL".into(), args.nats.url_or_default().into()),
        ("RUNLEDGER_STREAM".into(), args.stream.stream.clone().into()),
        (
            "RUNLEDGER_SUBJECT_PREFIX".into(),
            args.stream.prefix.clone().into(),
        ),
    ];
    let run = settings.run;
    let supervisor = Supervisor::new(js, &stream.name, args.stream.subjects()?, settings);
    let report = supervisor.run(stop).await?;
    if report.exit.is_none() {
        if let Some(error) = &report.finished.error {
            eprintln!("runledger run: {error}");
        }
    }
    if let Err(undelivered) = &report.final_event {
        eprintln!(
            "runledger run: run.finished for run {run} (outcome {}, agent exit code {}) could not \
             be published within {}: {undelivered}. The ledger does not know how this run ended; \
             the host's watchdog will report it lost.",
            report.finished.outcome,
            report
                .exit
                .map_or("none".to_owned(), |e| e.shell_code().to_string()),
            humantime::format_duration(args.supervision.final_event_deadline),
        );
    }
    Ok(ExitCode::from(
        u8::try_from(report.exit_code().clamp(0, 255)).unwrap_or(1),
    ))
}
