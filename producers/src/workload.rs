//! Synthetic but realistic event streams, deterministic for a seed: what the benchmark publishes
//! and what the crash and replay tests project. Many runs are in flight at once and their events
//! interleave, as real agents produce them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use events::agent::AgentRegistered;
use events::document::DocumentRevised;
use events::issue::{IssueCommentAdded, IssueCreated, IssueUpdated};
use events::run::*;
use events::*;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use uuid::Uuid;

/// A small deterministic PRNG (xorshift64*), so a seed always gives the same stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            ((u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())).to_le_bytes(),
        )
        .into_uuid()
    }
}

/// The shape of a workload.
#[derive(Clone, Debug)]
pub struct Mix {
    pub runs: usize,
    /// Runs in flight at a time; their events interleave.
    pub in_flight: usize,
    /// `run.activity` heartbeats per run.
    pub heartbeats: usize,
    pub agents: usize,
    pub issues: usize,
    /// Add comments, documents, tool calls, detachments, losses and varied outcomes.
    pub varied: bool,
}

impl Mix {
    /// The benchmark mix: `run.started` + 20 heartbeats + `run.finished` per run, 64 in flight.
    pub fn benchmark(runs: usize) -> Self {
        Self {
            runs,
            in_flight: 64,
            heartbeats: 20,
            agents: 4,
            issues: 16,
            varied: false,
        }
    }

    /// Every kind of event, for correctness tests.
    pub fn varied(runs: usize) -> Self {
        Self {
            runs,
            in_flight: 8,
            heartbeats: 3,
            agents: 3,
            issues: 6,
            varied: true,
        }
    }
}

struct Flight {
    script: Vec<EventData>,
    next: usize,
}

/// The events of a [`Mix`] for one company, generated lazily (a million-event stream does not
/// have to fit in memory).
pub struct Workload {
    mix: Mix,
    rng: Rng,
    company: CompanyId,
    start: DateTime<Utc>,
    clock: i64,
    preamble: VecDeque<EventData>,
    agents: Vec<AgentId>,
    issues: Vec<IssueId>,
    flights: Vec<Flight>,
    started: usize,
}

impl Workload {
    pub fn new(mix: &Mix, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let company = CompanyId(rng.uuid());
        let agents: Vec<AgentId> = (0..mix.agents.max(1))
            .map(|_| AgentId(rng.uuid()))
            .collect();
        let issues: Vec<IssueId> = (0..mix.issues.max(1))
            .map(|_| IssueId(rng.uuid()))
            .collect();
        let preamble = preamble(&agents, &issues);
        Self {
            mix: mix.clone(),
            rng,
            company,
            start: Utc.with_ymd_and_hms(2026, 3, 19, 0, 0, 0).unwrap(),
            clock: 0,
            preamble,
            agents,
            issues,
            flights: Vec::new(),
            started: 0,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.start + Duration::milliseconds(self.clock * 10)
    }

    fn next_data(&mut self) -> Option<EventData> {
        if let Some(data) = self.preamble.pop_front() {
            return Some(data);
        }
        while self.flights.len() < self.mix.in_flight.max(1) && self.started < self.mix.runs {
            let agent = self.agents[self.started % self.agents.len()];
            let issue = self.issues[self.rng.below(self.issues.len() as u64) as usize];
            let run = RunId(self.rng.uuid());
            let now = self.now();
            let script = script(&self.mix, &mut self.rng, run, agent, issue, now);
            self.flights.push(Flight { script, next: 0 });
            self.started += 1;
        }
        if self.flights.is_empty() {
            return None;
        }
        let pick = self.rng.below(self.flights.len() as u64) as usize;
        let flight = &mut self.flights[pick];
        let data = flight.script[flight.next].clone();
        flight.next += 1;
        if flight.next == flight.script.len() {
            self.flights.swap_remove(pick);
        }
        Some(data)
    }
}

impl Iterator for Workload {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let data = self.next_data()?;
        self.clock += 1;
        let time = self.now();
        Some(Event::with_id(
            EventId(self.rng.uuid()),
            self.company,
            "runledger-workload",
            time,
            data,
        ))
    }
}

