//! The job scheduler: starts waiting jobs in queue order (priority, then arrival) while their
//! compute pool has free instances and the server has free worker processes, holds the rest
//! `Queued` with the reason, and resumes what a previous server process left running. The
//! decisions are `sluice_domain::compute::schedule`'s; this module feeds it and acts on them.

use super::{Batch, computes, plan::JobPlan, runner};
use crate::clock;
use sluice_domain::batch::JobStatus;
use sluice_domain::compute::{Capacity, Decision, QueuedJob, schedule};
use sluice_store::{BatchJobRow, JobTransition};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the scheduler looks again without being woken.
const PASS_INTERVAL: Duration = Duration::from_secs(2);

/// A job with a runner in this process.
pub(super) struct RunningJob {
    pub compute: String,
    pub instances: u32,
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

    /// The jobs running on a pool (by name) and the instances they hold.
    pub(super) fn running_on(&self, workspace: &str, compute: &str) -> (Vec<String>, u32) {
        let running = self.running.lock().expect("running lock");
        let mut names = Vec::new();
        let mut instances = 0;
        for ((ws, name), job) in running.iter() {
            if ws == workspace && job.compute == compute {
                names.push(name.clone());
                instances += job.instances;
            }
        }
        names.sort();
        (names, instances)
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
        let waiting: Vec<BatchJobRow> = {
            let running = self.running.lock().expect("running lock");
            jobs.into_iter().filter(|j| !running.contains_key(&(j.workspace.clone(), j.name.clone()))).collect()
        };
        if waiting.is_empty() {
            return;
        }
        let mut cap = Capacity { machine_workers: self.config.pool_workers.max(1), ..Capacity::default() };
        match computes::capacities(self, sluice_api::DEFAULT_WORKSPACE).await {
            Ok(pools) => cap.pools = pools.into_iter().collect(),
            Err(e) => {
                tracing::error!(error = %e, "batch scheduler cannot read compute pools");
                return;
            }
        }
        for job in self.running.lock().expect("running lock").values() {
            *cap.in_use.entry(job.compute.clone()).or_default() += job.instances;
            cap.workers_in_use += job.workers;
        }
        let mut queued = Vec::with_capacity(waiting.len());
        for job in &waiting {
            queued.push(self.queued_job(job).await);
        }
        for (job, decision) in waiting.into_iter().zip(schedule(&queued, &mut cap)) {
            match decision {
                Decision::Start { instances, workers } => self.start_runner(job, instances, workers),
                Decision::Wait(why) => self.hold(&job, &why).await,
                Decision::NoSuchCompute => {
                    let why = format!(
                        "compute {:?} no longer exists; create it again or invoke the job on a deployment with another compute",
                        job.compute
                    );
                    let now = clock::now_rfc3339();
                    let t = JobTransition {
                        message: Some(&why),
                        ended: true,
                        ..JobTransition::to(JobStatus::Failed.as_str(), &now)
                    };
                    let from =
                        [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
                    let _ = self.control.store.transition_batch_job((&job.workspace, &job.name), &from, &t).await;
                }
            }
        }
    }

    /// Marks a job `Queued` with why it waits (once per change of reason).
    async fn hold(&self, job: &BatchJobRow, why: &str) {
        if job.status == JobStatus::Queued.as_str() && job.message.as_deref() == Some(why) {
            return;
        }
        let now = clock::now_rfc3339();
        let t = JobTransition { message: Some(why), ..JobTransition::to(JobStatus::Queued.as_str(), &now) };
        let from = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
        let _ = self.control.store.transition_batch_job((&job.workspace, &job.name), &from, &t).await;
    }

    /// What the queue needs to know of a job: its pool, its ask, and its pending mini-batches.
    async fn queued_job(&self, job: &BatchJobRow) -> QueuedJob {
        let (instance_count, conc) = serde_json::from_str::<JobPlan>(&job.plan_json)
            .map_or((1, 1), |p| (p.settings.instance_count, p.settings.max_concurrency_per_instance));
        let pending = match self.control.store.mini_batch_counts(&job.workspace, &job.name).await {
            Ok(c) => (c.total - c.committed - c.failed).max(0) as u64,
            Err(_) => 1,
        };
        QueuedJob { compute: job.compute.clone(), instance_count, max_concurrency_per_instance: conc, pending }
    }

    fn start_runner(self: &Arc<Self>, job: BatchJobRow, instances: u32, workers: usize) {
        let key = (job.workspace.clone(), job.name.clone());
        let (cancel, rx) = watch::channel(false);
        let running = RunningJob { compute: job.compute.clone(), instances, workers, cancel };
        self.running.lock().expect("running lock").insert(key.clone(), running);
        let this = self.clone();
        tokio::spawn(async move {
            runner::run(this.clone(), job, workers, rx).await;
            this.running.lock().expect("running lock").remove(&key);
            this.wake();
        });
    }
}
