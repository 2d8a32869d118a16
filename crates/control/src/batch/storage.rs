//! Where jobs read their input and write their output, behind the `object_store` crate: a
//! folder or file on this machine (an absolute path or a `file://` URL), or an S3 bucket
//! (`s3://bucket/prefix`, credentials and endpoint from the server's `AWS_*` environment, as the
//! AWS tools read them). The scheduler and the runner see only [`Location`]: a remote input's
//! objects are staged into the job's folder before a worker gets them (workers read local
//! files, as Azure ML's download mode gives them), and a remote output is the job's local
//! output folder uploaded once the job is done.

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use sluice_api::batch::job::is_object_store_url;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// A job's input or output.
#[derive(Clone)]
pub enum Location {
    /// A path on this machine.
    Local(PathBuf),
    /// A prefix in an object store: `url` as the user wrote it (without a trailing `/`).
    Remote { url: String, store: Arc<dyn ObjectStore>, prefix: StorePath },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "Local({})", p.display()),
            Self::Remote { url, .. } => write!(f, "Remote({url})"),
        }
    }
}

impl Location {
    /// Reads an input or output location. `None` when `text` is neither a URL this server
    /// reads nor an absolute path (the caller says what else it accepts).
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let text = text.trim();
        if is_object_store_url(text) {
            return Some(remote(text));
        }
        let path = PathBuf::from(text.strip_prefix("file://").unwrap_or(text));
        (path.is_absolute() && !text.starts_with("/subscriptions/")).then_some(Ok(Self::Local(path)))
    }

    /// The location as the job shows it.
    pub fn display(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Remote { url, .. } => url.clone(),
        }
    }

    /// The location of `name` below this one, as the job shows it.
    pub fn child(&self, name: &str) -> String {
        match self {
            Self::Local(p) => p.join(name).display().to_string(),
            Self::Remote { url, .. } => format!("{url}/{name}"),
        }
    }
}

fn remote(text: &str) -> Result<Location, String> {
    let url = text.trim_end_matches('/').to_owned();
    let parsed = url::Url::parse(&url).map_err(|e| format!("{text:?}: not a URL: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?}: expected s3://BUCKET/PREFIX"));
    }
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .build()
        .map_err(|e| format!("{url}: {e} (the server reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT from its environment)"))?;
    let prefix = StorePath::from_url_path(parsed.path()).map_err(|e| format!("{url}: {e}"))?;
    Ok(Location::Remote { url, store: Arc::new(store), prefix })
}

/// What a job's input holds: a folder's files, or one file.
pub struct Listing {
    pub is_folder: bool,
    /// What a mini-batch records for each file: a local path, or the object's URL.
    pub files: Vec<String>,
}

/// Every file of an input, sorted by its path below the input (see `plan::list_input`).
pub async fn list(location: &Location) -> Result<Listing, String> {
    match location {
        Location::Local(root) => {
            let root = root.clone();
            let is_folder = root.is_dir();
            let listing = root.clone();
            let files = tokio::task::spawn_blocking(move || super::plan::list_input(&listing))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot list {}: {e}", root.display()))?;
            Ok(Listing { is_folder, files: files.iter().map(|p| p.display().to_string()).collect() })
        }
        Location::Remote { url, store, prefix } => {
            let mut objects: Vec<StorePath> = Vec::new();
            let mut stream = store.list(Some(prefix));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| format!("cannot list {url}: {e}"))?;
                objects.push(meta.location);
            }
            if objects.is_empty() {
                // Not a prefix with objects below it: the URL may name one object.
                return match store.head(prefix).await {
                    Ok(_) => Ok(Listing { is_folder: false, files: vec![url.clone()] }),
                    Err(object_store::Error::NotFound { .. }) => Ok(Listing { is_folder: true, files: Vec::new() }),
                    Err(e) => Err(format!("cannot read {url}: {e}")),
                };
            }
            objects.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
            let files = objects.iter().map(|o| format!("{url}/{}", relative_key(prefix, o))).collect();
            Ok(Listing { is_folder: true, files })
        }
    }
}

