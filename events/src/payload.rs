//! `EventData`: the typed `data` of every event type, with the rules serde cannot express.

use crate::agent::{AgentRegistered, AgentStatusChanged};
use crate::document::{is_valid_key, DocumentRevised};
use crate::error::ContractError;
use crate::event_type::EventType;
use crate::ids::RunId;
use crate::issue::{
    IssueCommentAdded, IssueCreated, IssueFollowUpDeferralClosed, IssueFollowUpDeferred,
    IssueFollowUpRefused, IssueUpdated, IssueWorkProductAdded,
};
use crate::run::*;
use crate::tick::ReconcilerTicked;
use crate::wakeup::WakeupRequested;
use serde::de::DeserializeSeed;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The typed payload of an event; the variant is the CloudEvents `type`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    AgentRegistered(AgentRegistered),
    AgentStatusChanged(AgentStatusChanged),
    IssueCreated(IssueCreated),
    IssueUpdated(IssueUpdated),
    IssueCommentAdded(IssueCommentAdded),
    IssueWorkProductAdded(IssueWorkProductAdded),
    DocumentRevised(DocumentRevised),
    WakeupRequested(WakeupRequested),
    RunQueued(RunQueued),
    RunStarted(RunStarted),
    RunActivity(RunActivity),
    RunProcessDetached(RunProcessDetached),
    RunProcessLost(RunProcessLost),
    RunCancelRequested(RunCancelRequested),
    RunFinished(RunFinished),
    RunLivenessClassified(RunLivenessClassified),
    IssueFollowUpRefused(IssueFollowUpRefused),
    IssueFollowUpDeferred(IssueFollowUpDeferred),
    IssueFollowUpDeferralClosed(IssueFollowUpDeferralClosed),
    ReconcilerTicked(ReconcilerTicked),
}

fn typed<T: serde::de::DeserializeOwned>(
    event_type: EventType,
    data: Value,
) -> Result<T, ContractError> {
    serde_path_to_error::deserialize(data).map_err(|err| {
        let path = err.path().to_string();
        // serde reports a missing field at its parent (`.`); name the field itself instead.
        let inner = err.into_inner().to_string();
        let path = match (path.as_str(), missing_field(&inner)) {
            (".", Some(field)) => field.to_owned(),
            (parent, Some(field)) => format!("{parent}.{field}"),
            (".", None) => String::new(),
            (p, None) => p.to_owned(),
        };
        ContractError::data(event_type.as_str(), &path, inner)
    })
}

/// Deserializes current-version `data` of a known type straight into that type (fast path: the
/// envelope's own pass when `type` came before `data`, or the raw text of `data` after it).
pub(crate) struct DataSeed(pub EventType);

