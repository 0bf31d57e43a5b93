//! Test harness: the shared kit (a fresh database and a unique stream per test) with a projector
//! driven step by step, and builders for realistic events.

use chrono::{DateTime, TimeZone, Utc};
use events::*;
use serde_json::{json, Value};
use testsupport::{Kit, Projectors};
use uuid::Uuid;

pub struct Harness {
    pub kit: Kit,
    pub projector: Projectors,
}

impl std::ops::Deref for Harness {
    type Target = Kit;
    fn deref(&self) -> &Kit {
        &self.kit
    }
}

impl Harness {
    pub async fn new() -> Self {
        let kit = Kit::new().await;
        let projector = kit.projector().await;
        Self { kit, projector }
    }

    /// Steps the projector until its position reaches the stream's last sequence.
    pub async fn drain(&mut self) {
        self.kit.drain(&mut self.projector).await;
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool.get().await.unwrap()
    }

    pub async fn row(&self, sql: &str, id: Uuid) -> tokio_postgres::Row {
        self.client().await.query_one(sql, &[&id]).await.unwrap()
    }

    pub async fn run(&self, run: RunId) -> Value {
        self.row("SELECT to_jsonb(r) FROM runs r WHERE run_id = $1", run.0)
            .await
            .get(0)
    }

    pub async fn issue(&self, issue: IssueId) -> Value {
        self.row(
            "SELECT to_jsonb(i) FROM issues i WHERE issue_id = $1",
            issue.0,
        )
        .await
        .get(0)
    }

    pub async fn wakeup(&self, id: WakeupId) -> Value {
        self.row(
            "SELECT to_jsonb(w) FROM wakeup_requests w WHERE wakeup_id = $1",
            id.0,
        )
        .await
        .get(0)
    }
}

/// Builds events of one company with increasing times.
pub struct World {
    pub company: CompanyId,
    pub agent: AgentId,
    pub issue: IssueId,
    clock: i64,
}

impl World {
    pub fn new() -> Self {
        Self {
            company: CompanyId::new_random(),
            agent: AgentId::new_random(),
            issue: IssueId::new_random(),
            clock: 0,
        }
    }

    pub fn now(&mut self) -> DateTime<Utc> {
        self.clock += 1;
        Utc.with_ymd_and_hms(2026, 3, 19, 0, 0, 0).unwrap() + chrono::Duration::seconds(self.clock)
    }

    pub fn event(&mut self, data: EventData) -> Event {
        let time = self.now();
        Event::new(self.company, "test", time, data)
    }

    pub fn agent(&mut self, adapter_type: &str, config: Value) -> Event {
        self.event(EventData::AgentRegistered(agent::AgentRegistered {
            agent_id: self.agent,
            name: "CodexCoder".into(),
            role: "engineer".into(),
            adapter_type: adapter_type.into(),
            adapter_config: config.as_object().cloned().unwrap_or_default(),
            status: AgentStatus::Idle,
            extra: Default::default(),
        }))
    }

    pub fn issue_created(&mut self, status: IssueStatus) -> Event {
        self.event(EventData::IssueCreated(issue::IssueCreated {
            issue_id: self.issue,
            identifier: "PAP-1".into(),
            title: "Implement feature".into(),
            description: None,
            status,
            priority: Priority::Medium,
            assignee_agent_id: Some(self.agent),
            assignee_user_id: None,
            parent_id: None,
            extra: Default::default(),
        }))
    }

    pub fn wakeup(&mut self, id: WakeupId) -> Event {
        self.event(EventData::WakeupRequested(wakeup::WakeupRequested {
            wakeup_id: id,
            agent_id: self.agent,
            issue_id: Some(self.issue),
            source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            reason: "issue_assigned".into(),
            payload: json!({"issue_id": self.issue})
                .as_object()
                .cloned()
                .unwrap(),
            idempotency_key: None,
            requested_by_actor_type: ActorType::User,
            requested_by_actor_id: Some("user-1".into()),
            extra: Default::default(),
        }))
    }

    pub fn queued(
        &mut self,
        run: RunId,
        wakeup: Option<WakeupId>,
        retry_of: Option<RunId>,
        retry_count: u32,
    ) -> Event {
        self.event(EventData::RunQueued(run::RunQueued {
            run_id: run,
            agent_id: self.agent,
            wakeup_id: wakeup,
            issue_id: Some(self.issue),
            invocation_source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            context: json!({"issue_id": self.issue})
                .as_object()
                .cloned()
                .unwrap(),
            retry_of_run_id: retry_of,
            process_loss_retry_count: retry_count,
            continuation_attempt: 0,
            extra: Default::default(),
        }))
    }

    pub fn started(&mut self, run: RunId, pid: Option<i32>) -> Event {
        self.event(EventData::RunStarted(run::RunStarted {
            run_id: run,
            agent_id: self.agent,
            issue_id: Some(self.issue),
            host: "host-1".into(),
            pid,
            pgid: pid,
            process_started_at: Some(1234),
            supervisor_pid: Some(1),
            extra: Default::default(),
        }))
    }

    pub fn activity(&mut self, run: RunId, kind: ActivityKind) -> Event {
        let at = self.now();
        self.event(EventData::RunActivity(run::RunActivity {
            run_id: run,
            kind,
            message: None,
            at,
            extra: Default::default(),
        }))
    }

    pub fn finished(&mut self, run: RunId, outcome: RunOutcome, error: Option<&str>) -> Event {
        self.event(EventData::RunFinished(run::RunFinished {
            run_id: run,
            outcome,
            exit_code: Some(if outcome == RunOutcome::Succeeded {
                0
            } else {
                1
            }),
            signal: None,
            error: error.map(str::to_owned),
            error_code: None,
            result: json!({"summary": "done"}).as_object().cloned().unwrap(),
            stdout_excerpt: None,
            stderr_excerpt: None,
            usage: None,
            extra: Default::default(),
        }))
    }

    pub fn comment(&mut self, run: Option<RunId>) -> Event {
        self.event(EventData::IssueCommentAdded(issue::IssueCommentAdded {
            comment_id: CommentId::new_random(),
            issue_id: self.issue,
            body: "progress".into(),
            author_agent_id: Some(self.agent),
            author_user_id: None,
            run_id: run,
            extra: Default::default(),
        }))
    }

    pub fn revision(&mut self, key: &str, run: Option<RunId>) -> Event {
        self.event(EventData::DocumentRevised(document::DocumentRevised {
            document_id: DocumentId::new_random(),
            issue_id: Some(self.issue),
            key: Some(key.into()),
            revision_id: RevisionId::new_random(),
            revision_number: 1,
            title: key.into(),
            format: "markdown".into(),
            body: "# body".into(),
            change_summary: None,
            run_id: run,
            agent_id: Some(self.agent),
            extra: Default::default(),
        }))
    }

    pub fn detached(&mut self, run: RunId, pid: i32) -> Event {
        self.event(EventData::RunProcessDetached(run::RunProcessDetached {
            run_id: run,
            pid,
            host: "host-1".into(),
            extra: Default::default(),
        }))
    }

    pub fn lost(&mut self, run: RunId, pid: Option<i32>) -> Event {
        self.event(EventData::RunProcessLost(run::RunProcessLost {
            run_id: run,
            pid,
            pgid: pid,
            descendant_group_terminated: false,
            message: format!(
                "Process lost -- child pid {} is no longer running",
                pid.unwrap_or(0)
            ),
            extra: Default::default(),
        }))
    }
}
