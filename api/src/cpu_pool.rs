//! A fixed pool of threads for the CPU-bound part of a write: decoding the body and verifying
//! its signatures (DESIGN.md, write path step 1: off the async workers).
//!
//! Why not `web::block`: that is tokio's blocking pool, which grows to hundreds of threads
//! under load (one per queued request). Hundreds of runnable threads on a few cores cost
//! context switches and per-thread allocator heaps without adding throughput. This pool has one
//! thread per core and a bounded queue; when the queue is full the caller is told so and
//! answers 503, which is the pushback a client can act on.
//!
//! A queued job whose caller has gone (the client hung up and actix dropped the handler's
//! future, and with it the receiving end of the job's reply) is skipped when its turn comes:
//! otherwise a client could queue work, disconnect, and still have the node do it.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Sender, TrySendError};
use prometheus::IntCounter;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CpuPoolError {
    /// The queue is full: the node is verifying as fast as it can.
    #[error("the verification queue is full")]
    Saturated,
    /// The pool's threads are gone (shutting down).
    #[error("the verification pool stopped")]
    Stopped,
}

/// A fixed set of worker threads fed by one bounded queue. Cheap to clone.
#[derive(Clone)]
pub struct CpuPool {
    jobs: Sender<Job>,
    threads: usize,
    /// Jobs skipped because their caller had gone.
    abandoned: IntCounter,
}

impl std::fmt::Debug for CpuPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuPool")
            .field("threads", &self.threads)
            .field("queued", &self.jobs.len())
            .field("abandoned", &self.abandoned.get())
            .finish()
    }
}

impl CpuPool {
    /// `threads` workers (at least one) and room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize, name: &str) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queued) = bounded::<Job>(queue.max(1));
        let queued = Arc::new(queued);
        for i in 0..threads {
            let queued = queued.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = queued.recv() {
                        job();
                    }
                })?;
        }
        let abandoned = IntCounter::new(
            "cpu_pool_jobs_abandoned",
            "Queued jobs skipped because their caller had gone",
        )
        .map_err(std::io::Error::other)?;
        Ok(Self {
            jobs,
            threads,
            abandoned,
        })
    }

    /// Counts skipped jobs on `counter` (e.g. one registered for Prometheus) instead of the
    /// pool's own. Call before submitting work.
    pub fn with_abandoned_counter(mut self, counter: IntCounter) -> Self {
        self.abandoned = counter;
        self
    }

    /// Jobs skipped so far because their caller had gone.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.get()
    }

    /// One thread per available core.
    pub fn per_core(queue: usize, name: &str) -> std::io::Result<Self> {
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores, queue, name)
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// Runs `work` on the pool and waits for its result.
    pub async fn run<T, F>(&self, work: F) -> Result<T, CpuPoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let abandoned = self.abandoned.clone();
        let job: Job = Box::new(move || {
            if reply.is_closed() {
                abandoned.inc();
                return;
            }
            let _ = reply.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CpuPoolError::Saturated),
            Err(TrySendError::Disconnected(_)) => return Err(CpuPoolError::Stopped),
        }
        answer.await.map_err(|_| CpuPoolError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_named_threads() {
        let pool = CpuPool::new(2, 16, "test-pool").unwrap();
        let name = pool
            .run(|| thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("test-pool-"));
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_not_grown() {
        let pool = CpuPool::new(1, 1, "full-pool").unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        // Occupy the only thread until released.
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = blocked.recv();
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // One job fits in the queue; the next is refused.
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 1).await }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.queued() < 1 {
            assert!(std::time::Instant::now() < deadline, "job never queued");
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 2).await, Err(CpuPoolError::Saturated));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_whose_caller_left_are_skipped() {
        use futures::FutureExt as _;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let pool = CpuPool::new(1, 16, "abandon-pool").unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = blocked.recv();
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // Three jobs are queued (one poll submits a job), then their callers go away.
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let ran = ran.clone();
            let submitted = pool
                .run(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .now_or_never();
            assert!(submitted.is_none(), "the job ran while the thread was busy");
        }
        assert_eq!(pool.queued(), 3);
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
        // The pool is FIFO on one thread: once a later live job answers, the three were handled.
        assert_eq!(pool.run(|| 7).await, Ok(7));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "an abandoned job ran");
        assert_eq!(pool.abandoned(), 3);
    }
}
