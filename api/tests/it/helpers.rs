//! Test harness: a fresh database and a unique stream per test, the projector (stepped, or running
//! as a task for live tests), the read API on a free loopback port, and builders for realistic
//! events of one company.

use api::{ApiSettings, ApiState, Tokens};
use chrono::{DateTime, TimeZone, Utc};
use events::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use testsupport::{Kit, Projectors};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "admin-token-0123456789abcdef";

/// How the projector runs in a test.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Driven by [`Harness::drain`].
    Stepped,
    /// A task, as in `runledger up`.
    Live,
}

pub struct Harness {
    pub kit: Kit,
    projector: Option<Projectors>,
    projector_task: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    pub base: String,
    pub http: reqwest::Client,
    pub registry: std::sync::Arc<api::Registry>,
}

/// A response: status, JSON body (Null when not JSON) and the position header.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub position: Option<i64>,
    pub headers: reqwest::header::HeaderMap,
}

impl std::ops::Deref for Harness {
    type Target = Kit;
    fn deref(&self) -> &Kit {
        &self.kit
    }
}

impl Harness {
    /// With the given tokens (`Tokens::default()` = open, loopback only).
    pub async fn new(projection: Projection, tokens: Tokens) -> Self {
        Self::with_settings(projection, tokens, |_| {}).await
    }

    /// With settings adjusted by `configure`.
    pub async fn with_settings(
        projection: Projection,
        tokens: Tokens,
        configure: impl FnOnce(&mut ApiSettings),
    ) -> Self {
        let kit = Kit::new().await;
        let (stop, stop_rx) = watch::channel(false);
        let projector = kit.projector().await;
        let (projector, projector_task) = match projection {
            Projection::Stepped => (Some(projector), None),
            Projection::Live => {
                let rx = stop_rx.clone();
                let task = tokio::spawn(async move {
                    projector.run(rx).await.expect("projector runs");
                });
                (None, Some(task))
            }
        };
        let mut settings = ApiSettings::new(tokens, &kit.ts.stream);
        settings.poll_interval = Duration::from_millis(100);
        settings.min_seq_wait = Duration::from_secs(10);
        settings.subjects = kit.subjects.clone();
        configure(&mut settings);
        let mut state = ApiState::new(kit.pool.clone(), Some(kit.ts.client.clone()), settings);
        state.listen = Some(kit.db.url().parse().unwrap());
        let registry = state.metrics.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            api::serve(listener, state, stop_rx)
                .await
                .expect("API serves");
        });
        Self {
            kit,
            projector,
            projector_task,
            stop,
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            registry,
        }
    }

    /// Publishes events; returns the stream sequence of the last one.
    pub async fn publish(&self, events: &[Event]) -> i64 {
        self.kit.publish(events).await as i64
    }

    /// Publishes raw bytes on a subject (bad input).
    pub async fn publish_raw(&self, subject: &str, payload: &[u8]) -> i64 {
        self.kit.publish_raw(subject, payload).await as i64
    }

    /// Steps the (stepped) projector until it has applied everything published.
    pub async fn drain(&mut self) {
        let projector = self.projector.as_mut().expect("a stepped projector");
        self.kit.drain(projector).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let position = headers
            .get("x-runledger-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            position,
            headers,
        }
    }

    /// GET as admin, expecting 200.
    pub async fn ok(&self, path: &str) -> Value {
        let reply = self.get(path, Some(ADMIN)).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.body
    }

    /// Stops the server and the projector task.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the server stops on shutdown (SSE streams included)")
                .unwrap();
        }
        if let Some(task) = self.projector_task.take() {
            let _ = task.await;
        }
    }
}

/// Admin plus one token for each given company.
pub fn tokens(companies: &[(CompanyId, &str)]) -> Tokens {
    let mut tokens = Tokens::admin(ADMIN).unwrap();
    for (company, token) in companies {
        tokens = tokens.with_company(company.0, token).unwrap();
    }
    tokens
}

/// Builds events of one company with increasing times (one minute apart).
pub struct World {
    pub company: CompanyId,
    pub agent: AgentId,
    pub issue: IssueId,
    clock: i64,
}

