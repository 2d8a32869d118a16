//! Maps batch endpoint and deployment specs onto the domain's rules, collecting every broken
//! rule with its field path; Azure ML's defaults are filled in here.

use super::{BatchDeploymentSpec, BatchEndpointSpec, BatchSettingsSpec, RetrySettings};
use crate::deployment::ModelField;
use crate::{AuthModeWire, FieldError};
use sluice_domain::batch::{
    BatchSettings, ValidBatchDeployment, ValidBatchEndpoint, batch_limits, compute_name, output_file_name,
};
use sluice_domain::{CodeRef, EnvironmentChoice, ModelRef, ResourceName, limits};

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

pub fn endpoint(spec: &BatchEndpointSpec) -> Result<ValidBatchEndpoint, Vec<FieldError>> {
    let mut errors = Errors::default();
    let name = errors.check("name", ResourceName::parse(&spec.name));
    if spec.auth_mode != AuthModeWire::AadToken {
        errors.push(
            "auth_mode",
            format!(
                "{}: batch endpoints take only aad_token (invocations authenticate with the caller's own credential)",
                spec.auth_mode.as_str()
            ),
        );
    }
    let default_deployment = spec
        .defaults
        .as_ref()
        .and_then(|d| d.deployment_name.as_deref())
        .and_then(|d| errors.check("defaults.deployment_name", ResourceName::parse(d)));
    match (name, errors.0.is_empty()) {
        (Some(name), true) => Ok(ValidBatchEndpoint { name, default_deployment }),
        _ => Err(errors.0),
    }
}

/// `endpoint_name` comes from the spec unless the caller (CLI `--endpoint-name`, REST path) set it.
pub fn deployment(spec: &BatchDeploymentSpec) -> Result<ValidBatchDeployment, Vec<FieldError>> {
    let mut errors = Errors::default();
    let name = errors.check("name", ResourceName::parse(&spec.name));
    let endpoint_name = match &spec.endpoint_name {
        Some(e) => errors.check("endpoint_name", ResourceName::parse(e)),
        None => {
            errors.push("endpoint_name", "required: the batch endpoint this deployment belongs to");
            None
        }
    };
    match spec.deployment_type.as_deref().map(|t| t.to_ascii_lowercase()) {
        None => {}
        Some(t) if t == "model" => {}
        Some(t) if t == "pipeline" => {
            errors.push("type", "pipeline component deployments are not supported: use type: model")
        }
        Some(t) => errors.push("type", format!("{t:?}: expected model")),
    }
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
    let code = spec.code_configuration.as_ref().and_then(|c| {
        let safe =
            std::path::Path::new(&c.scoring_script).components().all(|p| matches!(p, std::path::Component::Normal(_)));
        if c.scoring_script.is_empty() {
            errors.push(
                "code_configuration.scoring_script",
                "required: the batch driver (init() and run(mini_batch)), relative to the code folder",
            );
            None
        } else if !safe {
            errors.push(
                "code_configuration.scoring_script",
                format!("{:?}: expected a file path inside the code folder, without '..'", c.scoring_script),
            );
            None
        } else if c.code.is_empty() {
            errors.push("code_configuration.code", "required: the folder holding the batch driver");
            None
        } else {
            Some(CodeRef { code: c.code.clone(), scoring_script: c.scoring_script.clone() })
        }
    });
    let environment = spec.environment.as_ref().and_then(|env| {
        let mut errs = Vec::new();
        let choice = crate::environment::choice(env, &mut errs);
        errors.0.extend(errs);
        if let Some(EnvironmentChoice::Inline(e)) = &choice
            && e.container.is_some()
        {
            errors.push(
                "environment.inference_config",
                "custom containers serve online deployments; a batch deployment runs a batch driver or an MLflow model",
            );
            return None;
        }
        choice
    });
    let compute = match &spec.compute {
        Some(c) => errors.check("compute", compute_name(c)),
        None => {
            errors.push("compute", "required: the compute cluster to run on, e.g. azureml:cpu-cluster");
            None
        }
    };
    let settings = settings(spec, &mut errors);
    match (name, endpoint_name, model, compute) {
        (Some(name), Some(endpoint_name), Some(model), Some(compute)) if errors.0.is_empty() => {
            Ok(ValidBatchDeployment { name, endpoint_name, model, code, environment, compute, settings })
        }
        _ => Err(errors.0),
    }
}

