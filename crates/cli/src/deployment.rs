//! `sluice online-deployment ...`: create and update from YAML (registering inline models),
//! show, list, delete and get-logs.

use crate::endpoint::{spec_of, wait_endpoint};
use crate::error::CliError;
use crate::inline_model::{self, PLACEHOLDER_REF};
use crate::output::{print_list, print_one, print_text};
use crate::spec_file::SpecDoc;
use crate::wait::{Goal, wait_for};
use crate::{Ctx, confirm};
use sluice_api::FieldError;
use sluice_api::deployment::{ModelField, OnlineDeploymentSpec};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment from a YAML file (fails if it exists).
    Create(DeploymentCreateArgs),
    /// Replace a deployment's spec from a YAML file, or change fields with --set.
    Update(DeploymentUpdateArgs),
    /// Show one deployment.
    Show(DeploymentRefArgs),
    /// List an endpoint's deployments.
    List(EndpointNameArgs),
    /// Delete a deployment.
    Delete(DeploymentDeleteArgs),
    /// Print a deployment's replica logs.
    GetLogs(GetLogsArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentCreateArgs {
    /// Azure ML online deployment YAML.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Deployment name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Endpoint name (overrides the file's `endpoint_name`).
    #[arg(short, long)]
    pub endpoint_name: Option<String>,
    /// Once the deployment succeeded, send it all of the endpoint's live traffic.
    #[arg(long, conflicts_with = "no_wait")]
    pub all_traffic: bool,
    /// Override a field: PATH=VALUE, e.g. `instance_count=2`; repeatable.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Return once the server accepted the request, without waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
    /// Run the deployment here in the foreground instead (as `sluice serve --file`): no server,
    /// no auth, restarted when its files change.
    #[arg(long, conflicts_with_all = ["all_traffic", "no_wait"])]
    pub local: bool,
    /// With --local: the port to serve on (0 picks a free one).
    #[arg(long, requires = "local", value_name = "PORT")]
    pub local_port: Option<u16>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentUpdateArgs {
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
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GetLogsArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(short, long)]
    pub endpoint_name: String,
    /// How many lines from the end.
    #[arg(short, long, default_value_t = 5000)]
    pub lines: u32,
    /// Which replica (0-based); the server's choice when left out.
    #[arg(long)]
    pub replica: Option<u32>,
    /// Keep printing new lines as they are written (until interrupted).
    #[arg(short, long)]
    pub follow: bool,
}

pub(crate) async fn run(ctx: &Ctx, cmd: DeploymentCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        DeploymentCommand::Create(args) if args.local => {
            Err(CliError::usage("--local runs in the sluice binary: use `sluice online-deployment create --local`"))
        }
        DeploymentCommand::Create(args) => {
            let mut doc = SpecDoc::read(&args.file)?;
            override_names(&mut doc, &args.set, args.name.as_deref(), args.endpoint_name.as_deref())?;
            doc.inline_conda_file(Some("environment"))?;
            let spec = checked_deployment(&doc)?;
            let opts = SendOptions { create: true, no_wait: args.no_wait, all_traffic: args.all_traffic };
            send(ctx, &doc, spec, opts).await
        }
        DeploymentCommand::Update(args) => {
            let mut doc = match &args.file {
                Some(file) => SpecDoc::read(file)?,
                None => {
                    let (Some(name), Some(endpoint)) = (&args.name, &args.endpoint_name) else {
                        return Err(CliError::usage("--name and --endpoint-name are required without --file"));
                    };
                    let current = client.get_deployment(endpoint, name).await?;
                    SpecDoc::from_resource(format!("online deployment {name}"), &current.spec)?
                }
            };
            override_names(&mut doc, &args.set, args.name.as_deref(), args.endpoint_name.as_deref())?;
            doc.inline_conda_file(Some("environment"))?;
            let spec = checked_deployment(&doc)?;
            send(ctx, &doc, spec, SendOptions { create: false, no_wait: args.no_wait, all_traffic: false }).await
        }
        DeploymentCommand::Show(args) => {
            print_one(ctx.output, &client.get_deployment(&args.endpoint_name, &args.name).await?)
        }
        DeploymentCommand::List(args) => print_list(ctx.output, &client.list_deployments(&args.endpoint_name).await?),
        DeploymentCommand::Delete(args) => {
            confirm(&format!("delete online deployment {} of endpoint {}", args.name, args.endpoint_name), args.yes)?;
            client.delete_deployment(&args.endpoint_name, &args.name).await?;
            if !args.no_wait {
                let what = format!("online deployment {}", args.name);
                wait_for(&what, Goal::Gone, None, || client.get_deployment(&args.endpoint_name, &args.name)).await?;
            }
            Ok(())
        }
        DeploymentCommand::GetLogs(args) => {
            let logs =
                client.get_deployment_logs(&args.endpoint_name, &args.name, Some(args.lines), args.replica).await?;
            print_text(&logs.content)?;
            if !args.follow {
                return Ok(());
            }
            let mut seen: Vec<String> = logs.content.lines().map(str::to_owned).collect();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let logs =
                    client.get_deployment_logs(&args.endpoint_name, &args.name, Some(1000), args.replica).await?;
                let now: Vec<String> = logs.content.lines().map(str::to_owned).collect();
                let fresh = new_lines(&seen, &now);
                if !fresh.is_empty() {
                    print_text(&(fresh.join("\n") + "\n"))?;
                }
                seen = now;
            }
        }
    }
}

