//! What `runledger status` shows of a scaled-out installation: the stream's cluster (leader,
//! replicas current or lagging) and, with partitions, every partition of the projector and the
//! reconciler (owner instance, position, lag in events, counters), and each reader as a whole.

use async_nats::jetstream::Context;
use events::Subjects;
use projector::membership::position_key;
use reconciler::migrate::partition_schema;
use reconciler::state::{Position, Progress};
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

/// Every partition of both readers, and both readers as a whole.
pub struct Partitions {
    /// One row per partition of each reader: owner, position, lag in events, and the
    /// reader's counters of that partition.
    pub rows: Vec<Value>,
    /// The projector as a whole: the stream sequence every partition has folded everything up
    /// to, the partitions' events applied and dead letters summed.
    pub projector: Whole,
    /// The reconciler as a whole: not started while no partition has a position; else its
    /// partitions' counters summed, at the stream sequence every partition has decided.
    pub reconciler: Progress,
}

/// A projector as a whole (its one position row, or every partition's).
pub struct Whole {
    pub position: i64,
    pub applied: i64,
    pub dead_letters: i64,
}

/// A projector's position row (`consumer` in `schema`): position and counters, zero while it
/// has none.
pub async fn projector_counters(
    pg: &tokio_postgres::Client,
    schema: &str,
    consumer: &str,
) -> anyhow::Result<Whole> {
    let row = pg
        .query_opt(
            &format!(
                "SELECT last_seq, events_applied, dead_lettered FROM {schema}.projector_positions \
                 WHERE consumer = $1"
            ),
            &[&consumer],
        )
        .await?;
    Ok(row.map_or(
        Whole {
            position: 0,
            applied: 0,
            dead_letters: 0,
        },
        |r| Whole {
            position: r.get(0),
            applied: r.get(1),
            dead_letters: r.get(2),
        },
    ))
}

/// Every partition of both readers: owner, position, lag, counters; and both readers as a whole
/// (what `runledger status` says of a single reader).
pub async fn partitions(
    js: &Context,
    pg: &tokio_postgres::Client,
    stream: &str,
    subjects: &Subjects,
    schema: &str,
    projector: &str,
    reconciler: (&str, &str),
) -> anyhow::Result<Partitions> {
    let leases = projector::store::lease::leases(pg).await?;
    let owner = |role: &str, p: u32| {
        leases
            .iter()
            .find(|l| l.role == role && l.partition == p && !l.expired)
            .and_then(|l| l.owner.clone())
    };
    let (base_schema, name) = reconciler;
    let mut rows = Vec::new();
    let mut whole = Whole {
        position: 0,
        applied: 0,
        dead_letters: 0,
    };
    let (mut projector_positions, mut reconciler_positions) = (Vec::new(), Vec::new());
    let mut states = Vec::new();
    for p in 0..subjects.partitions() {
        let filter = subjects.partition_filter(p);
        let key = position_key(projector, subjects, p);
        let Whole {
            position,
            applied,
            dead_letters: dead,
        } = projector_counters(pg, schema, &key).await?;
        let lag =
            projector::feed::pending_after(js, stream, &filter, position as u64).await? as i64;
        rows.push(json!({
            "reader": "projector", "partition": p, "owner": owner(projector, p),
            "position": position, "lag": lag, "events_applied": applied, "dead_letters": dead,
        }));
        projector_positions.push(position);
        whole.applied += applied;
        whole.dead_letters += dead;

        let key = position_key(name, subjects, p);
        let schema = partition_schema(base_schema, subjects, p);
        let state = reconciler::state::progress(pg, &schema, &key).await?;
        let position = match &state {
            Progress::At(at) => at.last_seq,
            _ => 0,
        };
        let lag =
            projector::feed::pending_after(js, stream, &filter, position as u64).await? as i64;
        let mut row = json!({
            "reader": "reconciler", "partition": p, "owner": owner(name, p),
            "position": position, "lag": lag, "started": matches!(state, Progress::At(_)),
        });
        if let Progress::At(at) = &state {
            row["follow_ups"] = json!(at.follow_ups);
            row["outbox_unpublished"] = json!(at.unpublished);
        }
        rows.push(row);
        reconciler_positions.push(position);
        states.push(state);
    }
    whole.position = projector::feed::caught_up(js, stream, subjects, &projector_positions).await?;
    let reconciler = match states.iter().find_map(|s| match s {
        Progress::At(at) => Some(at.stream.clone()),
        _ => None,
    }) {
        Some(stream_of_state) => {
            let at = states.iter().filter_map(|s| match s {
                Progress::At(at) => Some(at),
                _ => None,
            });
            let mut sum = Position {
                stream: stream_of_state,
                last_seq: projector::feed::caught_up(js, stream, subjects, &reconciler_positions)
                    .await?,
                events_seen: 0,
                follow_ups: 0,
                unpublished: 0,
            };
            for at in at {
                sum.events_seen += at.events_seen;
                sum.follow_ups += at.follow_ups;
                sum.unpublished += at.unpublished;
            }
            Progress::At(sum)
        }
        None if states.iter().all(|s| *s == Progress::NoSchema) => Progress::NoSchema,
        None => Progress::NoPosition,
    };
    Ok(Partitions {
        rows,
        projector: whole,
        reconciler,
    })
}
