//! Registered environment versions.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EnvironmentRow {
    pub workspace: String,
    pub name: String,
    pub version: String,
    /// The environment's fields as sent (conda file content, image, inference_config, command).
    pub spec_json: String,
    pub description: Option<String>,
    pub tags_json: String,
    pub created_at: String,
}

impl Store {
    pub async fn insert_environment(&self, e: &EnvironmentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO environments (workspace, name, version, spec_json, description, tags_json, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.workspace)
        .bind(&e.name)
        .bind(&e.version)
        .bind(&e.spec_json)
        .bind(&e.description)
        .bind(&e.tags_json)
        .bind(&e.created_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    pub async fn get_environment(
        &self,
        ws: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<EnvironmentRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM environments WHERE workspace = ? AND name = ? AND version = ?")
            .bind(ws)
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every version of `name` (or of every environment), oldest first.
    pub async fn list_environments(&self, ws: &str, name: Option<&str>) -> Result<Vec<EnvironmentRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM environments WHERE workspace = ? AND (? IS NULL OR name = ?) ORDER BY name, created_at",
        )
        .bind(ws)
        .bind(name)
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }
}
