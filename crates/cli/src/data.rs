//! `sluice data create|show|list`: register a local folder (`uri_folder`) or file (`uri_file`)
//! as a data asset that batch jobs take as `--input azureml:NAME@latest` or `azureml:NAME:VERSION`.

use crate::Ctx;
use crate::error::CliError;
use crate::output::{Row, print_list, print_one};
use crate::spec_file::{SpecDoc, version_text};
use sluice_api::data::{DataAsset, DataAssetCreate};
use sluice_api::{FieldError, InputTypeWire};
use sluice_domain::{ModelName, ModelVersion};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DataCommand {
    /// Upload a folder or file and register it as a data asset version.
    Create(DataCreateArgs),
    /// Show one data asset version.
    Show(crate::model::ModelShowArgs),
    /// List data asset versions (all, or one data asset's).
    List(DataListArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataCreateArgs {
    /// Azure ML data asset YAML (`name`, `version`, `type: uri_folder|uri_file`, `path`);
    /// `path` is relative to the YAML's folder.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Version (overrides the file's `version`); the next free integer when neither gives one.
    #[arg(short, long)]
    pub version: Option<String>,
    /// Override a field: `--set path=other-folder` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataListArgs {
    /// Only this data asset's versions.
    #[arg(short, long)]
    pub name: Option<String>,
}

impl Row for DataAsset {
    const HEADERS: &'static [&'static str] = &["name", "version", "type", "path", "artifact", "created_at"];
    fn row(&self) -> Vec<String> {
        let artifact: String = self.path.chars().take(19).collect();
        vec![
            self.name.clone(),
            self.version.clone(),
            self.data_type.clone(),
            self.artifact_path.clone(),
            artifact,
            self.created_at.clone(),
        ]
    }
}

const FIELDS: &[&str] = &["$schema", "name", "version", "type", "path", "description", "tags"];

/// What `create` uploads and registers.
#[derive(Debug)]
struct Plan {
    name: String,
    version: Option<String>,
    local: PathBuf,
    body: DataAssetCreate,
}

pub(crate) async fn run(ctx: &Ctx, cmd: DataCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        DataCommand::Create(args) => {
            let Plan { name, version, local, mut body } = plan(args)?;
            let version = match version {
                Some(v) => v,
                None => client.next_data_asset_version(&name).await?,
            };
            body.path = client.upload_dir_or_file(&local).await?.artifact;
            print_one(ctx.output, &client.create_data_asset(&name, &version, &body).await?)
        }
        DataCommand::Show(args) => {
            let version = args.version.or(args.label).unwrap_or_else(|| "latest".into());
            print_one(ctx.output, &client.get_data_asset(&args.name, &version).await?)
        }
        DataCommand::List(args) => print_list(ctx.output, &client.list_data_assets(args.name.as_deref()).await?),
    }
}

