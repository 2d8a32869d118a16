//! The reconciler: drives each deployment from its stored desired state to running replicas,
//! records the outcome as `provisioning_state`, and publishes the gateway's routing table.
//!
//! It runs one pass whenever an API call wakes it (and every few seconds), so a server that was
//! killed and started again converges on the same world from the store alone.

use crate::deployments::replica_set_id;
use crate::replica_plan::{Serving, replica_set};
use crate::secrets::Secrets;
use crate::{ArtifactStore, clock};
use sluice_api::deployment::OnlineDeploymentSpec;
use sluice_api::endpoint::OnlineEndpointSpec;
use sluice_api::validate;
use sluice_backend::LocalBackend;
use sluice_domain::{
    Autoscale, EnvironmentChoice, ProvisioningState, ScaleSettings, ValidDeployment, ValidEnvironment,
};
use sluice_gateway::auth::key_hash;
use sluice_gateway::{DeploymentRoute, EndpointRoute, RoutingTable};
use sluice_store::{DeploymentRow, Store};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How a replica process is started.
#[derive(Debug, Clone)]
pub struct ReplicaLaunch {
    /// The `sluice` binary itself; replicas run `sluice replica ...`.
    pub program: PathBuf,
    pub onnxruntime: PathBuf,
    pub work_dir: PathBuf,
    /// The Python interpreter that runs scoring scripts.
    pub python: PathBuf,
    /// How long a new replica set may take to become ready.
    pub ready_timeout: Duration,
}

#[derive(Clone)]
pub struct Reconciler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    backend: LocalBackend,
    artifacts: ArtifactStore,
    secrets: Arc<Secrets>,
    launch: ReplicaLaunch,
    routes: watch::Sender<Arc<RoutingTable>>,
    environments: crate::environments::EnvironmentBuilder,
    stats: sluice_gateway::TrafficStats,
    publish_lock: tokio::sync::Mutex<()>,
    wake: Notify,
    /// Counts deployments that finished converging (to `Succeeded` or `Failed`).
    settled: watch::Sender<u64>,
    /// Deployments with a task working on them: (workspace, endpoint, name, generation).
    inflight: Mutex<HashSet<(String, String, String, i64)>>,
}

impl Reconciler {
    pub fn new(
        store: Store,
        backend: LocalBackend,
        artifacts: ArtifactStore,
        secrets: Arc<Secrets>,
        launch: ReplicaLaunch,
        stats: sluice_gateway::TrafficStats,
    ) -> (Self, watch::Receiver<Arc<RoutingTable>>) {
        let (routes, rx) = watch::channel(Arc::new(RoutingTable::default()));
        let environments =
            crate::environments::EnvironmentBuilder::new(launch.work_dir.join("envs"), launch.python.clone());
        let inner = Inner {
            store,
            backend,
            artifacts,
            secrets,
            launch,
            routes,
            environments,
            stats,
            publish_lock: Default::default(),
            wake: Notify::new(),
            settled: watch::Sender::new(0),
            inflight: Default::default(),
        };
        (Self { inner: Arc::new(inner) }, rx)
    }

    /// Asks for a pass as soon as possible.
    /// The environment builder deployments and registered environments share.
    pub fn environments(&self) -> &crate::environments::EnvironmentBuilder {
        &self.inner.environments
    }

    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Changes each time a deployment finishes converging (to `Succeeded` or `Failed`), after its
    /// state is stored and the routing table published.
    pub fn settled(&self) -> watch::Receiver<u64> {
        self.inner.settled.subscribe()
    }

    /// Runs passes forever; spawn it once.
    pub async fn run(self) {
        loop {
            self.pass().await;
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
        }
    }

