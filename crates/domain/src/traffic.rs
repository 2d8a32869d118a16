//! Traffic maps: how an endpoint's live requests are split between its deployments.

use crate::RuleError;
use std::collections::BTreeMap;

/// Percent of live traffic per deployment: integers summing to 100, or all zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic(BTreeMap<String, u32>);

impl Traffic {
    /// `known` lists the endpoint's deployments; every key must name one of them.
    pub fn new(weights: BTreeMap<String, i64>, known: &[&str]) -> Result<Self, RuleError> {
        let mut out = BTreeMap::new();
        for (name, w) in weights {
            if !known.contains(&name.as_str()) {
                return Err(RuleError(format!(
                    "traffic names deployment {name:?}, which this endpoint does not have (deployments: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                )));
            }
            let w = u32::try_from(w)
                .ok()
                .filter(|w| *w <= 100)
                .ok_or_else(|| RuleError(format!("traffic for {name:?} is {w}: expected an integer from 0 to 100")))?;
            out.insert(name, w);
        }
        let sum: u32 = out.values().sum();
        if sum != 0 && sum != 100 {
            return Err(RuleError(format!(
                "traffic weights sum to {sum}: expected 100 (or 0 to send no live traffic)"
            )));
        }
        Ok(Self(out))
    }

    pub fn weights(&self) -> &BTreeMap<String, u32> {
        &self.0
    }

    pub fn weight(&self, deployment: &str) -> u32 {
        self.0.get(deployment).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn accepts_100_or_0() {
        assert!(Traffic::new(map(&[("blue", 90), ("green", 10)]), &["blue", "green"]).is_ok());
        assert!(Traffic::new(map(&[("blue", 0)]), &["blue"]).is_ok());
        assert!(Traffic::new(map(&[]), &[]).is_ok());
    }

    #[test]
    fn refuses_bad_sums_negatives_and_unknown_names() {
        let e = Traffic::new(map(&[("blue", 90)]), &["blue"]).unwrap_err();
        assert!(e.0.contains("sum to 90"), "{e}");
        let e = Traffic::new(map(&[("blue", -10), ("green", 110)]), &["blue", "green"]).unwrap_err();
        assert!(e.0.contains("0 to 100"), "{e}");
        let e = Traffic::new(map(&[("red", 100)]), &["blue"]).unwrap_err();
        assert!(e.0.contains("\"red\"") && e.0.contains("blue"), "{e}");
    }
}
