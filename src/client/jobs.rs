//! The task that runs a client's handlers and callbacks: it starts them in the order they are
//! queued (so they begin in the order of the events), runs them concurrently, and at shutdown
//! gives the running ones [`SHUTDOWN_GRACE`] and drops the rest.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::plumbing::BoxFuture;

/// How long [`SocketClient::shutdown`](crate::client::SocketClient::shutdown) lets running
/// handlers and callbacks finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// Set while the runner polls jobs: a `shutdown()` from inside one must not wait for the
    /// runner (itself).
    static IN_RUNNER: ();
}

/// Whether the caller is a job of a runner (a handler or a callback).
pub(crate) fn in_runner() -> bool {
    IN_RUNNER.try_with(|()| ()).is_ok()
}

/// Where jobs are queued for the runner, with the count of those queued or running.
pub(crate) struct JobQueue {
    jobs: mpsc::UnboundedSender<BoxFuture<()>>,
    in_flight: Arc<AtomicUsize>,
}

/// The receiving end of a [`JobQueue`]: [`run`](Self::run) it on a task of its own.
pub(crate) struct JobRunner {
    jobs: mpsc::UnboundedReceiver<BoxFuture<()>>,
    in_flight: Arc<AtomicUsize>,
}

/// A queue and the runner of what is queued on it.
pub(crate) fn job_queue() -> (JobQueue, JobRunner) {
    let (tx, rx) = mpsc::unbounded_channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    (
        JobQueue {
            jobs: tx,
            in_flight: in_flight.clone(),
        },
        JobRunner {
            jobs: rx,
            in_flight,
        },
    )
}

impl JobQueue {
    /// Queues `job`; dropped at once when the runner has stopped.
    pub(crate) fn push(&self, job: impl Future<Output = ()> + Send + 'static) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(Box::pin(job)).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// How many jobs are queued or running.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl JobRunner {
    /// Starts jobs in arrival order and runs them concurrently until `stop` resolves or the
    /// queue is dropped; then gives the running ones [`SHUTDOWN_GRACE`] and drops the rest.
    pub(crate) async fn run(self, stop: impl Future<Output = ()>) {
        let Self {
            mut jobs,
            in_flight,
        } = self;
        let done = |n: usize| {
            in_flight.fetch_sub(n, Ordering::AcqRel);
        };
        IN_RUNNER
            .scope((), async {
                tokio::pin!(stop);
                let mut running = FuturesUnordered::new();
                loop {
                    tokio::select! {
                        biased;
                        () = &mut stop => break,
                        job = jobs.recv() => match job {
                            Some(job) => running.push(job),
                            None => break,
                        },
                        Some(()) = running.next(), if !running.is_empty() => done(1),
                    }
                }
                jobs.close();
                while let Ok(job) = jobs.try_recv() {
                    drop(job);
                    done(1);
                }
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                    while running.next().await.is_some() {
                        done(1);
                    }
                })
                .await;
                if !running.is_empty() {
                    tracing::warn!(
                        running = running.len(),
                        "client handlers still running at shutdown: dropped"
                    );
                    done(running.len());
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::*;

    /// What the jobs did, in order.
    type Log = mpsc::UnboundedSender<String>;

    /// A job that notes its start (and whether it runs in the runner), sleeps `secs`, notes
    /// its end.
    fn job(log: &Log, name: &'static str, secs: u64) -> impl Future<Output = ()> + Send + 'static {
        let log = log.clone();
        async move {
            log.send(format!("start {name} in_runner={}", in_runner()))
                .ok();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            log.send(format!("end {name}")).ok();
        }
    }

    /// Notes when it is dropped: the job it is moved into was dropped, run or not.
    struct NoteDrop(Log, &'static str);

    impl Drop for NoteDrop {
        fn drop(&mut self) {
            self.0.send(format!("dropped {}", self.1)).ok();
        }
    }

    fn noted(log: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
        std::iter::from_fn(|| log.try_recv().ok()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_start_in_arrival_order_and_run_side_by_side() {
        let (log, mut lines) = mpsc::unbounded_channel();
        let (queue, runner) = job_queue();
        for (name, secs) in [("a", 3), ("b", 2), ("c", 1)] {
            queue.push(job(&log, name, secs));
        }
        assert_eq!(queue.in_flight(), 3);
        let start = Instant::now();
        let runner = tokio::spawn(runner.run(std::future::pending()));
        let mut seen = Vec::new();
        while seen.len() < 6 {
            seen.push(lines.recv().await.unwrap());
        }
        // Side by side: as long as the longest, not the sum.
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(
            seen,
            [
                "start a in_runner=true",
                "start b in_runner=true",
                "start c in_runner=true",
                "end c",
                "end b",
                "end a"
            ]
        );
        assert_eq!(queue.in_flight(), 0);
        assert!(!in_runner());
        drop(queue);
        runner.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn at_stop_running_jobs_get_the_grace_and_the_others_are_dropped() {
        let (log, mut lines) = mpsc::unbounded_channel();
        let (queue, runner) = job_queue();
        let (stop, stopped) = oneshot::channel::<()>();
        let start = Instant::now();
        let runner = tokio::spawn(runner.run(async {
            stopped.await.ok();
        }));
        queue.push(job(&log, "quick", 0));
        let slow = NoteDrop(log.clone(), "slow");
        queue.push(async move {
            let _slow = slow;
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let finishing = job(&log, "finishing", 0);
        queue.push(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            finishing.await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        // Queued as the runner stops: dropped without running.
        let queued = NoteDrop(log.clone(), "queued");
        queue.push(async move {
            let _queued = queued;
            panic!("a job queued at the stop ran");
        });
        runner.await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100) + SHUTDOWN_GRACE,
            "the grace, then no more"
        );
        assert_eq!(
            noted(&mut lines),
            [
                "start quick in_runner=true",
                "end quick",
                "dropped queued",
                "start finishing in_runner=true",
                "end finishing",
                "dropped slow"
            ]
        );
        assert_eq!(queue.in_flight(), 0);
        // After the stop a job is dropped at once, and not counted.
        queue.push(async {});
        assert_eq!(queue.in_flight(), 0);
    }
}
