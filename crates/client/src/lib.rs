//! Typed client for Sluice's management REST API and the online scoring route.
//!
//! One [`SluiceClient`] method per route of `/api/v1/workspaces/{ws}/...`; every answer is decoded
//! into the wire types of `sluice-api`, and every failure into a [`ClientError`] whose `Display`
//! is one line that never contains the token. The CLI, the studio and the tests share it.

pub mod archive;
mod batch;
mod computes;
mod data;
mod deployments;
mod endpoints;
mod environments;
mod error;
mod models;
mod rollouts;
mod serverless;
mod usage;

pub use endpoints::ScoreResponse;
pub use error::ClientError;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long one management call (not an upload or a scoring request) may take.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a TCP connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on one Sluice server and workspace; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct SluiceClient {
    http: reqwest::Client,
    server: Url,
    workspace: String,
    token: Option<String>,
}

impl std::fmt::Debug for SluiceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluiceClient")
            .field("server", &self.server.as_str())
            .field("workspace", &self.workspace)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SluiceClient {
    /// `server` is the base URL (`http://127.0.0.1:8080`; a missing `http://` is added), `token`
    /// the admin token sent as `Authorization: Bearer` on every management call.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let server = parse_server(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::InvalidServer { server: server.to_string(), message: e.to_string() })?;
        Ok(Self { http, server, workspace: sluice_api::DEFAULT_WORKSPACE.to_owned(), token })
    }

    /// The same server, another workspace.
    pub fn with_workspace(mut self, workspace: impl Into<String>) -> Self {
        self.workspace = workspace.into();
        self
    }

    /// The server's base URL as given (normalised).
    pub fn server(&self) -> &str {
        self.server.as_str().trim_end_matches('/')
    }

    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// Whether an admin token will be sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `{server}/api/v1/workspaces/{ws}/{segments...}`, each segment percent-encoded.
    fn api_url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v1", "workspaces", self.workspace.as_str()];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    /// `{server}/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.server.clone();
        url.path_segments_mut().expect("http URLs have a path").pop_if_empty().extend(segments);
        url
    }

    /// A management request carrying the admin token and the default timeout.
    fn api_request(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = self.http.request(method, url).timeout(API_TIMEOUT);
        self.authorize(rb)
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        match self.token.as_deref().map(|t| HeaderValue::from_str(&format!("Bearer {t}"))) {
            Some(Ok(mut value)) => {
                value.set_sensitive(true);
                rb.header(AUTHORIZATION, value)
            }
            // A token with characters a header cannot carry is sent as nothing: the server then
            // answers 401, which says more than a local "invalid header" would.
            Some(Err(_)) | None => rb,
        }
    }

    /// Sends, and turns transport failures and non-2xx answers into [`ClientError`].
    async fn send(&self, rb: RequestBuilder) -> Result<Response, ClientError> {
        let request = rb.build().map_err(|e| self.transport(e))?;
        let url = request.url().clone();
        let response = self.http.execute(request).await.map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        Err(ClientError::from_error_response(status, &bytes, &url))
    }

    fn transport(&self, source: reqwest::Error) -> ClientError {
        ClientError::Transport { server: self.server().to_owned(), source }
    }

    /// Sends and decodes a JSON answer.
    async fn send_json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(rb).await?;
        let url = response.url().clone();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.path().to_owned(),
            status,
            message: e.to_string(),
        })
    }

    /// `method` on an API path with an optional JSON body, decoding a JSON answer.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut rb = self.api_request(method, self.api_url(segments));
        if let Some(body) = body {
            rb = rb.json(body);
        }
        self.send_json(rb).await
    }

    /// `method` on an API path whose answer carries nothing the caller needs (204, 202).
    async fn call_no_content(&self, method: Method, segments: &[&str]) -> Result<(), ClientError> {
        self.send(self.api_request(method, self.api_url(segments))).await.map(drop)
    }
}

/// Accepts `host:port` as shorthand for `http://host:port`.
fn parse_server(server: &str) -> Result<Url, ClientError> {
    let with_scheme = if server.contains("://") { server.to_owned() } else { format!("http://{server}") };
    let invalid = |message: String| ClientError::InvalidServer { server: server.to_owned(), message };
    let url = Url::parse(&with_scheme).map_err(|e| invalid(format!("not a URL: {e}")))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(invalid(
                "https is not supported by this build (no TLS): use http:// or a TLS-terminating proxy".into(),
            ));
        }
        other => return Err(invalid(format!("unsupported scheme {other:?}: expected http://HOST:PORT"))),
    }
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(invalid("expected http://HOST:PORT".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_under_the_workspace_and_encoded() {
        let c = SluiceClient::new("127.0.0.1:8080/", Some("t".into())).unwrap();
        assert_eq!(c.server(), "http://127.0.0.1:8080");
        assert_eq!(
            c.api_url(&["models", "iris", "versions", "1"]).as_str(),
            "http://127.0.0.1:8080/api/v1/workspaces/default/models/iris/versions/1"
        );
        assert_eq!(c.api_url(&["models", "a b/c"]).path(), "/api/v1/workspaces/default/models/a%20b%2Fc");
        let c = SluiceClient::new("http://h:1/prefix", None).unwrap().with_workspace("ws2");
        assert_eq!(c.url(&["endpoints", "ep", "score"]).as_str(), "http://h:1/prefix/endpoints/ep/score");
        assert_eq!(c.api_url(&[]).path(), "/prefix/api/v1/workspaces/ws2");
    }

    #[test]
    fn bad_servers_are_refused_with_a_reason() {
        for (bad, why) in [("https://h", "no TLS"), ("ftp://h", "unsupported scheme"), ("http://", "not a URL")] {
            let e = SluiceClient::new(bad, None).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = SluiceClient::new("http://h:1", Some("s3cret".into())).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
