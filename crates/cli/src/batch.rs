//! `sluice batch-endpoint ...`: Azure ML's batch endpoint YAML, the default deployment,
//! invocations over a local folder or file, and the endpoint's jobs. Batch deployments are in
//! `batch_deployment`, jobs in `job`.

use crate::error::CliError;
use crate::output::{Row, print_list, print_one};
use crate::spec_file::SpecDoc;
use crate::{Ctx, confirm};
use sluice_api::batch::job::{BatchJob, BatchJobCreate, is_object_store_url};
use sluice_api::batch::{BatchEndpoint, BatchEndpointSpec};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BatchEndpointCommand {
    /// Create a batch endpoint from a YAML file and/or flags.
    Create(BatchEndpointCreateArgs),
    /// Change a batch endpoint's description, tags or default deployment (--set defaults.deployment_name=D).
    Update(BatchEndpointUpdateArgs),
    /// Show one batch endpoint.
    Show(NameArgs),
    /// List batch endpoints.
    List,
    /// Delete a batch endpoint and its deployments (its jobs stay listed).
    Delete(DeleteArgs),
    /// Start a job over a local folder or file; prints the job at once.
    Invoke(InvokeArgs),
    /// List the endpoint's jobs in arrival order (waiting ones show their queue position).
    ListJobs(NameArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BatchEndpointCreateArgs {
    /// Azure ML batch endpoint YAML.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Endpoint name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Override a field: PATH=VALUE, e.g. `description=demo`; repeatable.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BatchEndpointUpdateArgs {
    /// Endpoint name (or the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// YAML whose top-level fields replace the endpoint's.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NameArgs {
    #[arg(short, long)]
    pub name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    #[arg(short, long)]
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InvokeArgs {
    /// The batch endpoint.
    #[arg(short, long)]
    pub name: String,
    /// The deployment to run on (default: the endpoint's default deployment).
    #[arg(short, long)]
    pub deployment_name: Option<String>,
    /// A local folder (every file below it) or file, uploaded to the server; a registered data
    /// asset, `azureml:NAME@latest` or `azureml:NAME:VERSION` (`sluice data create`); or an
    /// S3 prefix or object, `s3://BUCKET/PREFIX`, which the server reads with its own credentials.
    #[arg(long)]
    pub input: PathBuf,
    /// uri_folder or uri_file (default: what --input is).
    #[arg(long, value_name = "TYPE")]
    pub input_type: Option<String>,
    /// A folder on the server's machine, or `s3://BUCKET/PREFIX`, for the output (default: the
    /// job's folder).
    #[arg(long, value_name = "DIR")]
    pub output_path: Option<PathBuf>,
    /// Files per run() call, for this job.
    #[arg(short, long)]
    pub mini_batch_size: Option<u32>,
    /// Instances, for this job.
    #[arg(short = 'c', long)]
    pub instance_count: Option<u32>,
    /// The job's name (default: batchjob-<uuid>).
    #[arg(long)]
    pub job_name: Option<String>,
    /// low, medium (default) or high: waiting jobs start in priority order, then in arrival order.
    #[arg(long)]
    pub priority: Option<String>,
    /// Override a setting for this job: output_file_name, max_retries, timeout, error_threshold, ...
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl Row for BatchEndpoint {
    const HEADERS: &'static [&'static str] = &["name", "default deployment", "provisioning_state", "scoring_uri"];
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.defaults.deployment_name.clone().unwrap_or_default(),
            self.provisioning_state.clone(),
            self.scoring_uri.clone(),
        ]
    }
}

impl Row for BatchJob {
    const HEADERS: &'static [&'static str] =
        &["name", "endpoint", "deployment", "status", "queue", "priority", "mini-batches", "items", "created_at"];
    fn row(&self) -> Vec<String> {
        let p = &self.progress;
        vec![
            self.name.clone(),
            self.endpoint_name.clone(),
            self.deployment_name.clone(),
            self.status.clone(),
            self.queue_position.map(|q| q.to_string()).unwrap_or_default(),
            self.priority.clone(),
            format!("{}/{} ({} failed)", p.completed_mini_batches, p.total_mini_batches, p.failed_mini_batches),
            format!("{} ({} failed)", p.succeeded_items, p.failed_items),
            self.created_at.clone(),
        ]
    }
}

