//! Registered environments.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::environment::{Environment, EnvironmentCreate};

impl SluiceClient {
    /// `PUT /environments/{name}/versions/{version}`: registers an environment and starts its
    /// build (409 if the version exists).
    pub async fn create_environment(
        &self,
        name: &str,
        version: &str,
        body: &EnvironmentCreate,
    ) -> Result<Environment, ClientError> {
        self.call(Method::PUT, &["environments", name, "versions", version], Some(body)).await
    }

    /// `GET /environments/{name}/versions/{version}`; `version` may be `latest`.
    pub async fn get_environment(&self, name: &str, version: &str) -> Result<Environment, ClientError> {
        self.call::<(), _>(Method::GET, &["environments", name, "versions", version], None).await
    }

    /// `GET /environments`, or one environment's versions.
    pub async fn list_environments(&self, name: Option<&str>) -> Result<Vec<Environment>, ClientError> {
        match name {
            Some(n) => self.call::<(), _>(Method::GET, &["environments", n, "versions"], None).await,
            None => self.call::<(), _>(Method::GET, &["environments"], None).await,
        }
    }

    /// One more than the highest integer version of `name` (1 for a new environment).
    pub async fn next_environment_version(&self, name: &str) -> Result<String, ClientError> {
        let highest =
            self.list_environments(Some(name)).await?.iter().filter_map(|e| e.version.parse::<u64>().ok()).max();
        Ok((highest.unwrap_or(0) + 1).to_string())
    }
}
