//! `sluice usage show`: what ran and what it cost, from the server's usage records.

use crate::Ctx;
use crate::error::CliError;
use crate::output::{OutputFormat, print_list, print_one};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum UsageCommand {
    /// Usage per hour and deployment: instance-seconds, compute-seconds, tokens and their cost.
    Show(UsageShowArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct UsageShowArgs {
    /// Only this endpoint's usage.
    #[arg(short, long)]
    pub endpoint: Option<String>,
    /// From this time on: RFC 3339 (2026-11-25T10:00:00Z) or a date (2026-11-25).
    #[arg(long)]
    pub since: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, cmd: UsageCommand) -> Result<(), CliError> {
    match cmd {
        UsageCommand::Show(args) => {
            let report = ctx.client.get_usage(args.endpoint.as_deref(), args.since.as_deref()).await?;
            match ctx.output {
                OutputFormat::Table => {
                    print_list(ctx.output, &report.records)?;
                    print_one(ctx.output, &report)
                }
                _ => print_one(ctx.output, &report),
            }
        }
    }
}
