//! The model catalog and serverless API endpoints.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::endpoint::{EndpointKeys, KeyType, RegenerateKeys};
use sluice_api::serverless::{
    CatalogModel, CatalogModelCreate, ServerlessEndpoint, ServerlessEndpointSpec, ServerlessUsage,
};

impl SluiceClient {
    /// `GET /api/v1/model-catalog`.
    pub async fn list_catalog(&self) -> Result<Vec<CatalogModel>, ClientError> {
        self.send_json(self.api_request(Method::GET, self.url(&["api", "v1", "model-catalog"]))).await
    }

    /// `GET /api/v1/model-catalog/{id}`: by id, name or `azureml://registries/.../models/NAME`.
    pub async fn get_catalog_model(&self, id: &str) -> Result<CatalogModel, ClientError> {
        self.send_json(self.api_request(Method::GET, self.url(&["api", "v1", "model-catalog", id]))).await
    }

    /// `POST /api/v1/model-catalog`: adds a model from a path on the server's machine.
    pub async fn add_catalog_model(&self, body: &CatalogModelCreate) -> Result<CatalogModel, ClientError> {
        let rb = self.api_request(Method::POST, self.url(&["api", "v1", "model-catalog"])).json(body);
        self.send_json(rb).await
    }

    /// `DELETE /api/v1/model-catalog/{id}`.
    pub async fn remove_catalog_model(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.api_request(Method::DELETE, self.url(&["api", "v1", "model-catalog", id]))).await.map(drop)
    }

    /// `POST /serverless-endpoints`.
    pub async fn create_serverless_endpoint(
        &self,
        spec: &ServerlessEndpointSpec,
    ) -> Result<ServerlessEndpoint, ClientError> {
        self.call(Method::POST, &["serverless-endpoints"], Some(spec)).await
    }

    /// `GET /serverless-endpoints/{name}`.
    pub async fn get_serverless_endpoint(&self, name: &str) -> Result<ServerlessEndpoint, ClientError> {
        self.call::<(), _>(Method::GET, &["serverless-endpoints", name], None).await
    }

    /// `GET /serverless-endpoints`.
    pub async fn list_serverless_endpoints(&self) -> Result<Vec<ServerlessEndpoint>, ClientError> {
        self.call::<(), _>(Method::GET, &["serverless-endpoints"], None).await
    }

    /// `DELETE /serverless-endpoints/{name}`.
    pub async fn delete_serverless_endpoint(&self, name: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["serverless-endpoints", name]).await
    }

    /// `POST /serverless-endpoints/{name}/get-credentials`.
    pub async fn serverless_credentials(&self, name: &str) -> Result<EndpointKeys, ClientError> {
        self.call::<(), _>(Method::POST, &["serverless-endpoints", name, "get-credentials"], None).await
    }

    /// `POST /serverless-endpoints/{name}/regenerate-keys`.
    pub async fn regenerate_serverless_keys(&self, name: &str, key_type: KeyType) -> Result<EndpointKeys, ClientError> {
        let body = RegenerateKeys { key_type, key_value: None };
        self.call(Method::POST, &["serverless-endpoints", name, "regenerate-keys"], Some(&body)).await
    }

    /// `GET /serverless-endpoints/{name}/usage[?since=T]`.
    pub async fn serverless_usage(&self, name: &str, since: Option<&str>) -> Result<ServerlessUsage, ClientError> {
        let mut url = self.api_url(&["serverless-endpoints", name, "usage"]);
        if let Some(s) = since {
            url.query_pairs_mut().append_pair("since", s);
        }
        self.send_json(self.api_request(Method::GET, url)).await
    }
}
