//! Online deployments: spec, the model it resolved to, and where the reconciler has got to.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeploymentRow {
    pub workspace: String,
    pub endpoint: String,
    pub name: String,
    pub spec_json: String,
    pub model_name: String,
    pub model_version: String,
    /// Bumped by every update; replicas of an older generation are replaced.
    pub generation: i64,
    pub provisioning_state: String,
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub async fn insert_deployment(&self, d: &DeploymentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO online_deployments (workspace, endpoint, name, spec_json, model_name, model_version, generation, provisioning_state, message, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    /// Replaces the spec and bumps the generation; false if the deployment is gone.
    pub async fn update_deployment_spec(&self, d: &DeploymentRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE online_deployments SET spec_json = ?, model_name = ?, model_version = ?, generation = generation + 1,
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
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records the reconciler's progress, only if the deployment is still at `generation` (an
    /// update that raced it wins).
    pub async fn set_deployment_state(
        &self,
        key: (&str, &str, &str),
        generation: i64,
        state: &str,
        message: Option<&str>,
        now: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE online_deployments SET provisioning_state = ?, message = ?, updated_at = ?
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

    pub async fn get_deployment(&self, ws: &str, ep: &str, name: &str) -> Result<Option<DeploymentRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM online_deployments WHERE workspace = ? AND endpoint = ? AND name = ?")
            .bind(ws)
            .bind(ep)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deployments of one endpoint, or every deployment when `key` is `None`.
    pub async fn list_deployments(&self, key: Option<(&str, &str)>) -> Result<Vec<DeploymentRow>, StoreError> {
        let (ws, ep) = key.unzip();
        Ok(sqlx::query_as(
            "SELECT * FROM online_deployments WHERE (? IS NULL OR (workspace = ? AND endpoint = ?)) ORDER BY workspace, endpoint, name",
        )
        .bind(ws)
        .bind(ws)
        .bind(ep)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_deployment(&self, ws: &str, ep: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM online_deployments WHERE workspace = ? AND endpoint = ? AND name = ?")
            .bind(ws)
            .bind(ep)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> DeploymentRow {
        DeploymentRow {
            workspace: "default".into(),
            endpoint: "ep1".into(),
            name: "blue".into(),
            spec_json: "{}".into(),
            model_name: "iris".into(),
            model_version: "1".into(),
            generation: 1,
            provisioning_state: state.into(),
            message: None,
            created_at: "t0".into(),
            updated_at: "t0".into(),
        }
    }

    #[tokio::test]
    async fn deployments_survive_reopen_and_stale_states_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).await.unwrap();
            store.insert_deployment(&row("Creating")).await.unwrap();
            assert!(matches!(store.insert_deployment(&row("Creating")).await, Err(StoreError::Conflict)));
            assert!(store.update_deployment_spec(&row("Updating")).await.unwrap());
            // The reconciler finishing generation 1 after the update must not overwrite it.
            assert!(!store.set_deployment_state(("default", "ep1", "blue"), 1, "Succeeded", None, "t1").await.unwrap());
            assert!(
                store.set_deployment_state(("default", "ep1", "blue"), 2, "Failed", Some("boom"), "t1").await.unwrap()
            );
        }
        let store = Store::open(&path).await.unwrap();
        let got = store.get_deployment("default", "ep1", "blue").await.unwrap().unwrap();
        assert_eq!(
            (got.generation, got.provisioning_state.as_str(), got.message.as_deref()),
            (2, "Failed", Some("boom"))
        );
        assert_eq!(store.list_deployments(Some(("default", "ep1"))).await.unwrap().len(), 1);
        assert_eq!(store.list_deployments(None).await.unwrap().len(), 1);
        assert!(store.delete_deployment("default", "ep1", "blue").await.unwrap());
        assert!(store.list_deployments(None).await.unwrap().is_empty());
    }
}
