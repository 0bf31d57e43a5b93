//! Run payloads: the lifecycle of one heartbeat run, from queue to liveness classification. Run
//! events come from different producers (supervisor, watchdog, agent, reconciler) and may arrive
//! in any order; the projector's fold is written to converge regardless.

use crate::ids::{AgentId, IssueId, RunId, WakeupId};
use crate::vocab::{ActivityKind, InvocationSource, LivenessState, RunOutcome, TriggerDetail};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `run.queued`: a run was created for an agent (possibly serving a wakeup).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunQueued {
    pub run_id: RunId,
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wakeup_id: Option<WakeupId>,
    /// The issue the run works on; links the run into that issue's ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_id: Option<IssueId>,
    pub invocation_source: InvocationSource,
    pub trigger_detail: TriggerDetail,
    /// Context snapshot, e.g. `wake_reason`, `retry_reason`, `retry_of_run_id`, `source`.
    #[serde(default)]
    pub context: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of_run_id: Option<RunId>,
    #[serde(default)]
    pub process_loss_retry_count: u32,
    #[serde(default)]
    pub continuation_attempt: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.started`: the agent process is running. Carries what the watchdog needs to tell the
/// original process from a reused pid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    pub run_id: RunId,
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_id: Option<IssueId>,
    /// Host id (`RUNLEDGER_HOST_ID`, default the hostname) of the machine running the process.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`): the
    /// pid-reuse guard. A process with the same pid but another start time is not this run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_pid: Option<i32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.activity`: something the run did. Only `tool_call` and `action` are progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunActivity {
    pub run_id: RunId,
    pub kind: ActivityKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it happened (may precede the envelope `time`, which is when it was published).
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.process_detached`: the supervisor is gone but the agent process is alive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunProcessDetached {
    pub run_id: RunId,
    pub pid: i32,
    pub host: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.process_lost`: the agent process is gone while the run was still running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunProcessLost {
    pub run_id: RunId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    /// Whether descendants in the process group were still alive and were terminated.
    #[serde(default)]
    pub descendant_group_terminated: bool,
    /// e.g. "Process lost -- child pid 4242 is no longer running".
    pub message: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.cancel_requested`: somebody asked to stop the run; its supervisor (or the watchdog)
/// terminates it and publishes `run.finished` with outcome `cancelled`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCancelRequested {
    pub run_id: RunId,
    /// e.g. "Cancelled by control plane", "Cancelled due to budget pause".
    pub reason: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.finished`: the run ended. Stop metadata is derived from this by the projector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFinished {
    pub run_id: RunId,
    pub outcome: RunOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal name, e.g. `SIGKILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Adapter result; `summary`, `result`, `message`, `stdout` and `stderr` are read as output.
    #[serde(default)]
    pub result: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_excerpt: Option<String>,
    /// Token usage and cost as the adapter reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `run.liveness_classified`: the reconciler's verdict on what a finished run achieved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunLivenessClassified {
    pub run_id: RunId,
    pub state: LivenessState,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_useful_action_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub continuation_attempt: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
