//! Environments: what a conda file asks for, as the pip installs Sluice performs instead.
//!
//! Azure ML conda files list most packages as conda dependencies (`numpy=2.3.1`, `pip`,
//! `python=3.12`) beside a `pip:` section. Sluice installs conda dependencies from PyPI under
//! the same name and version (a few names differ, see [`PYPI_NAMES`]), takes `python=` as the
//! interpreter to look for, and ignores `channels`.

use crate::RuleError;

/// Conda names whose PyPI package is called something else.
pub const PYPI_NAMES: &[(&str, &str)] = &[
    ("pytorch", "torch"),
    ("pytorch-cpu", "torch"),
    ("py-xgboost", "xgboost"),
    ("py-xgboost-cpu", "xgboost"),
    ("pytables", "tables"),
    ("msgpack-python", "msgpack"),
    ("matplotlib-base", "matplotlib"),
    ("tensorflow-cpu", "tensorflow-cpu"),
];

/// Conda packages that are not Python packages (or come with the interpreter): skipped.
const NOT_FROM_PYPI: &[&str] = &[
    "python",
    "pip",
    "setuptools",
    "wheel",
    "cudatoolkit",
    "cudnn",
    "libgcc",
    "libstdcxx-ng",
    "mkl",
    "blas",
    "openssl",
    "ca-certificates",
    "_libgcc_mutex",
];

/// A pip install plan: the interpreter version wanted and the requirement lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipPlan {
    /// `3.12` from `python=3.12` (or `3.12.1`), when the file names one.
    pub python: Option<String>,
    pub requirements: Vec<String>,
    /// Conda entries that were skipped, with why, for the build log.
    pub notes: Vec<String>,
}

/// One entry of a conda file's `dependencies`.
pub enum CondaDependency<'a> {
    Package(&'a str),
    Pip(Vec<&'a str>),
}

fn conda_to_pip(spec: &str) -> Result<(String, Option<String>), RuleError> {
    let spec = spec.trim();
    let spec = spec.rsplit_once("::").map_or(spec, |(_, s)| s);
    let cut = spec.find(|c: char| "=<>!~ ".contains(c)).unwrap_or(spec.len());
    let (name, rest) = spec.split_at(cut);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(RuleError::new(format!("conda dependency {spec:?}: expected NAME, NAME=VERSION or NAME>=VERSION")));
    }
    let rest = rest.trim();
    let operator_first = rest.is_empty() || rest.starts_with(|c: char| "=<>!~".contains(c));
    let version_chars = rest.chars().all(|c| c.is_ascii_alphanumeric() || "=<>!~.*,+-_ ".contains(c));
    if !operator_first || !version_chars {
        return Err(RuleError::new(format!("conda dependency {spec:?}: expected NAME, NAME=VERSION or NAME>=VERSION")));
    }
    let version = if rest.is_empty() {
        None
    } else if let Some(v) = rest.strip_prefix("==") {
        Some(format!("=={}", v.split('=').next().unwrap_or(v)))
    } else if let Some(v) = rest.strip_prefix('=') {
        // conda's `=1.2` means 1.2.*; `=1.2=build` pins a build, which PyPI has no notion of.
        let v = v.split('=').next().unwrap_or(v).trim_end_matches(".*");
        Some(if v.matches('.').count() >= 2 { format!("=={v}") } else { format!("=={v}.*") })
    } else {
        Some(rest.replace(' ', ""))
    };
    Ok((name.to_ascii_lowercase(), version))
}

/// Translates a conda file's dependencies into a pip plan.
pub fn pip_plan(dependencies: &[CondaDependency<'_>]) -> Result<PipPlan, RuleError> {
    let mut plan = PipPlan { python: None, requirements: Vec::new(), notes: Vec::new() };
    for dep in dependencies {
        match dep {
            CondaDependency::Pip(lines) => plan.requirements.extend(lines.iter().map(|l| l.trim().to_owned())),
            CondaDependency::Package(spec) => {
                let (name, version) = conda_to_pip(spec)?;
                if name == "python" {
                    plan.python = version.map(|v| v.trim_start_matches("==").trim_end_matches(".*").to_owned());
                } else if NOT_FROM_PYPI.contains(&name.as_str()) {
                    plan.notes.push(format!("skipped conda package {name}: not installed from PyPI"));
                } else {
                    let pypi = PYPI_NAMES.iter().find(|(c, _)| *c == name).map_or(name.as_str(), |(_, p)| p);
                    plan.requirements.push(format!("{pypi}{}", version.unwrap_or_default()));
                }
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_conda_files_become_pip_requirements() {
        let deps = [
            CondaDependency::Package("python=3.12"),
            CondaDependency::Package("numpy=2.3.1"),
            CondaDependency::Package("scikit-learn=1.7"),
            CondaDependency::Package("conda-forge::pandas>=2"),
            CondaDependency::Package("pytorch"),
            CondaDependency::Package("pip"),
            CondaDependency::Pip(vec!["azureml-inference-server-http", "joblib==1.4.2"]),
        ];
        let plan = pip_plan(&deps).unwrap();
        assert_eq!(plan.python.as_deref(), Some("3.12"));
        assert_eq!(
            plan.requirements,
            [
                "numpy==2.3.1",
                "scikit-learn==1.7.*",
                "pandas>=2",
                "torch",
                "azureml-inference-server-http",
                "joblib==1.4.2"
            ]
        );
        assert_eq!(plan.notes.len(), 1);
        assert!(pip_plan(&[CondaDependency::Package("bad name!")]).is_err());
    }
}
