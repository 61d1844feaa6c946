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