/// Reads and checks the YAML, every problem reported before anything is uploaded.
fn plan(args: DataCreateArgs) -> Result<Plan, CliError> {
    let mut doc = SpecDoc::read(&args.file)?;
    doc.apply_sets(&args.set)?;
    let spec: serde_json::Value = serde_json::to_value(&doc.doc)
        .map_err(|e| doc.invalid(vec![FieldError { field: String::new(), message: e.to_string() }]))?;
    let obj = spec.as_object().cloned().unwrap_or_default();
    let mut errors = Vec::new();
    let mut push = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            push(key, format!("unknown field: expected one of {}", FIELDS[1..].join(", ")));
        }
    }
    let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let name = args.name.or_else(|| text("name"));
    match &name {
        Some(n) => {
            if let Err(e) = ModelName::parse(n) {
                push("name", e.0.replace("model", "data asset"));
            }
        }
        None => push("name", "required: pass --name or set `name:` in the data file".into()),
    }
    let version = match (args.version, obj.get("version")) {
        (Some(v), _) => Some(v),
        (None, Some(v)) => {
            let t = version_text(v);
            if t.is_none() {
                push("version", format!("{v}: expected a version such as 1"));
            }
            t
        }
        (None, None) => None,
    };
    if let Some(Err(e)) = version.as_deref().map(ModelVersion::parse) {
        push("version", e.0);
    }
    let data_type = match text("type") {
        None => {
            push("type", "required: uri_folder or uri_file".into());
            None
        }
        Some(t) => match InputTypeWire::parse(&t) {
            Some(w) => Some(w),
            None => {
                push("type", format!("{t:?} is not supported: expected uri_folder or uri_file"));
                None
            }
        },
    };
    let mut local = None;
    match text("path") {
        None => push("path", "required: the local folder or file to upload".into()),
        Some(p) if p.contains("://") || p.starts_with("azureml:") => {
            push("path", format!("{p:?}: only a local folder or file is supported (datastore and cloud URIs are not)"))
        }
        Some(p) => {
            let resolved = doc.resolve(p.strip_prefix("file:").unwrap_or(&p));
            match (std::fs::metadata(&resolved), data_type) {
                (Err(e), _) => push("path", format!("{}: {e}", resolved.display())),
                (Ok(meta), Some(t)) => {
                    let actual = if meta.is_dir() { InputTypeWire::UriFolder } else { InputTypeWire::UriFile };
                    if actual != t {
                        let (is, want) = if meta.is_dir() { ("folder", "file") } else { ("file", "folder") };
                        push(
                            "type",
                            format!(
                                "{}: {} is a {is}, but a {} needs a {want}",
                                t.as_str(),
                                resolved.display(),
                                t.as_str()
                            ),
                        );
                    } else {
                        local = Some(resolved);
                    }
                }
                (Ok(_), None) => {}
            }
        }
    }
    let tags = match obj.get("tags").cloned().map(serde_json::from_value) {
        None => Default::default(),
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            push("tags", format!("expected a mapping of strings: {e}"));
            Default::default()
        }
    };
    let (Some(name), Some(data_type), Some(local), true) = (name, data_type, local, errors.is_empty()) else {
        return Err(doc.invalid(errors));
    };
    let body = DataAssetCreate { data_type, path: String::new(), description: text("description"), tags };
    Ok(Plan { name, version, local, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: PathBuf) -> DataCreateArgs {
        DataCreateArgs { file, name: None, version: None, set: Vec::new() }
    }

    #[test]
    fn the_path_is_read_relative_to_the_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rows")).unwrap();
        std::fs::write(dir.path().join("rows/a.csv"), "x\n1\n").unwrap();
        let file = dir.path().join("data.yml");
        std::fs::write(&file, "$schema: x\nname: heart\nversion: 2\ntype: uri_folder\npath: rows\ndescription: d\n")
            .unwrap();
        let p = plan(args(file.clone())).unwrap();
        assert_eq!((p.name.as_str(), p.version.as_deref()), ("heart", Some("2")));
        assert_eq!(p.local, dir.path().join("rows"));
        assert_eq!((p.body.data_type, p.body.description.as_deref()), (InputTypeWire::UriFolder, Some("d")));
        let p = plan(DataCreateArgs {
            version: Some("7".into()),
            set: vec!["type=uri_file".into(), "path=rows/a.csv".into()],
            ..args(file)
        })
        .unwrap();
        assert_eq!((p.version.as_deref(), p.body.data_type), (Some("7"), InputTypeWire::UriFile));
    }

    #[test]
    fn the_type_must_match_the_path_and_every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rows")).unwrap();
        let file = dir.path().join("data.yml");
        std::fs::write(&file, "name: heart\ntype: uri_file\npath: rows\n").unwrap();
        let text = plan(args(file.clone())).unwrap_err().render();
        assert!(
            text.contains("type: uri_file: ") && text.contains("is a folder, but a uri_file needs a file"),
            "{text}"
        );
        std::fs::write(&file, "name: bad name\ntype: mltable\npath: missing\ncolour: red\n").unwrap();
        let text = plan(args(file.clone())).unwrap_err().render();
        for part in
            ["name: invalid data asset name", "type: \"mltable\" is not supported", "path: ", "colour: unknown field"]
        {
            assert!(text.contains(part), "{part} in {text}");
        }
        std::fs::write(&file, "type: uri_folder\npath: azureml://datastores/d/paths/p\n").unwrap();
        let text = plan(args(file)).unwrap_err().render();
        assert!(text.contains("name: required") && text.contains("only a local folder or file"), "{text}");
    }
}
