//! The stop request of a long-running producer: the binary turns SIGINT/SIGTERM into a `watch`
//! channel set to `true`, and the supervisor and the watchdog wait on it the same way.

use tokio::sync::watch;

/// Resolves once `stop` is (or turns) true; never, if its sender is dropped without asking to
/// stop (nobody can ask any more).
pub(crate) async fn requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_stop_already_requested_is_seen_at_once() {
        let (_tx, mut rx) = watch::channel(true);
        assert!(requested(&mut rx).now_or_never().is_some());
    }

    #[test]
    fn a_dropped_sender_never_asks_to_stop() {
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        assert!(requested(&mut rx).now_or_never().is_none());
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).unwrap();
        drop(tx);
        assert!(
            requested(&mut rx).now_or_never().is_some(),
            "sent before the drop"
        );
    }
}
