//! Batch endpoints and batch deployments (jobs are in `batch_jobs`).

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchEndpointRow {
    pub workspace: String,
    pub name: String,
    pub spec_json: String,
    pub provisioning_state: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchDeploymentRow {
    pub workspace: String,
    pub endpoint: String,
    pub name: String,
    pub spec_json: String,
    pub model_name: String,
    pub model_version: String,
    /// Bumped by every update; a provisioning run of an older generation records nothing.
    pub generation: i64,
    pub provisioning_state: String,
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub async fn insert_batch_endpoint(&self, e: &BatchEndpointRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_endpoints (workspace, name, spec_json, provisioning_state, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.workspace)
        .bind(&e.name)
        .bind(&e.spec_json)
        .bind(&e.provisioning_state)
        .bind(&e.created_at)
        .bind(&e.updated_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    /// Writes the spec, state and `updated_at`; false if the endpoint is gone.
    pub async fn update_batch_endpoint(&self, e: &BatchEndpointRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE batch_endpoints SET spec_json = ?, provisioning_state = ?, updated_at = ? WHERE workspace = ? AND name = ?",
        )
        .bind(&e.spec_json)
        .bind(&e.provisioning_state)
        .bind(&e.updated_at)
        .bind(&e.workspace)
        .bind(&e.name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn get_batch_endpoint(&self, ws: &str, name: &str) -> Result<Option<BatchEndpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM batch_endpoints WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn list_batch_endpoints(&self, ws: &str) -> Result<Vec<BatchEndpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM batch_endpoints WHERE workspace = ? ORDER BY name")
            .bind(ws)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Deletes the endpoint and its deployments in one transaction (its jobs stay, as history).
    pub async fn delete_batch_endpoint(&self, ws: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM batch_deployments WHERE workspace = ? AND endpoint = ?")
            .bind(ws)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM batch_endpoints WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Creates the deployment, or replaces its spec and bumps its generation (Azure's batch
    /// deployment `create` overwrites); true when it was created.
    pub async fn upsert_batch_deployment(&self, d: &BatchDeploymentRow) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE batch_deployments SET spec_json = ?, model_name = ?, model_version = ?, generation = generation + 1,
             provisioning_state = ?, message = NULL, updated_at = ? WHERE workspace = ? AND endpoint = ? AND name = ?",
        )
        .bind(&d.spec_json)
        .bind(&d.model_name)
        .bind(&d.model_version)
        .bind(&d.provisioning_state)
        .bind(&d.updated_at)
        .bind(&d.workspace)
        .bind(&d.endpoint)
        .bind(&d.name)
        .execute(&mut *tx)
        .await?;
        let created = r.rows_affected() == 0;
        if created {
            sqlx::query(
                "INSERT INTO batch_deployments (workspace, endpoint, name, spec_json, model_name, model_version, generation,
                 provisioning_state, message, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&d.workspace)
            .bind(&d.endpoint)
            .bind(&d.name)
            .bind(&d.spec_json)
            .bind(&d.model_name)
            .bind(&d.model_version)
            .bind(d.generation)
            .bind(&d.provisioning_state)
            .bind(&d.message)
            .bind(&d.created_at)
            .bind(&d.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Records provisioning's outcome, only if the deployment is still at `generation`.
    pub async fn set_batch_deployment_state(
        &self,
        key: (&str, &str, &str),
        generation: i64,
        state: &str,
        message: Option<&str>,
        now: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE batch_deployments SET provisioning_state = ?, message = ?, updated_at = ?
             WHERE workspace = ? AND endpoint = ? AND name = ? AND generation = ?",
        )
        .bind(state)
        .bind(message)
        .bind(now)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(generation)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn get_batch_deployment(
        &self,
        ws: &str,
        ep: &str,
        name: &str,
    ) -> Result<Option<BatchDeploymentRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM batch_deployments WHERE workspace = ? AND endpoint = ? AND name = ?")
            .bind(ws)
            .bind(ep)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deployments of one endpoint, or every batch deployment when `key` is `None`.
    pub async fn list_batch_deployments(
        &self,
        key: Option<(&str, &str)>,
    ) -> Result<Vec<BatchDeploymentRow>, StoreError> {
        let (ws, ep) = key.unzip();
        Ok(sqlx::query_as(
            "SELECT * FROM batch_deployments WHERE (? IS NULL OR (workspace = ? AND endpoint = ?)) ORDER BY workspace, endpoint, name",
        )
        .bind(ws)
        .bind(ws)
        .bind(ep)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_batch_deployment(&self, ws: &str, ep: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM batch_deployments WHERE workspace = ? AND endpoint = ? AND name = ?")
            .bind(ws)
            .bind(ep)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
