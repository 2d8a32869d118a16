//! Online endpoints and their (encrypted) keys.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EndpointRow {
    pub workspace: String,
    pub name: String,
    /// Unique per creation: tokens name it, so a recreated endpoint refuses old tokens.
    pub uid: String,
    pub spec_json: String,
    pub provisioning_state: String,
    pub primary_key_enc: String,
    pub secondary_key_enc: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub async fn insert_endpoint(&self, e: &EndpointRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO online_endpoints (workspace, name, uid, spec_json, provisioning_state, primary_key_enc, secondary_key_enc, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.workspace)
        .bind(&e.name)
        .bind(&e.uid)
        .bind(&e.spec_json)
        .bind(&e.provisioning_state)
        .bind(&e.primary_key_enc)
        .bind(&e.secondary_key_enc)
        .bind(&e.created_at)
        .bind(&e.updated_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    /// Writes every mutable column of `e` (spec, state, keys, updated_at); false if it is gone.
    pub async fn update_endpoint(&self, e: &EndpointRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE online_endpoints SET spec_json = ?, provisioning_state = ?, primary_key_enc = ?, secondary_key_enc = ?, updated_at = ?
             WHERE workspace = ? AND name = ?",
        )
        .bind(&e.spec_json)
        .bind(&e.provisioning_state)
        .bind(&e.primary_key_enc)
        .bind(&e.secondary_key_enc)
        .bind(&e.updated_at)
        .bind(&e.workspace)
        .bind(&e.name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn get_endpoint(&self, ws: &str, name: &str) -> Result<Option<EndpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM online_endpoints WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// All endpoints of a workspace, or of every workspace when `ws` is `None`.
    pub async fn list_endpoints(&self, ws: Option<&str>) -> Result<Vec<EndpointRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM online_endpoints WHERE (? IS NULL OR workspace = ?) ORDER BY workspace, name")
            .bind(ws)
            .bind(ws)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn delete_endpoint(&self, ws: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM online_endpoints WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
