//! `scale_settings`: Azure ML's `default` (a fixed `instance_count`) and `target_utilization`
//! (Kubernetes online endpoints' autoscaler), with `min_instances: 0` for scale to zero.

use crate::FieldError;
use sluice_domain::{Autoscale, ScaleSettings, limits};

const FIELDS: &[&str] = &[
    "type",
    "min_instances",
    "max_instances",
    "target_utilization_percentage",
    "polling_interval",
    "stabilization_window",
    "cold_start_timeout_ms",
];

/// Validates `scale_settings` against `instance_count` (the starting count, which must lie
/// between `min_instances`, or 1 when that is 0, and `max_instances`).
pub(crate) fn settings(
    value: Option<&serde_json::Value>,
    instance_count: Option<u32>,
    errors: &mut Vec<FieldError>,
) -> ScaleSettings {
    let mut push = |field: &str, message: String| {
        errors.push(FieldError { field: format!("scale_settings{field}"), message });
    };
    let Some(value) = value else { return ScaleSettings::Default };
    let Some(obj) = value.as_object() else {
        push("", "expected a mapping such as {type: target_utilization, min_instances: 1, max_instances: 3}".into());
        return ScaleSettings::Default;
    };
    for key in obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        push(&format!(".{key}"), format!("unknown field: expected one of {}", FIELDS.join(", ")));
    }
    let kind = obj.get("type").and_then(|t| t.as_str()).unwrap_or("default").to_ascii_lowercase();
    match kind.as_str() {
        "default" => {
            for key in obj.keys().filter(|k| *k != "type" && FIELDS.contains(&k.as_str())) {
                push(&format!(".{key}"), "only with type: target_utilization".into());
            }
            return ScaleSettings::Default;
        }
        "target_utilization" => {}
        other => {
            push(".type", format!("{other:?}: expected default or target_utilization"));
            return ScaleSettings::Default;
        }
    }
    let mut number = |key: &str, default: u64, min: u64, max: u64| -> u64 {
        match obj.get(key) {
            None => default,
            Some(v) => match v.as_u64().filter(|n| (min..=max).contains(n)) {
                Some(n) => n,
                None => {
                    push(&format!(".{key}"), format!("{v}: expected a whole number from {min} to {max}"));
                    default
                }
            },
        }
    };
    let max_count = u64::from(limits::MAX_INSTANCE_COUNT);
    let a = Autoscale {
        min_instances: number("min_instances", 1, 0, max_count) as u32,
        max_instances: number("max_instances", 1, 1, max_count) as u32,
        target_utilization_percentage: number("target_utilization_percentage", 70, 1, 100) as u32,
        polling_interval_s: number("polling_interval", 1, 1, 3600) as u32,
        stabilization_window_s: number("stabilization_window", 300, 0, 86_400) as u32,
        cold_start_timeout_ms: number("cold_start_timeout_ms", 60_000, 1_000, 600_000),
    };
    if a.min_instances > a.max_instances {
        push(".min_instances", format!("{} is above max_instances ({})", a.min_instances, a.max_instances));
    } else if let Some(n) = instance_count
        && (n < a.min_instances.max(1) || n > a.max_instances)
    {
        push(
            ".max_instances",
            format!(
                "instance_count ({n}) is the starting count: it must lie between min_instances (or 1) and max_instances"
            ),
        );
    }
    ScaleSettings::TargetUtilization(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: serde_json::Value, count: u32) -> Result<ScaleSettings, Vec<FieldError>> {
        let mut errors = Vec::new();
        let s = settings(Some(&v), Some(count), &mut errors);
        if errors.is_empty() { Ok(s) } else { Err(errors) }
    }

    #[test]
    fn target_utilization_takes_kubernetes_defaults() {
        let ScaleSettings::TargetUtilization(a) = check(json!({"type": "Target_Utilization"}), 1).unwrap() else {
            panic!("expected autoscaling")
        };
        assert_eq!(
            (a.min_instances, a.max_instances, a.target_utilization_percentage, a.polling_interval_s),
            (1, 1, 70, 1)
        );
        assert_eq!(check(json!({"type": "default"}), 3).unwrap(), ScaleSettings::Default);
        let zero = check(json!({"type": "target_utilization", "min_instances": 0, "max_instances": 3}), 1).unwrap();
        assert!(matches!(zero, ScaleSettings::TargetUtilization(Autoscale { min_instances: 0, .. })));
    }

    #[test]
    fn every_bad_field_is_named() {
        let errs = check(
            json!({"type": "target_utilization", "min_instances": 4, "max_instances": 2, "polling_interval": 0, "speed": 1}),
            1,
        )
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["scale_settings.speed", "scale_settings.polling_interval", "scale_settings.min_instances"]);
        let errs = check(json!({"type": "target_utilization", "max_instances": 2}), 5).unwrap_err();
        assert!(errs[0].message.contains("instance_count (5)"), "{errs:?}");
        let errs = check(json!({"type": "default", "max_instances": 2}), 1).unwrap_err();
        assert_eq!(errs[0].field, "scale_settings.max_instances");
        assert!(check(json!({"type": "fast"}), 1).is_err());
    }
}
