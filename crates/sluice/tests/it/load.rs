//! A small closed-loop load generator on loopback, counting answers per serving deployment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default, Debug, Clone)]
pub struct Tally {
    /// Successful answers per deployment (from the `azureml-model-deployment` header).
    pub served: BTreeMap<String, u64>,
    /// Failed requests: status and body.
    pub failures: Vec<(u16, String)>,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.served.values().sum()
    }

    pub fn share(&self, deployment: &str) -> f64 {
        let total = self.total();
        if total == 0 { 0.0 } else { *self.served.get(deployment).unwrap_or(&0) as f64 / total as f64 }
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `concurrency` clients each sending `body` to `url` back to back until stopped.
    pub fn start(url: String, key: String, body: Vec<u8>, concurrency: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let client = reqwest::Client::new();
        let tasks = (0..concurrency)
            .map(|_| {
                let (stop, tally, client, url, key, body) =
                    (stop.clone(), tally.clone(), client.clone(), url.clone(), key.clone(), body.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let resp = client
                            .post(&url)
                            .header("authorization", format!("Bearer {key}"))
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        let mut t = tally.lock().unwrap();
                        match resp {
                            Ok(r) if r.status().is_success() => {
                                let d = r
                                    .headers()
                                    .get("azureml-model-deployment")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("?")
                                    .to_owned();
                                *t.served.entry(d).or_default() += 1;
                            }
                            Ok(r) => {
                                let status = r.status().as_u16();
                                drop(t);
                                let text = r.text().await.unwrap_or_default();
                                tally.lock().unwrap().failures.push((status, text));
                            }
                            Err(e) => t.failures.push((0, e.to_string())),
                        }
                    }
                })
            })
            .collect();
        Self { stop, tally, tasks }
    }

    /// What was counted since the last call, starting a fresh count.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap())
    }

    /// Runs the load for a while and returns what it counted in that time; failures are kept
    /// in the result even when they happened in the settling moment.
    /// Requests in flight when it is called (sent under the previous settings) are not counted.
    pub async fn measure(&self, requests_at_least: u64) -> Tally {
        let mut settling = self.take().failures;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        settling.extend(self.take().failures);
        for _ in 0..600 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if self.tally.lock().unwrap().total() >= requests_at_least {
                break;
            }
        }
        let mut t = self.take();
        t.failures.extend(settling);
        t
    }

    pub async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.take()
    }
}
