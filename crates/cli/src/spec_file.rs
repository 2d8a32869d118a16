//! YAML specs as the CLI reads them: file, `--set` overrides and flags, then a typed read and
//! local validation, every error naming the file and the field.

use crate::error::CliError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use sluice_api::FieldError;
use std::path::{Path, PathBuf};

/// One YAML document and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct SpecDoc {
    /// The file as the user named it, or a description such as `command line`.
    pub label: String,
    /// The folder that relative paths inside the document resolve against.
    pub dir: PathBuf,
    pub doc: Value,
    /// The file's text while the document is unchanged, so a typed read can report lines.
    text: Option<String>,
}

impl SpecDoc {
    /// Reads and parses a YAML file, which must hold a mapping.
    pub fn read(path: &Path) -> Result<Self, CliError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{label}: cannot read: {e}")))?;
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| CliError::Invalid {
            source: label.clone(),
            errors: vec![FieldError { field: String::new(), message: e.to_string() }],
        })?;
        if !doc.is_mapping() {
            let what = if doc.is_null() { "the file is empty" } else { "the document is not a mapping" };
            return Err(CliError::Invalid {
                source: label,
                errors: vec![FieldError {
                    field: String::new(),
                    message: format!("{what}: expected fields such as `name: ...`"),
                }],
            });
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Self { label, dir, doc, text: Some(text) })
    }

    /// A document built from flags alone (no file); relative paths resolve against the cwd.
    pub fn empty(label: impl Into<String>) -> Self {
        Self::from_value(label, Value::Mapping(Default::default()))
    }

    /// A document taken from a resource the server returned, to be changed and sent back.
    pub fn from_resource<T: Serialize>(label: impl Into<String>, resource: &T) -> Result<Self, CliError> {
        let doc =
            serde_yaml::to_value(resource).map_err(|e| CliError::usage(format!("cannot edit the resource: {e}")))?;
        Ok(Self::from_value(label, doc))
    }

    fn from_value(label: impl Into<String>, doc: Value) -> Self {
        Self { label: label.into(), dir: PathBuf::from("."), doc, text: None }
    }

    /// Applies `--set PATH=VALUE` overrides in order.
    pub fn apply_sets(&mut self, sets: &[String]) -> Result<(), CliError> {
        for set in sets {
            sluice_api::yaml::apply_set(&mut self.doc, set).map_err(|e| self.invalid(vec![e]))?;
            self.text = None;
        }
        Ok(())
    }

    /// `conda_file: conda.yaml` (relative to the YAML) in the mapping at `key` (the document
    /// itself for `None`) is replaced by the file's content, which is what the server takes.
    pub fn inline_conda_file(&mut self, key: Option<&str>) -> Result<(), CliError> {
        let env = match key {
            Some(k) => self.doc.get(k),
            None => Some(&self.doc),
        };
        let Some(env) = env.and_then(|e| e.as_mapping()) else { return Ok(()) };
        let Some(path) = env.get("conda_file").and_then(|p| p.as_str()) else { return Ok(()) };
        let field = key.map_or("conda_file".to_owned(), |k| format!("{k}.conda_file"));
        let file = self.resolve(path);
        let invalid = |message: String| self.invalid(vec![FieldError { field: field.clone(), message }]);
        let text =
            std::fs::read_to_string(&file).map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
        let content: Value =
            serde_yaml::from_str(&text).map_err(|e| invalid(format!("{} is not valid YAML: {e}", file.display())))?;
        let mut env = env.clone();
        env.insert("conda_file".into(), content);
        match key {
            Some(k) => self.set(k, Value::Mapping(env)),
            None => {
                self.doc = Value::Mapping(env);
                self.text = None;
            }
        }
        Ok(())
    }

    /// Sets a top-level field from a flag (`--name`, `--endpoint-name`, `--traffic`).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        if !self.doc.is_mapping() {
            self.doc = Value::Mapping(Default::default());
        }
        let map = self.doc.as_mapping_mut().expect("made a mapping above");
        map.insert(Value::String(key.to_owned()), value.into());
        self.text = None;
    }

    /// Copies every top-level field of `overlay` over this document's.
    pub fn overlay(&mut self, overlay: &SpecDoc) {
        if let Some(map) = overlay.doc.as_mapping() {
            for (k, v) in map {
                if let Some(key) = k.as_str() {
                    self.set(key, v.clone());
                }
            }
        }
        self.label = overlay.label.clone();
        self.dir = overlay.dir.clone();
    }

    /// A top-level string field.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.doc.get(key).and_then(Value::as_str)
    }

    /// Reads the document as `T`; an error names the field serde was reading.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, CliError> {
        let result = match &self.text {
            Some(text) => sluice_api::yaml::from_str(text),
            None => serde_path_to_error::deserialize(self.doc.clone()).map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." { String::new() } else { path };
                FieldError { field, message: e.into_inner().to_string() }
            }),
        };
        result.map_err(|mut e| {
            // serde_yaml's own message may already start with the path; say it once.
            if let Some(rest) = e.message.strip_prefix(&format!("{}: ", e.field)) {
                e.message = rest.to_owned();
            }
            self.invalid(vec![e])
        })
    }

    /// The error for fields of this document that broke rules.
    pub fn invalid(&self, errors: Vec<FieldError>) -> CliError {
        CliError::Invalid { source: self.label.clone(), errors }
    }

    /// A path written in this document, resolved against its folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.dir.join(path)
    }
}

