//! The API's response bodies. They are the contract of the HTTP API: the OpenAPI document's
//! schemas are generated from these types, so they cannot drift from what handlers return.
//! Every body carries `position`, the projector position (stream sequence) it reflects.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

type Time = DateTime<Utc>;

/// One row of an issue's run ledger, with the labels the dashboard shows.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct LedgerRow {
    /// 1 = newest. Absent in SSE change events (ranks shift when a run is added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_rank: Option<i64>,
    pub run_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `timed_out`; null while only
    /// evidence naming the run has arrived.
    pub status: Option<String>,
    /// Queued, running, or not yet known.
    pub is_live: bool,
    pub agent_id: Option<Uuid>,
    pub agent_name: Option<String>,
    pub adapter_type: Option<String>,
    /// `timer`, `assignment`, `on_demand`, `automation`.
    pub invocation_source: Option<String>,
    pub created_at: Option<Time>,
    pub queued_at: Option<Time>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    /// Seconds from start to finish (or to the last activity while running).
    pub elapsed_sec: Option<i64>,
    pub error_code: Option<String>,
    /// The run's error text, cut to 500 characters.
    pub error: Option<String>,
    /// `completed`, `timeout`, `cancelled`, `budget_paused`, `paused`, `process_lost`,
    /// `adapter_failed`.
    pub stop_reason: Option<String>,
    /// e.g. "timeout (30s timeout)", "budget paused", "Still running", "Waiting to start".
    pub stop_label: String,
    pub effective_timeout_sec: Option<i32>,
    pub timeout_configured: Option<bool>,
    /// `config` or `default`.
    pub timeout_source: Option<String>,
    pub timeout_fired: Option<bool>,
    /// `completed`, `advanced`, `plan_only`, `empty_response`, `blocked`, `failed`,
    /// `needs_followup`; null = not classified.
    pub liveness_state: Option<String>,
    /// e.g. "Plan only", "Checks after finish", "No liveness data".
    pub liveness_label: String,
    pub liveness_reason: Option<String>,
    /// "Continuation attempt N" when N > 0.
    pub continuation_attempt: i32,
    /// The bounded continuation chain ended without progress ("Exhausted").
    pub exhausted: bool,
    pub last_useful_action_at: Option<Time>,
    /// What to show instead of a last useful action time: "No action recorded yet",
    /// "No concrete action", "No useful output", "Unavailable"; null when the time is shown.
    pub last_useful_action_fallback: Option<String>,
    pub next_action: Option<String>,
    pub process_loss_retry_count: i32,
    pub retry_of_run_id: Option<Uuid>,
    /// The adapter result's `summary`.
    pub result_summary: Option<Value>,
    /// Compact usage: token counts (snake or camel case in the source), billing type, cost.
    pub usage: Option<Value>,
    /// Stream sequence of the last event that changed this run.
    pub last_seq: i64,
}

/// An issue's run ledger, newest first.
#[derive(Serialize, JsonSchema)]
pub struct LedgerPage {
    pub position: i64,
    pub company_id: Uuid,
    pub issue_id: Uuid,
    pub limit: i64,
    /// Runs in the issue's ledger.
    pub total: i64,
    /// Runs not shown ("N older runs not shown").
    pub hidden_count: i64,
    /// "N older runs not shown", or null when nothing is hidden.
    pub hidden_label: Option<String>,
    pub rows: Vec<LedgerRow>,
}

/// A run with its ledger fields and everything else the read model knows.
#[derive(Serialize, JsonSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub ledger: LedgerRow,
    pub company_id: Uuid,
    pub issue_id: Option<Uuid>,
    /// Every issue whose ledger lists this run.
    pub ledger_issue_ids: Vec<Uuid>,
    pub wakeup_id: Option<Uuid>,
    pub trigger_detail: Option<String>,
    pub context: Value,
    pub host: Option<String>,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub result: Option<Value>,
    pub stdout_excerpt: Option<String>,
    pub stderr_excerpt: Option<String>,
    pub last_activity_at: Option<Time>,
    pub activity_count: i32,
    pub cancel_requested_at: Option<Time>,
    pub cancel_reason: Option<String>,
    pub detached_at: Option<Time>,
    pub updated_at: Time,
}

#[derive(Serialize, JsonSchema)]
pub struct RunResponse {
    pub position: i64,
    pub run: RunDetail,
}

/// One entry of a run's timeline.
#[derive(Serialize, JsonSchema)]
pub struct RunEvent {
    /// Stream sequence of the event that made the entry.
    pub seq: i64,
    /// Orders several entries made by one event.
    pub ordinal: i16,
    #[serde(rename = "type")]
    pub kind: String,
    pub level: String,
    pub message: String,
    pub payload: Value,
    pub at: Time,
    /// Who wrote it, for entries made by an issue write (a comment, a work product, a
    /// document): `agent`, `user` or `system`; null for the run's own events.
    pub actor_type: Option<String>,
    /// The agent id, the user id, or for `system` the event's source (`runledger-reconciler`
    /// for the reconciler's decisions).
    pub actor_id: Option<String>,
}