impl<'de> serde::de::DeserializeSeed<'de> for DataSeed {
    type Value = EventData;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<EventData, D::Error> {
        fn t<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<T, D::Error> {
            T::deserialize(d)
        }
        use EventData as E;
        use EventType as T;
        Ok(match self.0 {
            T::AgentRegistered => E::AgentRegistered(t(d)?),
            T::AgentStatusChanged => E::AgentStatusChanged(t(d)?),
            T::IssueCreated => E::IssueCreated(t(d)?),
            T::IssueUpdated => E::IssueUpdated(t(d)?),
            T::IssueCommentAdded => E::IssueCommentAdded(t(d)?),
            T::IssueWorkProductAdded => E::IssueWorkProductAdded(t(d)?),
            T::DocumentRevised => E::DocumentRevised(t(d)?),
            T::WakeupRequested => E::WakeupRequested(t(d)?),
            T::RunQueued => E::RunQueued(t(d)?),
            T::RunStarted => E::RunStarted(t(d)?),
            T::RunActivity => E::RunActivity(t(d)?),
            T::RunProcessDetached => E::RunProcessDetached(t(d)?),
            T::RunProcessLost => E::RunProcessLost(t(d)?),
            T::RunCancelRequested => E::RunCancelRequested(t(d)?),
            T::RunFinished => E::RunFinished(t(d)?),
            T::RunLivenessClassified => E::RunLivenessClassified(t(d)?),
            T::IssueFollowUpRefused => E::IssueFollowUpRefused(t(d)?),
            T::IssueFollowUpDeferred => E::IssueFollowUpDeferred(t(d)?),
            T::IssueFollowUpDeferralClosed => E::IssueFollowUpDeferralClosed(t(d)?),
            T::ReconcilerTicked => E::ReconcilerTicked(t(d)?),
        })
    }
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

impl EventData {
    /// Parses `data` of the given type (already upcast to its current version) and checks it.
    pub fn from_value(event_type: EventType, data: Value) -> Result<Self, ContractError> {
        if !data.is_object() {
            return Err(ContractError::data(
                event_type.as_str(),
                "",
                "`data` must be a JSON object",
            ));
        }
        use EventType as T;
        let parsed = match event_type {
            T::AgentRegistered => Self::AgentRegistered(typed(event_type, data)?),
            T::AgentStatusChanged => Self::AgentStatusChanged(typed(event_type, data)?),
            T::IssueCreated => Self::IssueCreated(typed(event_type, data)?),
            T::IssueUpdated => Self::IssueUpdated(typed(event_type, data)?),
            T::IssueCommentAdded => Self::IssueCommentAdded(typed(event_type, data)?),
            T::IssueWorkProductAdded => Self::IssueWorkProductAdded(typed(event_type, data)?),
            T::DocumentRevised => Self::DocumentRevised(typed(event_type, data)?),
            T::WakeupRequested => Self::WakeupRequested(typed(event_type, data)?),
            T::RunQueued => Self::RunQueued(typed(event_type, data)?),
            T::RunStarted => Self::RunStarted(typed(event_type, data)?),
            T::RunActivity => Self::RunActivity(typed(event_type, data)?),
            T::RunProcessDetached => Self::RunProcessDetached(typed(event_type, data)?),
            T::RunProcessLost => Self::RunProcessLost(typed(event_type, data)?),
            T::RunCancelRequested => Self::RunCancelRequested(typed(event_type, data)?),
            T::RunFinished => Self::RunFinished(typed(event_type, data)?),
            T::RunLivenessClassified => Self::RunLivenessClassified(typed(event_type, data)?),
            T::IssueFollowUpRefused => Self::IssueFollowUpRefused(typed(event_type, data)?),
            T::IssueFollowUpDeferred => Self::IssueFollowUpDeferred(typed(event_type, data)?),
            T::IssueFollowUpDeferralClosed => {
                Self::IssueFollowUpDeferralClosed(typed(event_type, data)?)
            }
            T::ReconcilerTicked => Self::ReconcilerTicked(typed(event_type, data)?),
        };
        parsed.validate()?;
        Ok(parsed)
    }

    /// Fast path: parses current-version `data` straight from its JSON text. `None` on any
    /// problem, so the caller can take the slow path that explains it precisely.
    pub(crate) fn from_json_text(event_type: EventType, text: &str) -> Option<Self> {
        let mut json = serde_json::Deserializer::from_str(text);
        let parsed = DataSeed(event_type).deserialize(&mut json).ok()?;
        json.end().ok()?;
        parsed.validate().ok()?;
        Some(parsed)
    }

    /// The CloudEvents `type` of this payload.
    pub fn event_type(&self) -> EventType {
        use EventData as D;
        use EventType as T;
        match self {
            D::AgentRegistered(_) => T::AgentRegistered,
            D::AgentStatusChanged(_) => T::AgentStatusChanged,
            D::IssueCreated(_) => T::IssueCreated,
            D::IssueUpdated(_) => T::IssueUpdated,
            D::IssueCommentAdded(_) => T::IssueCommentAdded,
            D::IssueWorkProductAdded(_) => T::IssueWorkProductAdded,
            D::DocumentRevised(_) => T::DocumentRevised,
            D::WakeupRequested(_) => T::WakeupRequested,
            D::RunQueued(_) => T::RunQueued,
            D::RunStarted(_) => T::RunStarted,
            D::RunActivity(_) => T::RunActivity,
            D::RunProcessDetached(_) => T::RunProcessDetached,
            D::RunProcessLost(_) => T::RunProcessLost,
            D::RunCancelRequested(_) => T::RunCancelRequested,
            D::RunFinished(_) => T::RunFinished,
            D::RunLivenessClassified(_) => T::RunLivenessClassified,
            D::IssueFollowUpRefused(_) => T::IssueFollowUpRefused,
            D::IssueFollowUpDeferred(_) => T::IssueFollowUpDeferred,
            D::IssueFollowUpDeferralClosed(_) => T::IssueFollowUpDeferralClosed,
            D::ReconcilerTicked(_) => T::ReconcilerTicked,
        }
    }

