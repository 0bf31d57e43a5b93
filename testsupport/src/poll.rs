//! Waiting without sleeping blindly: poll a condition until it holds or a deadline passes, and
//! fail with what was last seen.

use std::future::Future;
use std::time::{Duration, Instant};

/// A point in time after which waiting is a failure.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Deadline::after(timeout);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if deadline.passed() {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
