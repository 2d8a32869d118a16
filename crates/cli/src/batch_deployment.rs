//! `sluice batch-deployment ...`: Azure ML's model batch deployment YAML (inline models
//! registered, the code folder uploaded, the conda file inlined), waiting for the deployment's
//! environment to be built, and `--set-default`.

use crate::error::CliError;
use crate::inline_model::{self, PLACEHOLDER_REF};
use crate::output::{Row, print_list, print_one};
use crate::spec_file::SpecDoc;
use crate::wait::{Goal, Provisioned, wait_for};
use crate::{Ctx, confirm};
use sluice_api::FieldError;
use sluice_api::batch::{BatchDeployment, BatchDeploymentSpec, BatchEndpointDefaults, BatchEndpointSpec};
use sluice_api::deployment::ModelField;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BatchDeploymentCommand {
    /// Create a batch deployment from a YAML file, or replace an existing one (as Azure ML does).
    Create(BatchDeploymentCreateArgs),
    /// Change a batch deployment from a YAML file, or its current spec with --set.
    Update(BatchDeploymentUpdateArgs),
    /// Show one batch deployment.
    Show(DeploymentRefArgs),
    /// List a batch endpoint's deployments.
    List(EndpointNameArgs),
    /// Delete a batch deployment.
    Delete(DeploymentDeleteArgs),
    /// Run a deployment over a local folder in the foreground, with no server (--local).
    Run(crate::batch_local::BatchRunArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BatchDeploymentCreateArgs {
    /// Azure ML model batch deployment YAML.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Deployment name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Endpoint name (overrides the file's `endpoint_name`).
    #[arg(short, long)]
    pub endpoint_name: Option<String>,
    /// Make it the endpoint's default deployment once it succeeded.
    #[arg(long, conflicts_with = "no_wait")]
    pub set_default: bool,
    /// Override a field: PATH=VALUE, e.g. `settings.mini_batch_size=5`; repeatable.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Return once the server accepted it, without waiting for the environment to be built.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BatchDeploymentUpdateArgs {
    /// YAML with the full new spec; without it, the current spec is changed with --set.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    #[arg(short, long)]
    pub name: Option<String>,
    #[arg(short, long)]
    pub endpoint_name: Option<String>,
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentRefArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(short, long)]
    pub endpoint_name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EndpointNameArgs {
    #[arg(short, long)]
    pub endpoint_name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentDeleteArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(short, long)]
    pub endpoint_name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

impl Row for BatchDeployment {
    const HEADERS: &'static [&'static str] =
        &["name", "endpoint_name", "model", "workers", "mini_batch_size", "provisioning_state"];
    fn row(&self) -> Vec<String> {
        let model = match &self.spec.model {
            Some(ModelField::Reference(r)) => r.clone(),
            Some(ModelField::Inline(m)) => m.path.clone(),
            None => String::new(),
        };
        let s = &self.effective_settings;
        vec![
            self.spec.name.clone(),
            self.spec.endpoint_name.clone().unwrap_or_default(),
            model,
            format!("{}x{}", s.instance_count, s.max_concurrency_per_instance),
            s.mini_batch_size.to_string(),
            self.provisioning_state.clone(),
        ]
    }
}

impl Provisioned for BatchDeployment {
    fn state(&self) -> &str {
        &self.provisioning_state
    }
    fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

pub(crate) async fn run_deployment(ctx: &Ctx, cmd: BatchDeploymentCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        BatchDeploymentCommand::Create(args) => {
            let mut doc = SpecDoc::read(&args.file)?;
            override_names(&mut doc, &args.set, args.name.as_deref(), args.endpoint_name.as_deref())?;
            doc.inline_conda_file(Some("environment"))?;
            let spec = checked_deployment(&doc)?;
            print_one(ctx.output, &send(ctx, &doc, spec, args.no_wait, args.set_default).await?)
        }
        BatchDeploymentCommand::Update(args) => {
            let mut doc = match &args.file {
                Some(file) => SpecDoc::read(file)?,
                None => {
                    let (Some(name), Some(endpoint)) = (&args.name, &args.endpoint_name) else {
                        return Err(CliError::usage("--name and --endpoint-name are required without --file"));
                    };
                    let current = client.get_batch_deployment(endpoint, name).await?;
                    SpecDoc::from_resource(format!("batch deployment {name}"), &current.spec)?
                }
            };
            override_names(&mut doc, &args.set, args.name.as_deref(), args.endpoint_name.as_deref())?;
            doc.inline_conda_file(Some("environment"))?;
            let spec = checked_deployment(&doc)?;
            print_one(ctx.output, &send(ctx, &doc, spec, args.no_wait, false).await?)
        }
        BatchDeploymentCommand::Show(args) => {
            print_one(ctx.output, &client.get_batch_deployment(&args.endpoint_name, &args.name).await?)
        }
        BatchDeploymentCommand::List(args) => {
            print_list(ctx.output, &client.list_batch_deployments(&args.endpoint_name).await?)
        }
        BatchDeploymentCommand::Delete(args) => {
            confirm(&format!("delete batch deployment {} of endpoint {}", args.name, args.endpoint_name), args.yes)?;
            client.delete_batch_deployment(&args.endpoint_name, &args.name).await?;
            Ok(())
        }
        // The sluice binary runs this itself: it starts a private server for the run.
        BatchDeploymentCommand::Run(_) => Err(CliError::usage("batch-deployment run is run by the sluice binary")),
    }
}

pub(crate) fn override_names(
    doc: &mut SpecDoc,
    sets: &[String],
    name: Option<&str>,
    endpoint: Option<&str>,
) -> Result<(), CliError> {
    doc.apply_sets(sets)?;
    if let Some(n) = name {
        doc.set("name", n);
    }
    if let Some(e) = endpoint {
        doc.set("endpoint_name", e);
    }
    Ok(())
}

/// The typed spec with every rule that needs no server checked (an inline model is checked on
/// its own, its path must exist; the code folder and driver must exist).
pub(crate) fn checked_deployment(doc: &SpecDoc) -> Result<BatchDeploymentSpec, CliError> {
    let spec: BatchDeploymentSpec = doc.typed()?;
    let mut probe = spec.clone();
    let mut errors = Vec::new();
    if let Some(ModelField::Inline(m)) = &spec.model {
        errors = inline_model::check(doc, m);
        probe.model = Some(ModelField::Reference(PLACEHOLDER_REF.into()));
    }
    if let Err(errs) = sluice_api::batch::validate::deployment(&probe) {
        errors.splice(0..0, errs);
    }
    if let Some(code) = spec.code_configuration.as_ref().filter(|c| !c.code.starts_with("sha256:")) {
        errors.extend(code_errors(&doc.resolve(&code.code), &code.scoring_script));
    }
    if errors.is_empty() { Ok(spec) } else { Err(doc.invalid(errors)) }
}

fn code_errors(dir: &Path, script: &str) -> Vec<FieldError> {
    if !dir.is_dir() {
        return vec![FieldError {
            field: "code_configuration.code".into(),
            message: format!("folder {} not found", dir.display()),
        }];
    }
    if !script.is_empty() && !dir.join(script).is_file() {
        return vec![FieldError {
            field: "code_configuration.scoring_script".into(),
            message: format!("{script} not found in {}", dir.display()),
        }];
    }
    Vec::new()
}

/// Registers an inline model, uploads the code, sends the spec, waits, and sets the default.
pub(crate) async fn send(
    ctx: &Ctx,
    doc: &SpecDoc,
    mut spec: BatchDeploymentSpec,
    no_wait: bool,
    set_default: bool,
) -> Result<BatchDeployment, CliError> {
    let client = &ctx.client;
    let endpoint = spec.endpoint_name.clone().expect("validated: endpoint_name is set");
    let name = spec.name.clone();
    // Fail on a missing endpoint before uploading a model it would never use.
    client.get_batch_endpoint(&endpoint).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    if let Some(ModelField::Inline(m)) = &spec.model {
        let reference = inline_model::register(client, doc, m, &endpoint, &name).await?;
        spec.model = Some(ModelField::Reference(reference));
    }
    if let Some(code) = spec.code_configuration.as_mut().filter(|c| !c.code.starts_with("sha256:")) {
        let uploaded = client
            .upload_dir_or_file(doc.resolve(&code.code))
            .await
            .map_err(|e| CliError::client_from(&doc.label, e))?;
        code.code = uploaded.artifact;
    }
    let sent = client.put_batch_deployment(&endpoint, &spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    if no_wait {
        return Ok(sent);
    }
    let what = format!("batch deployment {name}");
    let done = wait_for(&what, Goal::Settled, None, || client.get_batch_deployment(&endpoint, &name)).await?;
    let done = done.expect("Goal::Settled always returns the resource");
    if set_default {
        let current = client.get_batch_endpoint(&endpoint).await?;
        let spec = BatchEndpointSpec {
            schema: None,
            name: current.name,
            description: current.description,
            tags: current.tags,
            auth_mode: current.auth_mode,
            defaults: Some(BatchEndpointDefaults { deployment_name: Some(name.clone()) }),
        };
        client.update_batch_endpoint(&endpoint, &spec).await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_files_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/batch-sklearn");
        let mut doc = SpecDoc::read(&root.join("deployment.yml")).unwrap();
        doc.inline_conda_file(Some("environment")).unwrap();
        let spec = checked_deployment(&doc).unwrap_or_else(|e| panic!("{}", e.render()));
        assert!(matches!(spec.model, Some(ModelField::Inline(_))), "the inline model is kept for registration");
    }

    #[test]
    fn every_problem_names_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.yml");
        std::fs::write(
            &path,
            "name: dpl\nendpoint_name: ep1\nmodel: {path: missing}\ncompute: azureml:cpu-cluster\n\
             code_configuration: {code: code, scoring_script: driver.py}\nsettings: {mini_batch_size: 0}\n",
        )
        .unwrap();
        let text = checked_deployment(&SpecDoc::read(&path).unwrap()).unwrap_err().render();
        for want in ["settings.mini_batch_size: 0", "model.path: ", "code_configuration.code: folder"] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
    }
}
