//! Names of endpoints, deployments and models, validated once.

use crate::RuleError;
use std::fmt;

/// An endpoint or deployment name: 3–32 characters, a letter first, then letters, digits and
/// hyphens, not ending in a hyphen (Azure ML's rule; it becomes a DNS label).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceName(String);

impl ResourceName {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let expected = "3-32 characters: a letter first, then letters, digits or '-', not ending in '-'";
        let len = s.chars().count();
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        let body_ok = s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let last_ok = !s.ends_with('-');
        if !(3..=32).contains(&len) || !first_ok || !body_ok || !last_ok {
            return Err(RuleError(format!("invalid name {s:?}: expected {expected}")));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A model name: 1–255 characters of letters, digits, '-', '_' and '.', a letter or digit first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

impl ModelName {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let ok = (1..=255).contains(&s.len())
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(RuleError(format!(
                "invalid model name {s:?}: expected 1-255 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A model version: 1–64 letters, digits, '-', '_' or '.'. Azure ML uses integers; Sluice
/// sorts numeric versions numerically when resolving `@latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelVersion(String);

impl ModelVersion {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let ok = (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(RuleError(format!(
                "invalid model version {s:?}: expected 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Ordering key for `@latest`: numeric versions by value, above any non-numeric one.
    pub fn sort_key(&self) -> (u8, u64, String) {
        match self.0.parse::<u64>() {
            Ok(n) => (1, n, String::new()),
            Err(_) => (0, 0, self.0.clone()),
        }
    }
}

impl fmt::Display for ModelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_follow_azure_rules() {
        for ok in ["abc", "iris-ep", "A1-b2", "a23456789012345678901234567890bc"] {
            assert!(ResourceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "1bad", "bad-", "has space", "under_score", "", "a234567890123456789012345678901bc"] {
            let err = ResourceName::parse(bad).unwrap_err();
            assert!(err.0.contains("3-32 characters"), "{bad}: {err}");
        }
    }

    #[test]
    fn model_versions_sort_numerically() {
        let mut v: Vec<ModelVersion> =
            ["2", "10", "1", "beta"].iter().map(|s| ModelVersion::parse(s).unwrap()).collect();
        v.sort_by_key(|v| v.sort_key());
        let order: Vec<&str> = v.iter().map(|v| v.as_str()).collect();
        assert_eq!(order, ["beta", "1", "2", "10"]);
    }
}