/// `key` below `prefix`, as text.
fn relative_key(prefix: &StorePath, key: &StorePath) -> String {
    match key.prefix_match(prefix) {
        Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"),
        None => key.as_ref().to_owned(),
    }
}

/// The local files a worker reads for a mini-batch's `files`: local paths as they are; a remote
/// input's objects downloaded (once; a file already staged is kept) to `staging/<key below the
/// input>`.
pub async fn stage(input: &Location, files: &[String], staging: &Path) -> Result<Vec<String>, String> {
    let Location::Remote { url, store, prefix } = input else { return Ok(files.to_vec()) };
    let mut plan = Vec::with_capacity(files.len());
    for file in files {
        let rel = file.strip_prefix(url.as_str()).unwrap_or(file).trim_start_matches('/');
        let rel = if rel.is_empty() { prefix.filename().unwrap_or("input").to_owned() } else { rel.to_owned() };
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!("{file}: an object name with an empty or '..' part cannot be staged"));
        }
        let key = if file == url {
            prefix.clone()
        } else {
            StorePath::parse(format!("{prefix}/{rel}")).map_err(|e| e.to_string())?
        };
        plan.push((file.clone(), key, staging.join(&rel)));
    }
    // Several objects at once: on a real object store each one is a round trip.
    let fetched: Vec<Result<String, String>> = futures_util::stream::iter(plan)
        .map(|(file, key, target)| {
            let store = Arc::clone(store);
            async move {
                if !tokio::fs::try_exists(&target).await.unwrap_or(false) {
                    download(store.as_ref(), &key, &target).await.map_err(|e| format!("cannot fetch {file}: {e}"))?;
                }
                Ok(target.display().to_string())
            }
        })
        .buffered(STAGE_CONCURRENCY)
        .collect()
        .await;
    fetched.into_iter().collect()
}

/// Objects of one mini-batch fetched at once.
const STAGE_CONCURRENCY: usize = 8;

/// Streams one object to `target` through a temporary file (so a staged file is whole).
async fn download(store: &dyn ObjectStore, key: &StorePath, target: &Path) -> Result<(), String> {
    let dir = target.parent().ok_or("no parent folder")?;
    tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".{}.part", uuid::Uuid::new_v4()));
    let result = async {
        let mut stream = store.get(key).await.map_err(|e| e.to_string())?.into_stream();
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| e.to_string())?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
        }
        out.flush().await.map_err(|e| e.to_string())?;
        tokio::fs::rename(&tmp, target).await.map_err(|e| e.to_string())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

/// Uploads every file of the local folder `from` to the remote output, keeping relative names;
/// returns how many. Re-running it (a server restarted after some uploads) puts the same objects
/// again.
pub async fn upload_folder(output: &Location, from: &Path) -> Result<usize, String> {
    let Location::Remote { url, store, prefix } = output else { return Ok(0) };
    let root = from.to_owned();
    let files = tokio::task::spawn_blocking(move || super::plan::list_input(&root))
        .await
        .map_err(|e| e.to_string())?
        .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(Vec::new()) } else { Err(e) })
        .map_err(|e| format!("cannot list {}: {e}", from.display()))?;
    for file in &files {
        let rel = file.strip_prefix(from).unwrap_or(file).display().to_string();
        let key = StorePath::parse(format!("{prefix}/{rel}")).map_err(|e| format!("{rel}: {e}"))?;
        let mut input = tokio::fs::File::open(file).await.map_err(|e| format!("{}: {e}", file.display()))?;
        let mut writer = object_store::buffered::BufWriter::new(store.clone(), key);
        tokio::io::copy(&mut input, &mut writer).await.map_err(|e| format!("cannot upload {url}/{rel}: {e}"))?;
        writer.shutdown().await.map_err(|e| format!("cannot upload {url}/{rel}: {e}"))?;
    }
    Ok(files.len())
}
