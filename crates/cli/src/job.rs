//! `sluice job ...`: batch jobs: show, list, stream (follow progress to the end), cancel,
//! download (the output, as `az ml job download` lays it out) and logs.

use crate::Ctx;
use crate::error::CliError;
use crate::output::{print_list, print_one, print_text};
use sluice_api::batch::job::BatchJob;
use std::path::PathBuf;
use std::time::Duration;

/// How often `stream` looks at the job.
const STREAM_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, clap::Subcommand)]
pub enum JobCommand {
    /// Show one job: status, progress, failed files, output.
    Show(JobNameArgs),
    /// List every batch job, in arrival order.
    List,
    /// Follow a job's progress (on stderr) until it ends, then print it; exit 1 unless it completed.
    Stream(JobNameArgs),
    /// Cancel a job; committed mini-batches' rows stay, the output is not merged.
    Cancel(JobNameArgs),
    /// Download a job's output to DIR/named-outputs/<output-name>/.
    Download(DownloadArgs),
    /// Print the ends of a job's worker logs.
    Logs(LogsArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct JobNameArgs {
    #[arg(short, long)]
    pub name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    #[arg(short, long)]
    pub name: String,
    /// Where to put the output.
    #[arg(long, default_value = ".")]
    pub download_path: PathBuf,
    /// The output's name (a batch job's one output is `score`).
    #[arg(long, default_value = "score")]
    pub output_name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    #[arg(short, long)]
    pub name: String,
    /// Lines from the end of each worker's log.
    #[arg(short, long, default_value_t = 200)]
    pub lines: u32,
}

pub(crate) async fn run(ctx: &Ctx, cmd: JobCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        JobCommand::Show(args) => print_one(ctx.output, &client.get_job(&args.name).await?),
        JobCommand::List => print_list(ctx.output, &client.list_jobs().await?),
        JobCommand::Stream(args) => stream(ctx, &args.name).await,
        JobCommand::Cancel(args) => print_one(ctx.output, &client.cancel_job(&args.name).await?),
        JobCommand::Download(args) => {
            if args.output_name != "score" {
                return Err(CliError::usage(format!(
                    "--output-name {:?}: a batch job has one output, `score`",
                    args.output_name
                )));
            }
            let dest = args.download_path.join("named-outputs").join(&args.output_name);
            client.download_job_outputs(&args.name, &dest).await?;
            print_text(&format!("Downloaded the output of job {} to {}", args.name, dest.display()))
        }
        JobCommand::Logs(args) => print_text(&client.get_job_logs(&args.name, Some(args.lines)).await?.content),
    }
}

/// One line about where a job is.
fn progress_line(job: &BatchJob) -> String {
    let p = &job.progress;
    let mut line = format!(
        "{}: {} mini-batches {}/{} done, {} failed; items {} succeeded, {} failed",
        job.name,
        job.status,
        p.completed_mini_batches,
        p.total_mini_batches,
        p.failed_mini_batches,
        p.succeeded_items,
        p.failed_items
    );
    if let Some(q) = job.queue_position {
        line.push_str(&format!("; position {q} in the queue"));
    }
    if let Some(m) = &job.message {
        line.push_str(&format!(" ({m})"));
    }
    line
}

/// Prints a progress line on stderr whenever the job moves, then the job itself on stdout;
/// fails unless it completed.
async fn stream(ctx: &Ctx, name: &str) -> Result<(), CliError> {
    let job = follow(ctx, name).await?;
    print_one(ctx.output, &job)?;
    ended_well(&job)
}

/// Prints a progress line on stderr whenever the job moves; returns the job once it ended.
pub(crate) async fn follow(ctx: &Ctx, name: &str) -> Result<BatchJob, CliError> {
    let mut last = String::new();
    loop {
        let job = ctx.client.get_job(name).await?;
        let line = progress_line(&job);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if matches!(job.status.as_str(), "Completed" | "Failed" | "Canceled") {
            return Ok(job);
        }
        tokio::time::sleep(STREAM_POLL).await;
    }
}

/// `Ok` for a completed job; the failure, with the job's message, otherwise.
pub(crate) fn ended_well(job: &BatchJob) -> Result<(), CliError> {
    if job.status == "Completed" {
        return Ok(());
    }
    let why = job.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
    Err(CliError::Failed(format!("job {} {}{why}", job.name, job.status.to_lowercase())))
}
