//! `GET /metrics`: the gateway's counters, the admission gates and the backend's replica states
//! in the Prometheus text format (version 0.0.4). Every family is declared once in [`FAMILIES`];
//! names follow Prometheus conventions (`sluice_..._total`, `..._seconds`).
//!
//! Unauthenticated, as Prometheus scrapes expect; it names endpoints and deployments and carries
//! no key, token or payload.

use crate::Control;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use sluice_gateway::stats::LATENCY_BUCKETS_US;
use std::fmt::Write;
use std::sync::Arc;

/// (name, type, help) of every family, in output order.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "sluice_requests_total",
        "counter",
        "Answers the gateway gave for a deployment, by HTTP status code (429s included).",
    ),
    ("sluice_request_errors_total", "counter", "Answers that were the deployment's fault: 5xx, 408 and 424."),
    (
        "sluice_requests_refused_total",
        "counter",
        "Requests refused with 429 at admission (queue full or waited max_queue_wait_ms).",
    ),
    (
        "sluice_request_duration_seconds",
        "histogram",
        "Time from arrival at the gateway to the answer, queue wait included.",
    ),
    (
        "sluice_request_queue_wait_seconds",
        "histogram",
        "Time a request waited for a slot in the deployment's admission queue.",
    ),
    ("sluice_request_replica_seconds", "histogram", "Time from sending a request to a replica to its answer."),
    ("sluice_requests_in_flight", "gauge", "Requests holding a slot of the deployment now."),
    ("sluice_requests_queued", "gauge", "Requests waiting for a slot of the deployment now."),
    ("sluice_replicas_desired", "gauge", "Replicas the deployment asks for."),
    ("sluice_replicas_ready", "gauge", "Replicas of the current generation that are ready and in rotation."),
    (
        "sluice_replica_restarts_total",
        "counter",
        "Times a replica of the deployment was started again after it exited or failed liveness.",
    ),
    ("sluice_mirror_requests_total", "counter", "Mirrored copies the deployment received."),
    ("sluice_mirror_errors_total", "counter", "Mirrored copies the deployment failed."),
    ("sluice_mirror_shed_total", "counter", "Mirrored copies dropped because the mirror was saturated."),
    ("sluice_mirror_compared_total", "counter", "Mirrored answers compared with the live answer."),
    ("sluice_mirror_agreed_total", "counter", "Mirrored answers that agreed with the live answer."),
    ("sluice_batch_jobs", "gauge", "Batch jobs by endpoint and status."),
    (
        "sluice_batch_job_mini_batches",
        "gauge",
        "Mini-batches of each queued or running batch job: total, committed, failed.",
    ),
    ("sluice_batch_job_items", "gauge", "Items of each queued or running batch job: scored and failed."),
    ("sluice_serverless_requests_total", "counter", "Requests a serverless endpoint answered (refusals excluded)."),
    (
        "sluice_serverless_requests_refused_total",
        "counter",
        "Requests a serverless endpoint refused with 429 (requests or tokens per minute).",
    ),
    (
        "sluice_serverless_tokens_total",
        "counter",
        "Tokens a serverless endpoint billed, by kind: prompt or completion.",
    ),
    (
        "sluice_serverless_streams_cut_total",
        "counter",
        "Streamed answers the client closed before the engine finished.",
    ),
];

