//! Instances sharing partitions, through PostgreSQL: each instance announces itself, renews the
//! leases it holds, takes free ones up to its fair share (the partitions divided by the
//! instances alive, rounded up) and hands back what it holds beyond that share, so a new
//! instance gets its part and a dead one's partitions go to the others once its leases expire.
//! [`Membership::round`] is one such round, a step function; the caller starts and stops the
//! partitions' workers from what it returns, and releases a partition only after its worker has
//! stopped. The fence every batch passes is in [`crate::store::lease`].

use crate::error::ProjectorError;
use crate::store::lease::{self, Fence};
use deadpool_postgres::Pool;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use uuid::Uuid;

/// How an instance takes part.
#[derive(Clone, Debug)]
pub struct MembershipSettings {
    /// Shown by `runledger status` (with the host and pid).
    pub name: String,
    /// How long a lease lasts without renewal: a dead instance's partitions are taken over
    /// within this, plus one round.
    pub ttl: Duration,
    /// What is shared: each reader's position key and its partition count.
    pub roles: Vec<(String, u32)>,
}

impl MembershipSettings {
    /// Leases of 6 s, renewed every round (run rounds at least every `ttl / 3`).
    pub fn new(name: &str, roles: Vec<(String, u32)>) -> Self {
        Self {
            name: name.to_owned(),
            ttl: Duration::from_secs(6),
            roles,
        }
    }

    /// How often to run rounds: often enough to renew twice within a lease.
    pub fn round_interval(&self) -> Duration {
        self.ttl / 3
    }
}

/// A partition of a reader.
pub type Part = (String, u32);

/// What one round found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The partitions this instance owns now (renewed or newly taken).
    pub owned: BTreeSet<Part>,
    /// Owned partitions beyond the fair share: stop their workers, then release them.
    pub excess: Vec<Part>,
    /// Instances alive (this one included).
    pub live: u32,
}

/// One instance's membership.
pub struct Membership {
    pool: Pool,
    instance: Uuid,
    settings: MembershipSettings,
    /// The epoch of every lease held at the last round (a std mutex: never held across an
    /// await).
    epochs: std::sync::Mutex<BTreeMap<Part, i64>>,
}

impl Membership {
    /// Creates the ownership tables if needed and announces a new instance.
    pub async fn join(pool: Pool, settings: MembershipSettings) -> Result<Self, ProjectorError> {
        let instance = Uuid::new_v4();
        {
            let mut client = pool.get().await?;
            lease::migrate(&mut client).await?;
            let host = hostname();
            lease::join(
                &**client,
                instance,
                &settings.name,
                &host,
                std::process::id(),
            )
            .await?;
        }
        Ok(Self {
            pool,
            instance,
            settings,
            epochs: Default::default(),
        })
    }

    /// This instance's id (the owner of its leases).
    pub fn instance(&self) -> Uuid {
        self.instance
    }

    pub fn settings(&self) -> &MembershipSettings {
        &self.settings
    }

    /// The fence a batch of `role`'s partition `partition` passes when written by this instance
    /// under the lease it held at the last round (none held: a fence nothing passes).
    pub fn fence(&self, role: &str, partition: u32) -> Fence {
        let part = (role.to_owned(), partition);
        let epoch = self
            .epochs
            .lock()
            .ok()
            .and_then(|epochs| epochs.get(&part).copied())
            .unwrap_or(-1);
        Fence {
            role: role.to_owned(),
            partition,
            owner: self.instance,
            epoch,
        }
    }

    /// Renews, takes free partitions up to the fair share, and says which are beyond it.
    pub async fn round(&self) -> Result<Round, ProjectorError> {
        let client = self.pool.get().await?;
        let ttl = self.settings.ttl;
        lease::join(
            &**client,
            self.instance,
            &self.settings.name,
            &hostname(),
            std::process::id(),
        )
        .await?;
        let mut epochs: BTreeMap<Part, i64> = lease::renew(&**client, self.instance, ttl)
            .await?
            .into_iter()
            .map(|(role, p, epoch)| ((role, p), epoch))
            .collect();
        let mut owned: BTreeSet<Part> = epochs.keys().cloned().collect();
        let live = lease::live_instances(&**client, ttl).await?;
        let mut excess = Vec::new();
        for (role, partitions) in &self.settings.roles {
            let share = partitions.div_ceil(live);
            let mine: Vec<u32> = owned
                .iter()
                .filter(|(r, _)| r == role)
                .map(|(_, p)| *p)
                .collect();
            let held = mine.len() as u32;
            if held < share {
                let taken = lease::claim(
                    &**client,
                    self.instance,
                    role,
                    *partitions,
                    share - held,
                    ttl,
                )
                .await?;
                for (p, epoch) in taken {
                    owned.insert((role.clone(), p));
                    epochs.insert((role.clone(), p), epoch);
                }
            } else if held > share {
                // The highest go: a stable choice, so instances do not trade partitions back
                // and forth.
                excess.extend(
                    mine.iter()
                        .rev()
                        .take((held - share) as usize)
                        .map(|p| (role.clone(), *p)),
                );
            }
        }
        if let Ok(mut kept) = self.epochs.lock() {
            *kept = epochs;
        }
        Ok(Round {
            owned,
            excess,
            live,
        })
    }

    /// Gives a partition up (after its worker stopped), for another instance to take.
    pub async fn release(&self, role: &str, partition: u32) -> Result<(), ProjectorError> {
        let client = self.pool.get().await?;
        lease::release(&**client, self.instance, role, partition).await
    }

    /// Gives everything up and is forgotten (a clean shutdown: others take over at once).
    pub async fn leave(&self) -> Result<(), ProjectorError> {
        let client = self.pool.get().await?;
        lease::leave(&**client, self.instance).await
    }
}

/// This host's name (shown with the instance).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// The position key (and durable consumer name) of `base`'s partition `partition`: `base`
/// itself without partitions (today's names and layout), `<base>-p<partition>` with them.
pub fn position_key(base: &str, subjects: &events::Subjects, partition: u32) -> String {
    if subjects.is_partitioned() {
        format!("{base}-p{partition}")
    } else {
        base.to_owned()
    }
}
