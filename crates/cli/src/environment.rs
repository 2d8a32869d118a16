//! `sluice environment create|show|list`: register environments (a conda file, or a custom
//! container's `inference_config` and command) that deployments name as `azureml:NAME:VERSION`.

use crate::Ctx;
use crate::error::CliError;
use crate::output::{print_list, print_one};
use crate::spec_file::{SpecDoc, version_text};
use sluice_api::FieldError;
use sluice_api::environment::EnvironmentCreate;
use sluice_domain::{ModelName, ModelVersion};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EnvironmentCommand {
    /// Register an environment version; a conda file starts building at once.
    Create(EnvironmentCreateArgs),
    /// Show one environment version with its build state and the end of its build log.
    Show(crate::model::ModelShowArgs),
    /// List environment versions (all, or one environment's).
    List(EnvironmentListArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct EnvironmentCreateArgs {
    /// Azure ML environment YAML; `conda_file` is relative to the YAML's folder.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Version (overrides the file's `version`); the next free integer when neither gives one.
    #[arg(short, long)]
    pub version: Option<String>,
    /// Override a field: `--set image=...` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EnvironmentListArgs {
    /// Only this environment's versions.
    #[arg(short, long)]
    pub name: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, cmd: EnvironmentCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        EnvironmentCommand::Create(args) => {
            let (name, version, body) = plan(args)?;
            let version = match version {
                Some(v) => v,
                None => client.next_environment_version(&name).await?,
            };
            print_one(ctx.output, &client.create_environment(&name, &version, &body).await?)
        }
        EnvironmentCommand::Show(args) => {
            let version = args.version.or(args.label).unwrap_or_else(|| "latest".into());
            print_one(ctx.output, &client.get_environment(&args.name, &version).await?)
        }
        EnvironmentCommand::List(args) => {
            print_list(ctx.output, &client.list_environments(args.name.as_deref()).await?)
        }
    }
}

/// The name, version and body `create` sends, with every problem reported before sending.
fn plan(args: EnvironmentCreateArgs) -> Result<(String, Option<String>, EnvironmentCreate), CliError> {
    let mut doc = SpecDoc::read(&args.file)?;
    doc.apply_sets(&args.set)?;
    doc.inline_conda_file(None)?;
    let mut spec: serde_json::Value = serde_json::to_value(&doc.doc)
        .map_err(|e| doc.invalid(vec![FieldError { field: String::new(), message: e.to_string() }]))?;
    let obj = spec.as_object_mut().expect("SpecDoc::read accepts only mappings");
    obj.remove("$schema");
    let yaml_name = obj.remove("name");
    let yaml_version = obj.remove("version");
    let description = obj.remove("description").and_then(|d| d.as_str().map(str::to_owned));
    let tags_value = obj.remove("tags");
    let mut errors = Vec::new();
    let name = args.name.or_else(|| yaml_name.as_ref().and_then(|n| n.as_str().map(str::to_owned)));
    match &name {
        Some(n) => {
            if let Err(e) = ModelName::parse(n) {
                errors.push(FieldError { field: "name".into(), message: e.0.replace("model", "environment") });
            }
        }
        None => errors.push(FieldError {
            field: "name".into(),
            message: "required: pass --name or set `name:` in the environment file".into(),
        }),
    }
    let version = match (args.version, yaml_version) {
        (Some(v), _) => Some(v),
        (None, Some(v)) => {
            let text = version_text(&v);
            if text.is_none() {
                errors.push(FieldError {
                    field: "version".into(),
                    message: format!("{v}: expected a version such as 1"),
                });
            }
            text
        }
        (None, None) => None,
    };
    if let Some(Err(e)) = version.as_deref().map(ModelVersion::parse) {
        errors.push(FieldError { field: "version".into(), message: e.0 });
    }
    let tags = match tags_value.map(serde_json::from_value) {
        None => Default::default(),
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            errors.push(FieldError { field: "tags".into(), message: format!("expected a mapping of strings: {e}") });
            Default::default()
        }
    };
    sluice_api::environment::inline(&spec, "", &mut errors);
    if !errors.is_empty() {
        return Err(doc.invalid(errors));
    }
    Ok((name.expect("checked above"), version, EnvironmentCreate { description, tags, spec }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: PathBuf) -> EnvironmentCreateArgs {
        EnvironmentCreateArgs { file, name: None, version: None, set: Vec::new() }
    }

    #[test]
    fn the_conda_file_is_read_relative_to_the_yaml_and_sent_as_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("env")).unwrap();
        std::fs::write(dir.path().join("env/conda.yml"), "dependencies:\n  - python=3.12\n  - numpy=2.3.1\n").unwrap();
        let file = dir.path().join("env.yml");
        std::fs::write(
            &file,
            "$schema: x\nname: sk\nversion: 2\ndescription: d\nconda_file: env/conda.yml\nimage: img\n",
        )
        .unwrap();
        let (name, version, body) = plan(args(file.clone())).unwrap();
        assert_eq!((name.as_str(), version.as_deref(), body.description.as_deref()), ("sk", Some("2"), Some("d")));
        assert_eq!(body.spec["conda_file"]["dependencies"][1], "numpy=2.3.1");
        assert_eq!(body.spec["image"], "img");
        assert!(body.spec.get("name").is_none() && body.spec.get("$schema").is_none());
        let (_, version, _) = plan(EnvironmentCreateArgs { version: Some("9".into()), ..args(file) }).unwrap();
        assert_eq!(version.as_deref(), Some("9"));
    }

    #[test]
    fn every_problem_is_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env.yml");
        std::fs::write(&file, "name: bad name\nconda_file: missing.yml\n").unwrap();
        let text = plan(args(file.clone())).unwrap_err().render();
        assert!(text.contains("conda_file: cannot read"), "{text}");
        std::fs::write(&file, "name: bad name\ninference_config: {}\ncolour: red\n").unwrap();
        let text = plan(args(file)).unwrap_err().render();
        for part in [
            "name: invalid environment name",
            "colour: unknown field",
            "inference_config.liveness_route: required",
            "command: required",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }
}
