//! The job scheduler: starts jobs first come, first served while the worker pool has room,
//! holds the rest `Queued`, and resumes what a previous server process left running.
//!
//! A job asks for `instance_count × max_concurrency_per_instance` workers, no more than it has
//! pending mini-batches and no more than the whole pool. The job at the head of the queue
//! starts once that many workers are free; later jobs never overtake it.

use super::{Batch, plan::JobPlan, runner};
use crate::clock;
use sluice_domain::batch::JobStatus;
use sluice_store::{BatchJobRow, JobTransition};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the scheduler looks again without being woken.
const PASS_INTERVAL: Duration = Duration::from_secs(2);

/// A job with a runner in this process.
pub(super) struct RunningJob {
    pub workers: usize,
    pub cancel: watch::Sender<bool>,
}

/// Runs passes forever; spawned once by [`Batch::start`].
pub(super) async fn run(batch: Arc<Batch>) {
    loop {
        batch.provision_pending().await;
        batch.schedule().await;
        tokio::select! {
            _ = batch.wake.notified() => {}
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
        }
    }
}

impl Batch {
    /// Asks for a pass as soon as possible.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops a job's runner, if this process has one (its workers are killed).
    pub(super) fn stop_runner(&self, workspace: &str, name: &str) {
        let running = self.running.lock().expect("running lock");
        if let Some(job) = running.get(&(workspace.to_owned(), name.to_owned())) {
            job.cancel.send_replace(true);
        }
    }

    /// Worker processes in use now.
    pub(super) fn workers_in_use(&self) -> usize {
        self.running.lock().expect("running lock").values().map(|j| j.workers).sum()
    }

    async fn schedule(self: &Arc<Self>) {
        let store = &self.control.store;
        let active = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
        let jobs = match store.batch_jobs_with_status(&active).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "batch scheduler cannot read jobs");
                return;
            }
        };
        let capacity = self.config.pool_workers.max(1);
        let mut free = capacity.saturating_sub(self.workers_in_use());
        let mut blocked = false;
        for job in jobs {
            let key = (job.workspace.clone(), job.name.clone());
            if self.running.lock().expect("running lock").contains_key(&key) {
                continue;
            }
            let need = if blocked { usize::MAX } else { self.workers_needed(&job, capacity).await };
            if need <= free {
                free -= need;
                self.start_runner(job, need);
            } else {
                // First come, first served: nothing behind a waiting job starts before it.
                blocked = true;
                if job.status != JobStatus::Queued.as_str() {
                    let now = clock::now_rfc3339();
                    let t = JobTransition {
                        message: Some("waiting for free workers in the compute pool"),
                        ..JobTransition::to(JobStatus::Queued.as_str(), &now)
                    };
                    let from = [JobStatus::NotStarted.as_str(), JobStatus::Running.as_str()];
                    let _ = store.transition_batch_job((&job.workspace, &job.name), &from, &t).await;
                }
            }
        }
    }

    /// Workers a job would take now: what it asks for, at most its pending mini-batches and
    /// the whole pool; none when only the merge is left.
    async fn workers_needed(&self, job: &BatchJobRow, capacity: usize) -> usize {
        let wanted = serde_json::from_str::<JobPlan>(&job.plan_json).map_or(1, |p| p.settings.workers());
        let pending = match self.control.store.mini_batch_counts(&job.workspace, &job.name).await {
            Ok(c) => (c.total - c.committed - c.failed).max(0) as usize,
            Err(_) => 1,
        };
        wanted.min(pending).min(capacity)
    }

    fn start_runner(self: &Arc<Self>, job: BatchJobRow, workers: usize) {
        let key = (job.workspace.clone(), job.name.clone());
        let (cancel, rx) = watch::channel(false);
        self.running.lock().expect("running lock").insert(key.clone(), RunningJob { workers, cancel });
        let this = self.clone();
        tokio::spawn(async move {
            runner::run(this.clone(), job, workers, rx).await;
            this.running.lock().expect("running lock").remove(&key);
            this.wake();
        });
    }
}
