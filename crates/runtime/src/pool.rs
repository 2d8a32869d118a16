//! The dedicated inference thread pool: std threads fed by a bounded queue, answering on oneshot channels, so
//! ONNX Runtime never runs on the async runtime's threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::error::{ErrorCode, InferError};
use crate::infer::{InferenceJob, run_job};
use crate::model::LoadedModel;
use crate::tensor::NamedTensor;

type Reply = Result<Vec<NamedTensor>, InferError>;

struct Work {
    model: Arc<LoadedModel>,
    job: InferenceJob,
    reply: oneshot::Sender<Reply>,
}

/// Sizes of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Worker threads; each model holds one session per worker.
    pub threads: usize,
    /// Jobs that may wait for a worker before new ones are refused with 503.
    pub queue_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { threads: 1, queue_capacity: 256 }
    }
}

/// A fixed set of inference threads. Dropping the pool lets the workers finish the queue and exit;
/// `shutdown` also waits for them.
pub struct InferencePool {
    sender: mpsc::Sender<Work>,
    workers: Vec<JoinHandle<()>>,
}

impl InferencePool {
    pub fn new(config: PoolConfig) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<Work>(config.queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..config.threads.max(1))
            .map(|index| {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("sluice-infer-{index}"))
                    .spawn(move || worker_loop(index, &receiver))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self { sender, workers })
    }

    /// Queues a job and waits for its result without blocking the async runtime. A full queue is refused at once
    /// (`ErrorCode::Overloaded`) rather than waited on.
    pub async fn submit(&self, model: Arc<LoadedModel>, job: InferenceJob) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.sender.try_send(Work { model, job, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                InferError::new(ErrorCode::Overloaded, "too many pending inference requests; retry later")
            }
            mpsc::error::TrySendError::Closed(_) => InferError::internal("the inference pool has stopped"),
        })?;
        answer.await.map_err(|_| InferError::internal("the inference worker stopped before answering"))?
    }

    /// Closes the queue, lets the workers drain it, and waits for them. Blocking.
    pub fn shutdown(self) {
        let Self { sender, workers } = self;
        drop(sender);
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn worker_loop(index: usize, receiver: &Mutex<mpsc::Receiver<Work>>) {
    loop {
        // Only one idle worker waits on the channel at a time; the others wait on the lock.
        let work = {
            let mut guard = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            guard.blocking_recv()
        };
        let Some(Work { model, job, reply }) = work else { return };
        if reply.is_closed() {
            continue; // the client went away while the job was queued
        }
        let result = catch_unwind(AssertUnwindSafe(|| run_job(&model, index, job))).unwrap_or_else(|_| {
            tracing::error!(model = %model.info.name, "inference panicked");
            Err(InferError::internal("inference failed unexpectedly"))
        });
        let _ = reply.send(result);
    }
}
