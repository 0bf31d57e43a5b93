//! Document revisions. Issue documents are addressed by key; `plan` is the plan document and
//! `continuation-summary` is the system handoff document, which never counts as evidence.

use crate::ids::{AgentId, DocumentId, IssueId, RevisionId, RunId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key of the plan document; its revisions also exempt a planning run from `plan_only`.
pub const PLAN_KEY: &str = "plan";
/// The key of the system continuation-summary document.
pub const CONTINUATION_SUMMARY_KEY: &str = "continuation-summary";

/// `document.revised`: a new revision of a document (the first one creates it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocumentRevised {
    pub document_id: DocumentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_id: Option<IssueId>,
    /// Issue document key: lowercase letters, digits, `_` and `-`, 1 to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub revision_id: RevisionId,
    /// 1 for the first revision.
    pub revision_number: u32,
    pub title: String,
    /// e.g. `markdown`.
    pub format: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Whether `key` is a valid issue document key.
pub fn is_valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
