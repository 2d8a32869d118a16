//! Maps wire specs onto the domain's rules, collecting every broken rule with its field path.

use crate::FieldError;
use crate::deployment::{ModelField, OnlineDeploymentSpec};
use crate::endpoint::OnlineEndpointSpec;
use sluice_domain::{
    CodeRef, EnvironmentChoice, InstanceType, ModelRef, ResourceName, ValidDeployment, ValidEndpoint, limits,
};
use std::collections::BTreeMap;

/// Collects field errors so a user sees all of them at once.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_owned(), message: message.into() });
    }

    fn check<T>(&mut self, field: &str, r: Result<T, sluice_domain::RuleError>) -> Option<T> {
        r.map_err(|e| self.push(field, e.0)).ok()
    }
}

fn weights(field: &str, map: &BTreeMap<String, serde_json::Value>, errors: &mut Errors) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match v.as_i64() {
            Some(w) => {
                out.insert(k.clone(), w);
            }
            None => errors.push(
                &format!("{field}.{k}"),
                format!("{v} is not a whole number: expected an integer percent from 0 to 100"),
            ),
        }
    }
    out
}

pub fn endpoint(spec: &OnlineEndpointSpec) -> Result<ValidEndpoint, Vec<FieldError>> {
    let mut errors = Errors::default();
    let name = errors.check("name", ResourceName::parse(&spec.name));
    let traffic = weights("traffic", &spec.traffic, &mut errors);
    let mirror_traffic = weights("mirror_traffic", &spec.mirror_traffic, &mut errors);
    if mirror_traffic.len() > 1 {
        errors.push("mirror_traffic", "at most one deployment can receive mirrored traffic");
    }
    for (k, w) in &mirror_traffic {
        if !(0..=50).contains(w) {
            errors.push(&format!("mirror_traffic.{k}"), format!("{w}: expected a percent from 0 to 50"));
        }
        if traffic.get(k).copied().unwrap_or(0) > 0 && *w > 0 {
            errors.push(
                &format!("mirror_traffic.{k}"),
                "a deployment that takes live traffic cannot also receive mirrored traffic",
            );
        }
    }
    match (name, errors.0.is_empty()) {
        (Some(name), true) => Ok(ValidEndpoint { name, auth_mode: spec.auth_mode.into(), traffic, mirror_traffic }),
        _ => Err(errors.0),
    }
}

