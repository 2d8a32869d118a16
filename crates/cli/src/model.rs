//! `sluice model create|show|list|delete`: upload files and register them as a model version.

use crate::Ctx;
use crate::error::CliError;
use crate::output::{print_list, print_one};
use crate::spec_file::{SpecDoc, version_text};
use sluice_api::model::{ModelCreate, ModelYaml};
use sluice_api::{FieldError, ModelTypeWire};
use sluice_domain::{ModelName, ModelVersion};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelCommand {
    /// Upload a folder or file and register it as a model version.
    Create(ModelCreateArgs),
    /// Show one model version.
    Show(ModelShowArgs),
    /// List model versions (all models, or one model's versions).
    List(ModelListArgs),
    /// Delete one model version.
    Delete(ModelRefArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelCreateArgs {
    /// Model name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Version (overrides the file's `version`); the next free integer when neither gives one.
    #[arg(short, long)]
    pub version: Option<String>,
    /// custom_model, mlflow_model or triton_model (default custom_model).
    #[arg(long = "type", value_parser = parse_model_type)]
    pub model_type: Option<ModelTypeWire>,
    /// The folder or file to upload (relative to the current folder).
    #[arg(short, long)]
    pub path: Option<PathBuf>,
    #[arg(short, long)]
    pub description: Option<String>,
    /// Azure ML model YAML; its `path` is relative to the YAML's folder.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
}

/// `show --name N --version V | --label latest`, for models and environments alike.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelShowArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(short, long, required_unless_present = "label", conflicts_with = "label")]
    pub version: Option<String>,
    /// `latest`: the highest version.
    #[arg(short, long, value_parser = ["latest"])]
    pub label: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelListArgs {
    /// Only this model's versions.
    #[arg(short, long)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelRefArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(short, long)]
    pub version: String,
}

fn parse_model_type(s: &str) -> Result<ModelTypeWire, String> {
    ModelTypeWire::parse(s).ok_or_else(|| format!("expected one of {}", ModelTypeWire::ALL.join(", ")))
}

pub(crate) async fn run(ctx: &Ctx, cmd: ModelCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        ModelCommand::Create(args) => create(ctx, args).await,
        ModelCommand::Show(args) => {
            let version = args.version.or(args.label).unwrap_or_else(|| "latest".into());
            print_one(ctx.output, &client.get_model(&args.name, &version).await?)
        }
        ModelCommand::List(args) => {
            let models = match &args.name {
                Some(name) => client.list_model_versions(name).await?,
                None => client.list_models().await?,
            };
            print_list(ctx.output, &models)
        }
        ModelCommand::Delete(args) => {
            client.delete_model(&args.name, &args.version).await?;
            Ok(())
        }
    }
}

/// What `model create` registers, merged from the YAML file and the flags.
#[derive(Debug)]
struct ModelPlan {
    name: String,
    version: Option<String>,
    model_type: ModelTypeWire,
    path: PathBuf,
    description: Option<String>,
    tags: std::collections::BTreeMap<String, String>,
}

/// Merges the file and flags (flags win) and checks names before anything is uploaded.
fn plan(args: ModelCreateArgs) -> Result<ModelPlan, CliError> {
    let (doc, yaml) = match &args.file {
        Some(file) => {
            let doc = SpecDoc::read(file)?;
            let yaml: ModelYaml = doc.typed()?;
            (doc, Some(yaml))
        }
        None => (SpecDoc::empty("command line"), None),
    };
    let yaml = yaml.unwrap_or_else(|| ModelYaml {
        schema: None,
        name: None,
        version: None,
        model_type: None,
        path: None,
        description: None,
        tags: Default::default(),
        properties: Default::default(),
        stage: None,
    });
    let mut errors = Vec::new();
    let mut problem = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    let name = args.name.or(yaml.name);
    match &name {
        Some(n) => {
            if let Err(e) = ModelName::parse(n) {
                problem("name", e.0);
            }
        }
        None => problem("name", "required: pass --name or set `name:` in the model file".into()),
    }
    let version = match (args.version, &yaml.version) {
        (Some(v), _) => Some(v),
        (None, Some(v)) => match version_text(v) {
            Some(v) => Some(v),
            None => {
                problem("version", format!("{v}: expected a version such as 1 or \"2\""));
                None
            }
        },
        (None, None) => None,
    };
    if let Some(Err(e)) = version.as_deref().map(ModelVersion::parse) {
        problem("version", e.0);
    }
    let path = match (args.path, &yaml.path) {
        (Some(p), _) => Some(p),
        (None, Some(p)) => Some(doc.resolve(p)),
        (None, None) => {
            problem("path", "required: pass --path or set `path:` in the model file".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(doc.invalid(errors));
    }
    Ok(ModelPlan {
        name: name.expect("checked above"),
        version,
        model_type: args.model_type.or(yaml.model_type).unwrap_or(ModelTypeWire::CustomModel),
        path: path.expect("checked above"),
        description: args.description.or(yaml.description),
        tags: yaml.tags,
    })
}

async fn create(ctx: &Ctx, args: ModelCreateArgs) -> Result<(), CliError> {
    let plan = plan(args)?;
    let client = &ctx.client;
    let artifact = client.upload_dir_or_file(&plan.path).await?;
    let version = match plan.version {
        Some(v) => v,
        None => client.next_model_version(&plan.name).await?,
    };
    let body = ModelCreate {
        model_type: plan.model_type,
        artifact: artifact.artifact,
        description: plan.description,
        tags: plan.tags,
    };
    let model = client.create_model(&plan.name, &version, &body).await?;
    print_one(ctx.output, &model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: Option<PathBuf>) -> ModelCreateArgs {
        ModelCreateArgs { name: None, version: None, model_type: None, path: None, description: None, file }
    }

    #[test]
    fn the_yaml_path_is_relative_to_its_folder_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.yml");
        std::fs::write(&file, "name: iris\nversion: 3\ntype: triton_model\npath: model_repository\ndescription: d\n")
            .unwrap();
        let p = plan(args(Some(file.clone()))).unwrap();
        assert_eq!((p.name.as_str(), p.version.as_deref()), ("iris", Some("3")));
        assert_eq!(p.path, dir.path().join("model_repository"));
        assert_eq!(p.model_type, ModelTypeWire::TritonModel);
        let p =
            plan(ModelCreateArgs { version: Some("7".into()), path: Some("x".into()), ..args(Some(file)) }).unwrap();
        assert_eq!((p.version.as_deref(), p.path), (Some("7"), PathBuf::from("x")));
    }

    #[test]
    fn missing_and_bad_fields_are_all_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.yml");
        std::fs::write(&file, "name: bad name\nversion: [1]\n").unwrap();
        let text = plan(args(Some(file.clone()))).unwrap_err().render();
        let f = file.display();
        assert!(text.starts_with(&format!("error: {f}: 3 problems\n")), "{text}");
        assert!(text.contains(&format!("{f}: name: invalid model name")), "{text}");
        assert!(text.contains(&format!("{f}: version: [1]: expected")), "{text}");
        assert!(text.contains(&format!("{f}: path: required")), "{text}");
        let text = plan(args(None)).unwrap_err().render();
        assert!(text.contains("command line: name: required"), "{text}");
    }
}
