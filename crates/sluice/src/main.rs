//! `sluice`: the server, the replica process it starts, and the CLI, in one binary.

mod batch_local;
mod config;
mod serve;
mod server;
mod telemetry;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Self-hosted model serving with Azure ML-compatible endpoints")]
struct Cli {
    #[command(flatten)]
    global: sluice_cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server: management API, gateway, store and replicas, on one address.
    Server(config::ServerArgs),
    /// Run one replica (started by the server; not for direct use).
    #[command(hide = true)]
    Replica(sluice_runtime::ReplicaArgs),
    /// Run one scoring-script replica (started by the server; not for direct use).
    #[command(hide = true, name = "replica-python")]
    ReplicaPython(sluice_runtime::PythonReplicaArgs),
    /// Run one custom-container replica: a command's own HTTP server behind the replica
    /// (started by the server; not for direct use).
    #[command(hide = true, name = "replica-command")]
    ReplicaCustom(sluice_runtime::CommandReplicaArgs),
    /// Run one LLM or embedding replica (started by the server; not for direct use).
    #[command(hide = true, name = "replica-llm")]
    ReplicaLlm(sluice_runtime::llm::LlmReplicaArgs),
    /// Run one deployment locally in the foreground (no server, no auth), restarting on changes.
    Serve(serve::ServeArgs),
    /// Print the management API's OpenAPI document.
    Openapi,
    #[command(flatten)]
    Client(sluice_cli::Command),
}

/// mimalloc instead of glibc's malloc for Rust's allocations (ONNX Runtime's C++ code keeps
/// glibc's): the gateway makes about 50 small allocations per proxied request, and glibc's
/// malloc/free with its bin consolidation was about 14 % of the gateway's instructions
/// (bench/callgrind.sh; docs/performance.md, "Instructions per request").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::main(args, cli.global.data_dir),
        Command::Replica(args) => sluice_runtime::replica_main(args),
        Command::ReplicaPython(args) => sluice_runtime::python_replica_main(args),
        Command::ReplicaCustom(args) => sluice_runtime::command_replica_main(args),
        Command::ReplicaLlm(args) => sluice_runtime::llm::llm_replica_main(args),
        Command::Serve(args) => serve::main(args),
        Command::Openapi => {
            println!("{}", sluice_control::openapi_json());
            ExitCode::SUCCESS
        }
        Command::Client(sluice_cli::Command::OnlineDeployment(sluice_cli::DeploymentCommand::Create(args)))
            if args.local =>
        {
            serve::main(serve::ServeArgs {
                file: args.file,
                port: args.local_port.unwrap_or(serve::DEFAULT_PORT),
                python: std::env::var_os("SLUICE_PYTHON").map_or_else(|| "python3".into(), Into::into),
                no_reload: false,
            })
        }
        Command::Client(sluice_cli::Command::BatchDeployment(sluice_cli::BatchDeploymentCommand::Run(args))) => {
            batch_local::main(args, cli.global.output)
        }
        Command::Client(c) => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(sluice_cli::run(cli.global, c))
        }
    }
}