/// A run's timeline, oldest first.
#[derive(Serialize, JsonSchema)]
pub struct RunTimeline {
    pub position: i64,
    pub run_id: Uuid,
    pub events: Vec<RunEvent>,
    /// Pass as `after_seq` for the next page; null when this page is the last.
    pub next_after_seq: Option<i64>,
}

/// A run in a company-wide list, with its issue.
#[derive(Serialize, JsonSchema)]
pub struct RunListItem {
    #[serde(flatten)]
    pub ledger: LedgerRow,
    pub issue_id: Option<Uuid>,
    pub issue_identifier: Option<String>,
    pub issue_title: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct RunList {
    pub position: i64,
    pub runs: Vec<RunListItem>,
}

#[derive(Serialize, JsonSchema)]
pub struct Wakeup {
    pub wakeup_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub agent_name: Option<String>,
    pub issue_id: Option<Uuid>,
    pub source: Option<String>,
    pub trigger_detail: Option<String>,
    pub reason: Option<String>,
    /// `queued`, `deferred_issue_execution`, `claimed`, `coalesced`, `skipped`, `completed`,
    /// `failed`, `cancelled`.
    pub status: String,
    pub idempotency_key: Option<String>,
    pub requested_by_actor_type: Option<String>,
    pub requested_by_actor_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub payload: Value,
    pub requested_at: Option<Time>,
    pub claimed_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub updated_at: Time,
}

#[derive(Serialize, JsonSchema)]
pub struct WakeupList {
    pub position: i64,
    pub wakeups: Vec<Wakeup>,
}

/// The `continuation-summary` system document: the handoff to the issue's next run.
#[derive(Serialize, JsonSchema)]
pub struct ContinuationSummary {
    pub position: i64,
    pub issue_id: Uuid,
    pub document_id: Uuid,
    pub key: String,
    pub title: String,
    pub format: String,
    pub body: String,
    pub revision_id: Uuid,
    pub revision_number: i32,
    pub created_by_run_id: Option<Uuid>,
    pub created_by_agent_id: Option<Uuid>,
    pub updated_at: Time,
}

/// An issue in a list.
#[derive(Serialize, JsonSchema)]
pub struct IssueSummary {
    pub issue_id: Uuid,
    pub identifier: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub assignee_agent_id: Option<Uuid>,
    pub assignee_agent_name: Option<String>,
    pub assignee_user_id: Option<String>,
    pub updated_at: Time,
    /// Runs in the issue's ledger.
    pub run_count: i64,
    /// Queued or running runs of the issue.
    pub live_run_count: i64,
}

#[derive(Serialize, JsonSchema)]
pub struct IssueList {
    pub position: i64,
    pub issues: Vec<IssueSummary>,
}

/// Child issues by state: "1 active, 1 done, 1 cancelled" or "all 2 terminal (1 done, 1 cancelled)".
#[derive(Serialize, JsonSchema)]
pub struct Children {
    pub total: i64,
    pub active: i64,
    pub done: i64,
    pub cancelled: i64,
    pub label: String,
}

/// A document of an issue (without its body).
#[derive(Serialize, JsonSchema)]
pub struct DocumentSummary {
    pub document_id: Uuid,
    pub key: Option<String>,
    pub title: String,
    pub format: String,
    pub revision_number: i32,
    /// System documents (the continuation summary) are hidden unless asked for.
    pub is_system: bool,
    pub body_chars: i32,
    pub updated_at: Time,
}

#[derive(Serialize, JsonSchema)]
pub struct IssueDetail {
    #[serde(flatten)]
    pub summary: IssueSummary,
    pub company_id: Uuid,
    pub description: Option<String>,
    pub parent_id: Option<Uuid>,
    pub checkout_run_id: Option<Uuid>,
    pub execution_run_id: Option<Uuid>,
    pub execution_state: Option<Value>,
    pub created_at: Option<Time>,
    pub started_at: Option<Time>,
    pub completed_at: Option<Time>,
    pub cancelled_at: Option<Time>,
    /// Null when the issue has no children.
    pub children: Option<Children>,
}

#[derive(Serialize, JsonSchema)]
pub struct IssueResponse {
    pub position: i64,
    pub issue: IssueDetail,
}

#[derive(Serialize, JsonSchema)]
pub struct DocumentList {
    pub position: i64,
    pub issue_id: Uuid,
    pub documents: Vec<DocumentSummary>,
}

/// A company seen in the read models (companies have no names in the event contract).
#[derive(Serialize, JsonSchema)]
pub struct Company {
    pub company_id: Uuid,
    pub issues: i64,
    pub agents: i64,
    pub live_runs: i64,
}

#[derive(Serialize, JsonSchema)]
pub struct CompanyList {
    pub position: i64,
    pub companies: Vec<Company>,
}

/// An event the projector could not apply, kept whole.
#[derive(Serialize, JsonSchema)]
pub struct DeadLetter {
    pub seq: i64,
    pub subject: String,
    pub reason: String,
    pub at: Time,
    pub payload_bytes: i32,
    /// The first 512 bytes of the payload, as (lossy) UTF-8.
    pub payload_preview: String,
}

#[derive(Serialize, JsonSchema)]
pub struct DeadLetterList {
    pub position: i64,
    /// Dead letters on this company's subjects.
    pub total: i64,
    pub dead_letters: Vec<DeadLetter>,
}

/// Who the presented token is.
#[derive(Serialize, JsonSchema)]
pub struct Session {
    /// `admin`, `company`, or `open` (no tokens configured; loopback only).
    pub role: String,
    pub company_id: Option<Uuid>,
}

/// A dependency check.
#[derive(Serialize, JsonSchema)]
pub struct Probe {
    pub ok: bool,
    /// False when the server was started without it (NATS is optional).
    pub configured: bool,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// Where the projector is.
#[derive(Serialize, JsonSchema)]
pub struct ProjectorHealth {
    pub consumer: String,
    pub position: i64,
    pub events_applied: i64,
    pub dead_letters: i64,
    /// The stream's last sequence (needs NATS).
    pub stream_last_seq: Option<i64>,
    /// Events in the stream not yet projected (needs NATS).
    pub lag: Option<i64>,
    /// How long the oldest event not yet projected has been in the stream, in seconds (needs
    /// NATS; absent without lag).
    pub oldest_unread_age_s: Option<f64>,
    /// The oldest event not yet projected has waited longer than `stall_after_s`.
    pub stalled: bool,
}

/// Where the reconciler is, and its outbox.
#[derive(Serialize, JsonSchema)]
pub struct ReconcilerHealth {
    pub schema: String,
    /// The lowest position of the reconciler's consumers.
    pub position: i64,
    /// Events in the stream the reconciler has not read yet (needs NATS).
    pub lag: Option<i64>,
    /// How long the oldest event the reconciler has not read has been in the stream, in seconds.
    pub oldest_unread_age_s: Option<f64>,
    /// Follow-ups decided and not yet published (held ones included).
    pub outbox_unpublished: i64,
    /// How long the oldest follow-up that may be published (not held for the reconciler to catch
    /// up) has waited, in seconds.
    pub outbox_oldest_age_s: Option<f64>,
    /// The reconciler's oldest unread event or its oldest publishable follow-up waited longer
    /// than `stall_after_s`.
    pub stalled: bool,
}

/// A task of this process whose last attempt failed (only `runledger up` reports its tasks).
#[derive(Serialize, JsonSchema)]
pub struct TaskFailure {
    /// `projector`, `reconciler`, `outbox`, `watchdog` or `api`.
    pub task: String,
    pub error: String,
    /// Seconds since the first failure with no success since.
    pub failing_for_s: f64,
    /// Failures in a row.
    pub failures: u64,
}

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// `ok` (200), `degraded` (200: NATS unreachable, or a task of this process failing and
    /// retrying), `stalled` (503: an event or a follow-up has waited longer than
    /// `stall_after_s`) or `unavailable` (503: PostgreSQL does not answer).
    pub status: String,
    pub postgres: Probe,
    pub nats: Probe,
    pub projector: Option<ProjectorHealth>,
    /// Absent when the reconciler's schema is not in this database.
    pub reconciler: Option<ReconcilerHealth>,
    /// Tasks of this process retrying after a failure, with the last error.
    pub failing: Vec<TaskFailure>,
    /// Past this wait an unread event or an unpublished follow-up counts as a stall.
    pub stall_after_s: f64,
}

/// The `data` of a `ledger` Server-Sent Event: rows of the issue's ledger that changed since the
/// previous event (or since `since`), as of `position`.
#[derive(Serialize, JsonSchema)]
pub struct LedgerChange {
    pub position: i64,
    pub issue_id: Uuid,
    /// Runs in the issue's ledger now.
    pub total: i64,
    /// Changed rows, newest first (at most 200), without `ledger_rank`.
    pub rows: Vec<LedgerRow>,
}

/// The `data` of `ready` and `position` Server-Sent Events.
#[derive(Serialize, JsonSchema)]
pub struct StreamPosition {
    pub position: i64,
    /// For `ready`: changes after this position will be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}