    /// The id of the entity the subject names.
    pub fn entity_id(&self) -> Uuid {
        use EventData as D;
        match self {
            D::AgentRegistered(d) => d.agent_id.0,
            D::AgentStatusChanged(d) => d.agent_id.0,
            D::IssueCreated(d) => d.issue_id.0,
            D::IssueUpdated(d) => d.issue_id.0,
            D::IssueCommentAdded(d) => d.issue_id.0,
            D::IssueWorkProductAdded(d) => d.issue_id.0,
            D::DocumentRevised(d) => d.document_id.0,
            D::WakeupRequested(d) => d.wakeup_id.0,
            D::RunQueued(d) => d.run_id.0,
            D::RunStarted(d) => d.run_id.0,
            D::RunActivity(d) => d.run_id.0,
            D::RunProcessDetached(d) => d.run_id.0,
            D::RunProcessLost(d) => d.run_id.0,
            D::RunCancelRequested(d) => d.run_id.0,
            D::RunFinished(d) => d.run_id.0,
            D::RunLivenessClassified(d) => d.run_id.0,
            D::IssueFollowUpRefused(d) => d.issue_id.0,
            D::IssueFollowUpDeferred(d) => d.issue_id.0,
            D::IssueFollowUpDeferralClosed(d) => d.issue_id.0,
            D::ReconcilerTicked(d) => d.tick_id.0,
        }
    }

    /// The run this event is about or was made by, if any: evidence and liveness proof for it.
    pub fn run_id(&self) -> Option<RunId> {
        use EventData as D;
        match self {
            D::AgentRegistered(_) | D::AgentStatusChanged(_) | D::IssueCreated(_) => None,
            D::WakeupRequested(_) => None,
            D::IssueUpdated(d) => d.run_id,
            D::IssueCommentAdded(d) => d.run_id,
            D::IssueWorkProductAdded(d) => d.run_id,
            D::DocumentRevised(d) => d.run_id,
            D::RunQueued(d) => Some(d.run_id),
            D::RunStarted(d) => Some(d.run_id),
            D::RunActivity(d) => Some(d.run_id),
            D::RunProcessDetached(d) => Some(d.run_id),
            D::RunProcessLost(d) => Some(d.run_id),
            D::RunCancelRequested(d) => Some(d.run_id),
            D::RunFinished(d) => Some(d.run_id),
            D::RunLivenessClassified(d) => Some(d.run_id),
            D::IssueFollowUpRefused(d) => d.run_id,
            D::IssueFollowUpDeferred(d) => d.run_id,
            D::IssueFollowUpDeferralClosed(d) => d.run_id,
            D::ReconcilerTicked(_) => None,
        }
    }

