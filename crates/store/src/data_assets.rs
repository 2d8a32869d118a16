//! Registered data asset versions.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DataAssetRow {
    pub workspace: String,
    pub name: String,
    pub version: String,
    /// `uri_folder` or `uri_file`.
    pub data_type: String,
    /// The uploaded artifact, `sha256:<hex>`.
    pub artifact: String,
    /// The folder's or file's name inside the artifact.
    pub path: String,
    pub description: Option<String>,
    pub tags_json: String,
    pub created_at: String,
}

impl Store {
    pub async fn insert_data_asset(&self, d: &DataAssetRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO data_assets (workspace, name, version, data_type, artifact, path, description, tags_json, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.workspace)
        .bind(&d.name)
        .bind(&d.version)
        .bind(&d.data_type)
        .bind(&d.artifact)
        .bind(&d.path)
        .bind(&d.description)
        .bind(&d.tags_json)
        .bind(&d.created_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    pub async fn get_data_asset(
        &self,
        ws: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<DataAssetRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM data_assets WHERE workspace = ? AND name = ? AND version = ?")
            .bind(ws)
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every version of `name` (or of every data asset), oldest first.
    pub async fn list_data_assets(&self, ws: &str, name: Option<&str>) -> Result<Vec<DataAssetRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM data_assets WHERE workspace = ? AND (? IS NULL OR name = ?) ORDER BY name, created_at",
        )
        .bind(ws)
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }
}
