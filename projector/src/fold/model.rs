//! In-memory rows of the read models. The fold works on these (no I/O); the store loads the
//! rows a batch touches and writes back the ones the fold changed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use uuid::Uuid;

pub type Time = DateTime<Utc>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRow {
    pub agent_id: Uuid,
    pub company_id: Uuid,
    pub name: Option<String>,
    pub role: Option<String>,
    pub adapter_type: Option<String>,
    pub adapter_config: Map<String, Value>,
    pub status: Option<String>,
    pub budget_blocked: bool,
    pub registered_at: Option<Time>,
    pub updated_at: Time,
    pub last_seq: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IssueRow {
    pub issue_id: Uuid,
    pub company_id: Uuid,
    pub identifier: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub assignee_agent_id: Option<Uuid>,
    pub assignee_user_id: Option<String>,
    pub parent_id: Option<Uuid>,
    pub checkout_run_id: Option<Uuid>,
    pub execution_run_id: Option<Uuid>,
    pub execution_state: Option<Value>,
    pub created_at: Option<Time>,
    pub started_at: Option<Time>,
    pub completed_at: Option<Time>,
    pub cancelled_at: Option<Time>,
    pub updated_at: Time,
    pub last_seq: i64,
}

/// Evidence of progress a run produced before it ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(rename = "evidence_comments")]
    pub comments: i32,
    #[serde(rename = "evidence_revisions")]
    pub revisions: i32,
    #[serde(rename = "evidence_plan_revisions")]
    pub plan_revisions: i32,
    #[serde(rename = "evidence_work_products")]
    pub work_products: i32,
    #[serde(rename = "evidence_activity")]
    pub activity: i32,
    #[serde(rename = "evidence_tool_events")]
    pub tool_events: i32,
    #[serde(rename = "evidence_workspace_ops")]
    pub workspace_ops: i32,
    #[serde(rename = "latest_evidence_at")]
    pub latest_at: Option<Time>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: Uuid,
    pub company_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub issue_id: Option<Uuid>,
    pub wakeup_id: Option<Uuid>,
    pub status: Option<String>,
    pub invocation_source: Option<String>,
    pub trigger_detail: Option<String>,
    pub context: Map<String, Value>,
    pub host: Option<String>,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
    pub supervisor_pid: Option<i32>,
    pub process_started_at: Option<i64>,
    pub created_at: Option<Time>,
    pub queued_at: Option<Time>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub last_activity_at: Option<Time>,
    pub activity_count: i32,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub result: Option<Value>,
    pub usage: Option<Value>,
    pub stdout_excerpt: Option<String>,
    pub stderr_excerpt: Option<String>,
    pub stop_reason: Option<String>,
    pub effective_timeout_sec: Option<i32>,
    pub timeout_configured: Option<bool>,
    pub timeout_source: Option<String>,
    pub timeout_fired: Option<bool>,
    pub cancel_requested_at: Option<Time>,
    pub cancel_reason: Option<String>,
    pub detached_at: Option<Time>,
    pub retry_of_run_id: Option<Uuid>,
    pub process_loss_retry_count: i32,
    pub continuation_attempt: i32,
    pub liveness_state: Option<String>,
    pub liveness_reason: Option<String>,
    pub last_useful_action_at: Option<Time>,
    pub next_action: Option<String>,
    #[serde(flatten)]
    pub evidence: Evidence,
    pub issue_status_at_finish: Option<String>,
    pub updated_at: Time,
    pub last_seq: i64,
}

/// Run statuses that never change again.
pub const TERMINAL_RUN_STATUSES: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

