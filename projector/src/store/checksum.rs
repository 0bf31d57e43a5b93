//! Per-table checksums of the read models, for proving that a projection interrupted any number
//! of times, or a replay, ends identical to a clean rebuild.

use crate::error::ProjectorError;
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;

/// Every read-model table and the key that orders it.
pub const TABLES: &[(&str, &str)] = &[
    ("agents", "agent_id"),
    ("issues", "issue_id"),
    ("runs", "run_id"),
    ("issue_runs", "issue_id, run_id"),
    ("run_events", "run_id, seq, ordinal"),
    ("wakeup_requests", "wakeup_id"),
    ("issue_comments", "comment_id"),
    ("issue_work_products", "work_product_id"),
    ("documents", "document_id"),
    ("document_revisions", "revision_id"),
    ("activity_log", "seq"),
    ("dead_letters", "seq"),
    ("folded_events", "event_id"),
    ("decisions", "event_id"),
];

/// Row count and md5 over every row's text form, in key order, per table.
pub async fn checksums<C: GenericClient>(
    client: &C,
) -> Result<BTreeMap<String, (i64, String)>, ProjectorError> {
    let mut out = BTreeMap::new();
    for (table, key) in TABLES {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY {key}), ''))
                     FROM {table} t"
                ),
                &[],
            )
            .await?;
        out.insert((*table).to_owned(), (row.get(0), row.get(1)));
    }
    Ok(out)
}