/// One setting from `settings.<key>` or the legacy root `<key>`; both is an error.
fn one_of<T: Clone>(errors: &mut Errors, key: &str, nested: Option<&T>, root: Option<&T>) -> Option<T> {
    match (nested, root) {
        (Some(_), Some(_)) => {
            errors.push(key, format!("given both here and as settings.{key}: keep one"));
            None
        }
        (Some(v), None) | (None, Some(v)) => Some(v.clone()),
        (None, None) => None,
    }
}

fn range(errors: &mut Errors, field: &str, value: Option<u32>, min: u32, max: u32, default: u32) -> u32 {
    match value {
        None => default,
        Some(v) if (min..=max).contains(&v) => v,
        Some(v) => {
            errors.push(field, format!("{v}: expected a whole number from {min} to {max}"));
            default
        }
    }
}

fn settings(spec: &BatchDeploymentSpec, errors: &mut Errors) -> BatchSettings {
    let empty = BatchSettingsSpec::default();
    let s = spec.settings.as_ref().unwrap_or(&empty);
    let d = BatchSettings::default();
    let at = |key: &str| if s_has(spec, key) { format!("settings.{key}") } else { key.to_owned() };
    let mini = one_of(errors, "mini_batch_size", s.mini_batch_size.as_ref(), spec.mini_batch_size.as_ref());
    let mini_batch_size = range(errors, &at("mini_batch_size"), mini, 1, batch_limits::MAX_MINI_BATCH_SIZE, 10);
    let conc = one_of(
        errors,
        "max_concurrency_per_instance",
        s.max_concurrency_per_instance.as_ref(),
        spec.max_concurrency_per_instance.as_ref(),
    );
    let max_concurrency_per_instance =
        range(errors, &at("max_concurrency_per_instance"), conc, 1, batch_limits::MAX_CONCURRENCY_PER_INSTANCE, 1);
    let from_resources = spec.resources.as_ref().and_then(|r| r.instance_count);
    let instance = match (s.instance_count, from_resources) {
        (Some(a), Some(b)) if a != b => {
            errors.push("settings.instance_count", format!("{a} differs from resources.instance_count ({b})"));
            None
        }
        (a, b) => a.or(b),
    };
    let field = if s.instance_count.is_some() { "settings.instance_count" } else { "resources.instance_count" };
    let instance_count = range(errors, field, instance, 1, limits::MAX_INSTANCE_COUNT, 1);
    let output_action = one_of(errors, "output_action", s.output_action.as_ref(), spec.output_action.as_ref())
        .map_or(d.output_action, Into::into);
    let output_file_name =
        match one_of(errors, "output_file_name", s.output_file_name.as_ref(), spec.output_file_name.as_ref()) {
            Some(f) => {
                errors.check(&at("output_file_name"), output_file_name(&f)).unwrap_or(d.output_file_name.clone())
            }
            None => d.output_file_name.clone(),
        };
    let retry: RetrySettings =
        one_of(errors, "retry_settings", s.retry_settings.as_ref(), spec.retry_settings.as_ref()).unwrap_or_default();
    let rfield = at("retry_settings");
    let max_retries =
        range(errors, &format!("{rfield}.max_retries"), retry.max_retries, 0, batch_limits::MAX_RETRIES, 3);
    let timeout_s = range(errors, &format!("{rfield}.timeout"), retry.timeout, 1, batch_limits::MAX_TIMEOUT_S, 30);
    let error_threshold =
        match one_of(errors, "error_threshold", s.error_threshold.as_ref(), spec.error_threshold.as_ref()) {
            None | Some(-1) => None,
            Some(t) if t >= 0 => Some(t as u64),
            Some(t) => {
                errors.push(&at("error_threshold"), format!("{t}: expected -1 (ignore failures) or 0 or more"));
                None
            }
        };
    let logging_level = one_of(errors, "logging_level", s.logging_level.as_ref(), spec.logging_level.as_ref())
        .map_or(d.logging_level, Into::into);
    let environment_variables =
        one_of(errors, "environment_variables", s.environment_variables.as_ref(), spec.environment_variables.as_ref())
            .unwrap_or_default();
    BatchSettings {
        mini_batch_size,
        instance_count,
        max_concurrency_per_instance,
        output_action,
        output_file_name,
        max_retries,
        timeout_s,
        error_threshold,
        logging_level,
        environment_variables,
    }
}

