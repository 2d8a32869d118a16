//! Usage records: what ran, per hour, as the cost basis.

use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UsageRow {
    pub workspace: String,
    pub kind: String,
    pub endpoint: String,
    pub deployment: String,
    pub key_name: String,
    pub instance_type: String,
    pub hour: String,
    pub instance_seconds: f64,
    pub compute_seconds: f64,
    pub tokens: i64,
}

impl Store {
    /// Adds `u`'s amounts to its hour's record, creating it if needed.
    pub async fn add_usage(&self, u: &UsageRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO usage (workspace, kind, endpoint, deployment, key_name, instance_type, hour,
                                instance_seconds, compute_seconds, tokens)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (workspace, kind, endpoint, deployment, key_name, hour) DO UPDATE SET
                instance_type = excluded.instance_type,
                instance_seconds = instance_seconds + excluded.instance_seconds,
                compute_seconds = compute_seconds + excluded.compute_seconds,
                tokens = tokens + excluded.tokens",
        )
        .bind(&u.workspace)
        .bind(&u.kind)
        .bind(&u.endpoint)
        .bind(&u.deployment)
        .bind(&u.key_name)
        .bind(&u.instance_type)
        .bind(&u.hour)
        .bind(u.instance_seconds)
        .bind(u.compute_seconds)
        .bind(u.tokens)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records of `ws` (one endpoint's, when given) from the hour containing `since` on, oldest first.
    pub async fn list_usage(
        &self,
        ws: &str,
        endpoint: Option<&str>,
        since_hour: Option<&str>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM usage WHERE workspace = ? AND (? IS NULL OR endpoint = ?) AND (? IS NULL OR hour >= ?)
             ORDER BY hour, kind, endpoint, deployment, key_name",
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
