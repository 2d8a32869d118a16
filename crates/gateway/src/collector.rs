//! Data collection (`data_collector`): sampled request and response payloads appended as JSON
//! Lines under `<data-dir>/data-collector/<endpoint>/<deployment>/<request|response>/YYYY/MM/DD/
//! HH[/mm].jsonl`, one CloudEvents-style record per payload as Azure ML's collector writes them.
//!
//! Records go through a bounded channel to one writer thread, so the request path never waits on
//! a disk: when the writer falls behind, records are dropped and counted. Files roll with
//! `rolling_rate` and, within one period, every 64 MiB. Credentials are never recorded: only the
//! headers a deployment names in `capture_headers`, minus `NEVER_CAPTURED`.

use base64::Engine;
use bytes::Bytes;
use sluice_domain::{DataCollection, Rolling};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Records waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// A file is rolled over within its period once it reaches this size.
const ROLL_BYTES: u64 = 64 << 20;
/// Payloads larger than this are recorded without their data.
const MAX_PAYLOAD: usize = 4 << 20;

/// Where collected payloads go.
#[derive(Clone)]
pub struct DataCollector {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

struct Record {
    endpoint: String,
    deployment: String,
    collection: &'static str,
    rolling: Rolling,
    at: SystemTime,
    line: String,
}

/// What one record says, besides where it goes.
pub(crate) struct Payload<'a> {
    pub endpoint: &'a str,
    pub deployment: &'a str,
    pub request_id: &'a str,
    pub path: &'a str,
    pub method: &'a str,
    /// Captured request headers (request records only).
    pub headers: Vec<(String, String)>,
    /// The response status (response records only).
    pub status: Option<u16>,
    pub content_type: Option<&'a str>,
    pub body: &'a Bytes,
}

impl DataCollector {
    /// Starts the writer thread under `root`.
    pub fn start(root: PathBuf) -> Self {
        let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let counted = written.clone();
        let spawned = std::thread::Builder::new().name("data-collector".into()).spawn(move || {
            let mut files = Files { root, open: HashMap::new() };
            while let Some(r) = rx.blocking_recv() {
                match files.append(&r) {
                    Ok(()) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, endpoint = %r.endpoint, "cannot write collected data"),
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the data collector; collected data will be dropped");
        }
        Self { tx, dropped: Arc::new(AtomicU64::new(0)), written }
    }

    /// Records written and records dropped because the writer was behind.
    pub fn counts(&self) -> (u64, u64) {
        (self.written.load(Ordering::Relaxed), self.dropped.load(Ordering::Relaxed))
    }

    /// Queues one record (`request` or `response`), or counts it dropped.
    pub(crate) fn offer(&self, settings: &DataCollection, collection: &'static str, p: Payload<'_>) {
        let at = SystemTime::now();
        let mut record = serde_json::json!({
            "specversion": "1.0",
            "id": p.request_id,
            "source": format!("/endpoints/{}/deployments/{}", p.endpoint, p.deployment),
            "type": format!("azureml.inference.{collection}"),
            "time": rfc3339(at),
            "path": p.path,
            "method": p.method,
            "correlationid": p.request_id,
            "xrequestid": p.request_id,
            "modelversion": "default",
            "contentrange": format!("bytes 0-{}/{}", p.body.len().saturating_sub(1), p.body.len()),
        });
        let obj = record.as_object_mut().expect("a JSON object");
        if let Some(ct) = p.content_type {
            obj.insert("datacontenttype".into(), ct.into());
        }
        if let Some(status) = p.status {
            obj.insert("statuscode".into(), status.into());
        }
        if !p.headers.is_empty() {
            let headers: serde_json::Map<String, serde_json::Value> =
                p.headers.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            obj.insert("headers".into(), headers.into());
        }
        if p.body.len() > MAX_PAYLOAD {
            obj.insert("truncated".into(), true.into());
        } else if let Ok(json) = serde_json::from_slice::<serde_json::Value>(p.body) {
            obj.insert("data".into(), json);
        } else if let Ok(text) = std::str::from_utf8(p.body) {
            obj.insert("data".into(), text.into());
        } else {
            obj.insert("data".into(), base64::engine::general_purpose::STANDARD.encode(p.body).into());
            obj.insert("dataencoding".into(), "base64".into());
        }
        let r = Record {
            endpoint: p.endpoint.to_owned(),
            deployment: p.deployment.to_owned(),
            collection,
            rolling: settings.rolling,
            at,
            line: record.to_string(),
        };
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Open files by path, with their sizes.
struct Files {
    root: PathBuf,
    open: HashMap<PathBuf, (std::fs::File, u64)>,
}

impl Files {
    fn append(&mut self, r: &Record) -> std::io::Result<()> {
        let base = self.root.join(safe(&r.endpoint)).join(safe(&r.deployment)).join(r.collection).join(period(r));
        let mut part = 0;
        let path = loop {
            let name = if part == 0 { "data.jsonl".to_owned() } else { format!("data_{part}.jsonl") };
            let path = base.join(name);
            match self.open.get(&path) {
                Some((_, size)) if *size >= ROLL_BYTES => part += 1,
                Some(_) => break path,
                None => {
                    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                    if size >= ROLL_BYTES {
                        part += 1;
                        continue;
                    }
                    std::fs::create_dir_all(&base)?;
                    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                    // Files of earlier periods are done; keep only the current ones open.
                    self.open.retain(|p, _| p.starts_with(&base));
                    self.open.insert(path.clone(), (file, size));
                    break path;
                }
            }
        };
        let (file, size) = self.open.get_mut(&path).expect("opened above");
        let mut line = r.line.clone().into_bytes();
        line.push(b'\n');
        file.write_all(&line)?;
        *size += line.len() as u64;
        Ok(())
    }
}

/// `YYYY/MM/DD/HH` (hour), `.../HH/mm` (minute) or `YYYY/MM/DD` (day), in UTC.
fn period(r: &Record) -> PathBuf {
    let t = time::OffsetDateTime::from(r.at);
    let day = format!("{:04}/{:02}/{:02}", t.year(), u8::from(t.month()), t.day());
    PathBuf::from(match r.rolling {
        Rolling::Day => day,
        Rolling::Hour => format!("{day}/{:02}", t.hour()),
        Rolling::Minute => format!("{day}/{:02}/{:02}", t.hour(), t.minute()),
    })
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Resource names are already restricted, but a path component must never climb.
fn safe(name: &str) -> &Path {
    Path::new(if name.contains('/') || name.starts_with('.') { "_" } else { name })
}
