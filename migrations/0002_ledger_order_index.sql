-- An issue's runs in run-ledger order (newest first: start time, else creation, else queue time;
-- ties by run id), so the read API takes a ledger's first page straight from the index: constant
-- time whether the issue has 10 runs or 10,000 (the `issue_run_ledger` view ranks all of them).
-- The expression must stay identical to the ORDER BY in api/src/columns.rs (`ledger_order!`).
CREATE INDEX IF NOT EXISTS runs_ledger_order_idx
    ON runs (issue_id, (COALESCE(started_at, created_at, queued_at)) DESC NULLS LAST, run_id DESC);
