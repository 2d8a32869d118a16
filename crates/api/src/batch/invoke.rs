//! The data plane's job bodies (`POST /endpoints/{endpoint}/jobs`) in every form Azure ML's
//! clients send, read into one [`BatchJobCreate`]. Keys are matched case-insensitively (the docs
//! write `InputData`, `JobInputType`, `Uri`; the SDK `inputData`, `jobInputType`, `uri`), and
//! keys no form uses are ignored, as the service does.

use super::job::{BatchJobCreate, JobInput};
use crate::{FieldError, InputTypeWire};
use serde_json::{Map, Value};

/// Lowercases and drops `_` and `-`: `InputData` = `inputData` = `input_data`.
fn fold(s: &str) -> String {
    s.chars().filter(|c| *c != '_' && *c != '-').map(|c| c.to_ascii_lowercase()).collect()
}

fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let want = fold(key);
    obj.iter().find(|(k, _)| fold(k) == want).map(|(_, v)| v)
}

fn err(field: &str, message: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError { field: field.to_owned(), message: message.into() }]
}

/// Reads a job body. `deployment` is the `azureml-model-deployment` header, if any.
pub fn read_body(body: &Value, deployment: Option<&str>) -> Result<BatchJobCreate, Vec<FieldError>> {
    let Some(top) = body.as_object() else {
        return Err(err("", "expected a JSON object such as {\"properties\": {\"InputData\": {...}}}"));
    };
    let mut job = if top.contains_key("input") {
        // Sluice's own form, as the management API takes it.
        serde_json::from_value::<BatchJobCreate>(body.clone()).map_err(|e| err("", format!("invalid body: {e}")))?
    } else {
        azure_form(top)?
    };
    if let Some(d) = deployment.filter(|d| !d.is_empty()) {
        job.deployment_name = Some(d.to_owned());
    }
    Ok(job)
}

fn azure_form(top: &Map<String, Value>) -> Result<BatchJobCreate, Vec<FieldError>> {
    let Some(props) = get(top, "properties").and_then(Value::as_object) else {
        return Err(err(
            "properties",
            "required: {\"properties\": {\"InputData\": {\"<name>\": {\"JobInputType\": \"UriFolder\", \"Uri\": \"...\"}}}}",
        ));
    };
    let mut job = BatchJobCreate { input: input(props)?, ..Default::default() };
    job.name = text(get(top, "name").or_else(|| get(props, "name")));
    job.output_path = output(props)?;
    let mut errors = Vec::new();
    let mut number = |field: &str, value: Option<&Value>| -> Option<i64> {
        let v = value?;
        match v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(n) => Some(n),
            None => {
                errors.push(FieldError {
                    field: format!("properties.{field}"),
                    message: format!("{v}: expected a whole number"),
                });
                None
            }
        }
    };
    let non_negative = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
    job.mini_batch_size = non_negative(number("miniBatchSize", get(props, "miniBatchSize")));
    let compute = get(props, "compute").and_then(Value::as_object);
    job.instance_count = non_negative(number("compute.instanceCount", compute.and_then(|c| get(c, "instanceCount"))));
    job.error_threshold = number("errorThreshold", get(props, "errorThreshold"));
    let retry = get(props, "retrySettings").and_then(Value::as_object);
    job.max_retries = non_negative(number("retrySettings.maxRetries", retry.and_then(|r| get(r, "maxRetries"))));
    if let Some(t) = retry.and_then(|r| get(r, "timeout")) {
        match t.as_u64().and_then(|s| u32::try_from(s).ok()).or_else(|| t.as_str().and_then(iso_seconds)) {
            Some(s) => job.timeout = Some(s),
            None => errors.push(FieldError {
                field: "properties.retrySettings.timeout".into(),
                message: format!("{t}: expected seconds or an ISO 8601 duration such as PT30S"),
            }),
        }
    }
    job.output_file_name = text(get(props, "outputFileName"));
    let queue = get(props, "queueSettings").and_then(Value::as_object);
    job.priority = text(get(props, "priority").or_else(|| queue.and_then(|q| get(q, "priority"))));
    if errors.is_empty() { Ok(job) } else { Err(errors) }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// `InputData` (exactly one named input) or the oldest form, `dataset`.
fn input(props: &Map<String, Value>) -> Result<JobInput, Vec<FieldError>> {
    if let Some(data) = get(props, "InputData") {
        let Some(map) = data.as_object().filter(|m| !m.is_empty()) else {
            return Err(err(
                "properties.InputData",
                "expected one named input: {\"<name>\": {\"JobInputType\": \"UriFolder\", \"Uri\": \"...\"}}",
            ));
        };
        if map.len() > 1 {
            return Err(err(
                "properties.InputData",
                format!("model deployments take exactly one input; got {}", map.len()),
            ));
        }
        let (name, value) = map.iter().next().expect("one entry");
        let field = format!("properties.InputData.{name}");
        let Some(obj) = value.as_object() else {
            return Err(err(&field, "expected {\"JobInputType\": \"UriFolder\", \"Uri\": \"...\"}"));
        };
        let kind = get(obj, "JobInputType").and_then(Value::as_str).unwrap_or("UriFolder");
        let input_type = match InputTypeWire::parse(kind) {
            Some(t) => t,
            None if fold(kind) == "literal" => {
                return Err(err(
                    &format!("{field}.JobInputType"),
                    "literal inputs work only with pipeline deployments",
                ));
            }
            None => {
                return Err(err(
                    &format!("{field}.JobInputType"),
                    format!("{kind:?} is not supported: expected UriFolder or UriFile"),
                ));
            }
        };
        let Some(uri) = text(get(obj, "Uri")) else {
            return Err(err(&format!("{field}.Uri"), "required: where the input is"));
        };
        return Ok(JobInput { input_type: Some(input_type), path: uri });
    }
    if let Some(ds) = get(props, "dataset").and_then(Value::as_object) {
        let Some(path) = text(get(ds, "Path")) else {
            return Err(err("properties.dataset.Path", "required: where the input is"));
        };
        return Ok(JobInput { input_type: None, path });
    }
    Err(err("properties.InputData", "required: {\"<name>\": {\"JobInputType\": \"UriFolder\", \"Uri\": \"...\"}}"))
}

