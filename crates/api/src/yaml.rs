//! Reading YAML files into specs, with errors that name the field and the line.

use crate::FieldError;
use serde::de::DeserializeOwned;

/// Parses one YAML document; on failure, one [`FieldError`] whose field is the path serde was
/// reading (`request_settings.request_timeout_ms`) and whose message says what was expected.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, FieldError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." { String::new() } else { path };
        let message = strip_path(&inner, &field);
        FieldError { field, message }
    })
}

/// serde_yaml starts its message with the path it was at (the field, or the mapping holding it,
/// as for an unknown enum value): the error names the field already, so say it once.
fn strip_path(message: &str, field: &str) -> String {
    let mut prefix = field;
    loop {
        if !prefix.is_empty()
            && let Some(rest) = message.strip_prefix(&format!("{prefix}: "))
        {
            return rest.to_owned();
        }
        match prefix.rfind('.') {
            Some(i) => prefix = &prefix[..i],
            None => return message.to_owned(),
        }
    }
}

/// Applies `--set a.b=c` overrides to a YAML document before it is read. The value is parsed as
/// YAML (so `2` is a number and `true` a boolean), as `az ml --set` does.
pub fn apply_set(doc: &mut serde_yaml::Value, assignment: &str) -> Result<(), FieldError> {
    let (path, value) = assignment.split_once('=').ok_or_else(|| FieldError {
        field: String::new(),
        message: format!("--set {assignment:?}: expected PATH=VALUE, e.g. instance_count=2"),
    })?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(value).unwrap_or_else(|_| serde_yaml::Value::String(value.to_owned()));
    let mut node = doc;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, key) in keys.iter().enumerate() {
        if key.is_empty() {
            return Err(FieldError { field: path.to_owned(), message: "empty key in --set path".into() });
        }
        if !node.is_mapping() {
            if node.is_null() {
                *node = serde_yaml::Value::Mapping(Default::default());
            } else {
                return Err(FieldError {
                    field: keys[..i].join("."),
                    message: "is not a mapping, so --set cannot descend into it".into(),
                });
            }
        }
        let map = node.as_mapping_mut().expect("checked to be a mapping above");
        let k = serde_yaml::Value::String((*key).to_owned());
        if i + 1 == keys.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(serde_yaml::Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::OnlineDeploymentSpec;
    use crate::endpoint::OnlineEndpointSpec;

    #[test]
    fn reads_azure_yaml_with_schema_and_folded_enums() {
        let e: OnlineEndpointSpec = from_str("$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\nname: my-endpoint\nauth_mode: AMLToken\n").unwrap();
        assert_eq!(e.auth_mode, crate::AuthModeWire::AmlToken);
    }

    #[test]
    fn errors_name_the_field() {
        let err = from_str::<OnlineDeploymentSpec>("name: blue\nrequest_settings:\n  request_timeout_ms: soon\n")
            .unwrap_err();
        assert_eq!(err.field, "request_settings.request_timeout_ms");
        assert!(err.message.contains("invalid type"), "{}", err.message);
        let err = from_str::<OnlineEndpointSpec>("name: ep1\nauth_mod: key\n").unwrap_err();
        assert!(err.message.contains("unknown field `auth_mod`"), "{}", err.message);
        let err = from_str::<OnlineEndpointSpec>("name: [unclosed").unwrap_err();
        assert!(err.message.contains("line 1"), "{}", err.message);
    }

    #[test]
    fn set_overrides_nested_paths() {
        let mut doc: serde_yaml::Value = serde_yaml::from_str("name: blue\ninstance_count: 1\n").unwrap();
        apply_set(&mut doc, "instance_count=3").unwrap();
        apply_set(&mut doc, "request_settings.request_timeout_ms=900").unwrap();
        let spec: OnlineDeploymentSpec = serde_yaml::from_value(doc).unwrap();
        assert_eq!(spec.instance_count, serde_json::Value::from(3));
        assert_eq!(spec.request_settings.request_timeout_ms, 900);
        let mut doc: serde_yaml::Value = serde_yaml::from_str("name: blue\n").unwrap();
        assert!(apply_set(&mut doc, "name.x=1").is_err());
        assert!(apply_set(&mut doc, "novalue").is_err());
    }
}
