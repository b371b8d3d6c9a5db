//! Background tasks the server owns: each has a name, a way to be told to
//! stop, and a handle to wait for it — so that shutdown can stop them in
//! order (a task that reads the database must end before the database
//! closes) and say which one misbehaved.
//!
//! As in mini-redis, a task learns that it must stop through a [`Shutdown`]
//! it is given at spawn time, and checks it between units of work (a tick,
//! a message); what it is doing when told is finished, never cut.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The signal, held by a task, that it must stop after its current unit of work.
#[derive(Debug, Clone)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// Completes once the task is told to stop (at once if it already was).
    pub async fn recv(&self) {
        self.0.cancelled().await;
    }
}

/// A running background task. Dropping it leaves the task running; call
/// [`Task::stop`] to end it.
#[derive(Debug)]
pub struct Task {
    name: &'static str,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Task {
    /// Spawns `body` on the current runtime, handing it the [`Shutdown`] it must watch.
    pub fn spawn<F, Fut>(name: &'static str, body: F) -> Task
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(body(Shutdown(stop.clone())));
        Task { name, stop, handle }
    }

    /// Tells the task to stop and waits until it has.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.handle.await {
            Ok(()) => tracing::debug!(task = self.name, "stopped"),
            Err(e) => tracing::warn!(task = self.name, error = %e, "ended abnormally"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_task_finishes_its_unit_of_work_then_stops() {
        let units = Arc::new(AtomicU32::new(0));
        let counted = units.clone();
        let task = Task::spawn("counter", move |shutdown| async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            loop {
                tokio::select! {
                    () = shutdown.recv() => break,
                    _ = tick.tick() => {
                        // One unit of work, never cut in the middle.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        task.stop().await;
        let stopped_at = units.load(Ordering::SeqCst);
        assert!(stopped_at >= 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            units.load(Ordering::SeqCst),
            stopped_at,
            "nothing ran after stop"
        );
    }
}
