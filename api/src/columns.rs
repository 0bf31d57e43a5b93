//! The run-ledger columns as SQL, with the labels of the reference's §8, shared by the ledger page,
//! the SSE change feed, the live-run list and the run detail.
//!
//! They are the `issue_run_ledger` view's columns, written against `runs r` and `agents a`
//! instead of the view: the view ranks with a window over all of an issue's runs, which costs
//! O(runs) per read, while the page query here takes the newest N from an index. The labels come
//! from the same SQL functions the view uses (`migrations/0003_ledger_labels.sql`); a parity test
//! (`api/tests/it/ledger.rs`) checks every column against the view for every run state.

/// `SELECT` list for one ledger row of `runs r LEFT JOIN agents a`.
macro_rules! ledger_columns {
    () => {
        "r.run_id, r.status, ledger_is_live(r.status) AS is_live,
    r.agent_id, a.name AS agent_name, a.adapter_type, r.invocation_source,
    r.created_at, r.queued_at, r.started_at, r.finished_at,
    CASE WHEN r.started_at IS NULL THEN NULL
         ELSE EXTRACT(EPOCH FROM (COALESCE(r.finished_at, r.last_activity_at, r.started_at) - r.started_at))::bigint
    END AS elapsed_sec,
    r.error_code, left(r.error, 500) AS error,
    r.stop_reason, r.effective_timeout_sec, r.timeout_configured, r.timeout_source, r.timeout_fired,
    r.liveness_state, r.liveness_reason, r.continuation_attempt, r.last_useful_action_at, r.next_action,
    COALESCE(r.liveness_reason LIKE '%continuation attempts exhausted%', false) AS exhausted,
    ledger_liveness_label(r.status, r.liveness_state) AS liveness_label,
    ledger_stop_label(r.status, r.stop_reason, r.timeout_configured, r.effective_timeout_sec) AS stop_label,
    ledger_last_useful_action_fallback(r.status, r.liveness_state) AS last_useful_action_fallback,
    r.process_loss_retry_count, r.retry_of_run_id,
    r.result -> 'summary' AS result_summary,
    CASE WHEN r.usage IS NULL THEN NULL ELSE NULLIF(jsonb_strip_nulls(jsonb_build_object(
        'input_tokens', COALESCE(r.usage -> 'input_tokens', r.usage -> 'inputTokens'),
        'output_tokens', COALESCE(r.usage -> 'output_tokens', r.usage -> 'outputTokens'),
        'cached_input_tokens', COALESCE(r.usage -> 'cached_input_tokens', r.usage -> 'cachedInputTokens'),
        'billing_type', COALESCE(r.usage -> 'billing_type', r.usage -> 'billingType'),
        'cost_usd', COALESCE(r.usage -> 'cost_usd', r.usage -> 'costUsd'))), '{}'::jsonb) END AS usage,
    r.last_seq"
    };
}

/// The ledger order (newest first): start time, else creation, else queue time; ties by run id.
macro_rules! ledger_order {
    () => {
        "COALESCE(r.started_at, r.created_at, r.queued_at) DESC NULLS LAST, r.run_id DESC"
    };
}

use crate::model::LedgerRow;
use tokio_postgres::Row;

/// Reads the `ledger_columns!` of a row (`ledger_rank` if the query has it).
pub fn ledger_row(row: &Row) -> LedgerRow {
    LedgerRow {
        ledger_rank: row.try_get("ledger_rank").ok(),
        run_id: row.get("run_id"),
        status: row.get("status"),
        is_live: row.get("is_live"),
        agent_id: row.get("agent_id"),
        agent_name: row.get("agent_name"),
        adapter_type: row.get("adapter_type"),
        invocation_source: row.get("invocation_source"),
        created_at: row.get("created_at"),
        queued_at: row.get("queued_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        elapsed_sec: row.get("elapsed_sec"),
        error_code: row.get("error_code"),
        error: row.get("error"),
        stop_reason: row.get("stop_reason"),
        stop_label: row.get("stop_label"),
        effective_timeout_sec: row.get("effective_timeout_sec"),
        timeout_configured: row.get("timeout_configured"),
        timeout_source: row.get("timeout_source"),
        timeout_fired: row.get("timeout_fired"),
        liveness_state: row.get("liveness_state"),
        liveness_label: row.get("liveness_label"),
        liveness_reason: row.get("liveness_reason"),
        continuation_attempt: row.get("continuation_attempt"),
        exhausted: row.get("exhausted"),
        last_useful_action_at: row.get("last_useful_action_at"),
        last_useful_action_fallback: row.get("last_useful_action_fallback"),
        next_action: row.get("next_action"),
        process_loss_retry_count: row.get("process_loss_retry_count"),
        retry_of_run_id: row.get("retry_of_run_id"),
        result_summary: row.get("result_summary"),
        usage: row.get("usage"),
        last_seq: row.get("last_seq"),
    }
}
