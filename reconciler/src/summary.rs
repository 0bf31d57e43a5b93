//! The continuation-summary document (reference §7): the handoff note the next wake of an issue
//! reads to pick up where the last run stopped.
//!
//! After each finished or failed issue run the reconciler writes a new revision of the system
//! document `continuation-summary`. This module builds its markdown body from the issue, the run,
//! the agent and the previous body (paths and next action carry over), with fixed caps so the
//! document stays small enough to hand to an agent.

use crate::text;
use chrono::{DateTime, SecondsFormat, Utc};
use events::{IssueId, IssueStatus, Priority, RunId, RunOutcome};
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

/// Document key of the continuation summary.
pub const DOCUMENT_KEY: &str = events::document::CONTINUATION_SUMMARY_KEY;
/// Document title.
pub const TITLE: &str = "Continuation Summary";
/// Document format.
pub const FORMAT: &str = "markdown";
/// Maximum body length, in characters.
pub const MAX_BODY_CHARS: usize = 8_000;
/// Maximum length of one section, in characters.
pub const MAX_SECTION_CHARS: usize = 1_200;
/// Maximum length of the quoted run error, in characters.
pub const MAX_ERROR_CHARS: usize = 500;
/// Maximum number of paths listed under "Files / Routes Touched".
pub const MAX_PATHS: usize = 12;
/// Appended (on its own line) to anything that was cut.
pub const TRUNCATION_MARK: &str = "\n[truncated]";

/// Keys of the adapter result holding its summary, first non-empty wins.
const RESULT_SUMMARY_KEYS: [&str; 4] = ["summary", "result", "message", "error"];

/// First directories of paths that are taken to be repository paths even without an extension.
const SOURCE_ROOTS: [&str; 20] = [
    "server",
    "ui",
    "packages",
    "doc",
    "docs",
    "scripts",
    "src",
    "crates",
    "tests",
    "test",
    "migrations",
    "cli",
    "events",
    "producers",
    "projector",
    "reconciler",
    "testsupport",
    "lib",
    "app",
    ".github",
];

/// A path-like token after a boundary (line start, whitespace, backtick, quote, parenthesis).
static PATH_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s`"'(])((?:[A-Za-z0-9._-]+/)+[A-Za-z0-9._-]+/?)"#)
        .expect("the path pattern of summary.rs is a valid regular expression")
});

/// The issue, as it is after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryIssue {
    /// The issue.
    pub issue_id: IssueId,
    /// Human identifier, e.g. `PAP-12`.
    pub identifier: Option<String>,
    /// Title.
    pub title: String,
    /// Description, markdown.
    pub description: Option<String>,
    /// Status.
    pub status: IssueStatus,
    /// Priority.
    pub priority: Priority,
}

/// The run that just ended.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRun {
    /// The run.
    pub run_id: RunId,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Error text.
    pub error: Option<String>,
    /// Error code.
    pub error_code: Option<String>,
    /// Adapter result.
    pub result: Map<String, Value>,
    /// Captured stdout excerpt.
    pub stdout_excerpt: Option<String>,
    /// Captured stderr excerpt.
    pub stderr_excerpt: Option<String>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The run's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryAgent {
    /// Display name.
    pub name: String,
    /// Adapter type, e.g. `codex_local`.
    pub adapter_type: Option<String>,
}

/// Everything the summary is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryInput {
    /// The issue.
    pub issue: SummaryIssue,
    /// The run that just ended.
    pub run: SummaryRun,
    /// Its agent.
    pub agent: SummaryAgent,
    /// Body of the current summary revision, if any.
    pub previous_body: Option<String>,
}

/// What the issue's work is about right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Work is done or under review.
    Review,
    /// Work is being implemented (or a run just failed).
    Implementation,
    /// Work has not started yet.
    Plan,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Review => "review",
            Self::Implementation => "implementation",
            Self::Plan => "plan",
        })
    }
}

/// The issue's mode: `done`/`in_review` → review; a failed, timed-out or cancelled run →
/// implementation; `backlog`/`todo` → plan; otherwise implementation.
pub fn mode(status: IssueStatus, outcome: RunOutcome) -> Mode {
    match (status, outcome) {
        (IssueStatus::Done | IssueStatus::InReview, _) => Mode::Review,
        (_, RunOutcome::Failed | RunOutcome::TimedOut | RunOutcome::Cancelled) => {
            Mode::Implementation
        }
        (IssueStatus::Backlog | IssueStatus::Todo, _) => Mode::Plan,
        _ => Mode::Implementation,
    }
}

/// The summary's next action, first rule that applies.
pub fn next_action(status: IssueStatus, outcome: RunOutcome, previous: Option<&str>) -> String {
    let fixed = match (status, outcome) {
        (IssueStatus::Done, _) => {
            "Review the completed issue output and close any remaining follow-up comments."
        }
        (IssueStatus::InReview, _) => {
            "Wait for reviewer feedback or approval before continuing executor work."
        }
        (_, RunOutcome::Failed | RunOutcome::TimedOut) => {
            "Inspect the failed run, fix the cause, and resume from the most recent concrete action above."
        }
        (_, RunOutcome::Cancelled) => "Confirm the cancellation reason before starting another run.",
        _ => {
            return previous.map_or_else(
                || {
                    "Resume implementation from the acceptance criteria, latest comments, and this summary."
                        .to_owned()
                },
                str::to_owned,
            )
        }
    };
    fixed.to_owned()
}

/// Trims `value` and cuts it to `max_chars` characters, the cut ending in "[truncated]".
pub fn truncate_marked(value: &str, max_chars: usize) -> String {
    let trimmed = value.trim();
    if trimmed.chars().count() <= max_chars {
        return trimmed.to_owned();
    }
    let keep = max_chars.saturating_sub(TRUNCATION_MARK.chars().count());
    let head: String = trimmed.chars().take(keep).collect();
    format!("{}{TRUNCATION_MARK}", head.trim_end())
}

/// The body of a level-1 or level-2 markdown section titled `heading` (case-insensitive), up to
/// the next level-1 or level-2 heading; deeper headings stay inside. `None` when absent or empty.
pub fn markdown_section(markdown: &str, heading: &str) -> Option<String> {
    let mut lines = markdown.lines();
    lines.find(|line| heading_title(line).is_some_and(|t| t.eq_ignore_ascii_case(heading)))?;
    let body: Vec<&str> = lines
        .take_while(|line| heading_title(line).is_none())
        .collect();
    let section = body.join("\n");
    let section = section.trim();
    (!section.is_empty()).then(|| section.to_owned())
}

/// The title of a `#` or `##` heading line.
fn heading_title(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("##").or_else(|| line.strip_prefix('#'))?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim())
}

