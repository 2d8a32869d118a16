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

/// The split for one rollout step: `target` gets `percent`, and the rest is shared by the other
/// deployments in proportion to their `original` weights (largest remainder, so it sums to 100).
/// `None` when `percent < 100` but no other deployment had traffic to share it.
pub fn shift_to(original: &BTreeMap<String, u32>, target: &str, percent: u32) -> Option<BTreeMap<String, u32>> {
    let percent = percent.min(100);
    let others: Vec<(&String, u32)> =
        original.iter().filter(|(k, w)| k.as_str() != target && **w > 0).map(|(k, w)| (k, *w)).collect();
    let other_total: u32 = others.iter().map(|(_, w)| w).sum();
    let rest = 100 - percent;
    if rest > 0 && other_total == 0 {
        return None;
    }
    let mut out: BTreeMap<String, u32> = original.keys().map(|k| (k.clone(), 0)).collect();
    out.insert(target.to_owned(), percent);
    // Floor shares, then hand out what rounding lost to the largest remainders.
    let mut shares: Vec<(&String, u32, u32)> = others
        .iter()
        .map(|(k, w)| {
            let exact = rest * w;
            (*k, exact / other_total, exact % other_total)
        })
        .collect();
    let mut left = rest - shares.iter().map(|(_, f, _)| f).sum::<u32>();
    shares.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    for (k, floor, _) in shares {
        let extra = u32::from(left > 0);
        left -= extra;
        out.insert(k.clone(), floor + extra);
    }
    Some(out)
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

    fn split(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn shifting_keeps_proportions_and_sums_to_100() {
        let original = split(&[("blue", 100), ("green", 0)]);
        assert_eq!(shift_to(&original, "green", 10), Some(split(&[("blue", 90), ("green", 10)])));
        assert_eq!(shift_to(&original, "green", 100), Some(split(&[("blue", 0), ("green", 100)])));
        let three = split(&[("a", 50), ("b", 25), ("c", 25), ("new", 0)]);
        let got = shift_to(&three, "new", 33).unwrap();
        assert_eq!(got.values().sum::<u32>(), 100);
        assert_eq!(got["new"], 33);
        assert!(got["a"] == 34 || got["a"] == 33, "{got:?}");
        assert_eq!(shift_to(&split(&[("green", 0)]), "green", 50), None, "nothing to share the rest");
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
