//! Partition ownership in PostgreSQL: which instance runs which partition of which reader, for
//! how long, and the fence every batch passes. The tables live in a schema of their own
//! ([`SCHEMA`]), never the read models' (a replay swaps those wholesale).
//!
//! A lease is taken only once it has expired (or was released), renewed by its owner well before
//! it expires, and checked by the owner's every batch in the batch's own transaction with a
//! share lock ([`check`]): an instance that lost a lease — paused or cut off past its expiry,
//! then taken over — fails its next batch and can never commit to that partition again. A
//! takeover waits for a batch that holds the share lock to finish; the batch sessions' idle
//! timeout (set on every runledger connection) ends one whose process was frozen mid-transaction.

use crate::error::ProjectorError;
use crate::store::migrate::{apply, MigrationSet};
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

/// The schema of the ownership tables.
pub const SCHEMA: &str = "runledger_cluster";

/// The ownership tables.
pub const CLUSTER: MigrationSet = MigrationSet {
    name: "cluster",
    table: "cluster_migrations",
    migrations: &[(
        1,
        "leases",
        include_str!("../../../migrations/cluster/0001_leases.sql"),
    )],
};

/// Creates or updates the ownership tables.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, ProjectorError> {
    apply(client, SCHEMA, &CLUSTER).await
}

/// What a batch must prove before it commits: that its writer still owns the partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The reader's position key (e.g. `runledger-projector`).
    pub role: String,
    pub partition: u32,
    /// The instance that believes it owns the partition.
    pub owner: Uuid,
    /// The lease's epoch when the instance took it (every taking counts one up): a worker
    /// started before its instance lost the partition and took it back is fenced off too.
    pub epoch: i64,
}

/// Checks, inside a batch's transaction, that `fence.owner` still owns the partition, and holds
/// the lease row (share lock) until the transaction ends so it cannot change hands before then.
pub async fn check(tx: &impl GenericClient, fence: &Fence) -> Result<(), ProjectorError> {
    // Typed: one round trip, in the same flight as the batch's opening statements.
    let row = tx
        .query_typed_opt(
            "SELECT owner, epoch FROM runledger_cluster.leases WHERE role = $1 AND partition = $2 FOR SHARE",
            &[
                (&fence.role, Type::TEXT),
                (&(fence.partition as i32), Type::INT4),
            ],
        )
        .await?;
    let held = row.map(|r| (r.get::<_, Option<Uuid>>(0), r.get::<_, i64>(1)));
    if held == Some((Some(fence.owner), fence.epoch)) {
        Ok(())
    } else {
        Err(ProjectorError::Fenced {
            role: fence.role.clone(),
            partition: fence.partition,
        })
    }
}

/// Announces (or refreshes) an instance.
pub async fn join(
    client: &impl GenericClient,
    instance: Uuid,
    name: &str,
    host: &str,
    pid: u32,
) -> Result<(), ProjectorError> {
    client
        .execute(
            "INSERT INTO runledger_cluster.instances (instance, name, host, pid)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (instance) DO UPDATE SET seen_at = now()",
            &[&instance, &name, &host, &(pid as i32)],
        )
        .await?;
    Ok(())
}

fn millis(ttl: Duration) -> f64 {
    ttl.as_secs_f64() * 1000.0
}

/// The instance is alive: refreshes it and renews its leases for `ttl`; returns the leases it
/// still owns, with their epochs (a lease taken over in the meantime is not among them).
pub async fn renew(
    client: &impl GenericClient,
    instance: Uuid,
    ttl: Duration,
) -> Result<Vec<(String, u32, i64)>, ProjectorError> {
    client
        .execute(
            "UPDATE runledger_cluster.instances SET seen_at = now() WHERE instance = $1",
            &[&instance],
        )
        .await?;
    let rows = client
        .query(
            "UPDATE runledger_cluster.leases
                SET expires_at = now() + $2 * interval '1 millisecond'
              WHERE owner = $1
              RETURNING role, partition, epoch",
            &[&instance, &millis(ttl)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1) as u32, r.get(2)))
        .collect())
}

