//! The watchlist: the runs a host is running, as the `runs` read model knows them (folded from
//! `run.started`, `run.process_detached` and `run.cancel_requested`). One query per sweep.

use deadpool_postgres::Pool;
use events::{CompanyId, RunId};

/// One running run of this host, with what the watchdog needs to judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedRun {
    pub run_id: RunId,
    pub company_id: CompanyId,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
    pub supervisor_pid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (the pid-reuse guard).
    pub process_started_at: Option<u64>,
    /// A detached warning was ever recorded for the run (it stays true after activity cleared
    /// the warning, so the warning is given once per run).
    pub detached_before: bool,
    /// The reason of a `run.cancel_requested`, if one arrived.
    pub cancel_reason: Option<String>,
}

const QUERY: &str = "
SELECT r.run_id, r.company_id, r.pid, r.pgid, r.supervisor_pid, r.process_started_at,
       coalesce(r.error_code = 'process_detached', false)
         OR r.detached_at IS NOT NULL
         OR EXISTS (SELECT 1 FROM run_events e
                     WHERE e.run_id = r.run_id AND e.type = 'run.process_detached')
         AS detached_before,
       r.cancel_requested_at IS NOT NULL AS cancel_requested,
       r.cancel_reason
  FROM runs r
 WHERE r.host = $1 AND r.status = 'running' -- served by runs_live_host_idx
 ORDER BY r.started_at NULLS LAST, r.run_id";

/// The running runs of `host`.
pub async fn running_on(pool: &Pool, host: &str) -> Result<Vec<WatchedRun>, super::WatchdogError> {
    let client = pool.get().await?;
    let rows = client.query(QUERY, &[&host]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let cancel_requested: bool = row.get("cancel_requested");
            let reason: Option<String> = row.get("cancel_reason");
            WatchedRun {
                run_id: RunId(row.get("run_id")),
                company_id: CompanyId(row.get("company_id")),
                pid: row.get("pid"),
                pgid: row.get("pgid"),
                supervisor_pid: row.get("supervisor_pid"),
                process_started_at: row
                    .get::<_, Option<i64>>("process_started_at")
                    .and_then(|t| u64::try_from(t).ok()),
                detached_before: row.get("detached_before"),
                cancel_reason: cancel_requested
                    .then(|| reason.unwrap_or_else(|| "Cancelled by control plane".into())),
            }
        })
        .collect())
}
