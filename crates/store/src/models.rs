//! Registered model versions.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelRow {
    pub workspace: String,
    pub name: String,
    pub version: String,
    pub model_type: String,
    pub artifact: String,
    pub path: String,
    pub description: Option<String>,
    pub tags_json: String,
    pub created_at: String,
}

impl Store {
    pub async fn insert_model(&self, m: &ModelRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO models (workspace, name, version, model_type, artifact, path, description, tags_json, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.workspace)
        .bind(&m.name)
        .bind(&m.version)
        .bind(&m.model_type)
        .bind(&m.artifact)
        .bind(&m.path)
        .bind(&m.description)
        .bind(&m.tags_json)
        .bind(&m.created_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    pub async fn get_model(&self, ws: &str, name: &str, version: &str) -> Result<Option<ModelRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM models WHERE workspace = ? AND name = ? AND version = ?")
            .bind(ws)
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every version of `name` (or of every model), in no particular order.
    pub async fn list_models(&self, ws: &str, name: Option<&str>) -> Result<Vec<ModelRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM models WHERE workspace = ? AND (? IS NULL OR name = ?) ORDER BY name, created_at",
        )
        .bind(ws)
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_model(&self, ws: &str, name: &str, version: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM models WHERE workspace = ? AND name = ? AND version = ?")
            .bind(ws)
            .bind(name)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
