-- runledger read models, folded from the event stream by the projector.
--
-- Every value here is derived from events and their stream sequence only (no now(), no
-- random()), so a rebuild of the same stream gives byte-identical tables. Names are unqualified:
-- the same migration builds the live schema and a replay's scratch schema (search_path).
-- `last_seq` on a row is the stream sequence of the last event that changed it.

CREATE TABLE IF NOT EXISTS projector_positions (
    consumer    text PRIMARY KEY,
    stream      text NOT NULL,
    last_seq    bigint NOT NULL,
    events_applied bigint NOT NULL DEFAULT 0,
    dead_lettered  bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS agents (
    agent_id        uuid PRIMARY KEY,
    company_id      uuid NOT NULL,
    name            text,
    role            text,
    adapter_type    text,
    adapter_config  jsonb NOT NULL DEFAULT '{}',
    status          text,
    budget_blocked  boolean NOT NULL DEFAULT false,
    registered_at   timestamptz,
    updated_at      timestamptz NOT NULL,
    last_seq        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_company_idx ON agents (company_id);

CREATE TABLE IF NOT EXISTS issues (
    issue_id          uuid PRIMARY KEY,
    company_id        uuid NOT NULL,
    identifier        text,
    title             text,
    description       text,
    status            text,
    priority          text,
    assignee_agent_id uuid,
    assignee_user_id  text,
    parent_id         uuid,
    checkout_run_id   uuid,
    execution_run_id  uuid,
    execution_state   jsonb,
    created_at        timestamptz,
    started_at        timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    updated_at        timestamptz NOT NULL,
    last_seq          bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS issues_company_status_idx ON issues (company_id, status);
CREATE INDEX IF NOT EXISTS issues_assignee_idx ON issues (assignee_agent_id) WHERE assignee_agent_id IS NOT NULL;

-- status: queued | running | succeeded | failed | cancelled | timed_out; NULL while only
-- evidence naming the run has arrived (events of one run may come in any order).
CREATE TABLE IF NOT EXISTS runs (
    run_id                   uuid PRIMARY KEY,
    company_id               uuid NOT NULL,
    agent_id                 uuid,
    issue_id                 uuid,
    wakeup_id                uuid,
    status                   text,
    invocation_source        text,
    trigger_detail           text,
    context                  jsonb NOT NULL DEFAULT '{}',
    host                     text,
    pid                      integer,
    pgid                     integer,
    supervisor_pid           integer,
    process_started_at       bigint,
    created_at               timestamptz,
    queued_at                timestamptz,
    started_at               timestamptz,
    finished_at              timestamptz,
    last_activity_at         timestamptz,
    activity_count           integer NOT NULL DEFAULT 0,
    exit_code                integer,
    signal                   text,
    error                    text,
    error_code               text,
    result                   jsonb,
    usage                    jsonb,
    stdout_excerpt           text,
    stderr_excerpt           text,
    stop_reason              text,
    effective_timeout_sec    integer,
    timeout_configured       boolean,
    timeout_source           text,
    timeout_fired            boolean,
    cancel_requested_at      timestamptz,
    cancel_reason            text,
    detached_at              timestamptz,
    retry_of_run_id          uuid,
    process_loss_retry_count integer NOT NULL DEFAULT 0,
    continuation_attempt     integer NOT NULL DEFAULT 0,
    liveness_state           text,
    liveness_reason          text,
    last_useful_action_at    timestamptz,
    next_action              text,
    -- Evidence of progress, counted only until the run ends (the classifier's cut-off), and
    -- never from the system's own writes (the continuation-summary document).
    evidence_comments        integer NOT NULL DEFAULT 0,
    evidence_revisions       integer NOT NULL DEFAULT 0,
    evidence_plan_revisions  integer NOT NULL DEFAULT 0,
    evidence_work_products   integer NOT NULL DEFAULT 0,
    evidence_activity        integer NOT NULL DEFAULT 0,
    evidence_tool_events     integer NOT NULL DEFAULT 0,
    evidence_workspace_ops   integer NOT NULL DEFAULT 0,
    latest_evidence_at       timestamptz,
    -- The issue as it was when the run ended: historical classification uses this, not today's.
    issue_status_at_finish   text,
    updated_at               timestamptz NOT NULL,
    last_seq                 bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_issue_idx ON runs (issue_id);
CREATE INDEX IF NOT EXISTS runs_company_status_idx ON runs (company_id, status);
CREATE INDEX IF NOT EXISTS runs_live_host_idx ON runs (host) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS runs_wakeup_idx ON runs (wakeup_id) WHERE wakeup_id IS NOT NULL;

-- Which runs belong in an issue's ledger: runs whose context names the issue, or that logged
-- activity on the issue with their run id.
CREATE TABLE IF NOT EXISTS issue_runs (
    issue_id   uuid NOT NULL,
    run_id     uuid NOT NULL,
    company_id uuid NOT NULL,
    PRIMARY KEY (issue_id, run_id)
);

-- The per-run timeline. `seq` is the stream sequence of the event; `ordinal` orders several
-- entries made by one event.
CREATE TABLE IF NOT EXISTS run_events (
    run_id   uuid NOT NULL,
    seq      bigint NOT NULL,
    ordinal  smallint NOT NULL,
    company_id uuid NOT NULL,
    type     text NOT NULL,
    level    text NOT NULL,
    message  text NOT NULL,
    payload  jsonb NOT NULL,
    at       timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq, ordinal)
);

-- status: queued | deferred_issue_execution | claimed | coalesced | skipped | completed |
-- failed | cancelled
CREATE TABLE IF NOT EXISTS wakeup_requests (
    wakeup_id               uuid PRIMARY KEY,
    company_id              uuid NOT NULL,
    agent_id                uuid,
    issue_id                uuid,
    source                  text,
    trigger_detail          text,
    reason                  text,
    payload                 jsonb NOT NULL DEFAULT '{}',
    status                  text NOT NULL,
    idempotency_key         text,
    requested_by_actor_type text,
    requested_by_actor_id   text,
    run_id                  uuid,
    requested_at            timestamptz,
    claimed_at              timestamptz,
    finished_at             timestamptz,
    updated_at              timestamptz NOT NULL,
    last_seq                bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS wakeups_issue_status_idx ON wakeup_requests (issue_id, status);
CREATE INDEX IF NOT EXISTS wakeups_agent_status_idx ON wakeup_requests (agent_id, status);
CREATE INDEX IF NOT EXISTS wakeups_idempotency_idx ON wakeup_requests (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS issue_comments (
    comment_id      uuid PRIMARY KEY,
    company_id      uuid NOT NULL,
    issue_id        uuid NOT NULL,
    body            text NOT NULL,
    author_agent_id uuid,
    author_user_id  text,
    run_id          uuid,
    created_at      timestamptz NOT NULL,
    seq             bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_issue_idx ON issue_comments (issue_id, created_at);

CREATE TABLE IF NOT EXISTS issue_work_products (
    work_product_id uuid PRIMARY KEY,
    company_id      uuid NOT NULL,
    issue_id        uuid NOT NULL,
    kind            text NOT NULL,
    title           text NOT NULL,
    run_id          uuid,
    created_at      timestamptz NOT NULL,
    seq             bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS work_products_issue_idx ON issue_work_products (issue_id);

CREATE TABLE IF NOT EXISTS documents (
    document_id            uuid PRIMARY KEY,
    company_id             uuid NOT NULL,
    issue_id               uuid,
    key                    text,
    title                  text NOT NULL,
    format                 text NOT NULL,
    latest_body            text NOT NULL,
    latest_revision_id     uuid NOT NULL,
    latest_revision_number integer NOT NULL,
    is_system              boolean NOT NULL,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    last_seq               bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS documents_issue_key_idx ON documents (issue_id, key) WHERE key IS NOT NULL;

CREATE TABLE IF NOT EXISTS document_revisions (
    revision_id         uuid PRIMARY KEY,
    document_id         uuid NOT NULL,
    company_id          uuid NOT NULL,
    issue_id            uuid,
    key                 text,
    revision_number     integer NOT NULL,
    title               text NOT NULL,
    format              text NOT NULL,
    body                text NOT NULL,
    change_summary      text,
    created_by_run_id   uuid,
    created_by_agent_id uuid,
    created_at          timestamptz NOT NULL,
    seq                 bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS revisions_document_idx ON document_revisions (document_id, revision_number);
CREATE INDEX IF NOT EXISTS revisions_run_idx ON document_revisions (created_by_run_id) WHERE created_by_run_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS activity_log (
    seq         bigint PRIMARY KEY,
    company_id  uuid NOT NULL,
    actor_type  text NOT NULL,
    actor_id    text,
    action      text NOT NULL,
    entity_type text NOT NULL,
    entity_id   uuid NOT NULL,
    run_id      uuid,
    details     jsonb NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_entity_idx ON activity_log (entity_type, entity_id);
CREATE INDEX IF NOT EXISTS activity_run_idx ON activity_log (run_id) WHERE run_id IS NOT NULL;

-- Events that could not be applied: kept whole, with the reason, never silently skipped.
CREATE TABLE IF NOT EXISTS dead_letters (
    seq        bigint PRIMARY KEY,
    subject    text NOT NULL,
    payload    bytea NOT NULL,
    reason     text NOT NULL,
    at         timestamptz NOT NULL
);

-- An issue's run ledger, newest first (`ledger_rank` 1 = newest), with the labels a ledger row
-- shows. Order by (issue_id, ledger_rank) when reading.
CREATE OR REPLACE VIEW issue_run_ledger AS
SELECT
    ir.issue_id,
    r.company_id,
    row_number() OVER (
        PARTITION BY ir.issue_id
        ORDER BY COALESCE(r.started_at, r.created_at, r.queued_at) DESC NULLS LAST, r.run_id DESC
    ) AS ledger_rank,
    r.run_id,
    r.status,
    r.agent_id,
    a.name AS agent_name,
    a.adapter_type,
    r.invocation_source,
    r.created_at,
    r.queued_at,
    r.started_at,
    r.finished_at,
    CASE WHEN r.started_at IS NULL THEN NULL
         ELSE EXTRACT(EPOCH FROM (COALESCE(r.finished_at, r.last_activity_at, r.started_at) - r.started_at))::bigint
    END AS elapsed_sec,
    r.status IN ('queued', 'running') OR r.status IS NULL AS is_live,
    r.error_code,
    r.stop_reason,
    r.effective_timeout_sec,
    r.timeout_configured,
    r.timeout_source,
    r.timeout_fired,
    r.liveness_state,
    r.liveness_reason,
    r.continuation_attempt,
    r.last_useful_action_at,
    r.next_action,
    COALESCE(r.liveness_reason LIKE '%continuation attempts exhausted%', false) AS exhausted,
    CASE r.liveness_state
        WHEN 'completed' THEN 'Completed'
        WHEN 'advanced' THEN 'Advanced'
        WHEN 'plan_only' THEN 'Plan only'
        WHEN 'empty_response' THEN 'Empty response'
        WHEN 'blocked' THEN 'Blocked'
        WHEN 'failed' THEN 'Failed'
        WHEN 'needs_followup' THEN 'Needs follow-up'
        ELSE CASE WHEN r.status IN ('queued', 'running') OR r.status IS NULL
                  THEN 'Checks after finish' ELSE 'No liveness data' END
    END AS liveness_label,
    CASE
        WHEN r.stop_reason = 'timeout' AND r.timeout_configured
            THEN 'timeout (' || r.effective_timeout_sec || 's timeout)'
        WHEN r.stop_reason = 'completed' AND r.timeout_configured
            THEN 'completed (' || r.effective_timeout_sec || 's timeout)'
        WHEN r.stop_reason IS NOT NULL THEN replace(r.stop_reason, '_', ' ')
        WHEN r.status = 'queued' OR r.status IS NULL THEN 'Waiting to start'
        WHEN r.status = 'running' THEN 'Still running'
        ELSE 'Unavailable'
    END AS stop_label,
    CASE
        WHEN r.status IN ('queued', 'running') OR r.status IS NULL THEN 'No action recorded yet'
        WHEN r.liveness_state IN ('plan_only', 'needs_followup') THEN 'No concrete action'
        WHEN r.liveness_state = 'empty_response' THEN 'No useful output'
        WHEN r.liveness_state IS NULL THEN 'Unavailable'
        ELSE NULL
    END AS last_useful_action_fallback,
    r.process_loss_retry_count,
    r.retry_of_run_id,
    r.error,
    r.result -> 'summary' AS result_summary
FROM issue_runs ir
JOIN runs r ON r.run_id = ir.run_id
LEFT JOIN agents a ON a.agent_id = r.agent_id;
