//! The dedicated inference thread pool: std threads fed by a bounded queue, answering on oneshot channels, so
//! ONNX Runtime does not hold up the async runtime's threads.
//!
//! One exception: a quick model (its executions take under [`INLINE_MAX_COMPUTE`] on average) whose request finds
//! the pool idle, nothing queued and nothing running, runs on the async thread that received it. Handing such a
//! request to a worker thread and back costs two thread wake-ups, more than the inference itself (a few
//! microseconds for a small classifier); inline, a request that arrives alone costs no wake-up at all. Under load
//! requests queue and go to the workers as before.
//!
//! For a model with `dynamic_batching` (Triton semantics), a worker that takes a request also takes the compatible
//! requests queued behind it, up to `max_batch_size` rows, waiting at most `max_queue_delay_microseconds` from the
//! first request's arrival for more (not at all once a preferred batch size is reached). The batch runs as one
//! ONNX Runtime call and each request gets its own rows of the outputs; an execution error fails every request in
//! the batch, as in Triton.
//!
//! A quick batching model with no queue delay (`dynamic_batching { }`, the usual configuration) has an inline path
//! of its own. A request that finds no worker busy and nothing queued opens a batch and yields to the async
//! runtime once; the requests that arrive meanwhile (those already read from other connections) join it, up to
//! `max_batch_size` rows, and the first request then runs the batch on its own thread. Arriving alone, a request
//! costs no thread wake-up, as a model without batching; arriving together, requests still run as one batch. A
//! request that does not fit the open batch goes to the workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::batch;
use crate::error::{ErrorCode, InferError};
use crate::infer::{InferenceJob, run_job};
use crate::model::{LoadedModel, RequestTiming};
use crate::tensor::NamedTensor;

type Reply = Result<Vec<NamedTensor>, InferError>;

struct Work {
    model: Arc<LoadedModel>,
    job: InferenceJob,
    reply: oneshot::Sender<Reply>,
    queued_at: Instant,
}

/// Sizes of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Worker threads; each model holds one session per worker.
    pub threads: usize,
    /// Jobs that may wait for a worker before new ones are refused with 503.
    pub queue_capacity: usize,
    /// A model whose executions take less than this on average runs inline when the pool is idle (module
    /// documentation); default [`INLINE_MAX_COMPUTE`].
    pub inline_max_compute: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { threads: 1, queue_capacity: 256, inline_max_compute: INLINE_MAX_COMPUTE }
    }
}

/// A fixed set of inference threads. Dropping the pool lets the workers finish the queue and exit;
/// `shutdown` also waits for them.
pub struct InferencePool {
    sender: SyncSender<Work>,
    workers: Vec<JoinHandle<()>>,
    /// Requests submitted and not yet answered (or given up by their caller).
    pending: AtomicUsize,
    /// Jobs handed to the workers and not yet executed by them.
    queued: Arc<AtomicUsize>,
    /// A batch being gathered to run inline (module documentation), while its first request yields.
    gathering: Mutex<Option<Gathering>>,
    /// Requests that ran inline on the caller's thread.
    inline_runs: AtomicU64,
    inline_max_compute: Duration,
}

/// The default longest average execution for which a request that finds the pool idle runs inline (module
/// documentation).
pub const INLINE_MAX_COMPUTE: Duration = Duration::from_micros(100);

/// An inline batch being gathered: its jobs and their rows.
struct Gathering {
    batch: Vec<Work>,
    rows: usize,
}

impl Gathering {
    /// Adds `work` if it can run with the batch (same model, compatible job, rows within `max_batch_size`);
    /// else gives it back.
    fn admit(&mut self, work: Work) -> Result<(), Work> {
        let Some(rows) = joining_rows(&self.batch[0], self.rows, &work) else { return Err(work) };
        self.rows += rows;
        self.batch.push(work);
        Ok(())
    }
}

/// Held by the request that opened a [`Gathering`] while it yields: if that request is given up meanwhile, the
/// requests that joined its batch go to the workers instead of waiting for ever.
struct Opened<'a> {
    pool: &'a InferencePool,
    armed: bool,
}

impl Opened<'_> {
    /// Closes the gathering and takes its batch.
    fn take(mut self) -> Vec<Work> {
        self.armed = false;
        lock(&self.pool.gathering).take().map(|g| g.batch).unwrap_or_default()
    }
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Some(gathering) = lock(&self.pool.gathering).take()
        {
            for work in gathering.batch {
                let _ = self.pool.enqueue(work);
            }
        }
    }
}