/// Whether `settings` holds `key` (so errors name the place the user wrote it).
fn s_has(spec: &BatchDeploymentSpec, key: &str) -> bool {
    let Some(s) = &spec.settings else { return false };
    match key {
        "mini_batch_size" => s.mini_batch_size.is_some(),
        "max_concurrency_per_instance" => s.max_concurrency_per_instance.is_some(),
        "output_file_name" => s.output_file_name.is_some(),
        "retry_settings" => s.retry_settings.is_some(),
        "error_threshold" => s.error_threshold.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::from_str;
    use sluice_domain::batch::{LoggingLevel, OutputAction};

    const EXAMPLE: &str = "name: iris-dpl\nendpoint_name: iris-batch\ntype: model\nmodel: azureml:iris:1\n\
        code_configuration: {code: code, scoring_script: batch_driver.py}\ncompute: azureml:cpu-cluster\n\
        resources: {instance_count: 1}\nsettings:\n  max_concurrency_per_instance: 2\n  mini_batch_size: 3\n\
        \x20 output_action: AppendRow\n  output_file_name: predictions.csv\n  retry_settings: {max_retries: 3, timeout: 30}\n\
        \x20 error_threshold: -1\n  logging_level: info\n  environment_variables: {A: 1}\n";

    #[test]
    fn the_model_schema_and_the_legacy_schema_read_the_same() {
        let a = deployment(&from_str(EXAMPLE).unwrap()).unwrap();
        assert_eq!(a.compute, "cpu-cluster");
        assert_eq!((a.settings.mini_batch_size, a.settings.workers()), (3, 2));
        assert_eq!(a.settings.output_action, OutputAction::AppendRow);
        assert_eq!((a.settings.error_threshold, a.settings.logging_level), (None, LoggingLevel::Info));
        assert_eq!(a.settings.environment_variables.get("A").map(String::as_str), Some("1"));
        let legacy = "name: iris-dpl\nendpoint_name: iris-batch\nmodel: azureml:iris:1\ncompute: azureml:cpu-cluster\n\
            code_configuration: {code: code, scoring_script: batch_driver.py}\nmax_concurrency_per_instance: 2\n\
            mini_batch_size: 3\noutput_action: append_row\nerror_threshold: 5\nretry_settings: {timeout: 60}\n";
        let b = deployment(&from_str(legacy).unwrap()).unwrap();
        assert_eq!((b.settings.mini_batch_size, b.settings.workers()), (3, 2));
        assert_eq!((b.settings.error_threshold, b.settings.timeout_s, b.settings.max_retries), (Some(5), 60, 3));
    }

    #[test]
    fn every_broken_field_is_named() {
        let bad = "name: x\nendpoint_name: iris-batch\ntype: pipeline\ncompute: 'azureml:'\nmini_batch_size: 2\n\
            settings:\n  mini_batch_size: 0\n  max_concurrency_per_instance: 1000\n  error_threshold: -2\n\
            \x20 output_file_name: a/b.csv\n  retry_settings: {timeout: 0}\ncode_configuration: {code: c, scoring_script: ../x.py}\n";
        let errs = deployment(&from_str(bad).unwrap()).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "name",
            "type",
            "model",
            "code_configuration.scoring_script",
            "compute",
            "mini_batch_size",
            "settings.max_concurrency_per_instance",
            "settings.output_file_name",
            "settings.retry_settings.timeout",
            "settings.error_threshold",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errs:?}");
        }
        let err = from_str::<BatchDeploymentSpec>("name: x\nsettings: {mini_batch: 2}\n").unwrap_err();
        assert_eq!(err.field, "settings.mini_batch");
        assert!(err.message.contains("unknown field `mini_batch`"), "{}", err.message);
        let err = from_str::<BatchDeploymentSpec>("name: x\nsettings:\n  output_action: rows\n").unwrap_err();
        assert_eq!(err.field, "settings.output_action");
        assert!(err.message.starts_with("unknown value \"rows\": expected one of append_row"), "{}", err.message);
        let err = from_str::<BatchDeploymentSpec>("name: x\ncolour: 2\n").unwrap_err();
        assert!(err.message.contains("unknown field `colour`"), "{}", err.message);
    }

    #[test]
    fn endpoints_take_only_aad_token() {
        let e: BatchEndpointSpec = from_str("name: iris-batch\ndefaults: {deployment_name: dpl-one}\n").unwrap();
        assert_eq!(endpoint(&e).unwrap().default_deployment.unwrap().as_str(), "dpl-one");
        let e: BatchEndpointSpec = from_str("name: iris-batch\nauth_mode: key\n").unwrap();
        assert_eq!(endpoint(&e).unwrap_err()[0].field, "auth_mode");
    }
}
