//! Provisioning a batch deployment: its files are checked and its environment is built once,
//! so that jobs start at once (`Creating`/`Updating` → `Succeeded` or `Failed` with the reason).
//! A deployment left half-way by a previous server process is provisioned again.

use super::Batch;
use super::plan::JobPlan;
use super::worker::prepare;
use crate::clock;
use sluice_domain::ProvisioningState;
use sluice_store::BatchDeploymentRow;
use std::sync::Arc;

impl Batch {
    /// Starts provisioning every deployment that is `Creating` or `Updating` and not already
    /// being worked on.
    pub(super) async fn provision_pending(self: &Arc<Self>) {
        let rows = match self.control.store.list_batch_deployments(None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read batch deployments");
                return;
            }
        };
        let busy = [ProvisioningState::Creating.as_str(), ProvisioningState::Updating.as_str()];
        for row in rows.into_iter().filter(|r| busy.contains(&r.provisioning_state.as_str())) {
            let key = (row.workspace.clone(), row.endpoint.clone(), row.name.clone(), row.generation);
            if !self.provisioning.lock().expect("provisioning lock").insert(key.clone()) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                this.provision(&row).await;
                this.provisioning.lock().expect("provisioning lock").remove(&key);
            });
        }
    }

    async fn provision(&self, row: &BatchDeploymentRow) {
        let result = self.check_deployment(row).await;
        let (state, message) = match &result {
            Ok(()) => (ProvisioningState::Succeeded, None),
            Err(m) => (ProvisioningState::Failed, Some(m.as_str())),
        };
        if let Some(m) = message {
            tracing::warn!(endpoint = %row.endpoint, deployment = %row.name, reason = %m, "batch deployment failed");
        }
        let key = (row.workspace.as_str(), row.endpoint.as_str(), row.name.as_str());
        let now = clock::now_rfc3339();
        if let Err(e) =
            self.control.store.set_batch_deployment_state(key, row.generation, state.as_str(), message, &now).await
        {
            tracing::error!(error = %e, "cannot record batch deployment state");
        }
    }

    /// Everything a job of this deployment needs exists, and its environment is built.
    async fn check_deployment(&self, row: &BatchDeploymentRow) -> Result<(), String> {
        let plan = JobPlan::of_deployment(self, row).await?;
        let key = (row.workspace.as_str(), row.endpoint.as_str(), row.name.as_str());
        let building = "building the environment (pip install of its conda file)";
        let _ = self
            .control
            .store
            .set_batch_deployment_state(
                key,
                row.generation,
                &row.provisioning_state,
                Some(building),
                &clock::now_rfc3339(),
            )
            .await;
        let scratch = self.jobs_root().join(".provision");
        prepare(self, &plan, &scratch).await.map(drop)
    }
}
