-- The run-ledger labels of the reference's §8 as SQL functions, so the `issue_run_ledger` view
-- and the read API (which pages straight from an index instead of ranking through the view)
-- compute them in one place. IMMUTABLE SQL functions are inlined by the planner: no cost per row.

CREATE OR REPLACE FUNCTION ledger_is_live(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT status IN ('queued', 'running') OR status IS NULL
$$;

CREATE OR REPLACE FUNCTION ledger_liveness_label(status text, liveness_state text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE liveness_state
        WHEN 'completed' THEN 'Completed'
        WHEN 'advanced' THEN 'Advanced'
        WHEN 'plan_only' THEN 'Plan only'
        WHEN 'empty_response' THEN 'Empty response'
        WHEN 'blocked' THEN 'Blocked'
        WHEN 'failed' THEN 'Failed'
        WHEN 'needs_followup' THEN 'Needs follow-up'
        ELSE CASE WHEN status IN ('queued', 'running') OR status IS NULL
                  THEN 'Checks after finish' ELSE 'No liveness data' END
    END
$$;

CREATE OR REPLACE FUNCTION ledger_stop_label(
    status text, stop_reason text, timeout_configured boolean, effective_timeout_sec integer
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN stop_reason = 'timeout' AND timeout_configured
            THEN 'timeout (' || effective_timeout_sec || 's timeout)'
        WHEN stop_reason = 'completed' AND timeout_configured
            THEN 'completed (' || effective_timeout_sec || 's timeout)'
        WHEN stop_reason IS NOT NULL THEN replace(stop_reason, '_', ' ')
        WHEN status = 'queued' OR status IS NULL THEN 'Waiting to start'
        WHEN status = 'running' THEN 'Still running'
        ELSE 'Unavailable'
    END
$$;

CREATE OR REPLACE FUNCTION ledger_last_useful_action_fallback(status text, liveness_state text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN status IN ('queued', 'running') OR status IS NULL THEN 'No action recorded yet'
        WHEN liveness_state IN ('plan_only', 'needs_followup') THEN 'No concrete action'
        WHEN liveness_state = 'empty_response' THEN 'No useful output'
        WHEN liveness_state IS NULL THEN 'Unavailable'
        ELSE NULL
    END
$$;

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
    ledger_is_live(r.status) AS is_live,
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
    ledger_liveness_label(r.status, r.liveness_state) AS liveness_label,
    ledger_stop_label(r.status, r.stop_reason, r.timeout_configured, r.effective_timeout_sec) AS stop_label,
    ledger_last_useful_action_fallback(r.status, r.liveness_state) AS last_useful_action_fallback,
    r.process_loss_retry_count,
    r.retry_of_run_id,
    r.error,
    r.result -> 'summary' AS result_summary
FROM issue_runs ir
JOIN runs r ON r.run_id = ir.run_id
LEFT JOIN agents a ON a.agent_id = r.agent_id;
