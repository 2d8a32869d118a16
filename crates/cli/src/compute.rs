//! `sluice compute create|update|show|list|delete`: named pools of instances that batch
//! deployments' `compute: azureml:NAME` draws from, as `az ml compute` manages amlcompute clusters.

use crate::batch::{DeleteArgs, NameArgs};
use crate::error::CliError;
use crate::output::{Row, print_list, print_one};
use crate::spec_file::SpecDoc;
use crate::{Ctx, confirm};
use sluice_api::compute::{Compute, ComputeSpec, validate};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ComputeCommand {
    /// Create a compute pool from flags or an Azure ML amlCompute YAML.
    Create(ComputeArgs),
    /// Change a pool's size or description (flags or YAML over what is stored).
    Update(ComputeArgs),
    /// Show a pool, the instances in use, and the jobs running on it and waiting for it.
    Show(NameArgs),
    /// List compute pools.
    List,
    /// Delete a pool no batch deployment uses.
    Delete(DeleteArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ComputeArgs {
    /// Azure ML compute YAML (`name`, `type: amlcompute`, `size`, `min_instances`, `max_instances`, ...).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Only `amlcompute`.
    #[arg(short, long = "type", value_name = "TYPE")]
    pub compute_type: Option<String>,
    /// Instances kept when idle (default 0).
    #[arg(long)]
    pub min_instances: Option<u32>,
    /// Instances jobs may hold at once (default 1).
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// The VM size Azure would use; kept for reference.
    #[arg(long)]
    pub size: Option<String>,
    /// Seconds an idle instance is kept (default 120).
    #[arg(long)]
    pub idle_time_before_scale_down: Option<u32>,
    /// Override a field: `--set description=...` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

impl Row for Compute {
    const HEADERS: &'static [&'static str] =
        &["name", "type", "min", "max", "in use", "running jobs", "queued jobs", "size"];
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.compute_type.clone(),
            self.min_instances.to_string(),
            self.max_instances.to_string(),
            self.current_instances.to_string(),
            self.running_jobs.join(" "),
            self.queued_jobs.join(" "),
            self.size.clone().unwrap_or_default(),
        ]
    }
}

/// The flags over the file (or over the stored pool, for update).
fn spec_doc(args: &ComputeArgs, base: Option<&ComputeSpec>) -> Result<SpecDoc, CliError> {
    let mut doc = match base {
        Some(b) => SpecDoc::from_resource(format!("compute {}", b.name), b)?,
        None => SpecDoc::empty("command line"),
    };
    if let Some(f) = &args.file {
        let file = SpecDoc::read(f)?;
        if base.is_some() {
            doc.overlay(&file);
        } else {
            doc = file;
        }
    }
    doc.apply_sets(&args.set)?;
    if let Some(n) = &args.name {
        doc.set("name", n.as_str());
    }
    if let Some(t) = &args.compute_type {
        doc.set("type", t.as_str());
    }
    if let Some(s) = &args.size {
        doc.set("size", s.as_str());
    }
    for (key, value) in [
        ("min_instances", args.min_instances),
        ("max_instances", args.max_instances),
        ("idle_time_before_scale_down", args.idle_time_before_scale_down),
    ] {
        if let Some(v) = value {
            doc.set(key, u64::from(v));
        }
    }
    Ok(doc)
}

fn checked(doc: &SpecDoc) -> Result<ComputeSpec, CliError> {
    if doc.get_str("name").is_none() {
        return Err(CliError::usage("--name (or a file with a name) is required"));
    }
    let spec: ComputeSpec = doc.typed()?;
    validate(&spec).map_err(|errors| doc.invalid(errors))?;
    Ok(spec)
}

pub(crate) async fn run(ctx: &Ctx, cmd: ComputeCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        ComputeCommand::Create(args) => {
            let doc = spec_doc(&args, None)?;
            let spec = checked(&doc)?;
            print_one(
                ctx.output,
                &client.create_compute(&spec).await.map_err(|e| CliError::client_from(&doc.label, e))?,
            )
        }
        ComputeCommand::Update(args) => {
            let name = match (&args.name, &args.file) {
                (Some(n), _) => n.clone(),
                (None, Some(f)) => SpecDoc::read(f)?
                    .get_str("name")
                    .map(str::to_owned)
                    .ok_or_else(|| CliError::usage("--name (or a file with a name) is required"))?,
                (None, None) => return Err(CliError::usage("--name (or a file with a name) is required")),
            };
            let current = client.get_compute(&name).await?;
            let base = ComputeSpec {
                compute_type: current.compute_type.clone(),
                description: current.description.clone(),
                tags: current.tags.clone(),
                size: current.size.clone(),
                location: current.location.clone(),
                tier: current.tier.clone(),
                min_instances: Some(current.min_instances),
                idle_time_before_scale_down: Some(current.idle_time_before_scale_down),
                ..ComputeSpec::named(&current.name, current.max_instances)
            };
            let doc = spec_doc(&args, Some(&base))?;
            let spec = checked(&doc)?;
            print_one(
                ctx.output,
                &client.update_compute(&spec).await.map_err(|e| CliError::client_from(&doc.label, e))?,
            )
        }
        ComputeCommand::Show(args) => print_one(ctx.output, &client.get_compute(&args.name).await?),
        ComputeCommand::List => print_list(ctx.output, &client.list_computes().await?),
        ComputeCommand::Delete(args) => {
            confirm(&format!("delete compute {}", args.name), args.yes)?;
            client.delete_compute(&args.name).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: Option<&str>) -> ComputeArgs {
        ComputeArgs {
            file: None,
            name: name.map(str::to_owned),
            compute_type: Some("amlcompute".into()),
            min_instances: Some(0),
            max_instances: Some(3),
            size: None,
            idle_time_before_scale_down: None,
            set: vec![],
        }
    }

    #[test]
    fn flags_make_a_pool_and_bad_ones_are_named_locally() {
        let spec = checked(&spec_doc(&args(Some("gpu-pool")), None).unwrap()).unwrap();
        assert_eq!((spec.name.as_str(), spec.max_instances), ("gpu-pool", Some(3)));
        let err = checked(&spec_doc(&args(None), None).unwrap()).unwrap_err().render();
        assert!(err.contains("--name"), "{err}");
        let mut bad = args(Some("gpu-pool"));
        bad.min_instances = Some(5);
        let err = checked(&spec_doc(&bad, None).unwrap()).unwrap_err().render();
        assert!(err.contains("min_instances: 5: expected at most max_instances (3)"), "{err}");
    }
}
