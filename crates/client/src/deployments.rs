//! Online deployments: a model on replicas behind an endpoint.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::deployment::{DeploymentLogs, OnlineDeployment, OnlineDeploymentSpec};

impl SluiceClient {
    /// `POST /online-endpoints/{endpoint}/deployments` (409 if it exists). The spec's `model`
    /// must be a reference (`azureml:NAME:VERSION`); register inline models first.
    pub async fn create_deployment(
        &self,
        endpoint: &str,
        spec: &OnlineDeploymentSpec,
    ) -> Result<OnlineDeployment, ClientError> {
        self.call(Method::POST, &["online-endpoints", endpoint, "deployments"], Some(spec)).await
    }

    /// `PUT /online-endpoints/{endpoint}/deployments/{name}`: replaces the deployment's spec.
    pub async fn update_deployment(
        &self,
        endpoint: &str,
        name: &str,
        spec: &OnlineDeploymentSpec,
    ) -> Result<OnlineDeployment, ClientError> {
        self.call(Method::PUT, &["online-endpoints", endpoint, "deployments", name], Some(spec)).await
    }

    /// `GET /online-endpoints/{endpoint}/deployments`.
    pub async fn list_deployments(&self, endpoint: &str) -> Result<Vec<OnlineDeployment>, ClientError> {
        self.call::<(), _>(Method::GET, &["online-endpoints", endpoint, "deployments"], None).await
    }

    /// `GET /online-endpoints/{endpoint}/deployments/{name}`.
    pub async fn get_deployment(&self, endpoint: &str, name: &str) -> Result<OnlineDeployment, ClientError> {
        self.call::<(), _>(Method::GET, &["online-endpoints", endpoint, "deployments", name], None).await
    }

    /// `DELETE /online-endpoints/{endpoint}/deployments/{name}`: starts the deletion (202); the
    /// deployment is gone once `get_deployment` answers 404.
    pub async fn delete_deployment(&self, endpoint: &str, name: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["online-endpoints", endpoint, "deployments", name]).await
    }

    /// `GET /online-endpoints/{endpoint}/deployments/{name}/logs?lines=N&replica=I`.
    pub async fn get_deployment_logs(
        &self,
        endpoint: &str,
        name: &str,
        lines: Option<u32>,
        replica: Option<u32>,
    ) -> Result<DeploymentLogs, ClientError> {
        let mut url = self.api_url(&["online-endpoints", endpoint, "deployments", name, "logs"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(lines) = lines {
                q.append_pair("lines", &lines.to_string());
            }
            if let Some(replica) = replica {
                q.append_pair("replica", &replica.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.send_json(self.api_request(Method::GET, url)).await
    }
}