/// Counts a submitted request in `pending` until dropped.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InferencePool {
    pub fn new(config: PoolConfig) -> std::io::Result<Self> {
        let (sender, receiver) = sync_channel::<Work>(config.queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(AtomicUsize::new(0));
        let workers = (0..config.threads.max(1))
            .map(|index| {
                let receiver = Arc::clone(&receiver);
                let queued = Arc::clone(&queued);
                std::thread::Builder::new()
                    .name(format!("sluice-infer-{index}"))
                    .spawn(move || worker_loop(index, &receiver, &queued))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            sender,
            workers,
            pending: AtomicUsize::new(0),
            queued,
            gathering: Mutex::new(None),
            inline_runs: Default::default(),
            inline_max_compute: config.inline_max_compute,
        })
    }

    /// Queues a checked job and waits for its result without blocking the async runtime. A full queue is refused
    /// at once (`ErrorCode::Overloaded`) rather than waited on.
    pub async fn submit(&self, model: Arc<LoadedModel>, job: InferenceJob) -> Reply {
        let quick = model.stats.mean_compute().is_some_and(|d| d < self.inline_max_compute);
        if quick && model.info.batching.as_ref().is_some_and(|b| b.max_queue_delay.is_zero()) {
            return self.submit_gathered(model, job).await;
        }
        let inline = quick
            && model.info.batching.is_none()
            && self.pending.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if !inline {
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
        let _pending = Pending(&self.pending);
        let (reply, answer) = oneshot::channel();
        if inline {
            self.execute_inline(vec![Work { model, job, reply, queued_at: Instant::now() }]);
            return answer.await.map_err(|_| InferError::internal("the inference stopped before answering"))?;
        }
        self.enqueue(Work { model, job, reply, queued_at: Instant::now() })?;
        answer.await.map_err(|_| InferError::internal("the inference worker stopped before answering"))?
    }

    /// A quick batching model's request with no queue delay (module documentation): joins the batch being
    /// gathered, or opens one when no worker is busy, or else goes to the workers.
    async fn submit_gathered(&self, model: Arc<LoadedModel>, job: InferenceJob) -> Reply {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let _pending = Pending(&self.pending);
        let (reply, answer) = oneshot::channel();
        let work = Work { model, job, reply, queued_at: Instant::now() };
        enum Route {
            Joined,
            Opened,
            Queue(Work),
        }
        let route = {
            let mut gathering = lock(&self.gathering);
            match (gathering.as_mut(), batch::rows(&work.job)) {
                (Some(open), _) => open.admit(work).map_or_else(Route::Queue, |()| Route::Joined),
                (None, Some(rows)) if self.queued.load(Ordering::Acquire) == 0 => {
                    *gathering = Some(Gathering { batch: vec![work], rows });
                    Route::Opened
                }
                (None, _) => Route::Queue(work),
            }
        };
        match route {
            Route::Joined => {}
            Route::Opened => {
                let opened = Opened { pool: self, armed: true };
                tokio::task::yield_now().await;
                self.execute_inline(opened.take());
            }
            Route::Queue(work) => self.enqueue(work)?,
        }
        answer.await.map_err(|_| InferError::internal("the inference stopped before answering"))?
    }

    /// Runs `batch` on the calling thread, on the session of the last worker: workers take jobs in no fixed
    /// order, and one that starts meanwhile on the same session waits at most one quick execution.
    fn execute_inline(&self, mut batch: Vec<Work>) {
        batch.retain(|work| !work.reply.is_closed());
        self.inline_runs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        execute(self.workers.len().saturating_sub(1), batch, || {});
    }

    /// Hands `work` to the workers; when the queue is full or closed, answers it with the error and returns it.
    fn enqueue(&self, work: Work) -> Result<(), InferError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let Err(e) = self.sender.try_send(work) else { return Ok(()) };
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let (work, error) = match e {
            TrySendError::Full(work) => {
                (work, InferError::new(ErrorCode::Overloaded, "too many pending inference requests; retry later"))
            }
            TrySendError::Disconnected(work) => (work, InferError::internal("the inference pool has stopped")),
        };
        let _ = work.reply.send(Err(error.clone()));
        Err(error)
    }

    /// How many requests ran inline on the caller's thread (module documentation) since the pool started.
    pub fn inline_runs(&self) -> u64 {
        self.inline_runs.load(Ordering::Relaxed)
    }

    /// Closes the queue, lets the workers drain it, and waits for them. Blocking.
    pub fn shutdown(self) {
        let Self { sender, workers, .. } = self;
        drop(sender);
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_loop(index: usize, receiver: &Mutex<Receiver<Work>>, queued: &AtomicUsize) {
    // A queued job that could not join the last batch runs next.
    let mut carried: Option<Work> = None;
    loop {
        let first = match carried.take() {
            Some(work) => work,
            // Only one idle worker waits on the channel at a time; the others wait on the lock.
            None => match lock(receiver).recv() {
                Ok(work) => work,
                Err(_) => return,
            },
        };
        if first.reply.is_closed() {
            queued.fetch_sub(1, Ordering::AcqRel);
            continue; // the client went away while the job was queued
        }
        let (batch, next) = gather(first, receiver, queued);
        carried = next;
        let taken = batch.len();
        execute(index, batch, || {
            queued.fetch_sub(taken, Ordering::AcqRel);
        });
    }
}

/// The batch `first` starts: itself alone unless its model batches; else with the compatible jobs queued behind
/// it. Returns the batch and the first queued job that could not join it.
fn gather(first: Work, receiver: &Mutex<Receiver<Work>>, queued: &AtomicUsize) -> (Vec<Work>, Option<Work>) {
    let info = &first.model.info;
    let (Some(batching), Some(mut rows)) = (info.batching.clone(), batch::rows(&first.job)) else {
        return (vec![first], None);
    };
    let max = usize::try_from(info.max_batch_size).unwrap_or(usize::MAX);
    let deadline = first.queued_at + batching.max_queue_delay;
    let mut batch = vec![first];
    let queue = lock(receiver);
    while rows < max {
        let next = match queue.try_recv() {
            Ok(work) => work,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let preferred = u32::try_from(rows).is_ok_and(|r| batching.preferred_batch_sizes.contains(&r));
                let now = Instant::now();
                if preferred || now >= deadline {
                    break;
                }
                match queue.recv_timeout(deadline - now) {
                    Ok(work) => work,
                    Err(_) => break,
                }
            }
        };
        if next.reply.is_closed() {
            queued.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let Some(next_rows) = joining_rows(&batch[0], rows, &next) else {
            return (batch, Some(next));
        };
        rows += next_rows;
        batch.push(next);
    }
    (batch, None)
}

/// The rows `next` adds to the batch that `first` started, which holds `rows` rows, if it may join it: the same
/// model, a compatible job, and at most `max_batch_size` rows in all. The one rule for the workers' batches and the
/// inline ones.
fn joining_rows(first: &Work, rows: usize, next: &Work) -> Option<usize> {
    let max = usize::try_from(first.model.info.max_batch_size).unwrap_or(usize::MAX);
    let joins = Arc::ptr_eq(&next.model, &first.model) && batch::compatible(&first.job, &next.job);
    batch::rows(&next.job).filter(|r| joins && rows + r <= max)
}

fn run_guarded(model: &LoadedModel, index: usize, job: InferenceJob) -> Reply {
    catch_unwind(AssertUnwindSafe(|| run_job(model, index, job))).unwrap_or_else(|_| {
        tracing::error!(model = %model.info.name, "inference panicked");
        Err(InferError::internal("inference failed unexpectedly"))
    })
}

/// Runs a batch as one execution, answers each request with its share, and records the statistics; `done` runs
/// after the execution, before anyone is answered.
fn execute(index: usize, batch: Vec<Work>, done: impl FnOnce()) {
    let Some(model) = batch.first().map(|w| Arc::clone(&w.model)) else { return };
    let batching = model.info.max_batch_size > 0;
    let rows: Vec<usize> = batch.iter().map(|w| if batching { batch::rows(&w.job).unwrap_or(1) } else { 1 }).collect();
    let started = Instant::now();
    let (waiting, jobs): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| ((w.reply, w.queued_at), w.job)).unzip();
    let replies: Vec<Reply> = if jobs.len() == 1 {
        jobs.into_iter().map(|job| run_guarded(&model, index, job)).collect()
    } else {
        let result = match batch::merge(jobs) {
            Some(merged) => run_guarded(&model, index, merged),
            None => Err(InferError::internal("requests could not be combined into one batch")),
        };
        match result.map(|outputs| batch::split(outputs, &rows)) {
            Ok(Some(parts)) => parts.into_iter().map(Ok).collect(),
            Ok(None) => {
                let e = InferError::internal(format!(
                    "model '{}' has an output without the batch as its first dimension, which dynamic batching \
                     needs; remove dynamic_batching from its config.pbtxt",
                    model.info.name
                ));
                rows.iter().map(|_| Err(e.clone())).collect()
            }
            Err(e) => rows.iter().map(|_| Err(e.clone())).collect(),
        }
    };
    let compute = started.elapsed();
    let timings: Vec<RequestTiming> = waiting
        .iter()
        .zip(&replies)
        .zip(&rows)
        .map(|(((_, queued_at), answer), rows)| RequestTiming {
            rows: u64::try_from(*rows).unwrap_or(u64::MAX),
            queued: started.saturating_duration_since(*queued_at),
            total: queued_at.elapsed(),
            ok: answer.is_ok(),
        })
        .collect();
    // Recorded before anyone is answered: a caller that reads the statistics after its answer finds it counted.
    model.stats.record(rows.iter().sum::<usize>() as u64, compute, &timings);
    done();
    for ((reply, _), answer) in waiting.into_iter().zip(replies) {
        let _ = reply.send(answer);
    }
}
