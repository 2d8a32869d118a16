//! Running one job: its workers pull pending mini-batches from a shared queue; a mini-batch's
//! rows go to disk, then the mini-batch is committed; a failing or overrunning one is retried
//! up to `max_retries`; failed items are counted against `error_threshold`; once every
//! mini-batch is committed or failed, the parts are merged in input order.

use super::Batch;
use super::output::{Rows, merge, write_part};
use super::plan::JobPlan;
use super::storage::{self, Location};
use super::worker::{Attempt, BatchWorker, WorkerLaunch, prepare};
use crate::clock;
use sluice_api::batch::job::FailedFile;
use sluice_domain::batch::{JobStatus, failed_items};
use sluice_store::{
    BatchJobRow, JobTransition, MINI_BATCH_COMMITTED, MINI_BATCH_PENDING, MiniBatchOutcome, MiniBatchRow,
};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How a job's run ended.
enum Ending {
    /// `note` says how many mini-batches failed (tolerated by `error_threshold`).
    Completed {
        output_file: Option<String>,
        note: Option<String>,
    },
    Failed(String),
    /// Canceled while running: the cancel already recorded it.
    Canceled,
}

/// Runs `job` with up to `workers` worker processes until it ends or `cancel` turns true, and
/// records the outcome (unless a cancel got there first).
pub(super) async fn run(batch: Arc<Batch>, job: BatchJobRow, workers: usize, cancel: watch::Receiver<bool>) {
    let store = &batch.control.store;
    let key = (job.workspace.as_str(), job.name.as_str());
    let now = clock::now_rfc3339();
    let waiting = [JobStatus::NotStarted.as_str(), JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
    match store.transition_batch_job(key, &waiting, &JobTransition::to(JobStatus::Running.as_str(), &now)).await {
        Ok(true) => {}
        Ok(false) => return, // canceled before it started
        Err(e) => {
            tracing::error!(job = %job.name, error = %e, "cannot start batch job");
            return;
        }
    }
    tracing::info!(job = %job.name, workers, "batch job running");
    let ending = execute(&batch, &job, workers, cancel).await;
    let now = clock::now_rfc3339();
    let running = [JobStatus::Running.as_str()];
    let (t, what) = match &ending {
        Ending::Canceled => return,
        Ending::Completed { output_file, note } => (
            JobTransition {
                output_file: output_file.as_deref(),
                message: note.as_deref(),
                ended: true,
                ..JobTransition::to(JobStatus::Completed.as_str(), &now)
            },
            "completed",
        ),
        Ending::Failed(message) => (
            JobTransition {
                message: Some(message),
                ended: true,
                ..JobTransition::to(JobStatus::Failed.as_str(), &now)
            },
            "failed",
        ),
    };
    match store.transition_batch_job(key, &running, &t).await {
        Ok(_) => tracing::info!(job = %job.name, message = t.message.unwrap_or(""), "batch job {what}"),
        Err(e) => tracing::error!(job = %job.name, error = %e, "cannot record the batch job's end"),
    }
}

/// What the workers of one job share.
struct Shared {
    queue: Mutex<VecDeque<MiniBatchRow>>,
    /// Set when the job must stop: a failure (with its reason) or a cancel.
    halt: watch::Sender<bool>,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, why: String) {
        self.failure.lock().expect("failure lock").get_or_insert(why);
        self.halt.send_replace(true);
    }
}

/// Everything one worker task needs.
struct Ctx {
    batch: Arc<Batch>,
    job: BatchJobRow,
    plan: JobPlan,
    launch: WorkerLaunch,
    /// The input folder (or the file's folder): failed files are reported relative to it.
    input_root: PathBuf,
    /// Where the input is: a remote one's objects are staged into `<job dir>/inputs/`.
    input: Location,
    shared: Arc<Shared>,
}

