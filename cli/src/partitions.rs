//! What `runledger status` shows of a scaled-out installation: the stream's cluster (leader,
//! replicas current or lagging) and, with partitions, every partition of the projector and the
//! reconciler (owner instance, position, lag in events).

use async_nats::jetstream::Context;
use events::Subjects;
use projector::membership::position_key;
use reconciler::migrate::partition_schema;
use serde_json::{json, Value};

/// The stream's replicas as the servers report them (`None`: a single server).
pub async fn cluster(js: &Context, stream: &str) -> anyhow::Result<Option<Value>> {
    let info = js.get_stream(stream).await?.info().await?.clone();
    let Some(cluster) = info.cluster else {
        return Ok(None);
    };
    if cluster.name.is_none() && cluster.replicas.is_empty() {
        // A single server reports itself as the leader of nothing.
        return Ok(None);
    }
    let replicas: Vec<Value> = cluster
        .replicas
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "current": r.current,
                "offline": r.offline,
                "lag": r.lag.unwrap_or(0),
            })
        })
        .collect();
    Ok(Some(json!({
        "name": cluster.name,
        "leader": cluster.leader,
        "replicas": replicas,
    })))
}

/// One line per replica: `n2 current`, `n3 lagging (12 behind)`, `n1 offline`.
pub fn describe_cluster(cluster: &Value) -> String {
    let replicas: Vec<String> = cluster["replicas"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap_or("?");
            if r["offline"].as_bool() == Some(true) {
                format!("{name} offline")
            } else if r["current"].as_bool() == Some(true) {
                format!("{name} current")
            } else {
                format!("{name} lagging ({} behind)", r["lag"])
            }
        })
        .collect();
    format!(
        "leader {}, replicas: {}",
        cluster["leader"].as_str().unwrap_or("none (electing)"),
        if replicas.is_empty() {
            "none".to_owned()
        } else {
            replicas.join(", ")
        }
    )
}

/// Every partition of both readers: owner, position, lag.
pub async fn partitions(
    js: &Context,
    pg: &tokio_postgres::Client,
    stream: &str,
    subjects: &Subjects,
    schema: &str,
    projector: &str,
    reconciler: (&str, &str),
) -> anyhow::Result<Vec<Value>> {
    let leases = projector::store::lease::leases(pg).await?;
    let owner = |role: &str, p: u32| {
        leases
            .iter()
            .find(|l| l.role == role && l.partition == p && !l.expired)
            .and_then(|l| l.owner.clone())
    };
    let mut rows = Vec::new();
    for p in 0..subjects.partitions() {
        let filter = subjects.partition_filter(p);
        let key = position_key(projector, subjects, p);
        let position: i64 = pg
            .query_opt(
                &format!("SELECT last_seq FROM {schema}.projector_positions WHERE consumer = $1"),
                &[&key],
            )
            .await?
            .map_or(0, |r| r.get(0));
        let lag = projector::feed::pending_after(js, stream, &filter, position as u64).await?;
        rows.push(json!({
            "reader": "projector", "partition": p, "owner": owner(projector, p),
            "position": position, "lag": lag,
        }));
        let (base_schema, name) = reconciler;
        let key = position_key(name, subjects, p);
        let schema = partition_schema(base_schema, subjects, p);
        let position = match reconciler::state::progress(pg, &schema, &key).await? {
            reconciler::state::Progress::At(at) => at.last_seq,
            _ => 0,
        };
        let lag = projector::feed::pending_after(js, stream, &filter, position as u64).await?;
        rows.push(json!({
            "reader": "reconciler", "partition": p, "owner": owner(name, p),
            "position": position, "lag": lag,
        }));
    }
    Ok(rows)
}
