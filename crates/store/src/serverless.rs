//! Serverless endpoints, user-added catalog models and token usage.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogModelRow {
    pub id: String,
    pub spec_json: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ServerlessEndpointRow {
    pub workspace: String,
    pub name: String,
    pub uid: String,
    pub catalog_model: String,
    pub spec_json: String,
    pub provisioning_state: String,
    pub failure: Option<String>,
    pub primary_key_enc: String,
    pub secondary_key_enc: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ServerlessUsageRow {
    pub workspace: String,
    pub endpoint: String,
    pub key_name: String,
    pub hour: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl Store {
    pub async fn insert_catalog_model(&self, m: &CatalogModelRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO catalog_models (id, spec_json, created_at) VALUES (?, ?, ?)")
            .bind(&m.id)
            .bind(&m.spec_json)
            .bind(&m.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    pub async fn list_catalog_models(&self) -> Result<Vec<CatalogModelRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM catalog_models ORDER BY id").fetch_all(&self.pool).await?)
    }

    pub async fn delete_catalog_model(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM catalog_models WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn insert_serverless_endpoint(&self, e: &ServerlessEndpointRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO serverless_endpoints (workspace, name, uid, catalog_model, spec_json, provisioning_state, failure,
                                               primary_key_enc, secondary_key_enc, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.workspace)
        .bind(&e.name)
        .bind(&e.uid)
        .bind(&e.catalog_model)
        .bind(&e.spec_json)
        .bind(&e.provisioning_state)
        .bind(&e.failure)
        .bind(&e.primary_key_enc)
        .bind(&e.secondary_key_enc)
        .bind(&e.created_at)
        .bind(&e.updated_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    /// Writes the mutable columns (spec, state, failure, keys, updated_at); false if it is gone.
    pub async fn update_serverless_endpoint(&self, e: &ServerlessEndpointRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE serverless_endpoints SET spec_json = ?, provisioning_state = ?, failure = ?, primary_key_enc = ?,
                    secondary_key_enc = ?, updated_at = ?
             WHERE workspace = ? AND name = ?",
        )
        .bind(&e.spec_json)
        .bind(&e.provisioning_state)
        .bind(&e.failure)
        .bind(&e.primary_key_enc)
        .bind(&e.secondary_key_enc)
        .bind(&e.updated_at)
        .bind(&e.workspace)
        .bind(&e.name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn get_serverless_endpoint(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<Option<ServerlessEndpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM serverless_endpoints WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A workspace's serverless endpoints, or every workspace's when `ws` is `None`.
    pub async fn list_serverless_endpoints(&self, ws: Option<&str>) -> Result<Vec<ServerlessEndpointRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM serverless_endpoints WHERE (? IS NULL OR workspace = ?) ORDER BY workspace, name",
        )
        .bind(ws)
        .bind(ws)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_serverless_endpoint(&self, ws: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM serverless_endpoints WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Adds `u`'s counts to its hour's record, creating it if needed.
    pub async fn add_serverless_usage(&self, u: &ServerlessUsageRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO serverless_usage (workspace, endpoint, key_name, hour, requests, prompt_tokens, completion_tokens)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (workspace, endpoint, key_name, hour) DO UPDATE SET
                requests = requests + excluded.requests,
                prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                completion_tokens = completion_tokens + excluded.completion_tokens",
        )
        .bind(&u.workspace)
        .bind(&u.endpoint)
        .bind(&u.key_name)
        .bind(&u.hour)
        .bind(u.requests)
        .bind(u.prompt_tokens)
        .bind(u.completion_tokens)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records of `ws` (one endpoint's, when given) from the hour containing `since_hour` on,
    /// oldest first.
    pub async fn list_serverless_usage(
        &self,
        ws: &str,
        endpoint: Option<&str>,
        since_hour: Option<&str>,
    ) -> Result<Vec<ServerlessUsageRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM serverless_usage WHERE workspace = ? AND (? IS NULL OR endpoint = ?) AND (? IS NULL OR hour >= ?)
             ORDER BY hour, endpoint, key_name",
        )
        .bind(ws)
        .bind(endpoint)
        .bind(endpoint)
        .bind(since_hour)
        .bind(since_hour)
        .fetch_all(&self.pool)
        .await?)
    }
}
