//! How a command fails: what it prints on stderr and which exit status it returns.

use sluice_api::FieldError;
use sluice_client::ClientError;
use std::path::Path;

/// A failed command. [`CliError::render`] gives one `error: ...` line, then one indented line
/// per further problem.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Bad flags or unusable local input, found before anything was sent.
    Usage(String),
    /// Fields of a spec that broke rules; `source` names the file (or "command line").
    Invalid { source: String, errors: Vec<FieldError> },
    /// The server refused or could not be reached; `source` names the file the request came
    /// from, if any, so field errors can point into it.
    Client { source: Option<String>, error: ClientError, hint: Option<String> },
    /// A long-running operation ended in `Failed`, or the data plane refused a request.
    Failed(String),
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    pub fn client(error: ClientError) -> Self {
        Self::Client { source: None, error, hint: None }
    }

    /// A client error about a request built from `source`.
    pub fn client_from(source: &str, error: ClientError) -> Self {
        Self::Client { source: Some(source.to_owned()), error, hint: None }
    }

    /// 2 when the server cannot be reached, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Client { error, .. } if error.is_unreachable() => 2,
            _ => 1,
        }
    }

    /// Adds where a token would come from when the server said 401 and none was sent.
    pub fn with_token_hint(self, data_dir: &Path) -> Self {
        match self {
            Self::Client { source, error, hint: None } if error.status() == Some(401) => {
                let hint = format!(
                    "pass --token, set SLUICE_TOKEN, or point --data-dir at the server's data directory (looked for {})",
                    data_dir.join("admin-token").display()
                );
                Self::Client { source, error, hint: Some(hint) }
            }
            other => other,
        }
    }

    /// The text for stderr: the first line starts with `error: `.
    pub fn render(&self) -> String {
        let lines = self.lines();
        let mut out = format!("error: {}", lines[0]);
        for line in &lines[1..] {
            out.push_str("\n  ");
            out.push_str(line);
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        match self {
            Self::Usage(m) | Self::Failed(m) => m.lines().map(str::to_owned).collect(),
            Self::Invalid { source, errors } => field_lines(source, None, errors),
            Self::Client { source, error, hint } => {
                let mut lines = match (source, error) {
                    (Some(source), ClientError::Api { body, .. }) if !body.error.details.is_empty() => {
                        field_lines(source, Some(&body.error.message), &body.error.details)
                    }
                    _ => vec![error.to_string()],
                };
                if let Some(hint) = hint {
                    lines.push(format!("hint: {hint}"));
                }
                lines
            }
        }
    }
}

/// `SOURCE: field: message` for one problem; with several, a summary line then one per problem.
fn field_lines(source: &str, summary: Option<&str>, errors: &[FieldError]) -> Vec<String> {
    match errors {
        [] => vec![format!("{source}: {}", summary.unwrap_or("invalid"))],
        [one] if summary.is_none() => vec![format!("{source}: {one}")],
        many => {
            let head = match summary {
                Some(s) => format!("{source}: {s}"),
                None => format!("{source}: {} problems", many.len()),
            };
            std::iter::once(head).chain(many.iter().map(|e| format!("{source}: {e}"))).collect()
        }
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        Self::client(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(field: &str, message: &str) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }

    #[test]
    fn one_problem_is_one_line_naming_file_and_field() {
        let e = CliError::Invalid { source: "d.yml".into(), errors: vec![fe("instance_count", "0: expected 1 to 50")] };
        assert_eq!(e.render(), "error: d.yml: instance_count: 0: expected 1 to 50");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn several_problems_are_listed_one_per_line() {
        let e = CliError::Invalid { source: "d.yml".into(), errors: vec![fe("name", "bad"), fe("model", "required")] };
        assert_eq!(e.render(), "error: d.yml: 2 problems\n  d.yml: name: bad\n  d.yml: model: required");
    }

    #[test]
    fn server_field_errors_point_into_the_file() {
        let body = sluice_api::ErrorBody::new(sluice_api::ErrorCode::ValidationFailed, "invalid deployment")
            .with_details(vec![fe("instance_type", "unknown")]);
        let e = CliError::client_from("d.yml", ClientError::Api { status: 400, body });
        assert_eq!(e.render(), "error: d.yml: invalid deployment\n  d.yml: instance_type: unknown");
    }

    #[test]
    fn unauthorized_gets_a_hint() {
        let body = sluice_api::ErrorBody::new(sluice_api::ErrorCode::Unauthorized, "missing bearer token");
        let e = CliError::client(ClientError::Api { status: 401, body }).with_token_hint(Path::new("data"));
        let text = e.render();
        assert!(text.starts_with("error: missing bearer token\n  hint: pass --token"), "{text}");
        assert!(text.contains("data/admin-token"), "{text}");
    }
}
