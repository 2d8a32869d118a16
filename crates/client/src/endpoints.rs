//! Online endpoints, their credentials, and the data-plane scoring call.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use sluice_api::endpoint::{
    EndpointCredentials, EndpointKeys, KeyType, OnlineEndpoint, OnlineEndpointSpec, RegenerateKeys,
};
use std::time::Duration;

/// How long a scoring call may take: above the largest `request_timeout_ms` plus queueing.
const SCORE_TIMEOUT: Duration = Duration::from_secs(300);

/// The data plane's answer, whatever its status.
#[derive(Debug, Clone)]
pub struct ScoreResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl ScoreResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl SluiceClient {
    /// `POST /online-endpoints` (409 if it exists).
    pub async fn create_endpoint(&self, spec: &OnlineEndpointSpec) -> Result<OnlineEndpoint, ClientError> {
        self.call(Method::POST, &["online-endpoints"], Some(spec)).await
    }

    /// `PUT /online-endpoints/{name}`: replaces the whole spec (send traffic you want to keep).
    pub async fn update_endpoint(&self, name: &str, spec: &OnlineEndpointSpec) -> Result<OnlineEndpoint, ClientError> {
        self.call(Method::PUT, &["online-endpoints", name], Some(spec)).await
    }

    /// `GET /online-endpoints`.
    pub async fn list_endpoints(&self) -> Result<Vec<OnlineEndpoint>, ClientError> {
        self.call::<(), _>(Method::GET, &["online-endpoints"], None).await
    }

    /// `GET /online-endpoints/{name}`.
    pub async fn get_endpoint(&self, name: &str) -> Result<OnlineEndpoint, ClientError> {
        self.call::<(), _>(Method::GET, &["online-endpoints", name], None).await
    }

    /// `DELETE /online-endpoints/{name}`: starts the deletion (202) of the endpoint and its
    /// deployments; it is gone once `get_endpoint` answers 404.
    pub async fn delete_endpoint(&self, name: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["online-endpoints", name]).await
    }

    /// `POST /online-endpoints/{name}/get-credentials`: keys or a token, per the auth mode.
    pub async fn get_credentials(&self, name: &str) -> Result<EndpointCredentials, ClientError> {
        self.call::<(), _>(Method::POST, &["online-endpoints", name, "get-credentials"], None).await
    }

    /// `POST /online-endpoints/{name}/regenerate-keys`: replaces one key with a fresh one.
    pub async fn regenerate_keys(&self, name: &str, key_type: KeyType) -> Result<EndpointKeys, ClientError> {
        let body = RegenerateKeys { key_type, key_value: None };
        self.call(Method::POST, &["online-endpoints", name, "regenerate-keys"], Some(&body)).await
    }

    /// `POST {server}/endpoints/{endpoint}/score` with an endpoint key or token; `deployment`
    /// pins the request to one deployment (`azureml-model-deployment`). Any status comes back
    /// as a [`ScoreResponse`]; only a transport failure is an error.
    pub async fn invoke(
        &self,
        endpoint: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        deployment: Option<&str>,
    ) -> Result<ScoreResponse, ClientError> {
        let mut rb = self
            .http
            .post(self.url(&["endpoints", endpoint, "score"]))
            .timeout(SCORE_TIMEOUT)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Ok(mut auth) = HeaderValue::from_str(&format!("Bearer {key}")) {
            auth.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, auth);
        }
        if let Some(d) = deployment {
            rb = rb.header("azureml-model-deployment", d);
        }
        let response = rb.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| self.transport(e))?.to_vec();
        Ok(ScoreResponse { status, headers, body })
    }
}
