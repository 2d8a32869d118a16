//! Mirrored traffic: a copy of a share of live requests goes to a shadow deployment; its answer
//! is compared with the live one and discarded.
//!
//! **Invariant.** A mirror never changes, delays or fails the live response: the copy runs in
//! its own task after the live answer is known, and when the mirror is saturated the copy is
//! dropped (shed first), never queued.

use crate::proxy::{Outgoing, ReplicaClient, send};
use crate::stats::TrafficStats;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Mirrored copies in flight per mirror deployment before further copies are shed.
const MAX_MIRROR_IN_FLIGHT: usize = 16;

/// One in-flight limit per mirror deployment.
#[derive(Default, Clone)]
pub(crate) struct MirrorLimits {
    inner: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl MirrorLimits {
    fn for_set(&self, key: &str) -> Arc<Semaphore> {
        self.inner
            .lock()
            .expect("mirror limits lock")
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_MIRROR_IN_FLIGHT)))
            .clone()
    }
}

pub(crate) struct MirrorCopy {
    pub replica_set: String,
    pub addr: SocketAddr,
    pub timeout: Duration,
    pub request: Outgoing,
    /// The live answer, when it succeeded, to compare with.
    pub live_body: Option<Bytes>,
}

/// Sends the copy in the background; returns at once.
pub(crate) fn dispatch(client: ReplicaClient, stats: TrafficStats, limits: &MirrorLimits, copy: MirrorCopy) {
    let Ok(permit) = limits.for_set(&copy.replica_set).try_acquire_owned() else {
        stats.record_mirror_shed(&copy.replica_set);
        return;
    };
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = match send(&client, copy.addr, &copy.request, copy.timeout).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let body = tokio::time::timeout(copy.timeout, resp.into_body().collect()).await;
                match body {
                    Ok(Ok(b)) => Some((ok, Some(b.to_bytes()))),
                    _ => Some((false, None)),
                }
            }
            Err(_) => None,
        };
        let (ok, agreed) = match outcome {
            Some((true, Some(mirror_body))) => {
                (true, copy.live_body.as_ref().map(|live| outputs_agree(live, &mirror_body)))
            }
            Some((ok, _)) => (ok, None),
            None => (false, None),
        };
        stats.record_mirror(&copy.replica_set, ok, started.elapsed(), agreed);
        drop(permit);
    });
}

/// Whether two answers say the same thing: equal JSON after dropping per-request fields
/// (`id`, `model_name`, `model_version`), numbers within a relative 1e-4; otherwise equal bytes.
pub fn outputs_agree(a: &[u8], b: &[u8]) -> bool {
    match (serde_json::from_slice::<Value>(a), serde_json::from_slice::<Value>(b)) {
        (Ok(a), Ok(b)) => values_agree(&normalize(a), &normalize(b)),
        _ => a == b,
    }
}

fn normalize(v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            for k in ["id", "model_name", "model_version"] {
                m.remove(k);
            }
            if let Some(Value::Array(outputs)) = m.get_mut("outputs") {
                outputs.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
            }
            Value::Object(m)
        }
        other => other,
    }
}

fn values_agree(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_agree(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_agree(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::outputs_agree;

    #[test]
    fn agreement_ignores_ids_order_and_float_noise() {
        let a = br#"{"id":"1","model_name":"blue","outputs":[{"name":"label","data":[1]},{"name":"p","data":[0.5]}]}"#;
        let b = br#"{"id":"2","model_name":"green","outputs":[{"name":"p","data":[0.50000001]},{"name":"label","data":[1]}]}"#;
        assert!(outputs_agree(a, b));
        let c = br#"{"outputs":[{"name":"label","data":[2]},{"name":"p","data":[0.5]}]}"#;
        assert!(!outputs_agree(a, c));
        assert!(outputs_agree(b"[1,2]", b"[1, 2]"));
        assert!(!outputs_agree(b"not json", b"other"));
    }
}
