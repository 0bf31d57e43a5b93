//! What happened to the input: counts, the first problems by line, and the printed summary.

use super::SHOWN_PROBLEMS;
use events::ContractError;
use producers::{PublishError, PublishOutcome};
use serde_json::{json, Value};

/// One rejected or failed line.
pub(super) struct Problem {
    line: u64,
    field: Option<String>,
    reason: String,
}

/// A count plus the first few by line number, for the summary.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) total: u64,
    shown: Vec<Problem>,
}

impl Problems {
    /// Counts `problem` and keeps it if it is among the [`SHOWN_PROBLEMS`] earliest lines (a
    /// line rejected at publish time can come after later lines rejected while parsing).
    fn push(&mut self, problem: Problem) {
        self.total += 1;
        let at = self.shown.partition_point(|p| p.line <= problem.line);
        if at < SHOWN_PROBLEMS {
            self.shown.insert(at, problem);
            self.shown.truncate(SHOWN_PROBLEMS);
        }
    }
}

/// What happened to the input.
#[derive(Default)]
pub(super) struct Summary {
    pub(super) published: u64,
    pub(super) duplicates: u64,
    /// Lines that break the contract (never sent).
    pub(super) rejected: Problems,
    /// Valid events the server refused or never acknowledged.
    pub(super) failed: Problems,
    /// Reading stopped early after this line because a whole chunk failed.
    pub(super) stopped_after: Option<u64>,
}

impl Summary {
    pub(super) fn reject(&mut self, line: u64, err: &ContractError) {
        self.rejected.push(Problem {
            line,
            field: err.field(),
            reason: err.to_string(),
        });
    }

    pub(super) fn record(&mut self, line: u64, result: Result<PublishOutcome, PublishError>) {
        match result {
            Ok(outcome) if outcome.duplicate => self.duplicates += 1,
            Ok(_) => self.published += 1,
            Err(PublishError::Invalid(err)) => self.reject(line, &err),
            Err(err) => self.failed.push(Problem {
                line,
                field: None,
                reason: err.to_string(),
            }),
        }
    }

    pub(super) fn ok(&self) -> bool {
        self.rejected.total == 0 && self.failed.total == 0 && self.stopped_after.is_none()
    }

    pub(super) fn progress_message(&self) -> String {
        format!(
            "{} new, {} dup, {} rejected, {} failed",
            self.published, self.duplicates, self.rejected.total, self.failed.total
        )
    }
}

pub(super) fn print_summary(summary: &Summary, json: bool) {
    if json {
        println!("{}", summary_json(summary));
    } else {
        print!("{}", summary_text(summary));
    }
}

fn summary_json(summary: &Summary) -> Value {
    let list = |problems: &Problems| -> Vec<Value> {
        problems
            .shown
            .iter()
            .map(|p| json!({"line": p.line, "field": p.field, "reason": p.reason}))
            .collect()
    };
    json!({
        "published": summary.published,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected.total,
        "failed": summary.failed.total,
        "rejected_lines": list(&summary.rejected),
        "failed_lines": list(&summary.failed),
        "stopped_after_line": summary.stopped_after,
    })
}

fn summary_text(summary: &Summary) -> String {
    let mut out = format!(
        "published   {}\nduplicates  {} (already in the stream; not stored again)\n",
        summary.published, summary.duplicates
    );
    out += &problems_text("rejected", "(invalid events, not sent)", &summary.rejected);
    out += &problems_text(
        "failed",
        "(refused or not acknowledged by JetStream)",
        &summary.failed,
    );
    if let Some(line) = summary.stopped_after {
        out += &format!(
            "stopped after line {line}: every event of the last batch failed, the rest of the input was not read\n"
        );
    }
    out
}

fn problems_text(label: &str, meaning: &str, problems: &Problems) -> String {
    let mut out = format!("{label:<11} {}", problems.total);
    if problems.total > 0 {
        out += &format!(" {meaning}");
    }
    out.push('\n');
    for p in &problems.shown {
        out += &format!("  line {}: {}\n", p.line, p.reason);
    }
    let more = problems.total - problems.shown.len() as u64;
    if more > 0 {
        out += &format!("  ... and {more} more\n");
    }
    out
}
