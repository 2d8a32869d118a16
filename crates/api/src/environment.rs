//! Environments: the Python packages a scoring script needs (a conda file), or a custom
//! container (`inference_config` and the command that starts it). Written inline in a
//! deployment or registered once (`sluice environment create`) and referenced as
//! `azureml:NAME:VERSION` or `azureml:NAME@latest`.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use sluice_domain::{CondaDependency, ContainerCommand, EnvironmentChoice, Route, ValidEnvironment};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Body of `PUT /environments/{name}/versions/{version}`: Azure ML's environment asset, with the
/// conda file's content in place of its path (the CLI reads the file).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `image`, `conda_file`, `inference_config`, `command`, `os_type`.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// A registered environment version and the state of its build.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    /// `azureml:NAME:VERSION`.
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    pub build: EnvironmentBuild,
    pub created_at: String,
}

/// Where an environment's build is. Environments with only an image or a custom container's
/// command have nothing to build (`NotNeeded`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentBuild {
    /// `NotNeeded`, `NotStarted`, `Running`, `Succeeded` or `Failed`.
    pub state: String,
    /// The content hash the built virtual environment is stored and shared under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The packages it installs, as pip requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<String>,
    /// The last lines of the build log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

const FIELDS: &[&str] = &[
    "conda_file",
    "image",
    "name",
    "version",
    "description",
    "tags",
    "build",
    "inference_config",
    "os_type",
    "command",
];

/// A deployment's `environment:` value: a reference to a registered environment or an inline one.
pub(crate) fn choice(env: &serde_json::Value, errors: &mut Vec<FieldError>) -> Option<EnvironmentChoice> {
    match env {
        serde_json::Value::String(s) => match reference(s) {
            Ok((name, version)) => Some(EnvironmentChoice::Registered { name, version }),
            Err(message) => {
                errors.push(FieldError { field: "environment".into(), message });
                None
            }
        },
        other => inline(other, "environment.", errors).map(EnvironmentChoice::Inline),
    }
}

/// `azureml:NAME:VERSION` or `azureml:NAME@latest` (the `azureml:` prefix is optional).
pub fn reference(s: &str) -> Result<(String, Option<String>), String> {
    let bare = s.strip_prefix("azureml:").unwrap_or(s);
    let (name, version) = match (bare.split_once('@'), bare.split_once(':')) {
        (Some((n, "latest")), None) => (n, None),
        (None, Some((n, v))) if !v.is_empty() && !v.contains(':') => (n, Some(v.to_owned())),
        _ => {
            return Err(format!(
                "{s:?}: expected azureml:NAME:VERSION or azureml:NAME@latest for a registered environment, or an inline mapping such as {{conda_file: conda.yaml}}"
            ));
        }
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("{s:?}: the environment name may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok((name.to_owned(), version))
}

/// Validates an environment's fields; field names in errors start with `prefix`.
pub fn inline(env: &serde_json::Value, prefix: &str, errors: &mut Vec<FieldError>) -> Option<ValidEnvironment> {
    let mut push =
        |field: &str, message: String| errors.push(FieldError { field: format!("{prefix}{field}"), message });
    let Some(obj) = env.as_object() else {
        push("", "expected a mapping such as {conda_file: conda.yaml}, or azureml:NAME:VERSION".into());
        return None;
    };
    let mut failed = false;
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            push(key, format!("unknown field: expected one of {}", FIELDS.join(", ")));
            failed = true;
        }
    }
    if obj.contains_key("build") {
        push(
            "build",
            "building a Docker context is not supported: use conda_file, or image with inference_config and command"
                .into(),
        );
        failed = true;
    }
    let image = match obj.get("image") {
        None => None,
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(other) => {
            push(
                "image",
                format!(
                    "{other}: expected an image reference such as mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest"
                ),
            );
            failed = true;
            None
        }
    };
    let pip = match obj.get("conda_file") {
        None => None,
        Some(conda) => match conda_plan(conda) {
            Ok(plan) => Some(plan),
            Err(errs) => {
                for (field, message) in errs {
                    push(&field, message);
                }
                failed = true;
                None
            }
        },
    };
    let container = match (obj.get("inference_config"), obj.get("command")) {
        (None, None) => None,
        (None, Some(_)) => {
            push("command", "a command needs inference_config (liveness_route, readiness_route and scoring_route) saying where it serves".into());
            failed = true;
            None
        }
        (Some(ic), command) => {
            let routes = routes(ic, &mut push);
            let command = match command {
                None => {
                    push("command", "required with inference_config on this machine (there is no image runtime): the command that starts your server, e.g. \"python server.py\"; it is told its port in $PORT".into());
                    None
                }
                Some(c) => command_line(c).map_err(|m| push("command", m)).ok(),
            };
            match (routes, command) {
                (Some((liveness, readiness, scoring)), Some(command)) => {
                    Some(ContainerCommand { command, liveness, readiness, scoring })
                }
                _ => {
                    failed = true;
                    None
                }
            }
        }
    };
    if container.is_some() && pip.is_some() {
        push("conda_file", "a custom container brings its own packages: give either conda_file or inference_config with command, not both".into());
        failed = true;
    }
    (!failed).then_some(ValidEnvironment { pip, container, image })
}

