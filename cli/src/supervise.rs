//! `runledger up`'s tasks under one supervisor: a task whose attempt fails for a reason that
//! can pass (a server down, a connection lost) is started again after a pause (250 ms, doubling
//! to 5 s); a task that fails for a reason that cannot pass by waiting (a wrong setting, a
//! migration that does not apply) or that panics (a bug) stops the whole process with a message
//! naming the task, so it never runs on with a part missing.

use anyhow::anyhow;
use projector::live::Backoff;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One attempt of a task: runs until the stop signal (then `Ok`) or fails.
pub type Attempt = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Told about every failed attempt (task, error) and every restart that followed a failure.
pub type Observer = Arc<dyn Fn(&'static str, Option<&str>) + Send + Sync>;

pub struct Supervisor {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    stop_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    observer: Option<Observer>,
}

impl Supervisor {
    /// A supervisor whose tasks stop when `signal` turns true (or when one of them fails for
    /// good).
    pub fn new(mut signal: watch::Receiver<bool>) -> Self {
        let (stop_tx, stop) = watch::channel(*signal.borrow());
        let forward = stop_tx.clone();
        tokio::spawn(async move {
            if signal.wait_for(|stop| *stop).await.is_ok() {
                let _ = forward.send(true);
            }
        });
        Self {
            tasks: JoinSet::new(),
            stop_tx,
            stop,
            observer: None,
        }
    }

    /// Calls `observer` with every failed attempt.
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Runs `attempt` until it succeeds or fails for good (then the error is returned), trying
    /// again after a pause while it fails for a reason that can pass. `None` when stopped first.
    pub async fn until_ready<T, F, Fut>(
        &self,
        what: &'static str,
        mut attempt: F,
    ) -> Option<anyhow::Result<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut stop = self.stop.clone();
        let mut backoff = Backoff::default();
        loop {
            if *stop.borrow() {
                return None;
            }
            let outcome = tokio::select! {
                outcome = attempt() => outcome,
                _ = stop.wait_for(|stop| *stop) => return None,
            };
            match outcome {
                Ok(value) => return Some(Ok(value)),
                Err(e) if !passes(&e) => return Some(Err(e)),
                Err(e) => {
                    let pause = backoff.pause();
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "{what} failed; trying again");
                    if let Some(observer) = &self.observer {
                        observer(what, Some(&format!("{e:#}")));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|stop| *stop) => return None,
                    }
                }
            }
        }
    }

    /// Runs `task` (a fresh attempt each time) until the stop signal, starting it again after a
    /// pause whenever an attempt fails for a reason that can pass or ends before the stop.
    pub fn spawn<F>(&mut self, name: &'static str, mut task: F)
    where
        F: FnMut(watch::Receiver<bool>) -> Attempt + Send + 'static,
    {
        let stop = self.stop.clone();
        let observer = self.observer.clone();
        self.tasks.spawn(async move {
            let mut backoff = Backoff::default();
            let mut wait = stop.clone();
            loop {
                let outcome = task(stop.clone()).await;
                if *stop.borrow() {
                    return (name, outcome);
                }
                let error = match outcome {
                    Err(e) if !passes(&e) => return (name, Err(e)),
                    Err(e) => format!("{e:#}"),
                    Ok(()) => "ended before the stop signal".to_owned(),
                };
                let pause = backoff.pause();
                tracing::warn!(task = name, error = %error, retry_in_ms = pause.as_millis() as u64, "task failed; starting it again");
                if let Some(observer) = &observer {
                    observer(name, Some(&error));
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = wait.wait_for(|stop| *stop) => return (name, Ok(())),
                }
            }
        });
    }

    /// Waits for every task. The first task that fails for good, or panics, stops the others;
    /// its error is returned, naming it.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_failure: Option<anyhow::Error> = None;
        while let Some(joined) = self.tasks.join_next().await {
            let failure = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((name, Err(e))) => e.context(format!("the {name} task cannot go on")),
                Err(e) if e.is_panic() => anyhow!(
                    "a task panicked (a bug in runledger; please report it with the log above): {}",
                    panic_message(e.into_panic())
                ),
                Err(e) => anyhow!("a task was cancelled: {e}"),
            };
            tracing::error!(error = %format!("{failure:#}"), "stopping runledger up");
            let _ = self.stop_tx.send(true);
            first_failure.get_or_insert(failure);
        }
        first_failure.map_or(Ok(()), Err)
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Whether waiting can make `e` pass: everything but a wrong setting, a stream set up
/// differently, servers that do not map subjects, a migration that does not apply or an
/// address that cannot be served.
fn passes(e: &anyhow::Error) -> bool {
    use producers::StreamError;
    use projector::ProjectorError;
    use reconciler::ReconcilerError;
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<ProjectorError>() {
            return !matches!(e, ProjectorError::Config(_) | ProjectorError::Migration(_));
        }
        if let Some(e) = cause.downcast_ref::<ReconcilerError>() {
            return !matches!(
                e,
                ReconcilerError::Config(_)
                    | ReconcilerError::Projector(ProjectorError::Config(_))
                    | ReconcilerError::Projector(ProjectorError::Migration(_))
            );
        }
        if let Some(e) = cause.downcast_ref::<StreamError>() {
            return matches!(e, StreamError::JetStream(_));
        }
        if cause.downcast_ref::<api::ServeError>().is_some()
            || cause.downcast_ref::<api::TokenError>().is_some()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_task_that_fails_for_a_passing_reason_is_started_again() {
        let (tx, rx) = watch::channel(false);
        let mut supervisor = Supervisor::new(rx);
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = attempts.clone();
        supervisor.spawn("flaky", move |mut stop| {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                if n < 3 {
                    anyhow::bail!("connection refused (attempt {n})");
                }
                let _ = stop.wait_for(|s| *s).await;
                Ok(())
            })
        });
        let waited = tokio::spawn(supervisor.wait());
        testsupport::eventually(
            std::time::Duration::from_secs(10),
            "a third attempt",
            || {
                let n = attempts.load(Ordering::SeqCst);
                async move { (n >= 3).then_some(()) }
            },
        )
        .await;
        tx.send(true).unwrap();
        waited
            .await
            .unwrap()
            .expect("a stopped task is not a failure");
    }

    #[tokio::test]
    async fn a_wrong_setting_or_a_panic_stops_everything_naming_the_task() {
        let (_tx, rx) = watch::channel(false);
        let mut supervisor = Supervisor::new(rx);
        supervisor.spawn("steady", |mut stop| {
            Box::pin(async move {
                let _ = stop.wait_for(|s| *s).await;
                Ok(())
            })
        });
        supervisor.spawn("misconfigured", |_| {
            Box::pin(async {
                let wrong =
                    projector::ProjectorError::Config("schema name `X` is not valid".into());
                Err(wrong.into())
            })
        });
        let error = supervisor
            .wait()
            .await
            .expect_err("a wrong setting stops up");
        let text = format!("{error:#}");
        assert!(
            text.contains("the misconfigured task cannot go on"),
            "{text}"
        );
        assert!(text.contains("schema name"), "{text}");

        let (_tx, rx) = watch::channel(false);
        let mut supervisor = Supervisor::new(rx);
        supervisor.spawn("buggy", |_| Box::pin(async { panic!("broken invariant") }));
        let error = supervisor.wait().await.expect_err("a panic stops up");
        let text = format!("{error:#}");
        assert!(
            text.contains("a bug in runledger") && text.contains("broken invariant"),
            "{text}"
        );
    }
}