    /// Rules beyond the JSON shape.
    pub(crate) fn validate(&self) -> Result<(), ContractError> {
        let t = self.event_type().as_str();
        let non_empty = |path: &str, value: &str| {
            if value.trim().is_empty() {
                Err(ContractError::data(t, path, "must not be empty"))
            } else {
                Ok(())
            }
        };
        let pid = |path: &str, value: Option<i32>| match value {
            Some(p) if p <= 0 => Err(ContractError::data(
                t,
                path,
                format!("must be a positive process id, got {p}"),
            )),
            _ => Ok(()),
        };
        use EventData as D;
        match self {
            D::AgentRegistered(d) => {
                non_empty("name", &d.name)?;
                non_empty("role", &d.role)?;
                non_empty("adapter_type", &d.adapter_type)?;
            }
            D::AgentStatusChanged(_) => {}
            D::IssueCreated(d) => {
                non_empty("identifier", &d.identifier)?;
                non_empty("title", &d.title)?;
                if d.assignee_agent_id.is_some() && d.assignee_user_id.is_some() {
                    return Err(ContractError::data(
                        t,
                        "assignee_user_id",
                        "an issue is assigned to an agent or a user, not both",
                    ));
                }
            }
            D::IssueUpdated(d) => {
                if let Some(title) = &d.title {
                    non_empty("title", title)?;
                }
                let changes_something = d.status.is_some()
                    || d.title.is_some()
                    || d.description.is_some()
                    || d.priority.is_some()
                    || d.assignee_agent_id.is_some()
                    || d.assignee_user_id.is_some()
                    || d.checkout_run_id.is_some()
                    || d.execution_state.is_some();
                if !changes_something {
                    return Err(ContractError::data(
                        t,
                        "",
                        "changes nothing: give at least one of status, title, description, \
                         priority, assignee_agent_id, assignee_user_id, checkout_run_id, \
                         execution_state",
                    ));
                }
                if let (Some(Some(_)), Some(Some(_))) = (&d.assignee_agent_id, &d.assignee_user_id)
                {
                    return Err(ContractError::data(
                        t,
                        "assignee_user_id",
                        "an issue is assigned to an agent or a user, not both",
                    ));
                }
            }
            D::IssueCommentAdded(d) => {
                non_empty("body", &d.body)?;
                if d.author_agent_id.is_some() && d.author_user_id.is_some() {
                    return Err(ContractError::data(
                        t,
                        "author_user_id",
                        "a comment has one author: an agent, a user, or none (system)",
                    ));
                }
            }
            D::IssueWorkProductAdded(d) => {
                non_empty("kind", &d.kind)?;
                non_empty("title", &d.title)?;
            }
            D::DocumentRevised(d) => {
                if let Some(key) = &d.key {
                    if !is_valid_key(key) {
                        return Err(ContractError::data(
                            t,
                            "key",
                            format!(
                                "`{key}` is not a document key: 1 to 64 lowercase letters, \
                                 digits, `_` or `-`"
                            ),
                        ));
                    }
                    if d.issue_id.is_none() {
                        return Err(ContractError::data(
                            t,
                            "issue_id",
                            "a keyed document belongs to an issue: give `issue_id` with `key`",
                        ));
                    }
                }
                if d.revision_number == 0 {
                    return Err(ContractError::data(t, "revision_number", "starts at 1"));
                }
                non_empty("title", &d.title)?;
                non_empty("format", &d.format)?;
            }
            D::WakeupRequested(d) => non_empty("reason", &d.reason)?,
            D::RunQueued(_) => {}
            D::RunStarted(d) => {
                non_empty("host", &d.host)?;
                pid("pid", d.pid)?;
                pid("pgid", d.pgid)?;
                pid("supervisor_pid", d.supervisor_pid)?;
            }
            D::RunActivity(_) => {}
            D::RunProcessDetached(d) => {
                pid("pid", Some(d.pid))?;
                non_empty("host", &d.host)?;
            }
            D::RunProcessLost(d) => {
                pid("pid", d.pid)?;
                pid("pgid", d.pgid)?;
                non_empty("message", &d.message)?;
            }
            D::RunCancelRequested(d) => non_empty("reason", &d.reason)?,
            D::RunFinished(_) => {}
            D::RunLivenessClassified(d) => non_empty("reason", &d.reason)?,
            D::IssueFollowUpRefused(d) => {
                non_empty("follow_up", &d.follow_up)?;
                non_empty("reason", &d.reason)?;
            }
            D::IssueFollowUpDeferred(d) => {
                non_empty("rule", &d.rule)?;
                non_empty("follow_up", &d.follow_up)?;
                non_empty("reason", &d.reason)?;
                if d.wakeup.issue_id != Some(d.issue_id) || d.run.issue_id != Some(d.issue_id) {
                    return Err(ContractError::data(
                        t,
                        "issue_id",
                        "the deferred wakeup and run belong to the deferral's issue",
                    ));
                }
                if d.run.wakeup_id != Some(d.wakeup.wakeup_id) {
                    return Err(ContractError::data(
                        t,
                        "run.wakeup_id",
                        "the deferred run serves the deferred wakeup",
                    ));
                }
            }
            D::IssueFollowUpDeferralClosed(d) => {
                non_empty("follow_up", &d.follow_up)?;
                non_empty("reason", &d.reason)?;
            }
            D::ReconcilerTicked(_) => {}
        }
        Ok(())
    }
}