pub fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
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
        Utc.with_ymd_and_hms(2026, 3, 19, 9, 0, 0).unwrap() + chrono::Duration::minutes(self.clock)
    }

    pub fn event(&mut self, data: EventData) -> Event {
        let time = self.now();
        Event::new(self.company, "api-test", time, data)
    }

    pub fn agent(&mut self, name: &str, adapter_type: &str, config: Value) -> Event {
        let agent_id = self.agent;
        self.event(EventData::AgentRegistered(agent::AgentRegistered {
            agent_id,
            name: name.into(),
            role: "engineer".into(),
            adapter_type: adapter_type.into(),
            adapter_config: obj(config),
            status: AgentStatus::Idle,
            extra: Default::default(),
        }))
    }

    pub fn issue_created(
        &mut self,
        issue: IssueId,
        identifier: &str,
        title: &str,
        status: IssueStatus,
        parent: Option<IssueId>,
    ) -> Event {
        let agent = self.agent;
        self.event(EventData::IssueCreated(issue::IssueCreated {
            issue_id: issue,
            identifier: identifier.into(),
            title: title.into(),
            description: Some("## Objective\nShip the feature.".into()),
            status,
            priority: Priority::High,
            assignee_agent_id: Some(agent),
            assignee_user_id: None,
            parent_id: parent,
            extra: Default::default(),
        }))
    }

    pub fn queued(&mut self, run: RunId, attempt: u32) -> Event {
        let (agent, issue) = (self.agent, self.issue);
        self.event(EventData::RunQueued(run::RunQueued {
            run_id: run,
            agent_id: agent,
            wakeup_id: None,
            issue_id: Some(issue),
            invocation_source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            context: obj(json!({"issue_id": issue})),
            retry_of_run_id: None,
            process_loss_retry_count: 0,
            continuation_attempt: attempt,
            extra: Default::default(),
        }))
    }

    pub fn started(&mut self, run: RunId) -> Event {
        let (agent, issue) = (self.agent, self.issue);
        self.event(EventData::RunStarted(run::RunStarted {
            run_id: run,
            agent_id: agent,
            issue_id: Some(issue),
            host: "host-1".into(),
            pid: Some(4242),
            pgid: Some(4242),
            process_started_at: Some(1234),
            supervisor_pid: Some(1),
            extra: Default::default(),
        }))
    }

    pub fn activity(&mut self, run: RunId, kind: ActivityKind, message: &str) -> Event {
        let at = self.now();
        self.event(EventData::RunActivity(run::RunActivity {
            run_id: run,
            kind,
            message: Some(message.into()),
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
            result: obj(json!({"summary": "did the work"})),
            stdout_excerpt: None,
            stderr_excerpt: None,
            usage: Some(obj(
                json!({"inputTokens": 1200, "output_tokens": 340, "costUsd": 0.02}),
            )),
            extra: Default::default(),
        }))
    }

    pub fn classified(
        &mut self,
        run: RunId,
        state: LivenessState,
        reason: &str,
        next_action: Option<&str>,
        attempt: u32,
    ) -> Event {
        let last_useful =
            matches!(state, LivenessState::Advanced | LivenessState::Completed).then(|| self.now());
        self.event(EventData::RunLivenessClassified(
            run::RunLivenessClassified {
                run_id: run,
                state,
                reason: reason.into(),
                next_action: next_action.map(str::to_owned),
                last_useful_action_at: last_useful,
                continuation_attempt: attempt,
                extra: Default::default(),
            },
        ))
    }

    pub fn summary(&mut self, run: RunId, revision: u32, body: &str) -> Event {
        let (agent, issue) = (self.agent, self.issue);
        let document = DocumentId(uuid::Uuid::new_v5(&issue.0, b"continuation-summary"));
        self.event(EventData::DocumentRevised(document::DocumentRevised {
            document_id: document,
            issue_id: Some(issue),
            key: Some("continuation-summary".into()),
            revision_id: RevisionId::new_random(),
            revision_number: revision,
            title: "Continuation Summary".into(),
            format: "markdown".into(),
            body: body.into(),
            change_summary: None,
            run_id: Some(run),
            agent_id: Some(agent),
            extra: Default::default(),
        }))
    }

    pub fn plan(&mut self, run: RunId) -> Event {
        let (agent, issue) = (self.agent, self.issue);
        self.event(EventData::DocumentRevised(document::DocumentRevised {
            document_id: DocumentId::new_random(),
            issue_id: Some(issue),
            key: Some("plan".into()),
            revision_id: RevisionId::new_random(),
            revision_number: 1,
            title: "Plan".into(),
            format: "markdown".into(),
            body: "# Plan\n- do it".into(),
            change_summary: None,
            run_id: Some(run),
            agent_id: Some(agent),
            extra: Default::default(),
        }))
    }

    /// A comment on `issue`, written by `run`.
    pub fn comment(&mut self, issue: IssueId, run: Option<RunId>) -> Event {
        let agent = self.agent;
        self.event(EventData::IssueCommentAdded(issue::IssueCommentAdded {
            comment_id: CommentId::new_random(),
            issue_id: issue,
            body: "progress".into(),
            author_agent_id: Some(agent),
            author_user_id: None,
            run_id: run,
            extra: Default::default(),
        }))
    }

    pub fn lost(&mut self, run: RunId) -> Event {
        self.event(EventData::RunProcessLost(run::RunProcessLost {
            run_id: run,
            pid: Some(4242),
            pgid: Some(4242),
            descendant_group_terminated: false,
            message: "Process lost -- child pid 4242 is no longer running".into(),
            extra: Default::default(),
        }))
    }

    pub fn wakeup(&mut self, id: WakeupId, reason: &str) -> Event {
        let (agent, issue) = (self.agent, self.issue);
        self.event(EventData::WakeupRequested(wakeup::WakeupRequested {
            wakeup_id: id,
            agent_id: agent,
            issue_id: Some(issue),
            source: InvocationSource::Automation,
            trigger_detail: TriggerDetail::System,
            reason: reason.into(),
            payload: obj(json!({"issue_id": issue})),
            idempotency_key: Some(format!("key-{}", id.0)),
            requested_by_actor_type: ActorType::System,
            requested_by_actor_id: Some("heartbeat".into()),
            extra: Default::default(),
        }))
    }

    /// The reference's ten-run ledger: every label of §8 appears, the newest run is running.
    /// Returns the events and the run ids, oldest first.
    pub fn ten_runs(&mut self) -> (Vec<Event>, Vec<RunId>) {
        let issue = self.issue;
        let mut events = vec![
            self.agent("CodexCoder", "codex_local", json!({"timeout_sec": 30})),
            self.issue_created(
                issue,
                "PAP-7",
                "Implement feature",
                IssueStatus::InProgress,
                None,
            ),
        ];
        let runs: Vec<RunId> = (0..10).map(|_| RunId::new_random()).collect();
        type Step = fn(&mut World, RunId) -> Vec<Event>;
        let steps: [Step; 10] = [
            // 0, 1: oldest; hidden behind "2 older runs not shown"
            |w, r| w.succeeded(r, LivenessState::Advanced, "1 comment", None, 0),
            |w, r| w.succeeded(r, LivenessState::Advanced, "1 work product", None, 0),
            // 2: timed out after its 30 s timeout
            |w, r| {
                vec![
                    w.queued(r, 0),
                    w.started(r),
                    w.finished(r, RunOutcome::TimedOut, None),
                    w.classified(
                        r,
                        LivenessState::Failed,
                        "Run ended with timed_out (timeout)",
                        None,
                        0,
                    ),
                ]
            },
            // 3: cancelled by a budget pause
            |w, r| {
                vec![
                    w.queued(r, 0),
                    w.started(r),
                    w.finished(
                        r,
                        RunOutcome::Cancelled,
                        Some("Cancelled due to budget pause"),
                    ),
                ]
            },
            // 4: plan only, with a next action
            |w, r| {
                w.succeeded(
                    r,
                    LivenessState::PlanOnly,
                    "Run described future work without concrete action evidence",
                    Some("I will inspect the repo next and then implement the fix."),
                    0,
                )
            },
            // 5, 6: the continuation chain
            |w, r| {
                w.succeeded(
                    r,
                    LivenessState::EmptyResponse,
                    "Run ended without concrete progress",
                    None,
                    1,
                )
            },
            |w, r| {
                w.succeeded(
                    r,
                    LivenessState::PlanOnly,
                    "Run ended without concrete progress; continuation attempts exhausted",
                    Some("Next: open the failing test"),
                    2,
                )
            },
            // 7: finished, never classified
            |w, r| {
                vec![
                    w.queued(r, 0),
                    w.started(r),
                    w.finished(r, RunOutcome::Failed, Some("adapter failed")),
                ]
            },
            // 8: blocked
            |w, r| {
                w.succeeded(
                    r,
                    LivenessState::Blocked,
                    "Run output declared a concrete blocker",
                    Some("Need API credentials from the operator"),
                    0,
                )
            },
            // 9: running now
            |w, r| {
                vec![
                    w.queued(r, 0),
                    w.started(r),
                    w.activity(r, ActivityKind::ToolCall, "ran cargo test"),
                ]
            },
        ];
        for (step, run) in steps.iter().zip(&runs) {
            events.extend(step(self, *run));
        }
        let summary_run = runs[8];
        events.push(self.summary(
            summary_run,
            1,
            "# Continuation Summary\n\n- **Issue**: PAP-7 — Implement feature\n- **Status**: in_progress\n\n\
             ## Objective\nShip the feature.\n\n## Recent Concrete Actions\n- Run `abc` finished with status `succeeded`\n\n\
             ## Next Action\nAsk the operator for API credentials, then resume from the acceptance criteria.\n",
        ));
        (events, runs)
    }

    /// queued → started → a tool call → succeeded → classified.
    pub fn succeeded(
        &mut self,
        run: RunId,
        state: LivenessState,
        reason: &str,
        next_action: Option<&str>,
        attempt: u32,
    ) -> Vec<Event> {
        vec![
            self.queued(run, attempt),
            self.started(run),
            self.activity(run, ActivityKind::ToolCall, "edited src/lib.rs"),
            self.finished(run, RunOutcome::Succeeded, None),
            self.classified(run, state, reason, next_action, attempt),
        ]
    }
}