/// All events of `mix` (for small workloads; use [`Workload`] to stream large ones).
pub fn generate(mix: &Mix, seed: u64) -> Vec<Event> {
    Workload::new(mix, seed).collect()
}

/// All events of one workload of `mix` per seed (a company each), interleaved one event at a
/// time, as companies working at once produce them (with partitions, several partitions fill
/// at once).
pub fn interleaved(mix: &Mix, seeds: impl IntoIterator<Item = u64>) -> Vec<Event> {
    let mut companies: Vec<Workload> = seeds.into_iter().map(|s| Workload::new(mix, s)).collect();
    let mut events = Vec::new();
    loop {
        let before = events.len();
        events.extend(companies.iter_mut().filter_map(Iterator::next));
        if events.len() == before {
            return events;
        }
    }
}

/// The agents and issues the runs refer to, registered and created before the first run.
fn preamble(agents: &[AgentId], issues: &[IssueId]) -> VecDeque<EventData> {
    let agents_registered = agents
        .iter()
        .enumerate()
        .map(|(i, agent)| agent_registered(i, *agent));
    let issues_created = issues
        .iter()
        .enumerate()
        .map(|(i, issue)| issue_created(i, *issue, agents[i % agents.len()]));
    agents_registered.chain(issues_created).collect()
}

/// The `i`th agent, of each adapter type in turn.
fn agent_registered(i: usize, agent: AgentId) -> EventData {
    let adapters = [
        "codex_local",
        "claude_local",
        "http",
        "openclaw_gateway",
        "process",
    ];
    let adapter = adapters[i % adapters.len()];
    let config = match adapter {
        "http" => json!({"timeout_ms": 30_000}),
        "codex_local" => json!({"timeout_sec": 45}),
        _ => json!({}),
    };
    EventData::AgentRegistered(AgentRegistered {
        agent_id: agent,
        name: format!("agent-{i}"),
        role: "engineer".into(),
        adapter_type: adapter.into(),
        adapter_config: obj(config),
        status: AgentStatus::Idle,
        extra: Map::new(),
    })
}

/// The `i`th issue, in progress and assigned to `assignee`.
fn issue_created(i: usize, issue: IssueId, assignee: AgentId) -> EventData {
    EventData::IssueCreated(IssueCreated {
        issue_id: issue,
        identifier: format!("WL-{i}"),
        title: if i.is_multiple_of(3) {
            "Draft implementation plan".into()
        } else {
            format!("Implement feature {i}")
        },
        description: Some("## Objective\nDo the work.\n\n## Acceptance Criteria\n- done".into()),
        status: IssueStatus::InProgress,
        priority: Priority::Medium,
        assignee_agent_id: Some(assignee),
        assignee_user_id: None,
        parent_id: None,
        extra: Map::new(),
    })
}

