//! The `sluice model|online-endpoint|online-deployment ...` commands, an `az ml` look-alike.
//!
//! The binary mounts [`GlobalArgs`] and [`Command`] into its own parser and calls [`run`], which
//! prints results on stdout and, on failure, one `error: ...` line (plus one line per further
//! problem) on stderr. Exit status: 0 on success, 1 for invalid input, API errors and failed
//! operations, 2 when the server cannot be reached. Everything goes through `sluice-client`.

mod batch;
mod batch_deployment;
mod batch_local;
mod compute;
mod data;
mod deployment;
mod endpoint;
mod environment;
mod error;
mod inline_model;
mod job;
mod model;
mod output;
mod rollout;
mod serverless;
mod spec_file;
mod traffic;
mod usage;
mod wait;

pub use batch::BatchEndpointCommand;
pub use batch_deployment::BatchDeploymentCommand;
pub use batch_local::{BatchRunArgs, check_local, run_local};
pub use compute::ComputeCommand;
pub use data::DataCommand;
pub use deployment::DeploymentCommand;
pub use endpoint::EndpointCommand;
pub use environment::EnvironmentCommand;
pub use job::JobCommand;
pub use model::ModelCommand;
pub use output::OutputFormat;
pub use rollout::{RolloutAction, RolloutArgs};
pub use serverless::{CatalogCommand, ServerlessCommand};
pub use usage::UsageCommand;

use error::CliError;
use sluice_client::SluiceClient;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options every command takes; `global = true` lets them follow the subcommand too.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Base URL of the Sluice server.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Admin token for the management API; read from <data-dir>/admin-token when not given.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The server's data directory, where a local server writes its admin token.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data", global = true)]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Json, global = true)]
    pub output: OutputFormat,
}

/// The command groups, named as `az ml` names them.
#[derive(Debug, Clone, clap::Subcommand)]
#[command(rename_all = "kebab-case")]
pub enum Command {
    /// Register, show, list and delete model versions.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Register, show and list environments (conda files, or custom containers).
    #[command(subcommand)]
    Environment(EnvironmentCommand),
    /// Register, show and list data assets (folders or files that batch jobs read).
    #[command(subcommand)]
    Data(DataCommand),
    /// What ran and what it cost.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Manage online endpoints: a scoring URL, auth and a traffic split.
    #[command(subcommand)]
    OnlineEndpoint(EndpointCommand),
    /// Manage online deployments: a model on replicas behind an endpoint.
    #[command(subcommand)]
    OnlineDeployment(DeploymentCommand),
    /// Manage batch endpoints: invoke them over folders of files, list their jobs.
    #[command(subcommand)]
    BatchEndpoint(BatchEndpointCommand),
    /// Manage batch deployments: a model and a batch driver with mini-batch settings.
    #[command(subcommand)]
    BatchDeployment(BatchDeploymentCommand),
    /// Follow, cancel and download batch jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Manage compute pools: named pools of instances that batch jobs run on.
    #[command(subcommand)]
    Compute(ComputeCommand),
    /// The models serverless endpoints can serve.
    #[command(subcommand)]
    ModelCatalog(CatalogCommand),
    /// Manage serverless API endpoints: a catalog model behind keys, limits and token metering.
    #[command(subcommand)]
    ServerlessEndpoint(ServerlessCommand),
}

/// What every command needs: the client and the output format.
pub(crate) struct Ctx {
    pub client: SluiceClient,
    pub output: OutputFormat,
}

/// Runs one command to completion and reports the outcome as an exit status.
pub async fn run(global: GlobalArgs, cmd: Command) -> ExitCode {
    match execute(&global, cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let err = err.with_token_hint(&global.data_dir);
            eprintln!("{}", err.render());
            ExitCode::from(err.exit_code())
        }
    }
}

