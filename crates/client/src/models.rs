//! Models and the artifact uploads they point at.

use crate::archive::{self, ArchiveError, PackedArchive};
use crate::{ClientError, SluiceClient};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Method};
use sluice_api::model::{Artifact, Model, ModelCreate};
use std::path::Path;

impl SluiceClient {
    /// Packs `path` (a folder or a single file) into a deterministic tar.gz and uploads it to
    /// `POST /artifacts`; the answer's `artifact` is the content hash to register a model with.
    /// Symbolic links inside the tree are refused.
    pub async fn upload_dir_or_file(&self, path: impl AsRef<Path>) -> Result<Artifact, ClientError> {
        let path = path.as_ref().to_owned();
        let (packed, _summary) = tokio::task::spawn_blocking(move || archive::pack(&path))
            .await
            .map_err(|e| ArchiveError::Io { path: "<archive>".into(), source: std::io::Error::other(e) })??;
        let (body, len) = match packed {
            PackedArchive::Memory(bytes) => {
                let len = bytes.len() as u64;
                (Body::from(bytes), len)
            }
            PackedArchive::File { file, len } => (Body::from(tokio::fs::File::from_std(file)), len),
        };
        self.upload_archive(body, len).await
    }

    /// Uploads an already-built tar.gz (`len` bytes) to `POST /artifacts`.
    pub async fn upload_archive(&self, body: impl Into<Body>, len: u64) -> Result<Artifact, ClientError> {
        // No timeout: a large model on a slow link may take a while; the connect timeout still
        // catches a server that is not there.
        let rb = self
            .authorize(self.http.post(self.api_url(&["artifacts"])))
            .header(CONTENT_TYPE, "application/gzip")
            .header(CONTENT_LENGTH, len)
            .body(body.into());
        self.send_json(rb).await
    }

    /// `PUT /models/{name}/versions/{version}`: registers an uploaded artifact (409 if the
    /// version exists).
    pub async fn create_model(&self, name: &str, version: &str, model: &ModelCreate) -> Result<Model, ClientError> {
        self.call(Method::PUT, &["models", name, "versions", version], Some(model)).await
    }

    /// `GET /models`: every model version in the workspace.
    pub async fn list_models(&self) -> Result<Vec<Model>, ClientError> {
        self.call::<(), _>(Method::GET, &["models"], None).await
    }

    /// `GET /models/{name}/versions`.
    pub async fn list_model_versions(&self, name: &str) -> Result<Vec<Model>, ClientError> {
        self.call::<(), _>(Method::GET, &["models", name, "versions"], None).await
    }

    /// `GET /models/{name}/versions/{version}`; `version` may be `latest`.
    pub async fn get_model(&self, name: &str, version: &str) -> Result<Model, ClientError> {
        self.call::<(), _>(Method::GET, &["models", name, "versions", version], None).await
    }

    /// `DELETE /models/{name}/versions/{version}`.
    pub async fn delete_model(&self, name: &str, version: &str) -> Result<(), ClientError> {
        self.call_no_content(Method::DELETE, &["models", name, "versions", version]).await
    }

    /// The next unused integer version of `name`: one above the highest numeric version, or `1`
    /// when the model has none (or does not exist yet).
    pub async fn next_model_version(&self, name: &str) -> Result<String, ClientError> {
        let versions = match self.list_model_versions(name).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        let highest = versions.iter().filter_map(|m| m.version.parse::<u64>().ok()).max().unwrap_or(0);
        Ok((highest + 1).to_string())
    }
}