/// Prometheus text format.
pub async fn serve(State(control): State<Arc<Control>>) -> impl IntoResponse {
    let body = render(&control).await;
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// One deployment's samples, keyed by family name.
struct Samples {
    lines: Vec<(&'static str, String)>,
}

impl Samples {
    fn add(&mut self, family: &'static str, labels: &str, value: impl std::fmt::Display) {
        self.lines.push((family, format!("{family}{{{labels}}} {value}")));
    }

    /// A histogram from bucket counts (per bucket, plus the overflow bucket) and a sum in µs.
    fn histogram(&mut self, family: &'static str, labels: &str, buckets: &[u64], sum_us: u64) {
        let mut cumulative = 0;
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BUCKETS_US.get(i) {
                Some(us) => format!("{}", *us as f64 / 1e6),
                None => "+Inf".to_owned(),
            };
            self.lines.push((family, format!("{family}_bucket{{{labels},le=\"{le}\"}} {cumulative}")));
        }
        self.lines.push((family, format!("{family}_sum{{{labels}}} {}", sum_us as f64 / 1e6)));
        self.lines.push((family, format!("{family}_count{{{labels}}} {cumulative}")));
    }
}

async fn render(control: &Control) -> String {
    let mut samples = Samples { lines: Vec::new() };
    let deployments = control.store.list_deployments(None).await.unwrap_or_default();
    for d in &deployments {
        let id = crate::deployments::replica_set_id(&d.workspace, &d.endpoint, &d.name);
        let labels = format!("endpoint=\"{}\",deployment=\"{}\"", escape(&d.endpoint), escape(&d.name));
        let s = control.stats.snapshot(&id.0);
        let detail = control.stats.detail(&id.0);
        for (code, n) in &detail.codes {
            samples.add("sluice_requests_total", &format!("{labels},code=\"{code}\""), n);
        }
        samples.add("sluice_request_errors_total", &labels, s.live.errors);
        samples.add("sluice_requests_refused_total", &labels, s.refused);
        samples.histogram("sluice_request_duration_seconds", &labels, &detail.total.0, detail.total.1);
        samples.histogram("sluice_request_queue_wait_seconds", &labels, &detail.queue_wait.0, detail.queue_wait.1);
        samples.histogram("sluice_request_replica_seconds", &labels, &s.live.latency_buckets, s.live.latency_sum_us);
        let (in_flight, queued) = control.admissions.load(&id.0);
        samples.add("sluice_requests_in_flight", &labels, in_flight);
        samples.add("sluice_requests_queued", &labels, queued);
        let status = control.backend.status(&id);
        samples.add("sluice_replicas_desired", &labels, status.as_ref().map_or(0, |s| s.desired));
        samples.add("sluice_replicas_ready", &labels, status.as_ref().map_or(0, |s| s.ready));
        let restarts: u64 = status.as_ref().map_or(0, |s| s.replicas.iter().map(|r| u64::from(r.restarts)).sum());
        samples.add("sluice_replica_restarts_total", &labels, restarts);
        samples.add("sluice_mirror_requests_total", &labels, s.mirror.requests);
        samples.add("sluice_mirror_errors_total", &labels, s.mirror.errors);
        samples.add("sluice_mirror_shed_total", &labels, s.mirror_shed);
        samples.add("sluice_mirror_compared_total", &labels, s.compared);
        samples.add("sluice_mirror_agreed_total", &labels, s.agreed);
    }
    batch(control, &mut samples).await;
    for (endpoint, t) in control.gateway_meter.totals() {
        let labels = format!("endpoint=\"{}\"", escape(&endpoint));
        samples.add("sluice_serverless_requests_total", &labels, t.requests);
        samples.add("sluice_serverless_requests_refused_total", &labels, t.refused);
        samples.add("sluice_serverless_tokens_total", &format!("{labels},kind=\"prompt\""), t.prompt_tokens);
        samples.add("sluice_serverless_tokens_total", &format!("{labels},kind=\"completion\""), t.completion_tokens);
        samples.add("sluice_serverless_streams_cut_total", &labels, t.streams_cut);
    }
    let mut out = String::new();
    for (name, kind, help) in FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (_, line) in samples.lines.iter().filter(|(f, _)| f == name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&engines(control).await);
    out
}

/// The serverless engines' own families (`sluice_llm_*`), scraped from each engine and labelled
/// with its catalog model. An engine that does not answer within a second is left out.
async fn engines(control: &Control) -> String {
    let ready = control.backend.endpoints().borrow().clone();
    let mut engines: Vec<(&String, &Vec<std::net::SocketAddr>)> =
        ready.iter().filter(|(id, _)| id.starts_with("serverless/")).collect();
    engines.sort();
    let mut declared = std::collections::HashSet::new();
    let mut out = String::new();
    for (id, addrs) in engines {
        let Some(addr) = addrs.first() else { continue };
        let model = escape(id.trim_start_matches("serverless/"));
        let Some(text) = scrape(*addr).await else { continue };
        for line in text.lines() {
            if line.starts_with('#') {
                let family = line.split_whitespace().nth(2).unwrap_or("").to_owned();
                let kind = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                if declared.insert((family, kind)) {
                    out.push_str(line);
                    out.push('\n');
                }
                continue;
            }
            let Some((name, value)) = line.split_once(' ') else { continue };
            let labelled = match name.split_once('{') {
                Some((n, rest)) => format!("{n}{{model=\"{model}\",{rest} {value}"),
                None => format!("{name}{{model=\"{model}\"}} {value}"),
            };
            out.push_str(&labelled);
            out.push('\n');
        }
    }
    out
}

/// `GET /metrics` of one engine over HTTP/1.0 (one short-lived connection on loopback).
async fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: engine\r\n\r\n").await.ok()?;
        let mut buf = Vec::new();
        s.take(1 << 20).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8(buf).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.to_owned())
            .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), fetch).await.ok().flatten()
}

/// Batch jobs: counts by status, and the progress of those not finished.
async fn batch(control: &Control, samples: &mut Samples) {
    let Ok(jobs) = control.store.list_batch_jobs(sluice_api::DEFAULT_WORKSPACE, None).await else { return };
    let mut by_status: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for job in &jobs {
        *by_status.entry((job.endpoint.clone(), job.status.clone())).or_default() += 1;
        if !matches!(job.status.as_str(), "Queued" | "Running" | "NotStarted") {
            continue;
        }
        let Ok(c) = control.store.mini_batch_counts(&job.workspace, &job.name).await else { continue };
        let labels = format!(
            "endpoint=\"{}\",deployment=\"{}\",job=\"{}\"",
            escape(&job.endpoint),
            escape(&job.deployment),
            escape(&job.name)
        );
        for (state, n) in [("total", c.total), ("committed", c.committed), ("failed", c.failed)] {
            samples.add("sluice_batch_job_mini_batches", &format!("{labels},state=\"{state}\""), n);
        }
        for (state, n) in [("scored", c.items), ("failed", c.failed_items)] {
            samples.add("sluice_batch_job_items", &format!("{labels},state=\"{state}\""), n);
        }
    }
    for ((endpoint, status), n) in by_status {
        samples.add("sluice_batch_jobs", &format!("endpoint=\"{}\",status=\"{status}\"", escape(&endpoint)), n);
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_with_inf_sum_and_count() {
        let mut s = Samples { lines: Vec::new() };
        let mut buckets = vec![0; LATENCY_BUCKETS_US.len() + 1];
        buckets[0] = 2;
        buckets[3] = 1;
        *buckets.last_mut().unwrap() = 1;
        s.histogram("h", "a=\"b\"", &buckets, 2_500_000);
        let lines: Vec<&str> = s.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines[0], "h_bucket{a=\"b\",le=\"0.0001\"} 2");
        assert_eq!(lines[3], "h_bucket{a=\"b\",le=\"0.001\"} 3");
        assert_eq!(lines[LATENCY_BUCKETS_US.len()], "h_bucket{a=\"b\",le=\"+Inf\"} 4");
        assert_eq!(lines[lines.len() - 2], "h_sum{a=\"b\"} 2.5");
        assert_eq!(lines[lines.len() - 1], "h_count{a=\"b\"} 4");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
