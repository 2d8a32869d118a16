//! Compute pools (`sluice compute`).

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ComputeRow {
    pub workspace: String,
    pub name: String,
    pub spec_json: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// Stores a new pool (`Conflict` when the name is taken).
    pub async fn insert_compute(&self, c: &ComputeRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO computes (workspace, name, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&c.workspace)
            .bind(&c.name)
            .bind(&c.spec_json)
            .bind(&c.created_at)
            .bind(&c.updated_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    /// Stores `c` only when the workspace has no pool at all (a fresh install's default);
    /// true when it was stored.
    pub async fn insert_first_compute(&self, c: &ComputeRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO computes (workspace, name, spec_json, created_at, updated_at)
             SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM computes WHERE workspace = ?)",
        )
        .bind(&c.workspace)
        .bind(&c.name)
        .bind(&c.spec_json)
        .bind(&c.created_at)
        .bind(&c.updated_at)
        .bind(&c.workspace)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Replaces a pool's spec; false when it does not exist.
    pub async fn update_compute(&self, c: &ComputeRow) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE computes SET spec_json = ?, updated_at = ? WHERE workspace = ? AND name = ?")
            .bind(&c.spec_json)
            .bind(&c.updated_at)
            .bind(&c.workspace)
            .bind(&c.name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn get_compute(&self, ws: &str, name: &str) -> Result<Option<ComputeRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM computes WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every pool of a workspace (of every workspace with `None`), by name.
    pub async fn list_computes(&self, ws: Option<&str>) -> Result<Vec<ComputeRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM computes WHERE (? IS NULL OR workspace = ?) ORDER BY workspace, name")
            .bind(ws)
            .bind(ws)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Deletes a pool; false when it did not exist.
    pub async fn delete_compute(&self, ws: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM computes WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> ComputeRow {
        ComputeRow {
            workspace: "default".into(),
            name: name.into(),
            spec_json: "{}".into(),
            created_at: "t0".into(),
            updated_at: "t0".into(),
        }
    }

    #[tokio::test]
    async fn the_first_pool_is_stored_once_and_pools_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        assert!(store.insert_first_compute(&row("cpu-cluster")).await.unwrap());
        assert!(!store.insert_first_compute(&row("other")).await.unwrap(), "only into an empty workspace");
        store.insert_compute(&row("gpu-pool")).await.unwrap();
        assert!(matches!(store.insert_compute(&row("gpu-pool")).await, Err(StoreError::Conflict)));
        let names: Vec<String> =
            store.list_computes(Some("default")).await.unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["cpu-cluster", "gpu-pool"]);
        assert!(store.update_compute(&ComputeRow { spec_json: "{\"a\":1}".into(), ..row("gpu-pool") }).await.unwrap());
        assert_eq!(store.get_compute("default", "gpu-pool").await.unwrap().unwrap().spec_json, "{\"a\":1}");
        assert!(store.delete_compute("default", "cpu-cluster").await.unwrap());
        assert!(!store.delete_compute("default", "cpu-cluster").await.unwrap());
        assert!(!store.update_compute(&row("cpu-cluster")).await.unwrap());
        assert!(!store.insert_first_compute(&row("cpu-cluster")).await.unwrap(), "gpu-pool is still there");
    }
}
