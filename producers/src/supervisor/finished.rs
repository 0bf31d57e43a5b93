//! The `run.finished` payload: the outcome and error text from how the agent ended (by itself,
//! or stopped for a cause) and what it reported, with the excerpts of its output; and the
//! payload of a run whose command could not be started at all.

use super::output::Tail;
use super::result::AgentResult;
use super::termination::{Exit, StopCause};
use events::run::RunFinished;
use events::{RunId, RunOutcome};
use std::ffi::OsStr;
use std::path::Path;

/// The `run.finished` payload from how the agent ended and what it reported.
pub fn payload(
    run: RunId,
    cause: Option<StopCause>,
    exit: Exit,
    reported: AgentResult,
    stdout: &Tail,
    stderr: &Tail,
) -> RunFinished {
    let (outcome, error, error_code) = match cause {
        Some(StopCause::Timeout(t)) => (
            RunOutcome::TimedOut,
            Some(format!("Timed out after {} s", t.as_secs_f64())),
            None,
        ),
        Some(StopCause::Cancel(reason)) => (RunOutcome::Cancelled, Some(reason), None),
        Some(StopCause::Interrupted) => (
            RunOutcome::Cancelled,
            Some("Cancelled: the supervisor was stopped (SIGINT/SIGTERM)".into()),
            None,
        ),
        None => match (exit.code, exit.signal_name()) {
            (Some(0), _) if reported.error.is_none() => (RunOutcome::Succeeded, None, None),
            (Some(0), _) => (RunOutcome::Failed, reported.error, reported.error_code),
            (Some(code), _) => (
                RunOutcome::Failed,
                reported
                    .error
                    .or_else(|| Some(format!("Process exited with code {code}"))),
                reported.error_code,
            ),
            (None, signal) => (
                RunOutcome::Failed,
                reported.error.or_else(|| {
                    Some(format!(
                        "Process was killed by signal {}",
                        signal.as_deref().unwrap_or("unknown")
                    ))
                }),
                reported.error_code,
            ),
        },
    };
    RunFinished {
        run_id: run,
        outcome,
        exit_code: exit.code,
        signal: exit.signal_name(),
        error,
        error_code,
        result: reported.result,
        stdout_excerpt: stdout.excerpt(),
        stderr_excerpt: stderr.excerpt(),
        usage: reported.usage,
        extra: Default::default(),
    }
}

/// The payload of a run whose command could not be started: failed, without a process.
pub fn not_started(run: RunId, program: &OsStr, error: &std::io::Error) -> RunFinished {
    RunFinished {
        run_id: run,
        outcome: RunOutcome::Failed,
        exit_code: None,
        signal: None,
        error: Some(format!(
            "could not start `{}`: {error}",
            Path::new(program).display()
        )),
        error_code: None,
        result: Default::default(),
        stdout_excerpt: None,
        stderr_excerpt: None,
        usage: None,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exit(code: Option<i32>, signal: Option<i32>) -> Exit {
        Exit { code, signal }
    }

    fn finished(cause: Option<StopCause>, e: Exit, agent: AgentResult) -> RunFinished {
        payload(
            RunId::new_random(),
            cause,
            e,
            agent,
            &Tail::new(8),
            &Tail::new(8),
        )
    }

    #[test]
    fn outcomes_follow_the_exit_and_the_stop_cause() {
        let ok = finished(None, exit(Some(0), None), AgentResult::default());
        assert_eq!((ok.outcome, ok.error), (RunOutcome::Succeeded, None));
        let three = finished(None, exit(Some(3), None), AgentResult::default());
        assert_eq!(three.outcome, RunOutcome::Failed);
        assert_eq!(three.error.as_deref(), Some("Process exited with code 3"));
        let killed = finished(None, exit(None, Some(9)), AgentResult::default());
        assert_eq!(killed.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(
            killed.error.as_deref(),
            Some("Process was killed by signal SIGKILL")
        );
        let timed_out = finished(
            Some(StopCause::Timeout(Duration::from_millis(1500))),
            exit(None, Some(15)),
            AgentResult::default(),
        );
        assert_eq!(timed_out.outcome, RunOutcome::TimedOut);
        assert_eq!(timed_out.error.as_deref(), Some("Timed out after 1.5 s"));
        let cancelled = finished(
            Some(StopCause::Cancel("Cancelled by control plane".into())),
            exit(None, Some(15)),
            AgentResult::default(),
        );
        assert_eq!(cancelled.outcome, RunOutcome::Cancelled);
        assert_eq!(
            cancelled.error.as_deref(),
            Some("Cancelled by control plane")
        );
    }

    #[test]
    fn an_agent_error_fails_a_zero_exit() {
        let agent = AgentResult {
            error: Some("tests fail".into()),
            error_code: Some("tests_failed".into()),
            ..Default::default()
        };
        let p = finished(None, exit(Some(0), None), agent);
        assert_eq!(p.outcome, RunOutcome::Failed);
        assert_eq!(p.error.as_deref(), Some("tests fail"));
        assert_eq!(p.error_code.as_deref(), Some("tests_failed"));
    }
}
