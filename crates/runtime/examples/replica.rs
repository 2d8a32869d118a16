//! Runs a replica standalone, as `sluice replica` does: `cargo run -p sluice-runtime --example replica -- --help`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    replica: sluice_runtime::ReplicaArgs,
}

fn main() -> std::process::ExitCode {
    sluice_runtime::replica_main(Cli::parse().replica)
}
