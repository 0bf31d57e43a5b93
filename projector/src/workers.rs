//! An instance's share of the partitions, each run by a worker of its own: [`run`] repeats
//! [`Membership::round`]s and starts a worker for every partition the instance came to own,
//! stops the one of a partition it lost (its batches could not commit anyway: they are fenced),
//! and stops the one of a partition beyond its fair share before handing that partition back.
//! A worker that ends by itself (its partition fenced off, a dependency away at start) is
//! started again at the next round if the partition is still the instance's; rounds are the
//! backoff.
//!
//! What a worker does is the caller's: a [`Role`] says how to start one for a partition, given
//! the [`Fence`] its batches must pass and a stop signal.

use crate::error::ProjectorError;
use crate::membership::{Membership, Part};
use crate::store::lease::Fence;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts the worker of one partition; it runs until its stop signal turns true.
pub type StartWorker =
    Arc<dyn Fn(Fence, watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send + Sync>;

/// A kind of worker: the reader whose partitions it runs.
#[derive(Clone)]
pub struct Role {
    /// The reader's base position key (its leases' role).
    pub name: String,
    pub start: StartWorker,
}

/// A started worker.
struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The lease epoch it was started under.
    epoch: i64,
}

impl Worker {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        // A worker stops between statements; one that does not within the lease's time is
        // aborted (its transaction rolls back with its connection).
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

/// What the instance runs now (for status and tests).
pub type Running = Arc<std::sync::Mutex<Vec<Part>>>;

/// Runs rounds and the owned partitions' workers until `shutdown` turns true, then stops every
/// worker and leaves (the others take the partitions over at once). `running` is kept up to
/// date with the partitions whose workers run.
pub async fn run(
    membership: Membership,
    roles: Vec<Role>,
    running: Running,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let roles: BTreeMap<String, Role> = roles.into_iter().map(|r| (r.name.clone(), r)).collect();
    let mut workers: BTreeMap<Part, Worker> = BTreeMap::new();
    tracing::info!(instance = %membership.instance(), name = %membership.settings().name, "instance joined");
    while !*shutdown.borrow() {
        match membership.round().await {
            Ok(round) => {
                // Lost (taken over while this instance was away, perhaps taken back since):
                // nothing of theirs can commit.
                let lost: Vec<Part> = workers
                    .iter()
                    .filter(|(p, w)| {
                        !round.owned.contains(*p) || membership.fence(&p.0, p.1).epoch != w.epoch
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                for part in lost {
                    if let Some(worker) = workers.remove(&part) {
                        tracing::warn!(role = %part.0, partition = part.1, "partition lost to another instance");
                        worker.task.abort();
                    }
                }
                // Beyond the fair share: stopped first, then handed back.
                for part in &round.excess {
                    if let Some(worker) = workers.remove(part) {
                        worker.stop().await;
                    }
                    if let Err(e) = membership.release(&part.0, part.1).await {
                        tracing::warn!(error = %e, role = %part.0, partition = part.1, "could not release a partition");
                    } else {
                        tracing::info!(role = %part.0, partition = part.1, "partition handed back");
                    }
                }
                workers.retain(|_, w| !w.task.is_finished());
                for part in &round.owned {
                    if workers.contains_key(part) || round.excess.contains(part) {
                        continue;
                    }
                    let Some(role) = roles.get(&part.0) else {
                        continue;
                    };
                    let (stop, stopped) = watch::channel(false);
                    let fence = membership.fence(&part.0, part.1);
                    let epoch = fence.epoch;
                    tracing::info!(role = %part.0, partition = part.1, epoch, "partition started");
                    let task = tokio::spawn((role.start)(fence, stopped));
                    workers.insert(part.clone(), Worker { stop, task, epoch });
                }
                if let Ok(mut shown) = running.lock() {
                    *shown = workers.keys().cloned().collect();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "membership round failed; the workers go on until their leases run out");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(membership.settings().round_interval()) => {}
            _ = shutdown.changed() => {}
        }
    }
    for (_, worker) in std::mem::take(&mut workers) {
        worker.stop().await;
    }
    membership.leave().await?;
    tracing::info!("instance left");
    Ok(())
}