async fn execute(batch: &Arc<Batch>, job: &BatchJobRow, workers: usize, mut cancel: watch::Receiver<bool>) -> Ending {
    let store = &batch.control.store;
    let plan: JobPlan = match serde_json::from_str(&job.plan_json) {
        Ok(p) => p,
        Err(e) => return Ending::Failed(format!("the job's plan is unreadable: {e}")),
    };
    let job_dir = PathBuf::from(&job.job_dir);
    let output = match Location::parse(&job.output_dir) {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Ending::Failed(e),
        None => return Ending::Failed(format!("the job's output path {:?} is not readable", job.output_dir)),
    };
    let input = match input_location(job) {
        Ok(l) => l,
        Err(e) => return Ending::Failed(e),
    };
    let output_dir = super::jobs::local_output_dir(job);
    for dir in [job_dir.join("parts"), job_dir.join("logs"), output_dir.clone()] {
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            return Ending::Failed(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let pending = match store.mini_batches(&job.workspace, &job.name, Some(MINI_BATCH_PENDING)).await {
        Ok(p) => p,
        Err(e) => return Ending::Failed(format!("the store failed: {e}")),
    };
    if let Some(why) = threshold_crossed(batch, job, &plan).await {
        return Ending::Failed(why);
    }
    if !pending.is_empty() {
        let key = (job.workspace.as_str(), job.name.as_str());
        let now = clock::now_rfc3339();
        let building = JobTransition {
            message: Some("starting workers (building the environment if it is new)"),
            ..JobTransition::to(JobStatus::Running.as_str(), &now)
        };
        let _ = store.transition_batch_job(key, &[JobStatus::Running.as_str()], &building).await;
        let launch = tokio::select! {
            l = prepare(batch, &plan, &output_dir) => l,
            _ = cancel.wait_for(|c| *c) => return Ending::Canceled,
        };
        let launch = match launch {
            Ok(l) => l,
            Err(e) => return Ending::Failed(e),
        };
        let _ =
            store.transition_batch_job(key, &[JobStatus::Running.as_str()], &JobTransition::to("Running", &now)).await;
        let input_root = input_root(job, &input);
        let count = workers.min(pending.len()).max(1);
        let (halt, _) = watch::channel(false);
        let shared = Arc::new(Shared { queue: Mutex::new(pending.into()), halt, failure: Mutex::new(None) });
        let ctx = Arc::new(Ctx {
            batch: batch.clone(),
            job: job.clone(),
            plan: plan.clone(),
            launch,
            input_root,
            input,
            shared,
        });
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            tasks.spawn(worker_loop(ctx.clone(), i, cancel.clone()));
        }
        while tasks.join_next().await.is_some() {}
        if *cancel.borrow() {
            return Ending::Canceled;
        }
        if let Some(why) = ctx.shared.failure.lock().expect("failure lock").take() {
            return Ending::Failed(why);
        }
    }
    finish(batch, job, &plan, &job_dir, (&output, &output_dir)).await
}

/// Every mini-batch is committed or failed: merge the parts (`append_row`) into the local
/// output folder, then upload that folder when the output is remote.
async fn finish(
    batch: &Batch,
    job: &BatchJobRow,
    plan: &JobPlan,
    job_dir: &Path,
    (output, output_dir): (&Location, &Path),
) -> Ending {
    let store = &batch.control.store;
    let counts = match store.mini_batch_counts(&job.workspace, &job.name).await {
        Ok(c) => c,
        Err(e) => return Ending::Failed(format!("the store failed: {e}")),
    };
    let left = counts.total - counts.committed - counts.failed;
    if left > 0 {
        return Ending::Failed(format!("{left} mini-batches were not run"));
    }
    let note = (counts.failed > 0).then(|| {
        format!(
            "{} of {} mini-batches failed ({} items; see failed_files); error_threshold tolerates them",
            counts.failed, counts.total, counts.failed_items
        )
    });
    let mut output_file = None;
    if plan.settings.append_row {
        let committed = match store.mini_batches(&job.workspace, &job.name, Some(MINI_BATCH_COMMITTED)).await {
            Ok(c) => c.into_iter().map(|m| m.idx).collect(),
            Err(e) => return Ending::Failed(format!("the store failed: {e}")),
        };
        let target = output_dir.join(&plan.settings.output_file_name);
        if let Err(e) = merge(job_dir.to_owned(), committed, target.clone()).await {
            return Ending::Failed(format!("cannot merge the output into {}: {e}", target.display()));
        }
        output_file = Some(output.child(&plan.settings.output_file_name));
    }
    if let Err(e) = storage::upload_folder(output, output_dir).await {
        return Ending::Failed(format!("cannot upload the output: {e}"));
    }
    Ending::Completed { output_file, note }
}

async fn threshold_crossed(batch: &Batch, job: &BatchJobRow, plan: &JobPlan) -> Option<String> {
    let counts = batch.control.store.mini_batch_counts(&job.workspace, &job.name).await.ok()?;
    let failed = counts.failed_items as u64;
    plan.settings.threshold_crossed(failed).then(|| {
        format!(
            "{failed} items failed, more than error_threshold ({}); the output was not merged",
            plan.settings.error_threshold.unwrap_or(0)
        )
    })
}

/// Where the job's input is (its `input_json`'s `root`).
fn input_location(job: &BatchJobRow) -> Result<Location, String> {
    let root = serde_json::from_str::<serde_json::Value>(&job.input_json)
        .ok()
        .and_then(|v| v.get("root").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_default();
    match Location::parse(&root) {
        Some(l) => l,
        None => Err(format!("the job's input {root:?} is not readable")),
    }
}

/// The folder failed files are named relative to: the input folder (or a file's folder), or the
/// staging folder of a remote input.
fn input_root(job: &BatchJobRow, input: &Location) -> PathBuf {
    match input {
        Location::Local(root) if root.is_file() => root.parent().map(Path::to_owned).unwrap_or_default(),
        Location::Local(root) => root.clone(),
        Location::Remote { .. } => staging_dir(job),
    }
}

fn staging_dir(job: &BatchJobRow) -> PathBuf {
    PathBuf::from(&job.job_dir).join("inputs")
}

/// One worker process's life: boot once, then score mini-batches until the queue is empty or
/// the job halts.
async fn worker_loop(ctx: Arc<Ctx>, index: usize, cancel: watch::Receiver<bool>) {
    let job_dir = PathBuf::from(&ctx.job.job_dir);
    let log = job_dir.join("logs").join(format!("worker-{index}.log"));
    let timeout = Duration::from_secs(ctx.plan.settings.timeout_s.into());
    let mut halt = ctx.shared.halt.subscribe();
    let mut cancel_rx = cancel.clone();
    let mut worker: Option<BatchWorker> = None;
    let started = std::time::Instant::now();
    // The previous mini-batch's commit (rows to disk, fsync, store) runs while the worker scores
    // the next one; at most one is in flight, and it is awaited before the loop ends.
    let mut committing: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    // What the worker log line at the end reports: mini-batches scored and the worker's own time.
    let (mut scored, mut busy) = (0u64, 0f64);
    // The mini-batch the worker is scoring: sent, its reply not read yet.
    let mut scoring: Option<(MiniBatchRow, Vec<String>)> = None;
    loop {
        if *cancel.borrow() || *halt.borrow() {
            break;
        }
        if scoring.is_none() {
            match hand_next(&ctx, &mut worker, &log, &mut cancel_rx, &mut halt).await {
                Next::Sent(mb, files) => scoring = Some((mb, files)),
                Next::Retry => continue,
                Next::Done => break,
            }
        }
        let (mb, files) = scoring.take().expect("handed above");
        let w = worker.as_mut().expect("a worker was booted for it");
        let attempt = tokio::select! {
            a = w.reply(mb.idx, timeout) => a,
            _ = cancel_rx.wait_for(|c| *c) => break,
            _ = halt.wait_for(|h| *h) => break,
        };
        let error = match attempt {
            Attempt::Replied(reply) if reply.ok => {
                scored += 1;
                busy += reply.seconds.unwrap_or(0.0);
                // The worker gets its next mini-batch before this one is committed, so it never
                // waits for the server's side (parsing, writing, fsync, the store).
                match hand_next(&ctx, &mut worker, &log, &mut cancel_rx, &mut halt).await {
                    Next::Sent(next, next_files) => scoring = Some((next, next_files)),
                    Next::Retry | Next::Done => {}
                }
                if let Err(e) = settle(committing.take()).await {
                    ctx.shared.fail(e);
                    break;
                }
                let ctx = ctx.clone();
                committing = Some(tokio::spawn(async move { commit(&ctx, &mb, &files, reply).await }));
                continue;
            }
            Attempt::Replied(reply) => {
                let mut why = reply.error.unwrap_or_else(|| "run() failed".into());
                if let Some(first) = reply.failed_files.as_ref().and_then(|f| f.first()) {
                    why = format!("{why} ({}: {})", first.file, first.error);
                }
                why
            }
            Attempt::TimedOut => {
                worker = None;
                format!(
                    "the mini-batch took longer than retry_settings.timeout ({} s); its worker was killed",
                    timeout.as_secs()
                )
            }
            Attempt::Lost(why) => {
                worker = None;
                why
            }
        };
        if let Err(e) = attempt_failed(&ctx, mb, &files, error).await {
            ctx.shared.fail(e);
            break;
        }
    }
    if let Err(e) = settle(committing.take()).await {
        ctx.shared.fail(e);
    }
    if let Some(w) = worker {
        if *cancel.borrow() || *ctx.shared.halt.borrow() {
            w.kill().await;
        } else {
            // Its work is committed: the job's merge need not wait for the process to exit.
            tokio::spawn(w.stop());
        }
    }
    tracing::info!(
        job = %ctx.job.name,
        worker = index,
        mini_batches = scored,
        run_s = format!("{busy:.3}"),
        alive_s = format!("{:.3}", started.elapsed().as_secs_f64()),
        "batch worker done"
    );
    // The cost basis: this worker's time, as compute-seconds of the job's deployment.
    let usage = sluice_store::UsageRow {
        workspace: ctx.job.workspace.clone(),
        kind: "batch".into(),
        endpoint: ctx.job.endpoint.clone(),
        deployment: ctx.job.deployment.clone(),
        key_name: String::new(),
        instance_type: "cpu-cluster".into(),
        hour: crate::usage::current_hour(),
        instance_seconds: 0.0,
        compute_seconds: started.elapsed().as_secs_f64(),
        tokens: 0,
    };
    if let Err(e) = ctx.batch.control.store.add_usage(&usage).await {
        tracing::warn!(error = %e, job = %ctx.job.name, "cannot record batch usage");
    }
}

/// What [`hand_next`] did.
enum Next {
    /// The worker is scoring this mini-batch (with these local files).
    Sent(MiniBatchRow, Vec<String>),
    /// That mini-batch's attempt failed before the worker got it (and was recorded); try again.
    Retry,
    /// Nothing left, or the job stops (canceled, halted, or the worker could not boot).
    Done,
}

/// Takes the next pending mini-batch, boots the worker if it has none, stages the files and sends
/// the mini-batch to the worker without waiting for the reply.
async fn hand_next(
    ctx: &Arc<Ctx>,
    worker: &mut Option<BatchWorker>,
    log: &Path,
    cancel: &mut watch::Receiver<bool>,
    halt: &mut watch::Receiver<bool>,
) -> Next {
    if *cancel.borrow() || *halt.borrow() {
        return Next::Done;
    }
    let Some(mb) = ctx.shared.queue.lock().expect("queue lock").pop_front() else { return Next::Done };
    if worker.is_none() {
        let booted = tokio::select! {
            w = BatchWorker::boot(&ctx.launch, log.to_owned()) => w,
            _ = cancel.wait_for(|c| *c) => return Next::Done,
            _ = halt.wait_for(|h| *h) => return Next::Done,
        };
        match booted {
            Ok(w) => *worker = Some(w),
            Err(e) => {
                ctx.shared.fail(e);
                return Next::Done;
            }
        }
    }
    let listed: Vec<String> = serde_json::from_str(&mb.files_json).unwrap_or_default();
    let files = match storage::stage(&ctx.input, &listed, &staging_dir(&ctx.job)).await {
        Ok(f) => f,
        Err(e) => return failed_before_scoring(ctx, mb, &listed, e).await,
    };
    let w = worker.as_mut().expect("booted above");
    if let Err(e) = w.send(mb.idx, &files).await {
        *worker = None;
        return failed_before_scoring(ctx, mb, &files, e).await;
    }
    Next::Sent(mb, files)
}

async fn failed_before_scoring(ctx: &Arc<Ctx>, mb: MiniBatchRow, files: &[String], error: String) -> Next {
    match attempt_failed(ctx, mb, files, error).await {
        Ok(()) => Next::Retry,
        Err(e) => {
            ctx.shared.fail(e);
            Next::Done
        }
    }
}

/// Waits for a commit in flight, if any.
async fn settle(commit: Option<tokio::task::JoinHandle<Result<(), String>>>) -> Result<(), String> {
    match commit {
        None => Ok(()),
        Some(handle) => handle.await.map_err(|e| format!("a commit task failed: {e}"))?,
    }
}

/// Rows to disk first, then the commit: a crash in between re-runs the mini-batch, whose new
/// part replaces the old one, so no row is ever merged twice.
async fn commit(ctx: &Ctx, mb: &MiniBatchRow, files: &[String], reply: super::worker::Reply) -> Result<(), String> {
    let job_dir = PathBuf::from(&ctx.job.job_dir);
    let rows = match reply.rows_text {
        Some(text) => Rows::Text(text),
        None => Rows::Lines(reply.rows),
    };
    let items = reply.items.unwrap_or(match &rows {
        Rows::Lines(lines) => lines.len() as u64,
        Rows::Text(text) => text.lines().count() as u64,
    });
    let failed: Vec<FailedFile> = reply
        .failed_files
        .unwrap_or_default()
        .into_iter()
        .map(|f| FailedFile { file: relative(ctx, &f.file), error: f.error })
        .collect();
    let per_file = ctx.plan.code.is_none();
    let failed_count = failed_items(true, files.len() as u64, items, failed.len() as u64, per_file);
    if ctx.plan.settings.append_row {
        write_part(job_dir, mb.idx, rows)
            .await
            .map_err(|e| format!("cannot write the rows of mini-batch {}: {e}", mb.idx))?;
    }
    let outcome = MiniBatchOutcome {
        items: items as i64,
        failed_items: failed_count as i64,
        error: None,
        failed_files_json: (!failed.is_empty()).then(|| serde_json::to_string(&failed).unwrap_or_default()),
    };
    let key = (ctx.job.workspace.as_str(), ctx.job.name.as_str(), mb.idx);
    ctx.batch.control.store.commit_mini_batch(key, &outcome).await.map_err(|e| e.to_string())?;
    check_threshold(ctx).await;
    Ok(())
}

/// Counts a failed attempt; retries the mini-batch or, out of retries, records it as failed.
async fn attempt_failed(ctx: &Ctx, mb: MiniBatchRow, files: &[String], error: String) -> Result<(), String> {
    let store = &ctx.batch.control.store;
    let key = (ctx.job.workspace.as_str(), ctx.job.name.as_str(), mb.idx);
    let attempts = store.count_mini_batch_attempt(key, &error).await.map_err(|e| e.to_string())?;
    tracing::warn!(job = %ctx.job.name, mini_batch = mb.idx, attempts, error = %error, "mini-batch attempt failed");
    if attempts <= i64::from(ctx.plan.settings.max_retries) {
        ctx.shared.queue.lock().expect("queue lock").push_back(mb);
        return Ok(());
    }
    let failed: Vec<FailedFile> =
        files.iter().map(|f| FailedFile { file: relative(ctx, f), error: error.clone() }).collect();
    let outcome = MiniBatchOutcome {
        items: 0,
        failed_items: files.len() as i64,
        error: Some(error),
        failed_files_json: Some(serde_json::to_string(&failed).unwrap_or_default()),
    };
    store.fail_mini_batch(key, &outcome).await.map_err(|e| e.to_string())?;
    check_threshold(ctx).await;
    Ok(())
}

async fn check_threshold(ctx: &Ctx) {
    if let Some(why) = threshold_crossed(&ctx.batch, &ctx.job, &ctx.plan).await {
        ctx.shared.fail(why);
    }
}

/// A file as failures name it: below the input folder (a local path, a staged copy, or an
/// object's URL below the input's).
fn relative(ctx: &Ctx, file: &str) -> String {
    if let Location::Remote { url, .. } = &ctx.input
        && let Some(rel) = file.strip_prefix(url.as_str()).and_then(|r| r.strip_prefix('/'))
    {
        return rel.to_owned();
    }
    Path::new(file).strip_prefix(&ctx.input_root).map(|p| p.display().to_string()).unwrap_or_else(|_| file.to_owned())
}