impl RunRow {
    pub fn is_terminal(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| TERMINAL_RUN_STATUSES.contains(&s))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WakeupRow {
    pub wakeup_id: Uuid,
    pub company_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub issue_id: Option<Uuid>,
    pub source: Option<String>,
    pub trigger_detail: Option<String>,
    pub reason: Option<String>,
    pub payload: Map<String, Value>,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub requested_by_actor_type: Option<String>,
    pub requested_by_actor_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub requested_at: Option<Time>,
    pub claimed_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub updated_at: Time,
    pub last_seq: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentRow {
    pub document_id: Uuid,
    pub company_id: Uuid,
    pub issue_id: Option<Uuid>,
    pub key: Option<String>,
    pub title: String,
    pub format: String,
    pub latest_body: String,
    pub latest_revision_id: Uuid,
    pub latest_revision_number: i32,
    pub is_system: bool,
    pub created_at: Time,
    pub updated_at: Time,
    pub last_seq: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEventRow {
    pub run_id: Uuid,
    pub seq: i64,
    pub ordinal: i16,
    pub company_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub level: &'static str,
    pub message: String,
    pub payload: Value,
    pub at: Time,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommentRow {
    pub comment_id: Uuid,
    pub company_id: Uuid,
    pub issue_id: Uuid,
    pub body: String,
    pub author_agent_id: Option<Uuid>,
    pub author_user_id: Option<String>,
    pub run_id: Option<Uuid>,
    pub created_at: Time,
    pub seq: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkProductRow {
    pub work_product_id: Uuid,
    pub company_id: Uuid,
    pub issue_id: Uuid,
    pub kind: String,
    pub title: String,
    pub run_id: Option<Uuid>,
    pub created_at: Time,
    pub seq: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RevisionRow {
    pub revision_id: Uuid,
    pub document_id: Uuid,
    pub company_id: Uuid,
    pub issue_id: Option<Uuid>,
    pub key: Option<String>,
    pub revision_number: i32,
    pub title: String,
    pub format: String,
    pub body: String,
    pub change_summary: Option<String>,
    pub created_by_run_id: Option<Uuid>,
    pub created_by_agent_id: Option<Uuid>,
    pub created_at: Time,
    pub seq: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActivityRow {
    pub seq: i64,
    pub company_id: Uuid,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Uuid,
    pub run_id: Option<Uuid>,
    pub details: Value,
    pub at: Time,
}

/// The explanation a reconciler follow-up carries (`decision` extension), by the follow-up's id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionRow {
    pub event_id: Uuid,
    pub seq: i64,
    pub company_id: Uuid,
    pub issue_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub created_run_id: Option<Uuid>,
    pub event_type: String,
    pub rule: String,
    pub cause_id: Uuid,
    pub cause_type: String,
    pub cause_time: Time,
    pub inputs: Value,
    pub sentence: String,
    pub at: Time,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterRow {
    pub seq: i64,
    pub subject: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub at: Time,
}

/// Rows that are only ever inserted (keyed by id or sequence, so a re-insert is a no-op).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Appends {
    pub run_events: Vec<RunEventRow>,
    pub issue_runs: BTreeSet<(Uuid, Uuid, Uuid)>,
    pub comments: Vec<CommentRow>,
    pub work_products: Vec<WorkProductRow>,
    pub revisions: Vec<RevisionRow>,
    pub activity: Vec<ActivityRow>,
    pub decisions: Vec<DecisionRow>,
    pub dead_letters: Vec<DeadLetterRow>,
}

/// The part of the read models one batch works on.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub agents: HashMap<Uuid, AgentRow>,
    pub issues: HashMap<Uuid, IssueRow>,
    /// Boxed: a run's row is large, and rows move between a batch's model and the writer's
    /// cache; a table of boxes grows and moves without copying rows or leaving row-sized
    /// holes in its spare buckets.
    pub runs: HashMap<Uuid, Box<RunRow>>,
    pub wakeups: HashMap<Uuid, WakeupRow>,
    pub documents: HashMap<Uuid, DocumentRow>,
    /// Ids of comments, work products and revisions already stored (a duplicate is ignored).
    pub known_children: BTreeSet<Uuid>,
    /// Runs looked up in the database and not there: a row the fold makes for one is new.
    pub absent_runs: HashSet<Uuid>,
    pub dirty: Dirty,
    pub appends: Appends,
}

/// Which loaded rows the fold changed.
#[derive(Clone, Debug, Default)]
pub struct Dirty {
    pub agents: BTreeSet<Uuid>,
    pub issues: BTreeSet<Uuid>,
    pub runs: BTreeSet<Uuid>,
    pub wakeups: BTreeSet<Uuid>,
    pub documents: BTreeSet<Uuid>,
}
