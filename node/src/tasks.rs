//! The node's task supervisor: the broker's long-running tasks (each
//! partition's proposer and role watcher, the group ticker, retention) are
//! spawned through [`Tasks`], so one value knows what runs, one signal stops
//! the tasks that run until shutdown, and [`Tasks::shutdown`] waits for all
//! of them. Short-lived work tied to one request or entry (an entry's
//! commit wait, a group's close) and the Raft layer's own tasks are spawned
//! directly.
//!
//! The server's own shutdown is a [`Shutdown`] too, triggered first: the
//! server finishes in-flight requests, then the broker flushes and closes
//! its partitions, then the supervisor stops and joins what is left.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// A shutdown signal: triggered once, seen by every receiver.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (Shutdown, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), rx)
    }

    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Resolves once `rx`'s shutdown (or close) has been signalled.
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The supervisor. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Tasks {
    shutdown: Shutdown,
    live: Arc<(AtomicUsize, Notify)>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a task as live until dropped (finished, or cancelled with its runtime).
struct LiveGuard(Arc<(AtomicUsize, Notify)>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.1.notify_waiters();
        }
    }
}

impl Tasks {
    pub fn new() -> Self {
        Tasks { shutdown: Shutdown::new().0, live: Arc::new((AtomicUsize::new(0), Notify::new())) }
    }

    /// The signal that [`Tasks::shutdown`] triggers.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Spawns `task`, counted until it ends.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.live.0.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.live.clone());
        tokio::spawn(async move {
            let _guard = guard;
            task.await;
            tracing::trace!(task = name, "background task ended");
        });
    }

    /// Spawns a task that runs `tick` every `every` until shutdown.
    pub fn every<F, Fut>(&self, name: &'static str, every: Duration, mut tick: F)
    where
        F: FnMut() -> Option<Fut> + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let mut stop = self.signal();
        self.spawn(name, async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(every) => {}
                }
                match tick() {
                    Some(work) => work.await,
                    None => break,
                }
            }
        });
    }

    /// Signals shutdown without waiting (for a caller that cannot await:
    /// a broker whose start failed half-way stops what it started).
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// Tasks still running.
    pub fn live(&self) -> usize {
        self.live.0.load(Ordering::SeqCst)
    }

    /// Signals shutdown and waits (up to `wait`) for every task to end;
    /// returns how many had not.
    pub async fn shutdown(&self, wait: Duration) -> usize {
        self.shutdown.trigger();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.live.1.notified();
            if self.live() == 0 {
                return 0;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, notified).await.is_err() {
                let left = self.live();
                tracing::warn!(tasks = left, "background tasks still running at shutdown");
                return left;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_stops_periodic_tasks_and_waits_for_them() {
        let tasks = Tasks::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        tasks.every("ticker", Duration::from_millis(5), move || {
            t.fetch_add(1, Ordering::SeqCst);
            Some(async {})
        });
        let mut stop = tasks.signal();
        tasks.spawn("waiter", async move { stopped(&mut stop).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(tasks.live(), 2);
        assert_eq!(tasks.shutdown(Duration::from_secs(5)).await, 0);
        assert!(ticks.load(Ordering::SeqCst) > 0);
        assert_eq!(tasks.live(), 0);
    }
}
