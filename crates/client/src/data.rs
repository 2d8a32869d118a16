//! Registered data assets.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::data::{DataAsset, DataAssetCreate};

impl SluiceClient {
    /// `PUT /data/{name}/versions/{version}`: registers an uploaded artifact as a data asset
    /// (409 if the version exists).
    pub async fn create_data_asset(
        &self,
        name: &str,
        version: &str,
        body: &DataAssetCreate,
    ) -> Result<DataAsset, ClientError> {
        self.call(Method::PUT, &["data", name, "versions", version], Some(body)).await
    }

    /// `GET /data/{name}/versions/{version}`; `version` may be `latest`.
    pub async fn get_data_asset(&self, name: &str, version: &str) -> Result<DataAsset, ClientError> {
        self.call::<(), _>(Method::GET, &["data", name, "versions", version], None).await
    }

    /// `GET /data`, or one data asset's versions.
    pub async fn list_data_assets(&self, name: Option<&str>) -> Result<Vec<DataAsset>, ClientError> {
        match name {
            Some(n) => self.call::<(), _>(Method::GET, &["data", n, "versions"], None).await,
            None => self.call::<(), _>(Method::GET, &["data"], None).await,
        }
    }

    /// One more than the highest integer version of `name` (1 for a new data asset).
    pub async fn next_data_asset_version(&self, name: &str) -> Result<String, ClientError> {
        let highest =
            self.list_data_assets(Some(name)).await?.iter().filter_map(|d| d.version.parse::<u64>().ok()).max();
        Ok((highest.unwrap_or(0) + 1).to_string())
    }
}
