//! Progressive rollouts and their progress, so a restarted server carries on where it was.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RolloutRow {
    pub workspace: String,
    pub endpoint: String,
    pub id: String,
    pub spec_json: String,
    pub state: String,
    pub step_index: i64,
    pub step_started_ms: i64,
    pub baseline_json: String,
    pub server_epoch: String,
    pub original_traffic_json: String,
    pub history_json: String,
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// Records a new rollout and the endpoint's first-step traffic in one transaction.
    pub async fn insert_rollout(&self, r: &RolloutRow, endpoint: &crate::EndpointRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO rollouts (workspace, endpoint, id, spec_json, state, step_index, step_started_ms, baseline_json,
             server_epoch, original_traffic_json, history_json, message, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.workspace)
        .bind(&r.endpoint)
        .bind(&r.id)
        .bind(&r.spec_json)
        .bind(&r.state)
        .bind(r.step_index)
        .bind(r.step_started_ms)
        .bind(&r.baseline_json)
        .bind(&r.server_epoch)
        .bind(&r.original_traffic_json)
        .bind(&r.history_json)
        .bind(&r.message)
        .bind(&r.created_at)
        .bind(&r.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        sqlx::query("UPDATE online_endpoints SET spec_json = ?, updated_at = ? WHERE workspace = ? AND name = ?")
            .bind(&endpoint.spec_json)
            .bind(&endpoint.updated_at)
            .bind(&endpoint.workspace)
            .bind(&endpoint.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a rollout's progress, and with it the endpoint's new traffic when given, in one
    /// transaction: only if the rollout is still in `expected_state` (an abort that raced the
    /// driver wins); false otherwise, and nothing is written.
    pub async fn update_rollout(
        &self,
        r: &RolloutRow,
        expected_state: &str,
        endpoint: Option<&crate::EndpointRow>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE rollouts SET state = ?, step_index = ?, step_started_ms = ?, baseline_json = ?, server_epoch = ?,
             history_json = ?, message = ?, updated_at = ?
             WHERE workspace = ? AND endpoint = ? AND id = ? AND state = ?",
        )
        .bind(&r.state)
        .bind(r.step_index)
        .bind(r.step_started_ms)
        .bind(&r.baseline_json)
        .bind(&r.server_epoch)
        .bind(&r.history_json)
        .bind(&r.message)
        .bind(&r.updated_at)
        .bind(&r.workspace)
        .bind(&r.endpoint)
        .bind(&r.id)
        .bind(expected_state)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(e) = endpoint {
            sqlx::query("UPDATE online_endpoints SET spec_json = ?, updated_at = ? WHERE workspace = ? AND name = ?")
                .bind(&e.spec_json)
                .bind(&e.updated_at)
                .bind(&e.workspace)
                .bind(&e.name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The newest rollout of an endpoint.
    pub async fn latest_rollout(&self, ws: &str, endpoint: &str) -> Result<Option<RolloutRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM rollouts WHERE workspace = ? AND endpoint = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )
        .bind(ws)
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every rollout in `state`.
    pub async fn rollouts_in_state(&self, state: &str) -> Result<Vec<RolloutRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM rollouts WHERE state = ? ORDER BY created_at")
            .bind(state)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Forgets an endpoint's rollouts (the endpoint was deleted).
    pub async fn delete_rollouts(&self, ws: &str, endpoint: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM rollouts WHERE workspace = ? AND endpoint = ?")
            .bind(ws)
            .bind(endpoint)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
