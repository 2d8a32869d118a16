//! `--traffic "blue=90 green=10"` and `--mirror-traffic "green=10"`, as `az ml` writes them.

use crate::error::CliError;
use sluice_api::FieldError;
use std::collections::BTreeMap;

const EXAMPLE: &str = "e.g. \"blue=90 green=10\"";

/// Parses `NAME=PERCENT` pairs separated by spaces or commas. `flag` names the option in errors.
pub(crate) fn parse_traffic(flag: &str, text: &str) -> Result<BTreeMap<String, u32>, CliError> {
    let bad = |message: String| CliError::usage(format!("{flag}: {message}"));
    let mut out = BTreeMap::new();
    for pair in text.split(|c: char| c.is_whitespace() || c == ',').filter(|p| !p.is_empty()) {
        let Some((name, percent)) = pair.split_once('=') else {
            return Err(bad(format!("{pair:?}: expected DEPLOYMENT=PERCENT pairs, {EXAMPLE}")));
        };
        if name.is_empty() {
            return Err(bad(format!("{pair:?}: missing the deployment name before '=', {EXAMPLE}")));
        }
        let percent = percent
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| bad(format!("{pair:?}: the percent must be a whole number from 0 to 100")))?;
        if out.insert(name.to_owned(), percent).is_some() {
            return Err(bad(format!("deployment {name:?} is given twice")));
        }
    }
    if out.is_empty() {
        return Err(bad(format!("expected DEPLOYMENT=PERCENT pairs, {EXAMPLE}")));
    }
    Ok(out)
}

/// The pairs as a YAML mapping, ready to replace a spec's `traffic` or `mirror_traffic`.
pub(crate) fn to_yaml(map: &BTreeMap<String, u32>) -> serde_yaml::Value {
    let mut m = serde_yaml::Mapping::new();
    for (k, v) in map {
        m.insert(serde_yaml::Value::String(k.clone()), serde_yaml::Value::from(*v));
    }
    serde_yaml::Value::Mapping(m)
}

/// Live traffic must sum to 100 (or 0); checked here so a typo fails before anything is sent.
/// Whether each name is a deployment of the endpoint is the server's to check.
pub(crate) fn check_sum(traffic: &BTreeMap<String, serde_json::Value>) -> Result<(), FieldError> {
    let weights: BTreeMap<String, i64> = traffic.iter().filter_map(|(k, v)| Some((k.clone(), v.as_i64()?))).collect();
    let names: Vec<&str> = weights.keys().map(String::as_str).collect();
    sluice_domain::Traffic::new(weights.clone(), &names)
        .map(drop)
        .map_err(|e| FieldError { field: "traffic".into(), message: e.0 })
}

/// `blue=90 green=10`, for tables.
pub(crate) fn describe(map: &BTreeMap<String, u32>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, u32)> {
        parse_traffic("--traffic", text).unwrap().into_iter().collect()
    }

    fn err(text: &str) -> String {
        parse_traffic("--traffic", text).unwrap_err().render()
    }

    #[test]
    fn az_forms_parse() {
        assert_eq!(ok("blue=90 green=10"), [("blue".into(), 90), ("green".into(), 10)]);
        assert_eq!(ok("  blue=100  "), [("blue".into(), 100)]);
        assert_eq!(ok("blue=50,green=50"), [("blue".into(), 50), ("green".into(), 50)]);
        assert_eq!(ok("blue=0"), [("blue".into(), 0)]);
    }

    #[test]
    fn bad_forms_say_what_is_expected() {
        assert_eq!(
            err("blue"),
            "error: --traffic: \"blue\": expected DEPLOYMENT=PERCENT pairs, e.g. \"blue=90 green=10\""
        );
        assert!(err("=90").contains("missing the deployment name"));
        for bad in ["blue=", "blue=ninety", "blue=-10", "blue=101", "blue=9.5"] {
            assert!(err(bad).contains("whole number from 0 to 100"), "{bad}: {}", err(bad));
        }
        assert!(err("blue=50 blue=50").contains("\"blue\" is given twice"));
        assert!(err("").contains("expected DEPLOYMENT=PERCENT pairs"));
    }

    #[test]
    fn sums_other_than_0_or_100_are_refused() {
        let map =
            |pairs: &[(&str, i64)]| pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        assert!(check_sum(&map(&[("blue", 90), ("green", 10)])).is_ok());
        assert!(check_sum(&map(&[])).is_ok());
        let e = check_sum(&map(&[("blue", 90)])).unwrap_err();
        assert_eq!(e.field, "traffic");
        assert!(e.message.contains("sum to 90"), "{}", e.message);
    }
}
