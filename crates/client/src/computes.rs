//! Compute pools.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::compute::{Compute, ComputeSpec};

impl SluiceClient {
    /// `POST /computes` (409 if the name is taken).
    pub async fn create_compute(&self, spec: &ComputeSpec) -> Result<Compute, ClientError> {
        self.call(Method::POST, &["computes"], Some(spec)).await
    }

    /// `PUT /computes/{name}`: replaces the pool's spec.
    pub async fn update_compute(&self, spec: &ComputeSpec) -> Result<Compute, ClientError> {
        self.call(Method::PUT, &["computes", &spec.name], Some(spec)).await
    }

    /// `GET /computes/{name}`: the pool with its running and queued jobs.
    pub async fn get_compute(&self, name: &str) -> Result<Compute, ClientError> {
        self.call::<(), _>(Method::GET, &["computes", name], None).await
    }

    /// `GET /computes`.
    pub async fn list_computes(&self) -> Result<Vec<Compute>, ClientError> {
        self.call::<(), _>(Method::GET, &["computes"], None).await
    }

    /// `DELETE /computes/{name}` (409 while a batch deployment or an unfinished job uses it).
    pub async fn delete_compute(&self, name: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["computes", name]).await
    }
}
