//! The reconciler's clock: one `reconciler.ticked` per interval slot, on the reserved subject.
//! This is the only place the reconciler reads the wall clock; everything else takes time from
//! events. A slot's tick has an id derived from the interval and the slot number, so several
//! reconcilers (or a restart within a slot) publish the same event and the stream stores it once.
//! With partitions each partition has its own clock: its ticks carry the partition, their ids
//! are derived from the interval, the slot and the partition, and they are stored on the
//! partition's subject, so whichever instance owns the partition publishes the same events.

use crate::engine::SOURCE;
use chrono::{DateTime, Utc};
use events::tick::{ReconcilerTicked, TICK_COMPANY};
use events::{Event, EventData, EventId, TickId};
use producers::{PublishError, Publisher};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Namespace of tick ids.
const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x7e1c_4b1d_0c4e_5a3f_9d2b_6f80_41a7_c3e5);

fn millis(interval: Duration) -> i64 {
    i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// The slot of `now` for `interval` (slots are counted from the Unix epoch).
pub fn slot_of(now: DateTime<Utc>, interval: Duration) -> i64 {
    now.timestamp_millis().div_euclid(millis(interval))
}

/// The tick of `slot`: the same event for every publisher.
pub fn tick(interval: Duration, slot: i64) -> Event {
    partition_tick(interval, slot, None)
}

/// The tick of `slot` on `partition`'s clock (`None`: the one clock of an unpartitioned
/// stream, [`tick`]).
pub fn partition_tick(interval: Duration, slot: i64, partition: Option<u32>) -> Event {
    let ms = millis(interval);
    let name = match partition {
        None => format!("{ms}:{slot}"),
        Some(p) => format!("{ms}:{slot}:{p}"),
    };
    let tick_id = TickId(Uuid::new_v5(&TICK_NAMESPACE, name.as_bytes()));
    let at = DateTime::from_timestamp_millis(slot.saturating_mul(ms)).unwrap_or_default();
    Event::with_id(
        EventId::derived(EventId(tick_id.0), "reconciler.ticked"),
        TICK_COMPANY,
        SOURCE,
        at,
        EventData::ReconcilerTicked(ReconcilerTicked {
            tick_id,
            at,
            partition,
            extra: Default::default(),
        }),
    )
}

/// Publishes a tick per slot.
pub struct Ticker {
    publisher: Publisher,
    interval: Duration,
    partition: Option<u32>,
}

impl Ticker {
    pub fn new(publisher: Publisher, interval: Duration) -> Self {
        Self {
            publisher,
            interval,
            partition: None,
        }
    }

    /// Ticks `partition`'s clock instead of the unpartitioned one.
    pub fn for_partition(self, partition: Option<u32>) -> Self {
        Self { partition, ..self }
    }

    /// Publishes the tick of the current slot (by the wall clock).
    pub async fn tick_now(&self) -> Result<Event, PublishError> {
        let slot = slot_of(Utc::now(), self.interval);
        let event = partition_tick(self.interval, slot, self.partition);
        self.publisher.publish(&event).await?;
        Ok(event)
    }

    /// Publishes a tick at the start of every slot until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let ms = millis(self.interval);
        while !*shutdown.borrow() {
            if let Err(e) = self.tick_now().await {
                tracing::warn!(error = %e, "could not publish the reconciler tick");
            }
            let now = Utc::now().timestamp_millis();
            let next = (now.div_euclid(ms) + 1) * ms;
            let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0).max(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
}
