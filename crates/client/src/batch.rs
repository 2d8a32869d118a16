//! Batch endpoints, batch deployments and jobs.

use crate::archive::ArchiveError;
use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::batch::job::{BatchJob, BatchJobCreate, JobLogs};
use sluice_api::batch::{BatchDeployment, BatchDeploymentSpec, BatchEndpoint, BatchEndpointSpec};
use std::path::Path;

impl SluiceClient {
    /// `POST /batch-endpoints` (409 if it exists, or if an online endpoint has the name).
    pub async fn create_batch_endpoint(&self, spec: &BatchEndpointSpec) -> Result<BatchEndpoint, ClientError> {
        self.call(Method::POST, &["batch-endpoints"], Some(spec)).await
    }

    /// `PUT /batch-endpoints/{name}`: description, tags and the default deployment.
    pub async fn update_batch_endpoint(
        &self,
        name: &str,
        spec: &BatchEndpointSpec,
    ) -> Result<BatchEndpoint, ClientError> {
        self.call(Method::PUT, &["batch-endpoints", name], Some(spec)).await
    }

    /// `GET /batch-endpoints/{name}`.
    pub async fn get_batch_endpoint(&self, name: &str) -> Result<BatchEndpoint, ClientError> {
        self.call::<(), _>(Method::GET, &["batch-endpoints", name], None).await
    }

    /// `GET /batch-endpoints`.
    pub async fn list_batch_endpoints(&self) -> Result<Vec<BatchEndpoint>, ClientError> {
        self.call::<(), _>(Method::GET, &["batch-endpoints"], None).await
    }

    /// `DELETE /batch-endpoints/{name}`, with its deployments (409 while a job runs).
    pub async fn delete_batch_endpoint(&self, name: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["batch-endpoints", name]).await
    }

    /// `PUT /batch-endpoints/{endpoint}/deployments/{name}`: creates the deployment or replaces
    /// its spec. The spec's `model` must be a reference and its code an uploaded artifact.
    pub async fn put_batch_deployment(
        &self,
        endpoint: &str,
        spec: &BatchDeploymentSpec,
    ) -> Result<BatchDeployment, ClientError> {
        self.call(Method::PUT, &["batch-endpoints", endpoint, "deployments", &spec.name], Some(spec)).await
    }

    /// `GET /batch-endpoints/{endpoint}/deployments/{name}`.
    pub async fn get_batch_deployment(&self, endpoint: &str, name: &str) -> Result<BatchDeployment, ClientError> {
        self.call::<(), _>(Method::GET, &["batch-endpoints", endpoint, "deployments", name], None).await
    }

    /// `GET /batch-endpoints/{endpoint}/deployments`.
    pub async fn list_batch_deployments(&self, endpoint: &str) -> Result<Vec<BatchDeployment>, ClientError> {
        self.call::<(), _>(Method::GET, &["batch-endpoints", endpoint, "deployments"], None).await
    }

    /// `DELETE /batch-endpoints/{endpoint}/deployments/{name}`.
    pub async fn delete_batch_deployment(&self, endpoint: &str, name: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["batch-endpoints", endpoint, "deployments", name]).await
    }

    /// `POST /batch-endpoints/{endpoint}/jobs`: starts a job and returns it at once.
    pub async fn invoke_batch_endpoint(&self, endpoint: &str, body: &BatchJobCreate) -> Result<BatchJob, ClientError> {
        self.call(Method::POST, &["batch-endpoints", endpoint, "jobs"], Some(body)).await
    }

    /// `GET /batch-endpoints/{endpoint}/jobs`, in arrival order.
    pub async fn list_batch_endpoint_jobs(&self, endpoint: &str) -> Result<Vec<BatchJob>, ClientError> {
        self.call::<(), _>(Method::GET, &["batch-endpoints", endpoint, "jobs"], None).await
    }

    /// `GET /jobs`: every batch job of the workspace.
    pub async fn list_jobs(&self) -> Result<Vec<BatchJob>, ClientError> {
        self.call::<(), _>(Method::GET, &["jobs"], None).await
    }

    /// `GET /jobs/{name}`.
    pub async fn get_job(&self, name: &str) -> Result<BatchJob, ClientError> {
        self.call::<(), _>(Method::GET, &["jobs", name], None).await
    }

    /// `POST /jobs/{name}/cancel`.
    pub async fn cancel_job(&self, name: &str) -> Result<BatchJob, ClientError> {
        self.call::<(), _>(Method::POST, &["jobs", name, "cancel"], None).await
    }

    /// `GET /jobs/{name}/logs?lines=N`: the ends of the job's worker logs.
    pub async fn get_job_logs(&self, name: &str, lines: Option<u32>) -> Result<JobLogs, ClientError> {
        let mut url = self.api_url(&["jobs", name, "logs"]);
        if let Some(lines) = lines {
            url.query_pairs_mut().append_pair("lines", &lines.to_string());
        }
        self.send_json(self.api_request(Method::GET, url)).await
    }

    /// `GET /jobs/{name}/outputs`: unpacks the job's output folder into `dest` (created).
    pub async fn download_job_outputs(&self, name: &str, dest: &Path) -> Result<(), ClientError> {
        // No timeout: an output can be large; the connect timeout still applies.
        let rb = self.authorize(self.http.get(self.api_url(&["jobs", name, "outputs"])));
        let bytes = self.send(rb).await?.bytes().await.map_err(|e| self.transport(e))?;
        let dest = dest.to_owned();
        let io = |source: std::io::Error, path: &Path| ArchiveError::Io { path: path.to_owned(), source };
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dest).map_err(|e| io(e, &dest))?;
            // `unpack` refuses entries that would land outside `dest`.
            tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..])).unpack(&dest).map_err(|e| io(e, &dest))
        })
        .await
        .map_err(|e| ArchiveError::Io { path: "<download>".into(), source: std::io::Error::other(e) })??;
        Ok(())
    }
}
