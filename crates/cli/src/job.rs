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
    /// Follow a job's worker logs and progress (on stderr) until it ends, then print it; exit 1
    /// unless it completed.
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

/// `[#####-----]`: the share of mini-batches that ended.
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(0) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH as usize - filled))
}

/// One line about where a job is.
fn progress_line(job: &BatchJob) -> String {
    let p = &job.progress;
    let mut line = format!(
        "{} {}: {} mini-batches {}/{} done, {} failed; items {} succeeded, {} failed",
        progress_bar(p.completed_mini_batches + p.failed_mini_batches, p.total_mini_batches),
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

/// Prints, on stderr, the worker logs' new lines and a progress line whenever the job moves;
/// returns the job once it ended.
pub(crate) async fn follow(ctx: &Ctx, name: &str) -> Result<BatchJob, CliError> {
    let mut last = String::new();
    let mut logs = LogFollower::default();
    loop {
        let job = ctx.client.get_job(name).await?;
        let ended = matches!(job.status.as_str(), "Completed" | "Failed" | "Canceled");
        if job.status != "NotStarted" && job.status != "Queued" {
            // The logs' ends, as the server keeps them; a job that failed leaves its reason there.
            if let Ok(l) = ctx.client.get_job_logs(name, Some(FOLLOW_LINES)).await {
                for line in logs.new_lines(&l.content) {
                    eprintln!("{line}");
                }
            }
        }
        let line = progress_line(&job);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if ended {
            return Ok(job);
        }
        tokio::time::sleep(STREAM_POLL).await;
    }
}

/// Lines of each worker log `follow` reads (the server's limit).
const FOLLOW_LINES: u32 = 10_000;

/// Which lines of each worker log were printed already.
#[derive(Default)]
struct LogFollower {
    printed: std::collections::HashMap<String, usize>,
}

impl LogFollower {
    /// The lines of `content` (the logs endpoint's `== worker-N.log ==` sections) not returned
    /// before, each prefixed with its log's name.
    fn new_lines(&mut self, content: &str) -> Vec<String> {
        let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
        for line in content.lines() {
            if let Some(name) = line.strip_prefix("== ").and_then(|l| l.strip_suffix(" ==")) {
                sections.push((name.trim_end_matches(".log").to_owned(), Vec::new()));
            } else if let Some((_, lines)) = sections.last_mut() {
                lines.push(line);
            }
        }
        let mut out = Vec::new();
        for (name, mut lines) in sections {
            while lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            let seen = self.printed.entry(name.clone()).or_default();
            if lines.len() > *seen {
                out.extend(lines[*seen..].iter().map(|l| format!("{name} | {l}")));
                *seen = lines.len();
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_followed_line_by_line_per_worker() {
        let mut f = LogFollower::default();
        let first = f.new_lines("== worker-0.log ==\nstarted\n\n== worker-1.log ==\n\n");
        assert_eq!(first, ["worker-0 | started"]);
        let next = f.new_lines("== worker-0.log ==\nstarted\nrun 1\n\n== worker-1.log ==\nboot\n\n");
        assert_eq!(next, ["worker-0 | run 1", "worker-1 | boot"]);
        assert!(f.new_lines("== worker-0.log ==\nstarted\nrun 1\n\n").is_empty());
    }

    #[test]
    fn the_bar_fills_with_ended_mini_batches() {
        assert_eq!(progress_bar(0, 4), format!("[{}]", "-".repeat(20)));
        assert_eq!(progress_bar(2, 4), format!("[{}{}]", "#".repeat(10), "-".repeat(10)));
        assert_eq!(progress_bar(5, 4), format!("[{}]", "#".repeat(20)));
        assert_eq!(progress_bar(0, 0), format!("[{}]", "-".repeat(20)));
    }
}
