//! Wakeup requests: the ask to wake an agent, which a run may then serve.

use crate::ids::{AgentId, IssueId, WakeupId};
use crate::vocab::{ActorType, InvocationSource, TriggerDetail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `wakeup.requested`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WakeupRequested {
    pub wakeup_id: WakeupId,
    pub agent_id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_id: Option<IssueId>,
    pub source: InvocationSource,
    pub trigger_detail: TriggerDetail,
    /// e.g. `issue_assigned`, `process_lost_retry`, `run_liveness_continuation`.
    pub reason: String,
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// Requests with the same key are one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub requested_by_actor_type: ActorType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by_actor_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
