//! Uploaded model files: a gzip'd tar whose SHA-256 names the folder it unpacks into, so the
//! same content is stored once and a stored artifact never changes.

use crate::{ApiError, Control};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sluice_api::model::Artifact;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Largest upload accepted, compressed.
pub const MAX_UPLOAD_BYTES: u64 = 4 << 30;
/// Largest unpacked size and entry count, against archive bombs.
const MAX_UNPACKED_BYTES: u64 = 16 << 30;
const MAX_ENTRIES: u64 = 100_000;

/// Content-addressed artifact folders under `<data-dir>/artifacts/sha256/<hex>/`.
#[derive(Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn dir(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(hex)
    }

    /// The registered folder (or file) of an artifact: `<artifact dir>/<path>`.
    pub fn path_of(&self, artifact: &str, path: &str) -> Option<PathBuf> {
        let hex = artifact.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        Some(self.dir(hex).join(path))
    }

    /// Whether an artifact was uploaded; returns its top-level name.
    pub fn top_level(&self, artifact: &str) -> Option<String> {
        let dir = self.path_of(artifact, "")?;
        let mut names =
            std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned());
        names.next()
    }

    /// Spools the body to disk while hashing it, then unpacks it (off the async runtime).
    async fn ingest(&self, body: Body) -> Result<Artifact, ApiError> {
        let spool_dir = self.root.join("incoming");
        tokio::fs::create_dir_all(&spool_dir).await.map_err(internal)?;
        let spool = tempfile::NamedTempFile::new_in(&spool_dir).map_err(internal)?;
        let mut file = tokio::fs::File::from_std(spool.reopen().map_err(internal)?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                let too_large =
                    || ApiError::PayloadTooLarge(format!("artifact larger than {} GiB", MAX_UPLOAD_BYTES >> 30));
                crate::bodies::unreadable(&e, too_large, || ApiError::BadRequest(format!("upload interrupted: {e}")))
            })?;
            size += chunk.len() as u64;
            if size > MAX_UPLOAD_BYTES {
                return Err(ApiError::PayloadTooLarge(format!("artifact larger than {} GiB", MAX_UPLOAD_BYTES >> 30)));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        if size == 0 {
            return Err(ApiError::BadRequest(
                "empty upload: expected a gzip-compressed tar of the model folder".into(),
            ));
        }
        let hex = hex::encode(hasher.finalize());
        let target = self.dir(&hex);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || unpack(spool.path(), &root, &target, &hex))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

fn internal(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("artifact storage: {e}"))
}

/// Unpacks into a scratch folder and renames it into place, so a crash leaves no half artifact.
fn unpack(archive: &Path, root: &Path, target: &Path, hex: &str) -> Result<Artifact, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("invalid artifact archive: {m}"));
    let scratch = tempfile::tempdir_in(root.join("incoming")).map_err(internal)?;
    let file = std::fs::File::open(archive).map_err(internal)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    let mut top: Option<String> = None;
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if path.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!("entry {} leaves the archive root", path.display())));
        }
        let first = path.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        match &top {
            None => top = Some(first),
            Some(t) if *t != first => return Err(bad("expected exactly one top-level folder or file".into())),
            _ => {}
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!("entry {} is not a regular file or folder (links are refused)", path.display())));
        }
        if kind.is_file() {
            files += 1;
            bytes += entry.header().size().unwrap_or(0);
            if bytes > MAX_UNPACKED_BYTES {
                return Err(bad(format!("unpacks to more than {} GiB", MAX_UNPACKED_BYTES >> 30)));
            }
        }
        entry.unpack_in(scratch.path()).map_err(|e| bad(e.to_string()))?;
    }
    let path = top.ok_or_else(|| bad("the archive is empty".into()))?;
    if !target.exists() {
        std::fs::create_dir_all(target.parent().unwrap_or(root)).map_err(internal)?;
        let staged = scratch.keep();
        if let Err(e) = std::fs::rename(&staged, target) {
            let _ = std::fs::remove_dir_all(&staged);
            if !target.exists() {
                return Err(internal(e));
            }
        }
    }
    Ok(Artifact { artifact: format!("sha256:{hex}"), path, files, bytes })
}

pub fn routes() -> Router<Arc<Control>> {
    Router::new().route(
        "/api/v1/workspaces/{workspace}/artifacts",
        post(upload).layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES as usize)),
    )
}

/// Upload model files.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/artifacts", tag = "models",
    params(("workspace" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/gzip", description = "a gzip-compressed tar with one top-level folder or file"),
    responses((status = 201, body = Artifact), (status = 400, body = sluice_api::ErrorBody), (status = 413, body = sluice_api::ErrorBody)))]
pub async fn upload(
    State(control): State<Arc<Control>>,
    axum::extract::Path(workspace): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<Artifact>), ApiError> {
    crate::models::check_workspace(&workspace)?;
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !matches!(ct, "application/gzip" | "application/x-gzip" | "application/octet-stream") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "artifact uploads take 'Content-Type: application/gzip', not {ct:?}"
        )));
    }
    let artifact = control.artifacts.ingest(body).await?;
    Ok((StatusCode::CREATED, axum::Json(artifact)))
}
