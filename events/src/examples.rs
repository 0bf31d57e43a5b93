//! One realistic example event per type. They are the documentation's examples, the snapshot
//! tests' inputs and the seeds of the JSON fixtures, so they must stay valid and deterministic.

use crate::agent::*;
use crate::document::*;
use crate::envelope::Event;
use crate::event_type::EventType;
use crate::ids::*;
use crate::issue::*;
use crate::payload::EventData;
use crate::run::*;
use crate::tick::*;
use crate::vocab::*;
use crate::wakeup::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The company of every example.
pub const COMPANY: &str = "5f0c6a8e-1d2b-4c3a-9e8f-7a6b5c4d3e2f";
const AGENT: &str = "0b9e7c52-8a1f-4d6e-b3c2-1f0e9d8c7b6a";
const ISSUE: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
const RUN: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
const WAKEUP: &str = "6e5d4c3b-2a19-4f08-9e7d-6c5b4a392817";

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("example ids are valid")
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn at(seconds: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 19, 9, 0, 0).unwrap() + chrono::Duration::seconds(seconds.into())
}

/// The example payload of `event_type`.
pub fn data(event_type: EventType) -> EventData {
    let agent_id = AgentId(id(AGENT));
    let issue_id = IssueId(id(ISSUE));
    let run_id = RunId(id(RUN));
    let wakeup_id = WakeupId(id(WAKEUP));
    use EventType as T;
    match event_type {
        T::AgentRegistered => EventData::AgentRegistered(AgentRegistered {
            agent_id,
            name: "CodexCoder".into(),
            role: "engineer".into(),
            adapter_type: "codex_local".into(),
            adapter_config: obj(json!({"timeout_sec": 900, "model": "gpt-5"})),
            status: AgentStatus::Idle,
            extra: Map::new(),
        }),
        T::AgentStatusChanged => EventData::AgentStatusChanged(AgentStatusChanged {
            agent_id,
            status: AgentStatus::Paused,
            budget_blocked: Some(false),
            extra: Map::new(),
        }),
        T::IssueCreated => EventData::IssueCreated(IssueCreated {
            issue_id,
            identifier: "PAP-12".into(),
            title: "Implement feature".into(),
            description: Some(
                "## Objective\nShip the run ledger.\n\n## Acceptance Criteria\n- Ledger shows 8 runs"
                    .into(),
            ),
            status: IssueStatus::Todo,
            priority: Priority::High,
            assignee_agent_id: Some(agent_id),
            assignee_user_id: None,
            parent_id: None,
            extra: Map::new(),
        }),
        T::IssueUpdated => EventData::IssueUpdated(IssueUpdated {
            issue_id,
            status: Some(IssueStatus::InProgress),
            checkout_run_id: Some(Some(run_id)),
            run_id: Some(run_id),
            actor: Some(Actor {
                actor_type: ActorType::Agent,
                id: Some(AGENT.into()),
            }),
            ..IssueUpdated::default_for(issue_id)
        }),
        T::IssueCommentAdded => EventData::IssueCommentAdded(IssueCommentAdded {
            comment_id: CommentId(id("7b6a5948-3726-4150-8f9e-8d7c6b5a4938")),
            issue_id,
            body: "Implemented the ledger query; tests pass.".into(),
            author_agent_id: Some(agent_id),
            author_user_id: None,
            run_id: Some(run_id),
            extra: Map::new(),
        }),
        T::IssueWorkProductAdded => EventData::IssueWorkProductAdded(IssueWorkProductAdded {
            work_product_id: WorkProductId(id("2d3e4f50-6172-4839-a4b5-c6d7e8f90a1b")),
            issue_id,
            kind: "pull_request".into(),
            title: "Add run ledger".into(),
            run_id: Some(run_id),
            extra: Map::new(),
        }),
        T::DocumentRevised => EventData::DocumentRevised(DocumentRevised {
            document_id: DocumentId(id("4e5f6071-8293-4a4b-8c5d-6e7f8091a2b3")),
            issue_id: Some(issue_id),
            key: Some(PLAN_KEY.into()),
            revision_id: RevisionId(id("5f607182-93a4-4b5c-9d6e-7f8091a2b3c4")),
            revision_number: 1,
            title: "Plan".into(),
            format: "markdown".into(),
            body: "# Plan\n\n- Inspect files\n- Implement fix".into(),
            change_summary: Some("First plan".into()),
            run_id: Some(run_id),
            agent_id: Some(agent_id),
            extra: Map::new(),
        }),
        T::WakeupRequested => EventData::WakeupRequested(WakeupRequested {
            wakeup_id,
            agent_id,
            issue_id: Some(issue_id),
            source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            reason: "issue_assigned".into(),
            payload: obj(json!({"issue_id": ISSUE})),
            idempotency_key: None,
            requested_by_actor_type: ActorType::User,
            requested_by_actor_id: Some("user-1".into()),
            extra: Map::new(),
        }),
        T::RunQueued => EventData::RunQueued(RunQueued {
            run_id,
            agent_id,
            wakeup_id: Some(wakeup_id),
            issue_id: Some(issue_id),
            invocation_source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            context: obj(json!({"issue_id": ISSUE, "wake_reason": "issue_assigned"})),
            retry_of_run_id: None,
            process_loss_retry_count: 0,
            continuation_attempt: 0,
            extra: Map::new(),
        }),
        T::RunStarted => EventData::RunStarted(RunStarted {
            run_id,
            agent_id,
            issue_id: Some(issue_id),
            host: "agent-host-1".into(),
            pid: Some(4242),
            pgid: Some(4242),
            process_started_at: Some(123_456_789),
            supervisor_pid: Some(4200),
            extra: Map::new(),
        }),
        T::RunActivity => EventData::RunActivity(RunActivity {
            run_id,
            kind: ActivityKind::ToolCall,
            message: Some("edit server/src/services/heartbeat.ts".into()),
            at: at(30),
            extra: Map::new(),
        }),
        T::RunProcessDetached => EventData::RunProcessDetached(RunProcessDetached {
            run_id,
            pid: 4242,
            host: "agent-host-1".into(),
            extra: Map::new(),
        }),
        T::RunProcessLost => EventData::RunProcessLost(RunProcessLost {
            run_id,
            pid: Some(4242),
            pgid: Some(4242),
            descendant_group_terminated: false,
            message: "Process lost -- child pid 4242 is no longer running".into(),
            extra: Map::new(),
        }),
        T::RunCancelRequested => EventData::RunCancelRequested(RunCancelRequested {
            run_id,
            reason: "Cancelled by control plane".into(),
            extra: Map::new(),
        }),
        T::RunFinished => EventData::RunFinished(RunFinished {
            run_id,
            outcome: RunOutcome::Succeeded,
            exit_code: Some(0),
            signal: None,
            error: None,
            error_code: None,
            result: obj(json!({"summary": "Implemented the ledger query; tests pass."})),
            stdout_excerpt: Some("All 42 tests passed\n".into()),
            stderr_excerpt: None,
            usage: Some(obj(json!({"input_tokens": 1200, "output_tokens": 340}))),
            extra: Map::new(),
        }),
        T::RunLivenessClassified => EventData::RunLivenessClassified(RunLivenessClassified {
            run_id,
            state: LivenessState::Advanced,
            reason: "Run produced concrete progress: 1 comment, 1 tool/action event".into(),
            next_action: None,
            last_useful_action_at: Some(at(30)),
            continuation_attempt: 0,
            extra: Map::new(),
        }),
        T::IssueFollowUpRefused => EventData::IssueFollowUpRefused(IssueFollowUpRefused {
            issue_id,
            run_id: Some(run_id),
            agent_id: Some(agent_id),
            follow_up: "run_liveness_continuation".into(),
            reason: "automatic wakeups of this issue back off: the 3rd in 1h needs 60s after the previous one".into(),
            retry_after: Some(at(90)),
            extra: Map::new(),
        }),
        T::IssueFollowUpDeferred => {
            let wakeup_id = WakeupId(id("0d8e7f60-5a4b-5c3d-8e2f-1a0b9c8d7e6f"));
            let source = run_id.to_string();
            EventData::IssueFollowUpDeferred(IssueFollowUpDeferred {
                issue_id,
                run_id: Some(run_id),
                agent_id,
                rule: "liveness_continuation".into(),
                follow_up: "run_liveness_continuation".into(),
                reason: "automatic wakeups of this issue back off: the 1st beyond the bounded flows in 1h waits 30s after the previous one".into(),
                due_at: at(90),
                wakeup_event_id: EventId(id("5b6c7d8e-9f0a-5b1c-8d2e-3f4a5b6c7d8e")),
                wakeup: Box::new(WakeupRequested {
                    wakeup_id,
                    agent_id,
                    issue_id: Some(issue_id),
                    source: InvocationSource::Automation,
                    trigger_detail: TriggerDetail::System,
                    reason: "run_liveness_continuation".into(),
                    payload: obj(json!({"issue_id": ISSUE, "source_run_id": source, "continuation_attempt": 1})),
                    idempotency_key: Some(format!("run_liveness_continuation:{ISSUE}:{source}:plan_only:1")),
                    requested_by_actor_type: ActorType::System,
                    requested_by_actor_id: Some("heartbeat".into()),
                    extra: Map::new(),
                }),
                run_event_id: EventId(id("6c7d8e9f-0a1b-5c2d-9e3f-4a5b6c7d8e9f")),
                run: Box::new(RunQueued {
                    run_id: RunId(id("7d8e9f0a-1b2c-5d3e-8f4a-5b6c7d8e9f0a")),
                    agent_id,
                    wakeup_id: Some(wakeup_id),
                    issue_id: Some(issue_id),
                    invocation_source: InvocationSource::Automation,
                    trigger_detail: TriggerDetail::System,
                    context: obj(json!({"issue_id": ISSUE, "wake_reason": "run_liveness_continuation"})),
                    retry_of_run_id: None,
                    process_loss_retry_count: 0,
                    continuation_attempt: 1,
                    extra: Map::new(),
                }),
                extra: Map::new(),
            })
        }
        T::IssueFollowUpDeferralClosed => {
            EventData::IssueFollowUpDeferralClosed(IssueFollowUpDeferralClosed {
                issue_id,
                deferral_id: EventId(id("8e9f0a1b-2c3d-5e4f-9a5b-6c7d8e9f0a1b")),
                run_id: Some(run_id),
                follow_up: "run_liveness_continuation".into(),
                outcome: DeferralOutcome::Moot,
                reason: "the issue is done".into(),
                extra: Map::new(),
            })
        }
        T::ReconcilerTicked => EventData::ReconcilerTicked(ReconcilerTicked {
            partition: None,
            tick_id: TickId(id("8c7b6a59-4837-5261-9a0b-1c2d3e4f5a6b")),
            at: at(60),
            extra: Map::new(),
        }),
    }
}

/// The example event of `event_type`, with a fixed id and time.
pub fn event(event_type: EventType) -> Event {
    let index = EventType::ALL
        .iter()
        .position(|t| *t == event_type)
        .expect("listed") as u128;
    // Ticks belong to no tenant: they use the reserved nil company.
    let company = match event_type {
        EventType::ReconcilerTicked => crate::tick::TICK_COMPANY,
        _ => CompanyId(id(COMPANY)),
    };
    Event::with_id(
        EventId(Uuid::from_u128(
            0x1e7c_0000_0000_4000_8000_0000_0000_0000 + index,
        )),
        company,
        format!("runledger-docs/{}", event_type.as_str()),
        at(60),
        data(event_type),
    )
}