    async fn pass(&self) {
        let rows = match self.inner.store.list_deployments(None).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reconciler cannot read deployments");
                return;
            }
        };
        for row in rows {
            let state = ProvisioningState::parse(&row.provisioning_state);
            let id = replica_set_id(&row.workspace, &row.endpoint, &row.name);
            let needs_work = match state {
                Some(ProvisioningState::Creating | ProvisioningState::Updating | ProvisioningState::Deleting) => true,
                // After a restart the store says Succeeded but no replica runs yet.
                Some(ProvisioningState::Succeeded) => self.inner.backend.status(&id).is_none(),
                _ => false,
            };
            if !needs_work {
                continue;
            }
            let key = (row.workspace.clone(), row.endpoint.clone(), row.name.clone(), row.generation);
            if !self.inner.inflight.lock().expect("inflight lock").insert(key.clone()) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                if state == Some(ProvisioningState::Deleting) {
                    this.teardown(&row).await;
                } else {
                    this.converge(row).await;
                }
                this.inner.inflight.lock().expect("inflight lock").remove(&key);
                this.wake();
            });
        }
        self.finish_endpoint_deletes().await;
        self.publish_routes().await;
    }

    async fn converge(&self, row: DeploymentRow) {
        let result = self.try_converge(&row).await;
        let (state, message) = match &result {
            Ok(()) => (ProvisioningState::Succeeded, None),
            Err(m) => (ProvisioningState::Failed, Some(m.as_str())),
        };
        if let Some(m) = message {
            tracing::warn!(endpoint = %row.endpoint, deployment = %row.name, reason = %m, "deployment failed");
        }
        let key = (row.workspace.as_str(), row.endpoint.as_str(), row.name.as_str());
        if let Err(e) = self
            .inner
            .store
            .set_deployment_state(key, row.generation, state.as_str(), message, &clock::now_rfc3339())
            .await
        {
            tracing::error!(error = %e, "cannot record deployment state");
        }
        self.publish_routes().await;
        self.inner.settled.send_modify(|n| *n += 1);
    }

    async fn try_converge(&self, row: &DeploymentRow) -> Result<(), String> {
        let spec: OnlineDeploymentSpec =
            serde_json::from_str(&row.spec_json).map_err(|e| format!("stored spec unreadable: {e}"))?;
        let valid = validate::deployment(&spec)
            .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
        let model = self
            .inner
            .store
            .get_model(&row.workspace, &row.model_name, &row.model_version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("model {}:{} no longer exists", row.model_name, row.model_version))?;
        let dir = self
            .inner
            .artifacts
            .path_of(&model.artifact, &model.path)
            .ok_or("model artifact reference is malformed")?;
        let environment = self.environment_of(row, &valid).await?;
        let launch = &self.inner.launch;
        let spec = match (environment.as_ref().and_then(|e| e.container.as_ref()), &valid.code) {
            (Some(container), code) => {
                let cwd = match code {
                    Some(code) => self.code_dir(&code.code)?,
                    None => dir.clone(),
                };
                replica_set(launch, row, &valid, Serving::Command { container, cwd, model_dir: dir })
            }
            (None, Some(code)) => {
                let python = self.python_for(row, environment.as_ref().and_then(|e| e.pip.as_ref())).await?;
                let code_dir = self.code_dir(&code.code)?;
                let scoring_script = &code.scoring_script;
                replica_set(launch, row, &valid, Serving::Script { code_dir, scoring_script, model_dir: dir, python })
            }
            (None, None) => match model.model_type.as_str() {
                "triton_model" => {
                    replica_set(launch, row, &valid, Serving::Native { format: "triton", model_dir: dir })
                }
                "mlflow_model" if mlflow_flavors(&dir)?.iter().any(|f| f == "onnx") => {
                    replica_set(launch, row, &valid, Serving::Native { format: "mlflow", model_dir: dir })
                }
                "mlflow_model" => {
                    // As Azure ML does for MLflow models without code: the model's own conda
                    // file is the environment unless the deployment gives one.
                    let plan = match environment.and_then(|e| e.pip) {
                        Some(plan) => Some(plan),
                        None => model_conda_plan(&dir)?,
                    };
                    let python = self.python_for(row, plan.as_ref()).await?;
                    replica_set(launch, row, &valid, Serving::MlflowScript { model_dir: dir, python })
                }
                other => return Err(format!("model type {other} needs a scoring script or a custom container")),
            },
        };
        let id = spec.id.clone();
        self.inner.backend.apply(spec).await.map_err(|e| e.to_string())?;
        self.inner.backend.wait_ready(&id, self.inner.launch.ready_timeout).await.map_err(|e| e.to_string())
    }

    /// The deployment's environment: inline, or the registered version its spec names.
    async fn environment_of(
        &self,
        row: &DeploymentRow,
        valid: &ValidDeployment,
    ) -> Result<Option<ValidEnvironment>, String> {
        match &valid.environment {
            None => Ok(None),
            Some(EnvironmentChoice::Inline(e)) => Ok(Some(e.clone())),
            Some(EnvironmentChoice::Registered { name, version }) => {
                let version = version.as_deref().ok_or("the environment reference was not pinned to a version")?;
                let env = self
                    .inner
                    .store
                    .get_environment(&row.workspace, name, version)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("environment {name}:{version} no longer exists"))?;
                crate::registered_environments::valid(&env).map(Some)
            }
        }
    }

    /// The Python to run workers with: the environment's, built first if needed, or the default.
    async fn python_for(&self, row: &DeploymentRow, plan: Option<&sluice_domain::PipPlan>) -> Result<PathBuf, String> {
        let Some(plan) = plan else { return Ok(self.inner.launch.python.clone()) };
        let key = (row.workspace.as_str(), row.endpoint.as_str(), row.name.as_str());
        let building = "building the environment (pip install of its conda file)";
        let _ = self
            .inner
            .store
            .set_deployment_state(key, row.generation, &row.provisioning_state, Some(building), &clock::now_rfc3339())
            .await;
        self.inner.environments.ensure(plan).await
    }

    fn code_dir(&self, code: &str) -> Result<PathBuf, String> {
        let top = self.inner.artifacts.top_level(code).ok_or("the code folder's upload is missing")?;
        Ok(self.inner.artifacts.path_of(code, &top).ok_or("code artifact reference is malformed")?)
    }

    async fn teardown(&self, row: &DeploymentRow) {
        let id = replica_set_id(&row.workspace, &row.endpoint, &row.name);
        self.inner.backend.remove(&id).await;
        self.inner.stats.remove(&id.0);
        if let Err(e) = self.inner.store.delete_deployment(&row.workspace, &row.endpoint, &row.name).await {
            tracing::error!(error = %e, "cannot delete deployment row");
        }
        self.publish_routes().await;
    }

    /// Endpoints marked Deleting disappear once their last deployment is gone.
    async fn finish_endpoint_deletes(&self) {
        let Ok(endpoints) = self.inner.store.list_endpoints(None).await else { return };
        for ep in endpoints.iter().filter(|e| e.provisioning_state == ProvisioningState::Deleting.as_str()) {
            let remaining =
                self.inner.store.list_deployments(Some((&ep.workspace, &ep.name))).await.map(|d| d.len()).unwrap_or(1);
            if remaining == 0 {
                let _ = self.inner.store.delete_rollouts(&ep.workspace, &ep.name).await;
                let _ = self.inner.store.delete_endpoint(&ep.workspace, &ep.name).await;
            }
        }
    }

    /// Rebuilds the gateway's routing table from the store and publishes it.
    pub async fn publish_routes(&self) {
        let _serial = self.inner.publish_lock.lock().await;
        match self.build_routes().await {
            Ok(table) => {
                self.inner.routes.send_replace(Arc::new(table));
            }
            Err(e) => tracing::error!(error = %e, "cannot build routing table"),
        }
    }

    async fn build_routes(&self) -> Result<RoutingTable, sluice_store::StoreError> {
        let store = &self.inner.store;
        let deleting = ProvisioningState::Deleting.as_str();
        let mut endpoints = sluice_gateway::FastMap::default();
        for ep in store.list_endpoints(None).await?.into_iter().filter(|e| e.provisioning_state != deleting) {
            let Ok(spec) = serde_json::from_str::<OnlineEndpointSpec>(&ep.spec_json) else { continue };
            let hash = |enc: &str| self.inner.secrets.decrypt(enc).map(|k| key_hash(&k)).unwrap_or([0xff; 32]);
            let mut deployments = sluice_gateway::FastMap::default();
            for d in store
                .list_deployments(Some((&ep.workspace, &ep.name)))
                .await?
                .into_iter()
                .filter(|d| d.provisioning_state != deleting)
            {
                let spec = serde_json::from_str::<OnlineDeploymentSpec>(&d.spec_json).ok();
                let valid = spec.as_ref().and_then(|s| validate::deployment(s).ok());
                let cold_start_timeout_ms = match &valid {
                    Some(ValidDeployment {
                        scale:
                            ScaleSettings::TargetUtilization(Autoscale { min_instances: 0, cold_start_timeout_ms, .. }),
                        ..
                    }) => Some(*cold_start_timeout_ms),
                    _ => None,
                };
                let collect = valid.and_then(|v| v.data_collection).map(Arc::new);
                let settings = spec.map(|s| s.request_settings).unwrap_or_default();
                let replica_set = replica_set_id(&d.workspace, &d.endpoint, &d.name).0;
                let route = DeploymentRoute {
                    replica_set,
                    request_timeout_ms: settings.request_timeout_ms,
                    max_concurrent_per_instance: settings.max_concurrent_requests_per_instance,
                    max_queue_wait_ms: settings.max_queue_wait_ms,
                    cold_start_timeout_ms,
                    collect,
                };
                deployments.insert(d.name, route);
            }
            let traffic = spec
                .traffic
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_i64()?).ok()?)))
                .filter(|(k, w)| *w > 0 && deployments.contains_key(k))
                .collect();
            let mirror = spec
                .mirror_traffic
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_i64()?).ok()?)))
                .find(|(k, w)| *w > 0 && deployments.contains_key(k));
            let route = EndpointRoute {
                uid: ep.uid.clone(),
                auth_mode: spec.auth_mode.into(),
                key_hashes: [hash(&ep.primary_key_enc), hash(&ep.secondary_key_enc)],
                traffic,
                mirror,
                deployments,
            };
            endpoints.insert(ep.name, route);
        }
        let serverless = crate::serverless::routes_of(store, &self.inner.secrets).await?;
        Ok(RoutingTable { endpoints, serverless })
    }
}

/// The flavors an MLflow model folder's `MLmodel` file lists.
fn mlflow_flavors(dir: &Path) -> Result<Vec<String>, String> {
    let file = dir.join("MLmodel");
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("the MLflow model has no readable MLmodel file: {e}"))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("MLmodel is not valid YAML: {e}"))?;
    let flavors = doc.get("flavors").and_then(|f| f.as_mapping()).ok_or("MLmodel lists no flavors")?;
    Ok(flavors.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
}

/// The packages an MLflow model folder's `conda.yaml` asks for, if it has one.
fn model_conda_plan(dir: &Path) -> Result<Option<sluice_domain::PipPlan>, String> {
    let file = dir.join("conda.yaml");
    let Ok(text) = std::fs::read_to_string(&file) else { return Ok(None) };
    let doc: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("the model's conda.yaml is not valid YAML: {e}"))?;
    sluice_api::environment::conda_plan(&doc).map(Some).map_err(|errs| {
        let what: Vec<String> = errs.into_iter().map(|(f, m)| format!("{f}: {m}")).collect();
        format!("the model's conda.yaml: {}", what.join("; "))
    })
}