fn routes(ic: &serde_json::Value, push: &mut impl FnMut(&str, String)) -> Option<(Route, Route, Route)> {
    let Some(obj) = ic.as_object() else {
        push("inference_config", "expected a mapping with liveness_route, readiness_route and scoring_route".into());
        return None;
    };
    for key in obj.keys() {
        if !["liveness_route", "readiness_route", "scoring_route", "startup_route"].contains(&key.as_str()) {
            push(
                &format!("inference_config.{key}"),
                "unknown field: expected liveness_route, readiness_route or scoring_route".into(),
            );
        }
    }
    let mut one = |key: &str| -> Option<Route> {
        let field = format!("inference_config.{key}");
        let Some(route) = obj.get(key) else {
            push(&field, "required: {port: 5001, path: /...}".into());
            return None;
        };
        let port = route.get("port").and_then(|p| p.as_u64()).filter(|p| (1..=65535).contains(p));
        let path = route.get("path").and_then(|p| p.as_str()).filter(|p| p.starts_with('/'));
        match (port, path) {
            (Some(port), Some(path)) => Some(Route { port: port as u16, path: path.to_owned() }),
            (None, _) => {
                push(&format!("{field}.port"), "required: a port number from 1 to 65535".into());
                None
            }
            (_, None) => {
                push(&format!("{field}.path"), "required: a path starting with '/'".into());
                None
            }
        }
    };
    let (l, r, s) = (one("liveness_route"), one("readiness_route"), one("scoring_route"));
    Some((l?, r?, s?))
}

fn command_line(c: &serde_json::Value) -> Result<Vec<String>, String> {
    match c {
        serde_json::Value::String(s) if !s.trim().is_empty() => {
            Ok(vec!["/bin/sh".into(), "-c".into(), format!("exec {s}")])
        }
        serde_json::Value::Array(parts) if !parts.is_empty() => parts
            .iter()
            .map(|p| {
                p.as_str().map(str::to_owned).ok_or_else(|| format!("{p}: every word of the command must be a string"))
            })
            .collect(),
        other => Err(format!("{other}: expected a command line (a string, run by /bin/sh) or a list of words")),
    }
}

/// A conda file's content becomes a pip plan; errors are (field below the prefix, message).
pub fn conda_plan(conda: &serde_json::Value) -> Result<sluice_domain::PipPlan, Vec<(String, String)>> {
    let field = "conda_file".to_owned();
    let deps = match conda {
        serde_json::Value::String(path) => {
            return Err(vec![(
                field,
                format!("{path:?}: send the conda file's content, not its path (the CLI reads it for you)"),
            )]);
        }
        serde_json::Value::Object(c) => c.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default(),
        _ => return Err(vec![(field, "expected the conda file's content: a mapping with dependencies".into())]),
    };
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for (i, d) in deps.iter().enumerate() {
        match d {
            serde_json::Value::String(s) => parsed.push(CondaDependency::Package(s)),
            serde_json::Value::Object(m) if m.len() == 1 && m.get("pip").is_some_and(|p| p.is_array()) => {
                let lines =
                    m["pip"].as_array().map(|a| a.iter().filter_map(|l| l.as_str()).collect()).unwrap_or_default();
                parsed.push(CondaDependency::Pip(lines));
            }
            other => errors.push((
                format!("conda_file.dependencies[{i}]"),
                format!("{other}: expected a package such as numpy=2.3.1 or a pip: list"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    sluice_domain::pip_plan(&parsed).map_err(|e| vec![("conda_file.dependencies".into(), e.0)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value) -> Result<ValidEnvironment, Vec<FieldError>> {
        let mut errors = Vec::new();
        inline(&v, "environment.", &mut errors).ok_or(errors)
    }

    #[test]
    fn references() {
        assert_eq!(reference("azureml:sk:3").unwrap(), ("sk".into(), Some("3".into())));
        assert_eq!(reference("azureml:sk@latest").unwrap(), ("sk".into(), None));
        assert_eq!(reference("sk:1").unwrap(), ("sk".into(), Some("1".into())));
        for bad in ["azureml:sk", "azureml:sk@newest", "azureml::1", "azureml:a b:1", "azureml:x:1:2"] {
            assert!(reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn custom_container_needs_routes_and_command() {
        let routes = json!({"liveness_route": {"port": 5001, "path": "/live"},
            "readiness_route": {"port": 5001, "path": "/ready"}, "scoring_route": {"port": 5001, "path": "/score"}});
        let ok = check(json!({"inference_config": routes, "command": "python server.py"})).unwrap();
        let c = ok.container.unwrap();
        assert_eq!(c.command, ["/bin/sh", "-c", "exec python server.py"]);
        assert_eq!(c.scoring, Route { port: 5001, path: "/score".into() });

        let errs = check(json!({"inference_config": routes, "image": "x"})).unwrap_err();
        assert_eq!(errs[0].field, "environment.command", "{errs:?}");
        let errs =
            check(json!({"inference_config": {"scoring_route": {"port": 0, "path": "score"}}, "command": ["a"]}))
                .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "environment.inference_config.liveness_route",
                "environment.inference_config.readiness_route",
                "environment.inference_config.scoring_route.port"
            ]
        );
        let errs = check(json!({"command": "x"})).unwrap_err();
        assert_eq!(errs[0].field, "environment.command");
        let errs = check(json!({"inference_config": routes, "command": [1]})).unwrap_err();
        assert!(errs[0].message.contains("must be a string"), "{errs:?}");
    }

    #[test]
    fn conda_files_and_unknown_fields() {
        let ok = check(json!({"conda_file": {"dependencies": ["python=3.12", "numpy=2.3.1", {"pip": ["pandas"]}]}}))
            .unwrap();
        assert!(ok.pip.unwrap().requirements.iter().any(|r| r == "numpy==2.3.1"));
        let errs = check(json!({"conda_file": "conda.yml", "colour": 1})).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["environment.colour", "environment.conda_file"]);
        let errs = check(json!({"conda_file": {"dependencies": [3]}})).unwrap_err();
        assert_eq!(errs[0].field, "environment.conda_file.dependencies[0]");
    }
}
