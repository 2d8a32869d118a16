//! Compute pools, as Azure ML's `amlCompute` YAML describes a cluster, and as `show` reports them
//! with the jobs that hold or wait for their instances.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use sluice_domain::compute::ComputePool;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a user writes for `sluice compute create --file` (Azure ML's `amlCompute` YAML), or what
/// the CLI builds from `--name --type --min-instances --max-instances`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    #[serde(rename = "$schema", default, skip_serializing)]
    pub schema: Option<String>,
    pub name: String,
    /// `amlcompute` (the only type that runs batch jobs here).
    #[serde(rename = "type", default = "amlcompute")]
    pub compute_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The VM size Azure would provision (e.g. `STANDARD_DS3_V2`); kept and shown. Every instance
    /// here is a share of this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Accepted and kept, as Azure's YAML has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `dedicated` or `low_priority`; accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instances: Option<u32>,
    /// Instances jobs may hold at once (default 1): a job takes its deployment's
    /// `instance_count` of them, each running `max_concurrency_per_instance` workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Seconds (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_time_before_scale_down: Option<u32>,
}

fn amlcompute() -> String {
    "amlcompute".into()
}

impl ComputeSpec {
    /// A pool with only a name and a size, as the server seeds its default.
    pub fn named(name: &str, max_instances: u32) -> Self {
        Self {
            schema: None,
            name: name.to_owned(),
            compute_type: amlcompute(),
            description: None,
            tags: BTreeMap::new(),
            size: None,
            location: None,
            tier: None,
            min_instances: Some(0),
            max_instances: Some(max_instances),
            idle_time_before_scale_down: None,
        }
    }
}

/// A compute pool as `show` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Compute {
    pub name: String,
    /// `azureml:<name>`, what a batch deployment's `compute` names.
    pub id: String,
    #[serde(rename = "type")]
    pub compute_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub min_instances: u32,
    pub max_instances: u32,
    pub idle_time_before_scale_down: u32,
    pub provisioning_state: String,
    /// Instances running jobs now (workers start with a job and stop when it ends).
    pub current_instances: u32,
    /// Jobs holding instances now.
    pub running_jobs: Vec<String>,
    /// Jobs waiting for this pool, in the order they will start.
    pub queued_jobs: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Checks a spec against the domain's rules, naming every broken field.
pub fn validate(spec: &ComputeSpec) -> Result<ComputePool, Vec<FieldError>> {
    let mut errors = Vec::new();
    if !spec.compute_type.eq_ignore_ascii_case("amlcompute") {
        errors.push(FieldError {
            field: "type".into(),
            message: format!(
                "{:?}: only amlcompute pools run batch jobs here (compute instances, attached VMs and Kubernetes computes are not supported)",
                spec.compute_type
            ),
        });
    }
    if let Some(tier) = &spec.tier
        && !["dedicated", "low_priority"].iter().any(|t| t.eq_ignore_ascii_case(tier))
    {
        errors.push(FieldError {
            field: "tier".into(),
            message: format!("{tier:?}: expected dedicated or low_priority"),
        });
    }
    match ComputePool::new(&spec.name, spec.min_instances, spec.max_instances, spec.idle_time_before_scale_down) {
        Ok(pool) if errors.is_empty() => Ok(pool),
        Ok(_) => Err(errors),
        Err(rules) => {
            errors.extend(rules.into_iter().map(|(f, e)| FieldError { field: f.into(), message: e.0 }));
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_yaml_reads_and_bad_fields_are_named() {
        let yaml = "$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json\nname: batch-cluster\n\
                    type: amlcompute\nsize: STANDARD_DS3_v2\nmin_instances: 0\nmax_instances: 5\nidle_time_before_scale_down: 120\n";
        let spec: ComputeSpec = serde_yaml::from_str(yaml).unwrap();
        let pool = validate(&spec).unwrap();
        assert_eq!((pool.name.as_str(), pool.max_instances), ("batch-cluster", 5));
        let bad = ComputeSpec {
            compute_type: "kubernetes".into(),
            tier: Some("spot".into()),
            min_instances: Some(9),
            ..ComputeSpec::named("p", 2)
        };
        let fields: Vec<String> = validate(&bad).unwrap_err().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["type", "tier", "name", "min_instances"]);
        assert!(serde_yaml::from_str::<ComputeSpec>("name: x\nmax_nodes: 3\n").is_err());
    }
}