/// `endpoint_name` comes from the spec unless the caller (CLI `--endpoint-name`, REST path) set it.
pub fn deployment(spec: &OnlineDeploymentSpec) -> Result<ValidDeployment, Vec<FieldError>> {
    let mut errors = Errors::default();
    let name = errors.check("name", ResourceName::parse(&spec.name));
    let endpoint_name = match &spec.endpoint_name {
        Some(e) => errors.check("endpoint_name", ResourceName::parse(e)),
        None => {
            errors.push("endpoint_name", "required: the endpoint this deployment belongs to");
            None
        }
    };
    let model = match &spec.model {
        Some(ModelField::Reference(r)) => errors.check("model", ModelRef::parse(r)),
        Some(ModelField::Inline(_)) => {
            errors.push(
                "model",
                "an inline model must be registered first: send 'azureml:NAME:VERSION' (the CLI does this for you)",
            );
            None
        }
        None => {
            errors.push("model", "required: a model reference such as 'azureml:iris:1' or an inline {path, type}");
            None
        }
    };
    let instance_type = match &spec.instance_type {
        Some(t) => errors.check("instance_type", InstanceType::parse(t)),
        None => Some(InstanceType::default_local()),
    };
    let instance_count = match spec.instance_count.as_u64() {
        Some(n) if (1..=u64::from(limits::MAX_INSTANCE_COUNT)).contains(&n) => Some(n as u32),
        _ => {
            errors.push(
                "instance_count",
                format!("{}: expected a whole number from 1 to {}", spec.instance_count, limits::MAX_INSTANCE_COUNT),
            );
            None
        }
    };
    let rs = &spec.request_settings;
    if !(1..=limits::MAX_REQUEST_TIMEOUT_MS).contains(&rs.request_timeout_ms) {
        errors.push(
            "request_settings.request_timeout_ms",
            format!("{}: expected 1 to {} milliseconds", rs.request_timeout_ms, limits::MAX_REQUEST_TIMEOUT_MS),
        );
    }
    if !(1..=1024).contains(&rs.max_concurrent_requests_per_instance) {
        errors.push(
            "request_settings.max_concurrent_requests_per_instance",
            format!("{}: expected 1 to 1024", rs.max_concurrent_requests_per_instance),
        );
    }
    if rs.max_queue_wait_ms > limits::MAX_REQUEST_TIMEOUT_MS {
        errors.push(
            "request_settings.max_queue_wait_ms",
            format!("{}: expected at most {} milliseconds", rs.max_queue_wait_ms, limits::MAX_REQUEST_TIMEOUT_MS),
        );
    }
    for (field, probe) in [("liveness_probe", &spec.liveness_probe), ("readiness_probe", &spec.readiness_probe)] {
        let Some(p) = probe else { continue };
        for (name, value, min, max) in [
            ("initial_delay", p.initial_delay, 0, 3600),
            ("period", p.period, 1, 3600),
            ("timeout", p.timeout, 1, 3600),
            ("success_threshold", p.success_threshold, 1, 1000),
            ("failure_threshold", p.failure_threshold, 1, 1000),
        ] {
            if !(min..=max).contains(&value) {
                errors.push(&format!("{field}.{name}"), format!("{value}: expected {min} to {max}"));
            }
        }
    }
    let environment = spec.environment.as_ref().and_then(|env| {
        let mut errs = Vec::new();
        let choice = crate::environment::choice(env, &mut errs);
        errors.0.extend(errs);
        choice
    });
    let scale = {
        let mut errs = Vec::new();
        let count = instance_count.as_ref().copied();
        let s = crate::scale::settings(spec.scale_settings.as_ref(), count, &mut errs);
        errors.0.extend(errs);
        s
    };
    let data_collection = {
        let mut errs = Vec::new();
        let c = crate::collector::settings(spec.data_collector.as_ref(), &mut errs);
        errors.0.extend(errs);
        c
    };
    let container = matches!(&environment, Some(EnvironmentChoice::Inline(e)) if e.container.is_some());
    let code = spec.code_configuration.as_ref().and_then(|c| {
        let script = std::path::Path::new(&c.scoring_script);
        let safe =
            c.scoring_script.is_empty() || script.components().all(|p| matches!(p, std::path::Component::Normal(_)));
        if c.scoring_script.is_empty() && !container {
            errors
                .push("code_configuration.scoring_script", "required: the scoring script, relative to the code folder");
            return None;
        }
        if !safe {
            errors.push(
                "code_configuration.scoring_script",
                format!("{:?}: expected a file path inside the code folder, without '..'", c.scoring_script),
            );
            return None;
        }
        if c.code.is_empty() {
            errors.push("code_configuration.code", "required: the folder holding the scoring script");
            return None;
        }
        Some(CodeRef { code: c.code.clone(), scoring_script: c.scoring_script.clone() })
    });
    match (name, endpoint_name, model, instance_type, instance_count) {
        (Some(name), Some(endpoint_name), Some(model), Some(instance_type), Some(instance_count))
            if errors.0.is_empty() =>
        {
            Ok(ValidDeployment {
                name,
                endpoint_name,
                model,
                instance_type,
                instance_count,
                request_timeout_ms: rs.request_timeout_ms,
                max_concurrent_requests_per_instance: rs.max_concurrent_requests_per_instance,
                max_queue_wait_ms: rs.max_queue_wait_ms,
                environment_variables: spec.environment_variables.clone(),
                code,
                environment,
                scale,
                data_collection,
            })
        }
        _ => Err(errors.0),
    }
}