/// The first item of the "Next Action" section of a previous summary body.
pub fn previous_next_action(body: &str) -> Option<String> {
    let section = markdown_section(body, "Next Action")?;
    section
        .lines()
        .map(|line| strip_bullet(line.trim()).trim())
        .find(|line| !line.is_empty())
        .map(str::to_owned)
}

/// Removes a leading "- " or "* ".
fn strip_bullet(line: &str) -> &str {
    ["- ", "* "]
        .iter()
        .find_map(|bullet| line.strip_prefix(bullet))
        .unwrap_or(line)
}

/// Up to 12 unique repository paths found in `texts`, in order of appearance.
pub fn touched_paths<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut paths = Vec::new();
    let candidates = texts.into_iter().flat_map(|text| {
        PATH_CANDIDATE
            .captures_iter(text)
            .filter_map(|caps| caps.get(1).map(|m| m.as_str()))
    });
    for candidate in candidates {
        let path = candidate.trim_end_matches([')', ',', '.', ';', ':']);
        if is_repo_path(path) && seen.insert(path.to_owned()) {
            paths.push(path.to_owned());
            if paths.len() == MAX_PATHS {
                break;
            }
        }
    }
    paths
}

/// Whether a slash-separated token looks like a repository path rather than prose ("and/or")
/// or a host name: it starts at a known source root, or its last part has a file extension.
fn is_repo_path(path: &str) -> bool {
    let mut parts = path.split('/').filter(|part| !part.is_empty());
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(last) = parts.next_back() else {
        return false;
    };
    if SOURCE_ROOTS.contains(&first) {
        return true;
    }
    let looks_like_host = first.contains('.') && !first.starts_with('.');
    let has_extension = last.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && ext.chars().any(|c| c.is_ascii_alphabetic())
    });
    has_extension && !looks_like_host
}

/// The adapter's own summary of the run: first non-empty `summary`, `result`, `message`, `error`.
pub fn result_summary(result: &Map<String, Value>) -> Option<&str> {
    text::first_field_text(result, &RESULT_SUMMARY_KEYS)
}