async fn execute(global: &GlobalArgs, cmd: Command) -> Result<(), CliError> {
    let token = match global.token.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Some(t.to_owned()),
        _ => read_token_file(&global.data_dir)?,
    };
    let client = SluiceClient::new(&global.server, token).map_err(CliError::client)?;
    let ctx = Ctx { client, output: global.output };
    match cmd {
        Command::Model(c) => model::run(&ctx, c).await,
        Command::Environment(c) => environment::run(&ctx, c).await,
        Command::Data(c) => data::run(&ctx, c).await,
        Command::Usage(c) => usage::run(&ctx, c).await,
        Command::OnlineEndpoint(c) => endpoint::run(&ctx, c).await,
        Command::OnlineDeployment(c) => deployment::run(&ctx, c).await,
        Command::BatchEndpoint(c) => batch::run_endpoint(&ctx, c).await,
        Command::BatchDeployment(c) => batch_deployment::run_deployment(&ctx, c).await,
        Command::Job(c) => job::run(&ctx, c).await,
        Command::Compute(c) => compute::run(&ctx, c).await,
        Command::ModelCatalog(c) => serverless::run_catalog(&ctx, c).await,
        Command::ServerlessEndpoint(c) => serverless::run_endpoint(&ctx, c).await,
    }
}

/// Asks before a delete unless `--yes`; with no terminal to ask on, refuses (as `az` does).
pub(crate) fn confirm(action: &str, yes: bool) -> Result<(), CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!("refusing to {action} without confirmation: pass --yes")));
    }
    eprint!("Are you sure you want to {action}? (y/N): ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::usage("cancelled")),
    }
}

/// `<data-dir>/admin-token`, trimmed; `None` when there is no such file.
fn read_token_file(data_dir: &Path) -> Result<Option<String>, CliError> {
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Err(CliError::usage(format!("{}: the admin token file is empty", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::usage(format!("{}: cannot read the admin token: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// How the binary mounts these: global flags flattened beside the command groups.
    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        cmd: Command,
    }

    fn parse(args: &str) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("sluice").chain(args.split_whitespace()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse("online-endpoint list -o table --server http://h:9 --token t").unwrap();
        assert_eq!(cli.global.output, OutputFormat::Table);
        assert_eq!(cli.global.server, "http://h:9");
        assert!(matches!(cli.cmd, Command::OnlineEndpoint(EndpointCommand::List)));
    }

    #[test]
    fn az_style_flags_parse() {
        assert!(parse("model create -n iris -v 1 --type triton_model -p examples/iris/model_repository").is_ok());
        assert!(parse("model show -n iris --label latest").is_ok());
        assert!(parse("model show -n iris").is_err(), "needs --version or --label");
        assert!(parse("online-endpoint update -n ep --traffic blue=100 --set description=x").is_ok());
        assert!(parse("online-deployment create -f d.yml --all-traffic --set instance_count=2").is_ok());
        assert!(parse("online-deployment create -f d.yml --all-traffic --no-wait").is_err());
        assert!(parse("online-deployment get-logs -n blue -e ep --lines 10 --replica 1").is_ok());
        assert!(parse("online-endpoint regenerate-keys -n ep --key-type secondary").is_ok());
        assert!(parse("online-endpoint regenerate-keys -n ep --key-type tertiary").is_err());
    }

    #[test]
    fn rollout_takes_start_flags_or_a_subcommand() {
        let start = |args: &str| match parse(args).map(|c| c.cmd) {
            Ok(Command::OnlineEndpoint(EndpointCommand::Rollout(r))) => Ok(r),
            other => Err(format!("{other:?}")),
        };
        let r = start("online-endpoint rollout -n ep --to green --steps 50,100 --interval 5m --no-wait").unwrap();
        assert!(r.action.is_none());
        assert_eq!((r.start.to.as_deref(), r.start.steps.as_deref()), (Some("green"), Some("50,100")));
        let r = start("online-endpoint rollout show --name ep -o table").unwrap();
        assert!(matches!(r.action, Some(RolloutAction::Show(a)) if a.name == "ep"));
        assert!(matches!(start("online-endpoint rollout abort -n ep").unwrap().action, Some(RolloutAction::Abort(_))));
        assert!(start("online-endpoint rollout -n ep").is_err(), "--to is required to start");
        assert!(start("online-endpoint rollout --to green").is_err(), "--name is required to start");
        assert!(start("online-endpoint rollout show").is_err(), "show needs --name");
        assert!(start("online-endpoint rollout --to green show -n ep").is_err(), "start flags and show do not mix");
    }

    #[test]
    fn the_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_token_file(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join("admin-token"), "abc123\n").unwrap();
        assert_eq!(read_token_file(dir.path()).unwrap().as_deref(), Some("abc123"));
    }
}
