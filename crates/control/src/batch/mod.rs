//! Batch endpoints: their management API (`/batch-endpoints`, `/jobs`), the data plane's
//! `POST /endpoints/{endpoint}/jobs`, and the job scheduler.
//!
//! A job is planned when it is invoked: its input is listed and split into mini-batches that are
//! stored with the job in one transaction, together with a frozen [`plan::JobPlan`] (model and
//! code files, environment, settings). The scheduler ([`scheduler`]) starts jobs first come,
//! first served while the worker pool has room; a job's runner ([`runner`]) starts its worker
//! processes (`python -m sluice_worker.batch`, in the deployment's environment) and feeds them
//! pending mini-batches. A mini-batch's rows are written to `<job dir>/parts/<index>.rows`
//! (temporary file, then rename) before the mini-batch is committed in the store, so after a
//! crash the job resumes from the uncommitted ones and the merged output holds every row once.
//!
//! **Invariant.** User code runs only in the worker processes, which die with the server.

pub(crate) mod computes;
mod data_plane;
pub(crate) mod deployments;
pub(crate) mod endpoints;
pub(crate) mod jobs;
mod output;
mod plan;
mod provision;
mod runner;
mod scheduler;
mod storage;
mod worker;

pub use data_plane::intercept_jobs;

use crate::{ApiError, Control, admin_auth};
use axum::Router;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How batch jobs run on this server.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Jobs' folders go under `<data_dir>/batch-jobs/`.
    pub data_dir: PathBuf,
    /// The Python that runs batch drivers when a deployment names no environment.
    pub python: PathBuf,
    /// The `sluice_worker` package, written out for workers (`PYTHONPATH`), or why it is not.
    pub worker_package: Result<PathBuf, String>,
    /// Worker processes this server runs at once, over all jobs and pools (`--batch-workers`);
    /// also the size of the default pool a fresh install gets.
    pub pool_workers: usize,
}

/// The batch side of the control plane; cheap to share.
pub struct Batch {
    control: Arc<Control>,
    config: BatchConfig,
    wake: Notify,
    /// Jobs with a runner in this process: their pool, instances, workers and cancel switch.
    running: Mutex<HashMap<(String, String), scheduler::RunningJob>>,
    /// Deployments being provisioned: (workspace, endpoint, name, generation).
    provisioning: Mutex<std::collections::HashSet<(String, String, String, i64)>>,
}

impl Batch {
    pub fn new(control: Arc<Control>, config: BatchConfig) -> Arc<Self> {
        Arc::new(Self {
            control,
            config,
            wake: Notify::new(),
            running: Mutex::default(),
            provisioning: Mutex::default(),
        })
    }

    /// Starts the scheduler (which also resumes jobs and deployments a previous run left).
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            computes::seed_default(&this).await;
            scheduler::run(this).await;
        });
    }

    /// The management routes, behind the admin credential.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .merge(endpoints::routes())
            .merge(deployments::routes())
            .merge(jobs::routes())
            .merge(computes::routes())
            .route_layer(axum::middleware::from_fn_with_state(self.control.clone(), admin_auth::require_admin))
            .layer(axum::middleware::from_fn_with_state(self.control.body_idle_timeout, crate::bodies::bound_idle))
            .method_not_allowed_fallback(crate::error::method_not_allowed)
            .layer(axum::middleware::map_response(crate::error::json_error_bodies))
            .with_state(self.clone())
    }

    fn jobs_root(&self) -> PathBuf {
        self.config.data_dir.join("batch-jobs")
    }
}

/// Online and batch endpoints share one namespace: creating an online endpoint calls this.
pub(crate) async fn refuse_batch_name(control: &Control, ws: &str, name: &str) -> Result<(), ApiError> {
    if control.store.get_batch_endpoint(ws, name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "{name:?} is a batch endpoint's name; online and batch endpoints share one namespace"
        )));
    }
    Ok(())
}
