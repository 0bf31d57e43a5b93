//! Instances sharing partitions through PostgreSQL leases: fair shares as instances come, a dead
//! instance's partitions taken over once its leases expire, and the fence that stops an instance
//! that lost a lease from committing.

use projector::membership::{Membership, MembershipSettings, Round};
use projector::store::lease;
use projector::ProjectorError;
use std::collections::BTreeMap;
use std::time::Duration;
use testsupport::{Deadline, TestDb};

const ROLE: &str = "runledger-projector";

fn settings(name: &str, ttl: Duration) -> MembershipSettings {
    MembershipSettings {
        ttl,
        ..MembershipSettings::new(name, vec![(ROLE.to_owned(), 8)])
    }
}

/// A round as a caller runs it: the excess is released at once (its worker would stop first).
async fn round(member: &Membership) -> Round {
    let round = member.round().await.unwrap();
    for (role, partition) in &round.excess {
        member.release(role, *partition).await.unwrap();
    }
    round
}

/// Partitions owned per instance, after the excess is given back.
fn counts(rounds: &[Round]) -> Vec<usize> {
    rounds
        .iter()
        .map(|r| r.owned.len() - r.excess.len())
        .collect()
}

#[tokio::test]
async fn instances_converge_on_fair_shares_as_they_come() {
    let db = TestDb::new().await.unwrap();
    let ttl = Duration::from_secs(30);
    let a = Membership::join(db.pool(), settings("a", ttl))
        .await
        .unwrap();
    assert_eq!(counts(&[round(&a).await]), [8], "alone, it runs everything");
    let b = Membership::join(db.pool(), settings("b", ttl))
        .await
        .unwrap();
    let c = Membership::join(db.pool(), settings("c", ttl))
        .await
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(20));
    let shares = loop {
        assert!(!deadline.passed(), "no fair shares");
        let rounds = [round(&a).await, round(&b).await, round(&c).await];
        let mut shares = counts(&rounds);
        shares.sort_unstable();
        if shares == [2, 3, 3] {
            break rounds;
        }
    };
    // Every partition has exactly one owner.
    let mut owners: BTreeMap<u32, usize> = BTreeMap::new();
    for r in &shares {
        for part in r.owned.iter().filter(|p| !r.excess.contains(p)) {
            *owners.entry(part.1).or_default() += 1;
        }
    }
    assert_eq!(owners.len(), 8);
    assert!(owners.values().all(|n| *n == 1), "{owners:?}");
}

#[tokio::test]
async fn a_dead_instances_partitions_are_taken_over_when_its_leases_expire() {
    let db = TestDb::new().await.unwrap();
    let ttl = Duration::from_millis(1500);
    let a = Membership::join(db.pool(), settings("a", ttl))
        .await
        .unwrap();
    assert_eq!(a.round().await.unwrap().owned.len(), 8);
    let b = Membership::join(db.pool(), settings("b", ttl))
        .await
        .unwrap();
    // `a` stops taking part (killed); `b` takes everything once a's leases have expired.
    let started = std::time::Instant::now();
    let deadline = Deadline::after(Duration::from_secs(15));
    loop {
        assert!(!deadline.passed(), "no takeover");
        if b.round().await.unwrap().owned.len() == 8 {
            break;
        }
        tokio::time::sleep(ttl / 6).await; // one round interval
    }
    let took = started.elapsed();
    assert!(
        took >= ttl / 2,
        "taken over before the leases expired: {took:?}"
    );
}

#[tokio::test]
async fn an_instance_that_lost_its_lease_cannot_commit() {
    let db = TestDb::new().await.unwrap();
    let ttl = Duration::from_millis(1000);
    let a = Membership::join(db.pool(), settings("a", ttl))
        .await
        .unwrap();
    a.round().await.unwrap();
    let fence = a.fence(ROLE, 0);
    let pool = db.pool();
    let mut client = pool.get().await.unwrap();
    // While a batch of `a` holds the lease, another instance cannot take it, even expired.
    let tx = client.transaction().await.unwrap();
    lease::check(&*tx, &fence).await.unwrap();
    let b = Membership::join(db.pool(), settings("b", ttl))
        .await
        .unwrap();
    let other = pool.get().await.unwrap();
    testsupport::eventually(Duration::from_secs(10), "a's leases to expire", || async {
        let leases = lease::leases(&**other).await.unwrap();
        leases.iter().all(|l| l.expired).then_some(())
    })
    .await;
    let round = b.round().await.unwrap();
    assert!(
        !round.owned.contains(&(ROLE.to_owned(), 0)),
        "taken while a batch held it"
    );
    tx.commit().await.unwrap();
    // Once that batch is over, `b` takes it, and every later batch of `a` is refused.
    let deadline = Deadline::after(Duration::from_secs(10));
    while !b
        .round()
        .await
        .unwrap()
        .owned
        .contains(&(ROLE.to_owned(), 0))
    {
        assert!(!deadline.passed(), "b never took partition 0");
    }
    let tx = client.transaction().await.unwrap();
    let refused = lease::check(&*tx, &fence).await.unwrap_err();
    assert!(
        matches!(refused, ProjectorError::Fenced { ref role, partition: 0 } if role == ROLE),
        "{refused}"
    );
    // And `a` learns it lost the partition at its next round.
    assert!(!a
        .round()
        .await
        .unwrap()
        .owned
        .contains(&(ROLE.to_owned(), 0)));
}
