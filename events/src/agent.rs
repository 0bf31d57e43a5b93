//! Agent payloads: registration (which carries the adapter config the stop metadata reads) and
//! status changes (which gate invocation and continuations).

use crate::ids::AgentId;
use crate::vocab::AgentStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `agent.registered`: an agent exists, or its definition changed (re-registration replaces it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistered {
    pub agent_id: AgentId,
    pub name: String,
    pub role: String,
    /// e.g. `codex_local`, `claude_local`, `process`, `http`, `openclaw_gateway`.
    pub adapter_type: String,
    /// Adapter settings; `timeout_sec` (and `timeout_ms` for `http`) set the run timeout.
    #[serde(default)]
    pub adapter_config: Map<String, Value>,
    pub status: AgentStatus,
    /// Fields this version does not know are kept, not dropped.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `agent.status_changed`: pause, resume, terminate, or a budget hard stop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentStatusChanged {
    pub agent_id: AgentId,
    pub status: AgentStatus,
    /// `true` when the orchestrator hard-stopped the agent for budget; absent = unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_blocked: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