/// How many instances were seen within `ttl`.
pub async fn live_instances(
    client: &impl GenericClient,
    ttl: Duration,
) -> Result<u32, ProjectorError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM runledger_cluster.instances
              WHERE seen_at > now() - $1 * interval '1 millisecond'",
            &[&millis(ttl)],
        )
        .await?;
    Ok(row.get::<_, i64>(0).max(1) as u32)
}

/// Takes up to `max` free (expired or released) partitions of `role` (out of `partitions`) for
/// `instance` for `ttl`, lowest first; returns those it took, with their new epochs. Rows being taken or checked by
/// others are skipped, never waited for.
pub async fn claim(
    client: &impl GenericClient,
    instance: Uuid,
    role: &str,
    partitions: u32,
    max: u32,
    ttl: Duration,
) -> Result<Vec<(u32, i64)>, ProjectorError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    client
        .execute(
            "INSERT INTO runledger_cluster.leases (role, partition)
             SELECT $1, p FROM generate_series(0, $2 - 1) AS p
             ON CONFLICT DO NOTHING",
            &[&role, &(partitions as i32)],
        )
        .await?;
    let rows = client
        .query(
            "UPDATE runledger_cluster.leases l
                SET owner = $1, expires_at = now() + $4 * interval '1 millisecond',
                    epoch = l.epoch + 1, taken_at = now()
              WHERE (l.role, l.partition) IN (
                    SELECT role, partition FROM runledger_cluster.leases
                     WHERE role = $2 AND partition < $5 AND expires_at < now()
                     ORDER BY partition
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                AND l.expires_at < now()
              RETURNING l.partition, l.epoch",
            &[
                &instance,
                &role,
                &(max as i64),
                &millis(ttl),
                &(partitions as i32),
            ],
        )
        .await?;
    let mut taken: Vec<(u32, i64)> = rows
        .iter()
        .map(|r| (r.get::<_, i32>(0) as u32, r.get(1)))
        .collect();
    taken.sort_unstable();
    Ok(taken)
}

/// Gives a partition up at once (its worker must have stopped first).
pub async fn release(
    client: &impl GenericClient,
    instance: Uuid,
    role: &str,
    partition: u32,
) -> Result<(), ProjectorError> {
    client
        .execute(
            "UPDATE runledger_cluster.leases SET owner = NULL, expires_at = '-infinity'
              WHERE role = $2 AND partition = $3 AND owner = $1",
            &[&instance, &role, &(partition as i32)],
        )
        .await?;
    Ok(())
}

/// The instance stops: its leases are released and it is forgotten.
pub async fn leave(client: &impl GenericClient, instance: Uuid) -> Result<(), ProjectorError> {
    client
        .execute(
            "UPDATE runledger_cluster.leases SET owner = NULL, expires_at = '-infinity'
              WHERE owner = $1",
            &[&instance],
        )
        .await?;
    client
        .execute(
            "DELETE FROM runledger_cluster.instances WHERE instance = $1",
            &[&instance],
        )
        .await?;
    Ok(())
}

/// One lease as `runledger status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub role: String,
    pub partition: u32,
    /// The owning instance's name and host, if it is owned.
    pub owner: Option<String>,
    /// Whether the owner's time is up (it may be taken over).
    pub expired: bool,
    pub epoch: i64,
}

/// Every lease (nothing before the ownership tables exist).
pub async fn leases(client: &impl GenericClient) -> Result<Vec<Lease>, ProjectorError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('runledger_cluster.leases') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT l.role, l.partition, i.name || '@' || i.host || ' (pid ' || i.pid || ')',
                    l.expires_at < now(), l.epoch
               FROM runledger_cluster.leases l
               LEFT JOIN runledger_cluster.instances i ON i.instance = l.owner
              ORDER BY l.role, l.partition",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Lease {
            role: r.get(0),
            partition: r.get::<_, i32>(1) as u32,
            owner: r.get(2),
            expired: r.get(3),
            epoch: r.get(4),
        })
        .collect())
}
