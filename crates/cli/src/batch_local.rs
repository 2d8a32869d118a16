//! `sluice batch-deployment run --local`: one batch deployment run over a local folder, in the
//! foreground, with the same contract as a server's job (mini-batches, workers, retries,
//! `error_threshold`, the merged output) and no server to start: the binary starts a private
//! one in a temporary data directory on a loopback port for the run, and [`run_local`] drives it
//! through the same client as every command.

use crate::batch_deployment::{checked_deployment, override_names, send};
use crate::error::CliError;
use crate::job::{ended_well, follow};
use crate::output::print_one;
use crate::spec_file::SpecDoc;
use crate::{Ctx, OutputFormat};
use sluice_api::batch::BatchEndpointSpec;
use sluice_api::batch::job::{BatchJobCreate, JobInput};
use sluice_client::SluiceClient;
use std::path::PathBuf;
use std::process::ExitCode;

/// The endpoint a local run creates when the YAML names none.
const LOCAL_ENDPOINT: &str = "local-batch";

#[derive(Debug, Clone, clap::Args)]
pub struct BatchRunArgs {
    /// Run here, in the foreground, with a private server that lives only for the run (the
    /// only mode; on a server, create the deployment and use `batch-endpoint invoke`).
    #[arg(long)]
    pub local: bool,
    /// Azure ML model batch deployment YAML (its `compute` is ignored: the run uses this machine).
    #[arg(short, long)]
    pub file: PathBuf,
    /// A local folder (every file below it) or file; read in place.
    #[arg(long)]
    pub input: PathBuf,
    /// uri_folder or uri_file (default: what --input is).
    #[arg(long, value_name = "TYPE")]
    pub input_type: Option<String>,
    /// The folder the output goes to: the merged `output_file_name`, or what a summary_only
    /// script writes to AZUREML_BI_OUTPUT_PATH.
    #[arg(long, value_name = "DIR", default_value = "batch-output")]
    pub output_path: PathBuf,
    /// Files per run() call (overrides the YAML).
    #[arg(short, long)]
    pub mini_batch_size: Option<u32>,
    /// Override a deployment field: PATH=VALUE, e.g. `settings.max_concurrency_per_instance=4`.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Python for a deployment without an environment.
    #[arg(long, env = "SLUICE_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// Worker processes at most [default: the CPU count].
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Runs the deployment over the input on the private server at `server`; prints the job on
/// stdout (progress on stderr) and exits 0 only when it completed.
pub async fn run_local(server: &str, token: String, output: OutputFormat, args: BatchRunArgs) -> ExitCode {
    let client = match SluiceClient::new(server, Some(token)) {
        Ok(c) => c,
        Err(e) => {
            let err = CliError::client(e);
            eprintln!("{}", err.render());
            return ExitCode::from(err.exit_code());
        }
    };
    let ctx = Ctx { client, output };
    match execute(&ctx, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", err.render());
            ExitCode::from(err.exit_code())
        }
    }
}

/// Checks the flags, the YAML and the input before anything starts; the error is rendered as
/// the CLI prints errors.
pub fn check_local(args: &BatchRunArgs) -> Result<(), String> {
    let checked = if args.local {
        std::fs::metadata(&args.input)
            .map_err(|e| {
                CliError::usage(format!("--input {}: {e} (give a local folder or file)", args.input.display()))
            })
            .and_then(|_| local_doc(args).map(|_| ()))
    } else {
        Err(CliError::usage(
            "batch-deployment run needs --local (on a server, create the deployment and run `sluice batch-endpoint invoke`)",
        ))
    };
    checked.map_err(|e| e.render())
}

/// The YAML with the overrides, bound to this machine's default pool.
fn local_doc(args: &BatchRunArgs) -> Result<SpecDoc, CliError> {
    let mut doc = SpecDoc::read(&args.file)?;
    override_names(&mut doc, &args.set, None, None)?;
    if doc.get_str("endpoint_name").is_none() {
        doc.set("endpoint_name", LOCAL_ENDPOINT);
    }
    doc.set("compute", format!("azureml:{}", sluice_domain::compute::DEFAULT_POOL));
    doc.inline_conda_file(Some("environment"))?;
    checked_deployment(&doc)?;
    Ok(doc)
}

async fn execute(ctx: &Ctx, args: BatchRunArgs) -> Result<(), CliError> {
    let doc = local_doc(&args)?;
    let spec = checked_deployment(&doc)?;
    let endpoint = spec.endpoint_name.clone().unwrap_or_else(|| LOCAL_ENDPOINT.into());
    let endpoint_spec: BatchEndpointSpec = serde_json::from_value(serde_json::json!({ "name": endpoint }))
        .map_err(|e| CliError::usage(format!("endpoint_name {endpoint:?}: {e}")))?;
    ctx.client.create_batch_endpoint(&endpoint_spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    eprintln!("preparing deployment {} (building its environment if it is new)", spec.name);
    let name = spec.name.clone();
    let deployment = send(ctx, &doc, spec, false, true).await?;
    if deployment.provisioning_state != "Succeeded" {
        let why = deployment.message.unwrap_or_default();
        return Err(CliError::Failed(format!("deployment {name} {}: {why}", deployment.provisioning_state)));
    }
    let input = std::path::absolute(&args.input)
        .map_err(|e| CliError::usage(format!("--input {}: {e}", args.input.display())))?;
    let output = std::path::absolute(&args.output_path)
        .map_err(|e| CliError::usage(format!("--output-path {}: {e}", args.output_path.display())))?;
    let input_type = match args.input_type.as_deref() {
        None => None,
        Some(t) => Some(
            sluice_api::InputTypeWire::parse(t)
                .ok_or_else(|| CliError::usage(format!("--input-type {t:?}: expected uri_folder or uri_file")))?,
        ),
    };
    let body = BatchJobCreate {
        deployment_name: Some(name),
        input: JobInput { input_type, path: input.display().to_string() },
        output_path: Some(output.display().to_string()),
        mini_batch_size: args.mini_batch_size,
        ..Default::default()
    };
    let job = ctx
        .client
        .invoke_batch_endpoint(&endpoint, &body)
        .await
        .map_err(|e| CliError::client_from("command line", e))?;
    let job = follow(ctx, &job.name).await?;
    print_one(ctx.output, &job)?;
    if job.status != "Completed" {
        if let Ok(logs) = ctx.client.get_job_logs(&job.name, Some(40)).await {
            eprintln!("{}", logs.content.trim_end());
        }
    } else if let Some(file) = &job.output.file {
        eprintln!("output: {file}");
    } else {
        eprintln!("output folder: {}", job.output.path);
    }
    ended_well(&job)
}
