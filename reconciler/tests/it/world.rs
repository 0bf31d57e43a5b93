//! Event builders for the scenarios: one company, agent and issue per scenario, explicit event
//! times (storm control and silence timeouts are judged by event time), and the catalogue's
//! defaults (agent `codex_local`, issue `in_progress` "Implement feature", runs with a pid).

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use events::document::DocumentRevised;
use events::issue::{IssueCommentAdded, IssueCreated, IssueUpdated, IssueWorkProductAdded};
use events::run::*;
use events::wakeup::WakeupRequested;
use events::*;
use serde_json::{json, Map, Value};
use std::time::Duration;

pub const PLAN_SENTENCE: &str = "I will inspect the repo next and then implement the fix.";
pub const TICK: Duration = Duration::from_secs(30);

pub fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// One scenario's entities and clock.
pub struct World {
    pub company: CompanyId,
    pub agent: AgentId,
    pub issue: IssueId,
    clock: DateTime<Utc>,
}

impl World {
    pub fn new() -> Self {
        Self {
            company: CompanyId::new_random(),
            agent: AgentId::new_random(),
            issue: IssueId::new_random(),
            clock: Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 0).unwrap(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock
    }

    /// Moves the clock forward (between phases: runs take minutes).
    pub fn advance(&mut self, by: TimeDelta) {
        self.clock += by;
    }

    /// An event one second after the previous one.
    pub fn event(&mut self, data: EventData) -> Event {
        self.clock += TimeDelta::seconds(1);
        Event::new(self.company, "scenario", self.clock, data)
    }

    /// The reconciler tick of the current slot.
    pub fn tick(&mut self) -> Event {
        self.clock += TimeDelta::seconds(1);
        ::reconciler::tick::tick(TICK, ::reconciler::tick::slot_of(self.clock, TICK))
    }

    pub fn agent(&mut self, adapter: &str) -> Event {
        let agent = self.agent;
        self.event(EventData::AgentRegistered(agent::AgentRegistered {
            agent_id: agent,
            name: "CodexCoder".into(),
            role: "engineer".into(),
            adapter_type: adapter.into(),
            adapter_config: Map::new(),
            status: AgentStatus::Idle,
            extra: Map::new(),
        }))
    }

    pub fn agent_status(&mut self, status: AgentStatus, budget_blocked: bool) -> Event {
        let agent = self.agent;
        self.event(EventData::AgentStatusChanged(agent::AgentStatusChanged {
            agent_id: agent,
            status,
            budget_blocked: Some(budget_blocked),
            extra: Map::new(),
        }))
    }

    pub fn issue_with(
        &mut self,
        status: IssueStatus,
        title: &str,
        description: Option<&str>,
        user: Option<&str>,
    ) -> Event {
        let (issue, agent) = (self.issue, self.agent);
        self.event(EventData::IssueCreated(IssueCreated {
            issue_id: issue,
            identifier: "PAP-12".into(),
            title: title.into(),
            description: description.map(str::to_owned),
            status,
            priority: Priority::High,
            assignee_agent_id: user.is_none().then_some(agent),
            assignee_user_id: user.map(str::to_owned),
            parent_id: None,
            extra: Map::new(),
        }))
    }

    /// A comment on the issue by a person.
    pub fn person_comments(&mut self) -> Event {
        let issue = self.issue;
        self.event(EventData::IssueCommentAdded(IssueCommentAdded {
            comment_id: CommentId::new_random(),
            issue_id: issue,
            body: "Looking at this myself now.".into(),
            author_agent_id: None,
            author_user_id: Some("user-1".into()),
            run_id: None,
            extra: Map::new(),
        }))
    }

    pub fn issue(&mut self, status: IssueStatus) -> Event {
        self.issue_with(status, "Implement feature", None, None)
    }

    pub fn update(&mut self, change: impl FnOnce(&mut IssueUpdated)) -> Event {
        let mut update = IssueUpdated::default_for(self.issue);
        change(&mut update);
        self.event(EventData::IssueUpdated(update))
    }

    pub fn wakeup_with_key(&mut self, key: &str) -> Event {
        let (issue, agent) = (self.issue, self.agent);
        self.event(EventData::WakeupRequested(WakeupRequested {
            wakeup_id: WakeupId::new_random(),
            agent_id: agent,
            issue_id: Some(issue),
            source: InvocationSource::OnDemand,
            trigger_detail: TriggerDetail::Manual,
            reason: "manual".into(),
            payload: Map::new(),
            idempotency_key: Some(key.into()),
            requested_by_actor_type: ActorType::User,
            requested_by_actor_id: Some("user-1".into()),
            extra: Map::new(),
        }))
    }

    /// `run.queued` with the catalogue's context; `retry_count` / `attempt` as given.
    pub fn queued(&mut self, run: RunId, retry_count: u32, attempt: u32) -> Event {
        let (issue, agent) = (self.issue, self.agent);
        self.event(EventData::RunQueued(RunQueued {
            run_id: run,
            agent_id: agent,
            wakeup_id: None,
            issue_id: Some(issue),
            invocation_source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            context: object(json!({"issue_id": issue, "wake_reason": "issue_assigned"})),
            retry_of_run_id: None,
            process_loss_retry_count: retry_count,
            continuation_attempt: attempt,
            extra: Map::new(),
        }))
    }

    pub fn started(&mut self, run: RunId) -> Event {
        let (issue, agent) = (self.issue, self.agent);
        self.event(EventData::RunStarted(RunStarted {
            run_id: run,
            agent_id: agent,
            issue_id: Some(issue),
            host: "host-1".into(),
            pid: Some(4242),
            pgid: Some(4242),
            process_started_at: Some(77),
            supervisor_pid: Some(4200),
            extra: Map::new(),
        }))
    }

    /// `run.queued` + `run.started` of an ordinary run.
    pub fn start(&mut self, run: RunId) -> Vec<Event> {
        vec![self.queued(run, 0, 0), self.started(run)]
    }

    pub fn activity(&mut self, run: RunId, kind: ActivityKind) -> Event {
        let at = self.clock + TimeDelta::seconds(1);
        self.event(EventData::RunActivity(RunActivity {
            run_id: run,
            kind,
            message: Some(format!("{kind} of {run}")),
            at,
            extra: Map::new(),
        }))
    }

    pub fn comment(&mut self, run: RunId) -> Event {
        let (issue, agent) = (self.issue, self.agent);
        self.event(EventData::IssueCommentAdded(IssueCommentAdded {
            comment_id: CommentId::new_random(),
            issue_id: issue,
            body: "Implemented the query.".into(),
            author_agent_id: Some(agent),
            author_user_id: None,
            run_id: Some(run),
            extra: Map::new(),
        }))
    }

    pub fn work_product(&mut self, run: RunId) -> Event {
        let issue = self.issue;
        self.event(EventData::IssueWorkProductAdded(IssueWorkProductAdded {
            work_product_id: WorkProductId::new_random(),
            issue_id: issue,
            kind: "pull_request".into(),
            title: "Add the query".into(),
            run_id: Some(run),
            extra: Map::new(),
        }))
    }

    pub fn revision(&mut self, key: &str, run: RunId) -> Event {
        let (issue, agent) = (self.issue, self.agent);
        self.event(EventData::DocumentRevised(DocumentRevised {
            document_id: DocumentId(uuid::Uuid::new_v5(&issue.0, key.as_bytes())),
            issue_id: Some(issue),
            key: Some(key.into()),
            revision_id: RevisionId::new_random(),
            revision_number: 1,
            title: key.into(),
            format: "markdown".into(),
            body: "# Plan\n- inspect files".into(),
            change_summary: None,
            run_id: Some(run),
            agent_id: Some(agent),
            extra: Map::new(),
        }))
    }

    pub fn finish(
        &mut self,
        run: RunId,
        outcome: RunOutcome,
        result: Value,
        error: Option<(&str, &str)>,
    ) -> Event {
        self.event(EventData::RunFinished(RunFinished {
            run_id: run,
            outcome,
            exit_code: Some(i32::from(outcome != RunOutcome::Succeeded)),
            signal: None,
            error: error.map(|e| e.1.to_owned()),
            error_code: error.map(|e| e.0.to_owned()),
            result: object(result),
            stdout_excerpt: None,
            stderr_excerpt: None,
            usage: None,
            extra: Map::new(),
        }))
    }

    /// A succeeded run whose summary is `text` ("" for no output at all).
    pub fn says(&mut self, run: RunId, text: &str) -> Event {
        let result = if text.is_empty() {
            json!({})
        } else {
            json!({ "summary": text })
        };
        self.finish(run, RunOutcome::Succeeded, result, None)
    }

    pub fn lost(&mut self, run: RunId) -> Event {
        self.event(EventData::RunProcessLost(RunProcessLost {
            run_id: run,
            pid: Some(999_999_999),
            pgid: None,
            descendant_group_terminated: false,
            message: "Process lost -- child pid 999999999 is no longer running".into(),
            extra: Map::new(),
        }))
    }

    pub fn detached(&mut self, run: RunId) -> Event {
        self.event(EventData::RunProcessDetached(RunProcessDetached {
            run_id: run,
            pid: 4242,
            host: "host-1".into(),
            extra: Map::new(),
        }))
    }
}

/// The run a follow-up `run.queued` queues (its id is derived, so scenarios find it here).
pub fn queued_run(follow_ups: &[Event]) -> RunId {
    follow_ups
        .iter()
        .rev()
        .find_map(|e| match &e.data {
            EventData::RunQueued(q) => Some(q.run_id),
            _ => None,
        })
        .expect("a run was queued")
}