/// A markdown bullet list, or one bullet saying there is nothing.
fn bullets(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        return format!("- {empty}");
    }
    items
        .iter()
        .map(|item| format!("- {item}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `## heading` section with its content capped to 1,200 characters.
fn section(heading: &str, content: &str) -> String {
    format!(
        "## {heading}\n\n{}",
        truncate_marked(content, MAX_SECTION_CHARS)
    )
}

/// The "Recent Concrete Actions" items: how the run ended, its summary, its error.
fn recent_actions(run: &SummaryRun) -> Vec<String> {
    let finished_at = run
        .finished_at
        .map(|at| format!(" at {}", at.to_rfc3339_opts(SecondsFormat::Millis, true)))
        .unwrap_or_default();
    let mut items = vec![
        format!(
            "Run `{}` finished with status `{}`{finished_at}.",
            run.run_id, run.outcome
        ),
        result_summary(&run.result).map_or_else(
            || "No adapter-provided result summary was captured for this run.".to_owned(),
            |summary| truncate_marked(summary, MAX_SECTION_CHARS),
        ),
    ];
    if let Some(error) = text::non_empty_trimmed(run.error.as_deref()) {
        let code = text::non_empty_trimmed(run.error_code.as_deref())
            .map(|code| format!(" ({code})"))
            .unwrap_or_default();
        items.push(format!(
            "Latest run error{code}: {}",
            truncate_marked(error, MAX_ERROR_CHARS)
        ));
    }
    items
}

/// The agent's adapter type, or "unknown".
fn adapter_name(agent: &SummaryAgent) -> &str {
    text::non_empty_trimmed(agent.adapter_type.as_deref()).unwrap_or("unknown")
}

/// The header bullets: issue, status, priority, mode, updating run, agent.
fn header(input: &SummaryInput, mode: Mode) -> String {
    let issue = &input.issue;
    let identifier = text::non_empty_trimmed(issue.identifier.as_deref())
        .map_or_else(|| issue.issue_id.to_string(), str::to_owned);
    let adapter = adapter_name(&input.agent);
    [
        format!("- Issue: {identifier} — {}", issue.title),
        format!("- Status: {}", issue.status),
        format!("- Priority: {}", issue.priority),
        format!("- Current mode: {mode}"),
        format!("- Last updated by run: {}", input.run.run_id),
        format!("- Agent: {} ({adapter})", input.agent.name),
    ]
    .join("\n")
}

/// Builds the markdown body of the next `continuation-summary` revision (at most 8,000 chars).
pub fn build_body(input: &SummaryInput) -> String {
    let issue = &input.issue;
    let run = &input.run;
    let description = issue.description.as_deref().unwrap_or("");
    let previous = input.previous_body.as_deref();
    let mode = mode(issue.status, run.outcome);
    let objective = markdown_section(description, "Objective")
        .or_else(|| text::non_empty_trimmed(Some(description)).map(str::to_owned))
        .unwrap_or_else(|| "No objective captured.".to_owned());
    let criteria = markdown_section(description, "Acceptance Criteria")
        .unwrap_or_else(|| "No explicit acceptance criteria captured.".to_owned());
    let path_sources = [
        result_summary(&run.result),
        run.stdout_excerpt.as_deref(),
        run.stderr_excerpt.as_deref(),
        previous,
    ];
    let paths: Vec<String> = touched_paths(path_sources.into_iter().flatten())
        .into_iter()
        .map(|path| format!("`{path}`"))
        .collect();
    let adapter = adapter_name(&input.agent);
    let commands = [
        format!("Run `{}` invoked adapter `{adapter}`.", run.run_id),
        "Detailed shell/tool commands remain in the run log and transcript.".to_owned(),
    ];
    let blockers = if text::non_empty_trimmed(run.error.as_deref()).is_some() {
        format!(
            "Latest run ended with `{}`; inspect the error before continuing.",
            run.outcome
        )
    } else {
        "No new blocker was recorded by the latest run.".to_owned()
    };
    let previous_action = previous.and_then(previous_next_action);
    let next = next_action(issue.status, run.outcome, previous_action.as_deref());

    let body = [
        format!("# {TITLE}"),
        header(input, mode),
        section("Objective", &objective),
        section("Acceptance Criteria", &criteria),
        section(
            "Recent Concrete Actions",
            &bullets(&recent_actions(run), "No recent actions captured."),
        ),
        section(
            "Files / Routes Touched",
            &bullets(
                &paths,
                "No file or route paths were detected in the captured run output.",
            ),
        ),
        section(
            "Commands Run",
            &bullets(&commands, "No command metadata captured."),
        ),
        section(
            "Blockers / Decisions",
            &bullets(&[blockers], "No blockers or decisions captured."),
        ),
        section("Next Action", &bullets(&[next], "None.")),
    ]
    .join("\n\n");
    truncate_marked(&body, MAX_BODY_CHARS)
}