pub(crate) async fn run_endpoint(ctx: &Ctx, cmd: BatchEndpointCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        BatchEndpointCommand::Create(args) => {
            let mut doc = match &args.file {
                Some(f) => SpecDoc::read(f)?,
                None => SpecDoc::empty("command line"),
            };
            doc.apply_sets(&args.set)?;
            if let Some(n) = &args.name {
                doc.set("name", n.as_str());
            }
            let spec = checked_endpoint(&doc)?;
            let created =
                client.create_batch_endpoint(&spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
            print_one(ctx.output, &created)
        }
        BatchEndpointCommand::Update(args) => {
            let Some(name) = args
                .name
                .clone()
                .or_else(|| args.file.as_ref().and_then(|f| SpecDoc::read(f).ok()?.get_str("name").map(str::to_owned)))
            else {
                return Err(CliError::usage("--name (or a file with a name) is required"));
            };
            let current = client.get_batch_endpoint(&name).await?;
            let base = BatchEndpointSpec {
                schema: None,
                name: current.name.clone(),
                description: current.description.clone(),
                tags: current.tags.clone(),
                auth_mode: current.auth_mode,
                defaults: current.defaults.deployment_name.is_some().then(|| current.defaults.clone()),
            };
            let mut doc = SpecDoc::from_resource(format!("batch endpoint {name}"), &base)?;
            if let Some(f) = &args.file {
                doc.overlay(&SpecDoc::read(f)?);
            }
            doc.apply_sets(&args.set)?;
            doc.set("name", name.as_str());
            let spec = checked_endpoint(&doc)?;
            let updated =
                client.update_batch_endpoint(&name, &spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
            print_one(ctx.output, &updated)
        }
        BatchEndpointCommand::Show(args) => print_one(ctx.output, &client.get_batch_endpoint(&args.name).await?),
        BatchEndpointCommand::List => print_list(ctx.output, &client.list_batch_endpoints().await?),
        BatchEndpointCommand::Delete(args) => {
            confirm(&format!("delete batch endpoint {} and its deployments", args.name), args.yes)?;
            client.delete_batch_endpoint(&args.name).await?;
            Ok(())
        }
        BatchEndpointCommand::Invoke(args) => print_one(ctx.output, &invoke(ctx, args).await?),
        BatchEndpointCommand::ListJobs(args) => {
            print_list(ctx.output, &client.list_batch_endpoint_jobs(&args.name).await?)
        }
    }
}

fn checked_endpoint(doc: &SpecDoc) -> Result<BatchEndpointSpec, CliError> {
    let spec: BatchEndpointSpec = doc.typed()?;
    sluice_api::batch::validate::endpoint(&spec).map_err(|errors| doc.invalid(errors))?;
    Ok(spec)
}

/// Checks the input locally, uploads it, and starts the job; a data asset is sent as named
/// (the server resolves and pins its version).
pub(crate) async fn invoke(ctx: &Ctx, args: InvokeArgs) -> Result<BatchJob, CliError> {
    let input = &args.input;
    let remote = input.to_str().is_some_and(is_object_store_url);
    if let Some(reference) =
        input.to_str().and_then(sluice_api::data::reference).or(remote.then_some(Ok((String::new(), None))))
    {
        reference.map_err(|e| CliError::usage(format!("--input {e}")))?;
        let mut input = serde_json::json!({ "path": input.to_str() });
        if let Some(t) = args.input_type.as_deref() {
            match sluice_api::InputTypeWire::parse(t) {
                Some(w) => input["type"] = w.as_str().into(),
                None => return Err(CliError::usage(format!("--input-type {t:?}: expected uri_folder or uri_file"))),
            }
        }
        let mut doc = job_doc(&args)?;
        doc.set("input", serde_yaml::to_value(input).unwrap_or_default());
        doc.apply_sets(&args.set)?;
        let body: BatchJobCreate = doc.typed()?;
        return ctx
            .client
            .invoke_batch_endpoint(&args.name, &body)
            .await
            .map_err(|e| CliError::client_from("command line", e));
    }
    let meta = std::fs::metadata(input)
        .map_err(|e| CliError::usage(format!("--input {}: {e} (give a local folder or file)", input.display())))?;
    let actual = if meta.is_dir() { "uri_folder" } else { "uri_file" };
    let input_type = match args.input_type.as_deref() {
        None => actual.to_owned(),
        Some(t) => match sluice_api::InputTypeWire::parse(t) {
            Some(w) if w.as_str() == actual => actual.to_owned(),
            Some(w) => {
                return Err(CliError::usage(format!(
                    "--input-type {}: {} is a {}",
                    w.as_str(),
                    input.display(),
                    if meta.is_dir() { "folder" } else { "file" }
                )));
            }
            None => return Err(CliError::usage(format!("--input-type {t:?}: expected uri_folder or uri_file"))),
        },
    };
    let mut doc = job_doc(&args)?;
    doc.set(
        "input",
        serde_yaml::to_value(serde_json::json!({"type": input_type, "path": "pending upload"})).unwrap_or_default(),
    );
    doc.apply_sets(&args.set)?;
    let mut body: BatchJobCreate = doc.typed()?;
    // Fail on an unknown endpoint before uploading data it would never read.
    ctx.client.get_batch_endpoint(&args.name).await?;
    let uploaded = ctx.client.upload_dir_or_file(input).await?;
    body.input.path = uploaded.artifact;
    ctx.client.invoke_batch_endpoint(&args.name, &body).await.map_err(|e| CliError::client_from("command line", e))
}

/// The job's fields from the flags (all but the input and `--set`).
fn job_doc(args: &InvokeArgs) -> Result<SpecDoc, CliError> {
    let mut doc = SpecDoc::empty("command line");
    if let Some(d) = &args.deployment_name {
        doc.set("deployment_name", d.as_str());
    }
    if let Some(n) = &args.job_name {
        doc.set("name", n.as_str());
    }
    if let Some(p) = &args.output_path {
        if p.to_str().is_some_and(is_object_store_url) {
            doc.set("output_path", p.display().to_string());
        } else {
            let abs =
                std::path::absolute(p).map_err(|e| CliError::usage(format!("--output-path {}: {e}", p.display())))?;
            doc.set("output_path", abs.display().to_string());
        }
    }
    if let Some(n) = args.mini_batch_size {
        doc.set("mini_batch_size", u64::from(n));
    }
    if let Some(n) = args.instance_count {
        doc.set("instance_count", u64::from(n));
    }
    if let Some(p) = &args.priority {
        let p =
            sluice_domain::compute::Priority::parse(p).map_err(|e| CliError::usage(format!("--priority {}", e.0)))?;
        doc.set("priority", p.as_str());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_endpoint_passes_and_only_aad_token_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/batch-sklearn");
        let doc = SpecDoc::read(&root.join("endpoint.yml")).unwrap();
        checked_endpoint(&doc).unwrap_or_else(|e| panic!("{}", e.render()));
        let mut doc = SpecDoc::empty("command line");
        doc.set("name", "ep1");
        doc.set("auth_mode", "key");
        let text = checked_endpoint(&doc).unwrap_err().render();
        assert!(text.contains("command line: auth_mode: key: batch endpoints take only aad_token"), "{text}");
    }
}
