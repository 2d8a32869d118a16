//! References to registered models: `azureml:name:version`, `azureml:name@latest`, `name:version`.

use crate::{ModelName, ModelVersion, RuleError};

/// A reference to a registered model version, before `@latest` is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: ModelName,
    /// `None` means the latest version.
    pub version: Option<ModelVersion>,
}

impl ModelRef {
    /// Accepts `azureml:NAME:VERSION`, `azureml:NAME@latest`, the registry form
    /// `azureml://registries/R/models/NAME/versions/V` (or `/labels/latest`, resolved locally),
    /// and the same without the `azureml:` prefix.
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let expected = "expected 'azureml:NAME:VERSION' or 'azureml:NAME@latest'";
        if let Some(rest) = s.strip_prefix("azureml://") {
            return Self::parse_registry(rest)
                .ok_or_else(|| RuleError(format!("invalid model reference {s:?}: {expected}")));
        }
        let body = s.strip_prefix("azureml:").unwrap_or(s);
        let (name, version) = if let Some((name, label)) = body.split_once('@') {
            if label != "latest" {
                return Err(RuleError(format!("invalid model reference {s:?}: the only label is '@latest'")));
            }
            (name, None)
        } else if let Some((name, version)) = body.rsplit_once(':') {
            (name, Some(version))
        } else {
            return Err(RuleError(format!("invalid model reference {s:?}: {expected}")));
        };
        let name = ModelName::parse(name).map_err(|e| RuleError(format!("invalid model reference {s:?}: {e}")))?;
        let version = version
            .map(ModelVersion::parse)
            .transpose()
            .map_err(|e| RuleError(format!("invalid model reference {s:?}: {e}")))?;
        Ok(Self { name, version })
    }

    fn parse_registry(rest: &str) -> Option<Self> {
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["registries", _, "models", name, "versions", v] => {
                Some(Self { name: ModelName::parse(name).ok()?, version: Some(ModelVersion::parse(v).ok()?) })
            }
            ["registries", _, "models", name, "labels", "latest"] | ["registries", _, "models", name] => {
                Some(Self { name: ModelName::parse(name).ok()?, version: None })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "azureml:{}:{}", self.name, v),
            None => write!(f, "azureml:{}@latest", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<(&str, Option<&str>)>) {
        let got = ModelRef::parse(input).ok();
        let got = got.as_ref().map(|r| (r.name.as_str(), r.version.as_ref().map(|v| v.as_str())));
        assert_eq!(got, expect, "{input}");
    }

    #[test]
    fn parses_every_reference_form() {
        check("azureml:iris:1", Some(("iris", Some("1"))));
        check("azureml:iris@latest", Some(("iris", None)));
        check("iris:3", Some(("iris", Some("3"))));
        check("azureml://registries/r/models/iris/versions/2", Some(("iris", Some("2"))));
        check("azureml://registries/r/models/iris/labels/latest", Some(("iris", None)));
        check("azureml:iris@stable", None);
        check("azureml:iris", None);
        check("azureml::1", None);
        check("azureml:../x:1", None);
    }
}