fn obj(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn script(
    mix: &Mix,
    rng: &mut Rng,
    run: RunId,
    agent: AgentId,
    issue: IssueId,
    now: DateTime<Utc>,
) -> Vec<EventData> {
    let mut s = Vec::new();
    if mix.varied {
        s.push(EventData::RunQueued(RunQueued {
            run_id: run,
            agent_id: agent,
            wakeup_id: None,
            issue_id: Some(issue),
            invocation_source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            context: obj(json!({"issue_id": issue, "wake_reason": "issue_assigned"})),
            retry_of_run_id: None,
            process_loss_retry_count: 0,
            continuation_attempt: 0,
            extra: Map::new(),
        }));
    }
    let pid = 1000 + rng.below(30_000) as i32;
    s.push(EventData::RunStarted(RunStarted {
        run_id: run,
        agent_id: agent,
        issue_id: Some(issue),
        host: "bench-host".into(),
        pid: Some(pid),
        pgid: Some(pid),
        process_started_at: Some(rng.below(1 << 40)),
        supervisor_pid: Some(pid - 1),
        extra: Map::new(),
    }));
    for i in 0..mix.heartbeats {
        s.push(EventData::RunActivity(RunActivity {
            run_id: run,
            kind: ActivityKind::Heartbeat,
            message: None,
            at: now + Duration::seconds(i as i64),
            extra: Map::new(),
        }));
    }
    let ending = if mix.varied { rng.below(8) } else { 0 };
    if mix.varied {
        extras(rng, &mut s, run, agent, issue, now, ending);
    }
    match ending {
        5 => s.push(EventData::RunProcessLost(RunProcessLost {
            run_id: run,
            pid: Some(pid),
            pgid: Some(pid),
            descendant_group_terminated: rng.below(2) == 0,
            message: format!("Process lost -- child pid {pid} is no longer running"),
            extra: Map::new(),
        })),
        _ => s.push(EventData::RunFinished(finish(run, ending))),
    }
    if mix.varied && ending != 5 {
        s.push(EventData::RunLivenessClassified(RunLivenessClassified {
            run_id: run,
            state: LivenessState::ALL[rng.below(7) as usize],
            reason: "synthetic classification".into(),
            next_action: Some("Inspect the repo".into()),
            last_useful_action_at: Some(now),
            continuation_attempt: 0,
            extra: Map::new(),
        }));
    }
    s
}

fn extras(
    rng: &mut Rng,
    s: &mut Vec<EventData>,
    run: RunId,
    agent: AgentId,
    issue: IssueId,
    now: DateTime<Utc>,
    ending: u64,
) {
    if rng.below(2) == 0 {
        s.push(EventData::RunActivity(RunActivity {
            run_id: run,
            kind: [
                ActivityKind::ToolCall,
                ActivityKind::Workspace,
                ActivityKind::Output,
            ][rng.below(3) as usize],
            message: Some("did something".into()),
            at: now,
            extra: Map::new(),
        }));
    }
    if rng.below(3) == 0 {
        s.push(EventData::IssueCommentAdded(IssueCommentAdded {
            comment_id: CommentId(rng.uuid()),
            issue_id: issue,
            body: "Progress update".into(),
            author_agent_id: Some(agent),
            author_user_id: None,
            run_id: Some(run),
            extra: Map::new(),
        }));
    }
    if rng.below(4) == 0 {
        let key = ["plan", "notes", "continuation-summary"][rng.below(3) as usize];
        // One document per issue and key; revisions may arrive out of order.
        s.push(EventData::DocumentRevised(DocumentRevised {
            document_id: DocumentId(Uuid::new_v5(&issue.0, key.as_bytes())),
            issue_id: Some(issue),
            key: Some(key.into()),
            revision_id: RevisionId(rng.uuid()),
            revision_number: 1 + rng.below(50) as u32,
            title: key.into(),
            format: "markdown".into(),
            body: format!("# {key}\n- step"),
            change_summary: None,
            run_id: Some(run),
            agent_id: Some(agent),
            extra: Map::new(),
        }));
    }
    if rng.below(5) == 0 {
        let mut update = IssueUpdated::default_for(issue);
        update.status = Some(
            [
                IssueStatus::InReview,
                IssueStatus::InProgress,
                IssueStatus::Done,
            ][rng.below(3) as usize],
        );
        update.run_id = Some(run);
        s.push(EventData::IssueUpdated(update));
    }
    if ending == 6 {
        s.push(EventData::RunProcessDetached(RunProcessDetached {
            run_id: run,
            pid: 4242,
            host: "bench-host".into(),
            extra: Map::new(),
        }));
    }
    if ending == 3 {
        s.push(EventData::RunCancelRequested(RunCancelRequested {
            run_id: run,
            reason: "Cancelled by control plane".into(),
            extra: Map::new(),
        }));
    }
}

fn finish(run: RunId, ending: u64) -> RunFinished {
    let outcome = match ending {
        1 => RunOutcome::Failed,
        2 => RunOutcome::TimedOut,
        3 => RunOutcome::Cancelled,
        _ => RunOutcome::Succeeded,
    };
    RunFinished {
        run_id: run,
        outcome,
        exit_code: Some(if outcome == RunOutcome::Succeeded {
            0
        } else {
            1
        }),
        signal: None,
        error: (outcome == RunOutcome::Failed).then(|| "adapter failed".to_owned()),
        error_code: None,
        result: obj(json!({"summary": "I will inspect the repo next and then implement the fix."})),
        stdout_excerpt: Some("ok\n".into()),
        stderr_excerpt: None,
        usage: Some(obj(json!({"input_tokens": 1000, "output_tokens": 200}))),
        extra: Map::new(),
    }
}