/// `OutputData` (one named output's `Uri`) or `outputDataset.path`.
fn output(props: &Map<String, Value>) -> Result<Option<String>, Vec<FieldError>> {
    if let Some(map) = get(props, "OutputData").and_then(Value::as_object) {
        if map.len() > 1 {
            return Err(err("properties.OutputData", format!("model deployments take one output; got {}", map.len())));
        }
        return Ok(map.values().next().and_then(Value::as_object).and_then(|o| text(get(o, "Uri"))));
    }
    Ok(get(props, "outputDataset").and_then(Value::as_object).and_then(|o| text(get(o, "path"))))
}

/// Seconds of an ISO 8601 duration of hours, minutes and seconds (`PT1M30S`, `PT0.5S`, rounded
/// up), as Azure's REST API writes `retrySettings.timeout`.
pub fn iso_seconds(s: &str) -> Option<u32> {
    let rest = s.trim().strip_prefix("PT").or_else(|| s.trim().strip_prefix("pt"))?;
    let (mut total, mut number) = (0f64, String::new());
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            '0'..='9' | '.' => number.push(c),
            unit @ ('H' | 'M' | 'S') => {
                let n: f64 = number.parse().ok()?;
                number.clear();
                total += n * match unit {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
            }
            _ => return None,
        }
    }
    (number.is_empty() && total > 0.0 && total <= f64::from(u32::MAX)).then(|| total.ceil() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_docs_form_and_the_sdk_form_read_the_same() {
        let docs = json!({"properties": {
            "InputData": {"heart_data": {"JobInputType": "UriFolder", "Uri": "/data/in"}},
            "OutputData": {"score": {"JobOutputType": "UriFile", "Uri": "/data/out"}},
            "properties": {"experimentName": "x"}}});
        let sdk = json!({"properties": {
            "inputData": {"input": {"jobInputType": "UriFolder", "uri": "/data/in", "mode": "ReadOnlyMount"}},
            "outputDataset": {"datastoreId": "ws", "path": "/data/out"},
            "miniBatchSize": 5, "compute": {"instanceCount": 2}, "errorThreshold": -1,
            "retrySettings": {"maxRetries": 1, "timeout": "PT1M"}, "outputFileName": "out.csv",
            "queueSettings": {"priority": "High"}}});
        let a = read_body(&docs, Some("blue")).unwrap();
        let b = read_body(&sdk, None).unwrap();
        assert_eq!((a.input.path.as_str(), a.input.input_type), ("/data/in", Some(InputTypeWire::UriFolder)));
        assert_eq!((a.output_path.as_deref(), a.deployment_name.as_deref()), (Some("/data/out"), Some("blue")));
        assert_eq!(b.input.path, "/data/in");
        assert_eq!(b.output_path.as_deref(), Some("/data/out"));
        assert_eq!((b.mini_batch_size, b.instance_count, b.error_threshold), (Some(5), Some(2), Some(-1)));
        assert_eq!((b.max_retries, b.timeout, b.output_file_name.as_deref()), (Some(1), Some(60), Some("out.csv")));
        assert_eq!((a.priority, b.priority.as_deref()), (None, Some("High")));
    }

    #[test]
    fn the_oldest_form_and_our_own_form() {
        let old = json!({"properties": {"dataset": {"dataInputType": "DataUrl", "Path": "/data/f.csv"}}});
        assert_eq!(read_body(&old, None).unwrap().input.path, "/data/f.csv");
        let ours = json!({"input": {"type": "uri_file", "path": "/data/f.csv"}, "mini_batch_size": 2});
        let job = read_body(&ours, None).unwrap();
        assert_eq!((job.input.input_type, job.mini_batch_size), (Some(InputTypeWire::UriFile), Some(2)));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let check = |body: Value, field: &str| {
            let errs = read_body(&body, None).unwrap_err();
            assert_eq!(errs[0].field, field, "{errs:?}");
        };
        check(json!([]), "");
        check(json!({"x": 1}), "properties");
        check(json!({"properties": {}}), "properties.InputData");
        check(
            json!({"properties": {"InputData": {"a": {"JobInputType": "MLTable", "Uri": "x"}}}}),
            "properties.InputData.a.JobInputType",
        );
        check(json!({"properties": {"InputData": {"a": {"Uri": "x"}, "b": {"Uri": "y"}}}}), "properties.InputData");
        check(json!({"properties": {"InputData": {"a": {"JobInputType": "UriFile"}}}}), "properties.InputData.a.Uri");
        check(
            json!({"properties": {"InputData": {"a": {"Uri": "x"}}, "miniBatchSize": "ten"}}),
            "properties.miniBatchSize",
        );
    }

    #[test]
    fn iso_durations() {
        assert_eq!(iso_seconds("PT30S"), Some(30));
        assert_eq!(iso_seconds("PT1M30S"), Some(90));
        assert_eq!(iso_seconds("PT1H"), Some(3600));
        assert_eq!(iso_seconds("PT0.5S"), Some(1));
        assert_eq!(iso_seconds("30"), None);
        assert_eq!(iso_seconds("PT5"), None);
    }
}