/// The lines of `now` (the log's last lines now) after those of `before` (its last lines at the
/// previous look): `now` starts with a tail of `before`, found as the longest one that fits. With
/// no overlap (the log rolled over, or more lines came than one look returns), all of `now`.
fn new_lines<'a>(before: &[String], now: &'a [String]) -> &'a [String] {
    for k in 0..before.len() {
        let tail = &before[k..];
        if tail.len() <= now.len() && now[..tail.len()] == *tail {
            return &now[tail.len()..];
        }
    }
    now
}

/// Applies `--set`, then `--name` and `--endpoint-name` (flags win over the file).
fn override_names(
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

/// The typed spec with every rule that needs no server checked; an inline model is checked on
/// its own (its path must exist) while the rest is validated with a placeholder reference.
fn checked_deployment(doc: &SpecDoc) -> Result<OnlineDeploymentSpec, CliError> {
    let spec: OnlineDeploymentSpec = doc.typed()?;
    let mut probe = spec.clone();
    let mut inline_errors = Vec::new();
    if let Some(ModelField::Inline(m)) = &spec.model {
        inline_errors = inline_model::check(doc, m);
        probe.model = Some(ModelField::Reference(PLACEHOLDER_REF.into()));
    }
    let mut errors = sluice_api::validate::deployment(&probe).err().unwrap_or_default();
    errors.extend(inline_errors);
    if let Some(code) = spec.code_configuration.as_ref().filter(|c| !c.code.starts_with("sha256:")) {
        let dir = doc.resolve(&code.code);
        if !dir.is_dir() {
            errors.push(FieldError {
                field: "code_configuration.code".into(),
                message: format!("folder {} not found", dir.display()),
            });
        } else if !code.scoring_script.is_empty() && !dir.join(&code.scoring_script).is_file() {
            errors.push(FieldError {
                field: "code_configuration.scoring_script".into(),
                message: format!("{} not found in {}", code.scoring_script, dir.display()),
            });
        }
    }
    if errors.is_empty() { Ok(spec) } else { Err(doc.invalid(errors)) }
}

struct SendOptions {
    create: bool,
    no_wait: bool,
    all_traffic: bool,
}

/// Registers an inline model, sends the spec, waits, and routes traffic if asked.
async fn send(ctx: &Ctx, doc: &SpecDoc, mut spec: OnlineDeploymentSpec, opts: SendOptions) -> Result<(), CliError> {
    let client = &ctx.client;
    let endpoint = spec.endpoint_name.clone().expect("validated: endpoint_name is set");
    let name = spec.name.clone();
    if let Some(ModelField::Inline(m)) = &spec.model {
        // Fail on a missing endpoint before uploading a model it would never use.
        client.get_endpoint(&endpoint).await.map_err(|e| CliError::client_from(&doc.label, e))?;
        let reference = inline_model::register(client, doc, m, &endpoint, &name).await?;
        spec.model = Some(ModelField::Reference(reference));
    }
    // The code folder travels like a model: uploaded once per content, referenced by its hash.
    if let Some(code) = spec.code_configuration.as_mut().filter(|c| !c.code.starts_with("sha256:")) {
        let uploaded = client
            .upload_dir_or_file(doc.resolve(&code.code))
            .await
            .map_err(|e| CliError::client_from(&doc.label, e))?;
        code.code = uploaded.artifact;
    }
    let sent = if opts.create {
        client.create_deployment(&endpoint, &spec).await
    } else {
        client.update_deployment(&endpoint, &name, &spec).await
    };
    let sent = sent.map_err(|e| CliError::client_from(&doc.label, e))?;
    if opts.no_wait {
        return print_one(ctx.output, &sent);
    }
    let what = format!("online deployment {name}");
    let next = format!("see why with `sluice online-deployment get-logs --name {name} --endpoint-name {endpoint}`");
    let done = wait_for(&what, Goal::Settled, Some(next), || client.get_deployment(&endpoint, &name)).await?;
    let done = done.expect("Goal::Settled always returns the resource");
    if opts.all_traffic {
        route_all_traffic(ctx, &endpoint, &name).await?;
    }
    print_one(ctx.output, &done)
}

/// `--all-traffic`: the endpoint's whole live split goes to `deployment`.
async fn route_all_traffic(ctx: &Ctx, endpoint: &str, deployment: &str) -> Result<(), CliError> {
    let current = ctx.client.get_endpoint(endpoint).await?;
    let mut spec = spec_of(&current);
    spec.traffic = [(deployment.to_owned(), serde_json::Value::from(100))].into_iter().collect();
    spec.mirror_traffic.remove(deployment);
    ctx.client.update_endpoint(endpoint, &spec).await?;
    wait_endpoint(ctx, endpoint).await.map(drop)
}

#[cfg(test)]
mod tests {
    #[test]
    fn following_prints_only_lines_not_seen() {
        let v = |s: &str| s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(super::new_lines(&v("a b c"), &v("b c d e")), v("d e"));
        assert_eq!(super::new_lines(&v("a b c"), &v("a b c")), v(""));
        assert_eq!(super::new_lines(&v(""), &v("x")), v("x"));
        assert_eq!(super::new_lines(&v("a b"), &v("x y")), v("x y"));
    }

    use super::*;

    fn read(dir: &std::path::Path, text: &str) -> SpecDoc {
        let path = dir.join("blue-deployment.yml");
        std::fs::write(&path, text).unwrap();
        SpecDoc::read(&path).unwrap()
    }

    #[test]
    fn every_problem_is_reported_with_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let doc = read(
            dir.path(),
            "name: blue\nendpoint_name: iris-ep\nmodel: azureml:iris:1\ninstance_count: 0\nrequest_settings:\n  request_timeout_ms: 999999\n",
        );
        let text = checked_deployment(&doc).unwrap_err().render();
        let f = doc.label.clone();
        assert!(text.starts_with(&format!("error: {f}: 2 problems\n")), "{text}");
        assert!(text.contains(&format!("\n  {f}: instance_count: 0: expected a whole number from 1 to 50")), "{text}");
        assert!(text.contains(&format!("\n  {f}: request_settings.request_timeout_ms: 999999")), "{text}");
    }

    #[test]
    fn one_problem_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let doc = read(dir.path(), "name: blue\nendpoint_name: iris-ep\nmodel: azureml:iris:1\ninstance_count: two\n");
        let text = checked_deployment(&doc).unwrap_err().render();
        assert_eq!(
            text,
            format!("error: {}: instance_count: \"two\": expected a whole number from 1 to 50", doc.label)
        );
    }

    #[test]
    fn inline_models_validate_with_a_placeholder_and_a_real_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("model")).unwrap();
        let text = "name: blue\nendpoint_name: iris-mlflow-ep\nmodel:\n  path: model\n  type: mlflow_model\n";
        let spec = checked_deployment(&read(dir.path(), text)).unwrap();
        assert!(matches!(spec.model, Some(ModelField::Inline(_))), "the inline model is kept for registration");
        let doc = read(dir.path(), &text.replace("path: model", "path: missing"));
        let text = checked_deployment(&doc).unwrap_err().render();
        assert!(text.contains(": model.path: ") && text.contains("missing: no such file"), "{text}");
    }

    #[test]
    fn flags_override_the_file_before_validation() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = read(dir.path(), "name: blue\nmodel: azureml:iris:1\n");
        assert!(checked_deployment(&doc).unwrap_err().render().contains("endpoint_name: required"));
        override_names(&mut doc, &["instance_count=2".into()], Some("green"), Some("iris-ep")).unwrap();
        let spec = checked_deployment(&doc).unwrap();
        assert_eq!((spec.name.as_str(), spec.endpoint_name.as_deref()), ("green", Some("iris-ep")));
        assert_eq!(spec.instance_count, serde_json::Value::from(2));
    }

    #[test]
    fn the_example_files_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        for file in ["iris/blue-deployment.yml", "iris-mlflow/deployment.yml"] {
            let doc = SpecDoc::read(&root.join(file)).unwrap();
            checked_deployment(&doc).unwrap_or_else(|e| panic!("{}", e.render()));
        }
    }
}