/// A YAML `version:` (a number or a string) as text.
pub(crate) fn version_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::deployment::OnlineDeploymentSpec;
    use sluice_api::endpoint::OnlineEndpointSpec;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn type_errors_name_file_field_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "d.yml", "name: blue\nrequest_settings:\n  request_timeout_ms: soon\n");
        let text = SpecDoc::read(&path).unwrap().typed::<OnlineDeploymentSpec>().map(drop).unwrap_err().render();
        assert!(text.contains("d.yml: request_settings.request_timeout_ms: invalid type"), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }

    #[test]
    fn errors_after_set_still_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "ep.yml", "name: my-ep\n");
        let mut doc = SpecDoc::read(&path).unwrap();
        doc.apply_sets(&["auth_mode=password".into()]).unwrap();
        let text = doc.typed::<OnlineEndpointSpec>().map(drop).unwrap_err().render();
        assert!(text.contains("ep.yml: auth_mode: unknown value \"password\": expected one of key"), "{text}");
        let mut doc = SpecDoc::read(&path).unwrap();
        let text = doc.apply_sets(&["name.x=1".into()]).unwrap_err().render();
        assert!(text.contains("ep.yml: name: is not a mapping"), "{text}");
    }

    #[test]
    fn unknown_fields_and_syntax_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "ep.yml", "name: ep1\nauth_mod: key\n");
        let text = SpecDoc::read(&path).unwrap().typed::<OnlineEndpointSpec>().map(drop).unwrap_err().render();
        assert!(text.starts_with(&format!("error: {}: auth_mod: unknown field `auth_mod`", path.display())), "{text}");
        let path = file(dir.path(), "bad.yml", "name: [unclosed\n");
        let text = SpecDoc::read(&path).unwrap_err().render();
        assert!(text.contains("bad.yml: ") && text.contains("line"), "{text}");
        let path = file(dir.path(), "empty.yml", "");
        assert!(SpecDoc::read(&path).unwrap_err().render().contains("empty.yml: the file is empty"));
        let text = SpecDoc::read(&dir.path().join("missing.yml")).unwrap_err().render();
        assert!(text.contains("missing.yml: cannot read"), "{text}");
    }

    #[test]
    fn flags_and_overlays_replace_top_level_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "ep.yml", "name: from-file\ndescription: new\n");
        let file_doc = SpecDoc::read(&path).unwrap();
        let mut base = SpecDoc::empty("online endpoint x");
        base.set("name", "from-file");
        base.set("traffic", serde_yaml::from_str::<Value>("{blue: 100}").unwrap());
        base.overlay(&file_doc);
        base.set("name", "from-flag");
        let spec: OnlineEndpointSpec = base.typed().unwrap();
        assert_eq!((spec.name.as_str(), spec.description.as_deref()), ("from-flag", Some("new")));
        assert_eq!(spec.traffic.get("blue"), Some(&serde_json::Value::from(100)));
        assert_eq!(base.label, path.display().to_string());
        assert_eq!(base.resolve("model"), dir.path().join("model"));
    }
}
