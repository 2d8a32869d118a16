//! The serverless data plane: `/serverless/{name}/...` for every serverless API endpoint.
//!
//! Steps, in order: endpoint lookup (an unknown name answers like a bad key), the key
//! (`api-key` header or `Authorization: Bearer`, as the Azure AI Inference SDK sends both),
//! the endpoint's requests-per-minute and tokens-per-minute windows (429 with `Retry-After`),
//! one proxied hop to the shared engine, and metering: prompt tokens from the engine's
//! `x-sluice-prompt-tokens` header, completion tokens from its `x-sluice-completion-tokens`
//! header or, for a stream, one per chunk that carries content (the engine sends exactly one per
//! token), so a stream the client cuts is billed for what it received.
//!
//! The engine speaks the API itself (validation, chat templates, SSE); the gateway never parses a
//! request body.

use crate::auth::{constant_time_eq, key_hash};
use crate::proxy::{Outgoing, SendError, send};
use crate::routes::GatewayState;
use crate::table::ServerlessRoute;
use crate::telemetry::Trace;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use sluice_domain::engine_headers::{COMPLETION_TOKENS, DEADLINE as DEADLINE_HEADER, PROMPT_TOKENS};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Largest request body a serverless endpoint reads (prompts and embedding batches).
pub const MAX_SERVERLESS_BODY_BYTES: usize = 4 << 20;

/// The longest a serverless request may take, from the gateway's receipt to its last token, unless the server's
/// `serverless_request_timeout_s` says otherwise. The engine gets the remaining budget in `x-sluice-deadline-ms`
/// and stops generating there (a plain answer becomes 408, a stream ends); a client's own, shorter
/// `x-sluice-deadline-ms` wins.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The engine answers at its deadline itself (408 with the tokens it spent); the gateway waits this much longer
/// before it gives up on an engine that does not.
const ENGINE_GRACE: Duration = Duration::from_secs(5);

/// The budget to give the engine: the gateway's limit, or the client's own deadline when shorter.
fn deadline_ms(headers: &HeaderMap, limit: Duration) -> u64 {
    let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    header_u64(headers, DEADLINE_HEADER).map_or(limit, |asked| asked.min(limit))
}

/// Which of the endpoint's two keys a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyName {
    Primary,
    Secondary,
}

impl KeyName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

/// Token and request counts waiting to be written to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Counters since the server started, per endpoint, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerlessTotals {
    pub requests: u64,
    pub refused: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Streams the client closed before the engine finished.
    pub streams_cut: u64,
}

/// The sliding one-minute window of one endpoint: requests and tokens per second.
#[derive(Debug, Default)]
struct Window {
    /// (second, requests, tokens), oldest first, at most 60 seconds old.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl Window {
    fn prune(&mut self, now_s: u64) {
        while self.buckets.front().is_some_and(|(s, _, _)| *s + 60 <= now_s) {
            self.buckets.pop_front();
        }
    }

    fn bucket(&mut self, now_s: u64) -> &mut (u64, u64, u64) {
        if self.buckets.back().is_none_or(|(s, _, _)| *s != now_s) {
            self.buckets.push_back((now_s, 0, 0));
        }
        self.buckets.back_mut().expect("just pushed")
    }

    fn used(&self) -> (u64, u64) {
        self.buckets.iter().fold((0, 0), |(r, t), (_, br, bt)| (r + br, t + bt))
    }

    /// Seconds until enough of the window expires for `over` of one kind (requests when
    /// `requests`) to leave it: the answer's `Retry-After`.
    fn retry_after(&self, now_s: u64, mut over: u64, requests: bool) -> u64 {
        for (s, r, t) in &self.buckets {
            let n = if requests { *r } else { *t };
            if n >= over {
                return (s + 60).saturating_sub(now_s).max(1);
            }
            over -= n;
        }
        60
    }
}

#[derive(Debug, Default)]
struct MeterInner {
    windows: HashMap<String, Window>,
    pending: HashMap<(String, String, KeyName), TokenCounts>,
    totals: HashMap<String, ServerlessTotals>,
}

/// Rate windows and token usage of every serverless endpoint. The control plane drains
/// [`ServerlessMeter::take_pending`] into the store whenever [`ServerlessMeter::changed`] fires.
#[derive(Clone)]
pub struct ServerlessMeter {
    inner: Arc<Mutex<MeterInner>>,
    changed: Arc<Notify>,
    epoch: Instant,
}

impl Default for ServerlessMeter {
    fn default() -> Self {
        Self { inner: Arc::default(), changed: Arc::default(), epoch: Instant::now() }
    }
}

/// Remaining budget after admitting a request, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy)]
struct Budget {
    remaining_requests: u64,
    remaining_tokens: u64,
}

impl ServerlessMeter {
    fn now_s(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// Counts one request against the endpoint's window, or says how long to wait.
    fn admit(&self, endpoint: &str, route: &ServerlessRoute) -> Result<Budget, (u64, String)> {
        let now_s = self.now_s();
        let mut inner = self.inner.lock().expect("meter lock");
        let w = inner.windows.entry(endpoint.to_owned()).or_default();
        w.prune(now_s);
        let (requests, tokens) = w.used();
        let refusal = if requests >= route.requests_per_minute {
            let wait = w.retry_after(now_s, requests + 1 - route.requests_per_minute, true);
            Some((
                wait,
                format!("the endpoint's limit of {} requests per minute is reached", route.requests_per_minute),
            ))
        } else if tokens >= route.tokens_per_minute {
            let wait = w.retry_after(now_s, tokens + 1 - route.tokens_per_minute, false);
            Some((wait, format!("the endpoint's limit of {} tokens per minute is reached", route.tokens_per_minute)))
        } else {
            None
        };
        if let Some(r) = refusal {
            inner.totals.entry(endpoint.to_owned()).or_default().refused += 1;
            return Err(r);
        }
        w.bucket(now_s).1 += 1;
        Ok(Budget {
            remaining_requests: route.requests_per_minute - requests - 1,
            remaining_tokens: route.tokens_per_minute - tokens,
        })
    }

    /// Records what one request used (called once per request, when its answer ends).
    fn record(&self, workspace: &str, endpoint: &str, key: KeyName, prompt: u64, completion: u64, cut: bool) {
        let now_s = self.now_s();
        {
            let mut inner = self.inner.lock().expect("meter lock");
            let w = inner.windows.entry(endpoint.to_owned()).or_default();
            w.prune(now_s);
            w.bucket(now_s).2 += prompt + completion;
            let p = inner.pending.entry((workspace.to_owned(), endpoint.to_owned(), key)).or_default();
            p.requests += 1;
            p.prompt_tokens += prompt;
            p.completion_tokens += completion;
            let t = inner.totals.entry(endpoint.to_owned()).or_default();
            t.requests += 1;
            t.prompt_tokens += prompt;
            t.completion_tokens += completion;
            t.streams_cut += u64::from(cut);
        }
        self.changed.notify_one();
    }

    /// Usage recorded since the last call, per (workspace, endpoint, key).
    pub fn take_pending(&self) -> Vec<((String, String, KeyName), TokenCounts)> {
        self.inner.lock().expect("meter lock").pending.drain().collect()
    }

    /// Puts counts back that could not be written (the next drain retries them).
    pub fn restore(&self, items: Vec<((String, String, KeyName), TokenCounts)>) {
        let mut inner = self.inner.lock().expect("meter lock");
        for (k, c) in items {
            let p = inner.pending.entry(k).or_default();
            p.requests += c.requests;
            p.prompt_tokens += c.prompt_tokens;
            p.completion_tokens += c.completion_tokens;
        }
    }

    /// Resolves when usage was recorded since the last drain.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Counters since the server started, per endpoint.
    pub fn totals(&self) -> Vec<(String, ServerlessTotals)> {
        let mut v: Vec<_> =
            self.inner.lock().expect("meter lock").totals.iter().map(|(k, t)| (k.clone(), *t)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// The Azure AI Inference error shape, with the top-level fields some parsers read.
pub(crate) fn api_error(status: StatusCode, code: &str, text: impl Into<String>) -> Response {
    let text = text.into();
    let body = serde_json::json!({
        "error": { "code": code, "message": text, "status": status.as_u16() },
        "status": status.as_u16(),
        "code": code,
        "message": text,
    });
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(code) {
        r.headers_mut().insert("x-ms-error-code", v);
    }
    r
}

pub(crate) async fn handle_root(state: State<Arc<GatewayState>>, Path(name): Path<String>, req: Request) -> Response {
    handle(state, Path((name, String::new())), req).await
}

pub(crate) async fn handle(
    State(state): State<Arc<GatewayState>>,
    Path((name, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let request_id = crate::routes::request_id(req.headers());
    let started = Instant::now();
    let mut trace = serverless_trace(&state, &name, &rest, &req, &request_id);
    let mut response = serve(&state, &name, &rest, req, &request_id, &mut trace).await;
    let status = response.status();
    // A streamed answer's span moved into its body and ends with the stream.
    trace.finish(status.as_u16());
    tracing::debug!(request_id = %request_id, serverless = %name, path = %rest, status = status.as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0, "serverless request");
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(crate::names::REQUEST_ID, v.clone());
        response.headers_mut().insert(crate::names::MS_REQUEST_ID, v);
    }
    response
}

/// The request's server span, named and described as the `gen_ai` semantic conventions say.
fn serverless_trace(state: &GatewayState, name: &str, rest: &str, req: &Request, request_id: &str) -> Trace {
    if !crate::telemetry::enabled() {
        return Trace::off();
    }
    let path = rest.strip_prefix("v1/").unwrap_or(rest);
    let operation = match path {
        "chat/completions" => Some("chat"),
        "completions" => Some("text_completion"),
        "embeddings" => Some("embeddings"),
        _ => None,
    };
    let model = state.routes.borrow().serverless.get(name).map(|r| r.model.clone());
    let method = req.method().as_str();
    let span_name = match (operation, &model) {
        (Some(op), Some(m)) => format!("{op} {m}"),
        _ => format!("{method} /serverless/{{name}}/{rest}"),
    };
    Trace::server(
        || span_name,
        req.headers(),
        || {
            let mut kv = crate::telemetry::http_attributes(req, format!("/serverless/{{name}}/{rest}"));
            kv.push(KeyValue::new("sluice.serverless_endpoint", name.to_owned()));
            kv.push(KeyValue::new("sluice.request_id", request_id.to_owned()));
            if let Some(op) = operation {
                kv.push(KeyValue::new("gen_ai.operation.name", op));
            }
            if let Some(m) = model {
                kv.push(KeyValue::new("gen_ai.request.model", m));
            }
            kv
        },
    )
}

/// Host-name routing, as Azure's `https://<name>.<region>.models.ai.azure.com`: a request to
/// `http://<name>.<anything>/<path>` that no other route took goes to serverless endpoint
/// `<name>` when there is one (point a wildcard DNS name at the server).
pub(crate) async fn by_host(state: State<Arc<GatewayState>>, req: Request) -> Response {
    let host =
        req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
    let label = host.split(['.', ':']).next().unwrap_or("");
    let known = host.contains('.') && state.routes.borrow().serverless.contains_key(label);
    if !known {
        return api_error(StatusCode::NOT_FOUND, "NotFound", format!("no route for {}", req.uri().path()));
    }
    let name = label.to_owned();
    let rest = req.uri().path().trim_start_matches('/').to_owned();
    handle(state, Path((name, rest)), req).await
}

/// Which key, if any, the request carries.
fn key_of(route: &ServerlessRoute, headers: &HeaderMap) -> Option<KeyName> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let api_key = headers.get(crate::names::API_KEY).and_then(|v| v.to_str().ok());
    for candidate in [api_key, bearer].into_iter().flatten() {
        let h = key_hash(candidate.trim());
        if constant_time_eq(&h, &route.key_hashes[0]) {
            return Some(KeyName::Primary);
        }
        if constant_time_eq(&h, &route.key_hashes[1]) {
            return Some(KeyName::Secondary);
        }
    }
    None
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

async fn serve(
    state: &GatewayState,
    name: &str,
    rest: &str,
    req: Request,
    request_id: &str,
    trace: &mut Trace,
) -> Response {
    let table = state.routes.borrow().clone();
    let unauthorized = || {
        api_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or invalid key: send it as 'api-key: <key>' or 'Authorization: Bearer <key>'",
        )
    };
    let Some(route) = table.serverless.get(name) else { return unauthorized() };
    let Some(key) = key_of(route, req.headers()) else { return unauthorized() };
    let budget = match state.serverless.admit(name, route) {
        Ok(b) => b,
        Err((wait, why)) => {
            let mut r =
                api_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", format!("{why}; retry in {wait} s"));
            r.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(wait));
            rate_headers(&mut r, route, Budget { remaining_requests: 0, remaining_tokens: 0 }, wait);
            return r;
        }
    };
    let (parts, body) = req.into_parts();
    let read = crate::body::read_body(body, MAX_SERVERLESS_BODY_BYTES, state.body_idle_timeout, &state.body_budget);
    let (body, _held) = match read.await {
        Ok(crate::body::ReadBody { bytes, held }) => (bytes, held),
        Err(e) => {
            return e.answer(MAX_SERVERLESS_BODY_BYTES, state.body_idle_timeout, &state.body_budget, api_error);
        }
    };
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let budget_ms = deadline_ms(&parts.headers, state.serverless_timeout);
    let mut out = Outgoing::new(parts.method, path_and_query, parts.headers, body, request_id);
    out.headers.insert(DEADLINE_HEADER, HeaderValue::from(budget_ms));
    trace.inject(&mut out.headers);
    let mut avoid = None;
    let mut answer = None;
    for _ in 0..2 {
        let Some(addr) = state.pick_replica(&route.replica_set, avoid) else { break };
        match send(&state.client, addr, &out, Duration::from_millis(budget_ms).saturating_add(ENGINE_GRACE)).await {
            Ok(resp) => {
                answer = Some(resp);
                break;
            }
            Err(SendError::Unreachable) => avoid = Some(addr),
            Err(SendError::Timeout) => {
                return api_error(StatusCode::GATEWAY_TIMEOUT, "Timeout", "the model did not start answering in time");
            }
            Err(SendError::Failed) => break,
        }
    }
    let Some(resp) = answer else {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the model's engine is not ready (it may still be loading); retry shortly",
        );
    };
    let (mut parts, incoming) = resp.into_parts();
    for h in ["connection", "keep-alive", "transfer-encoding", "trailer", "upgrade"] {
        parts.headers.remove(h);
    }
    let prompt = header_u64(&parts.headers, PROMPT_TOKENS);
    let completion = header_u64(&parts.headers, COMPLETION_TOKENS);
    let streaming = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let meter = Metered {
        meter: state.serverless.clone(),
        workspace: route.workspace.clone(),
        endpoint: name.to_owned(),
        key,
        prompt: prompt.unwrap_or(0),
        chunks: 0,
        final_completion: None,
        done: false,
        recorded: false,
        trace: Trace::off(),
    };
    let body = if streaming && parts.status.is_success() {
        let mut meter = meter;
        meter.trace = std::mem::replace(trace, Trace::off());
        let mut sse = BytesMut::new();
        let stream = incoming.into_data_stream().map(move |frame| {
            if let Ok(bytes) = &frame {
                sse.extend_from_slice(bytes);
                meter.scan(&mut sse);
            }
            frame
        });
        Body::from_stream(stream)
    } else {
        let mut meter = meter;
        // Only answered work is billed: a refused or failed request used no tokens.
        if parts.status.is_success() {
            meter.final_completion = Some(completion.unwrap_or(0));
            meter.done = true;
            trace.set(KeyValue::new("gen_ai.usage.input_tokens", meter.prompt as i64));
            trace.set(KeyValue::new("gen_ai.usage.output_tokens", completion.unwrap_or(0) as i64));
        } else {
            meter.prompt = 0;
            meter.done = true;
        }
        drop(meter);
        Body::new(incoming)
    };
    let mut response = Response::from_parts(parts, body);
    rate_headers(&mut response, route, budget, 0);
    response
}

fn rate_headers(r: &mut Response, route: &ServerlessRoute, budget: Budget, _wait: u64) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit-requests", HeaderValue::from(route.requests_per_minute));
    h.insert("x-ratelimit-remaining-requests", HeaderValue::from(budget.remaining_requests));
    h.insert("x-ratelimit-limit-tokens", HeaderValue::from(route.tokens_per_minute));
    h.insert("x-ratelimit-remaining-tokens", HeaderValue::from(budget.remaining_tokens));
}

/// Counts what one answer used and records it exactly once: when the stream ends, or when it
/// is dropped early (the client went away).
struct Metered {
    meter: ServerlessMeter,
    workspace: String,
    endpoint: String,
    key: KeyName,
    prompt: u64,
    /// Content-carrying chunks seen: one per generated token.
    chunks: u64,
    /// `usage.completion_tokens` of the final chunk, or the header of a non-stream answer.
    final_completion: Option<u64>,
    /// `[DONE]` seen (or a whole non-stream answer).
    done: bool,
    recorded: bool,
    /// A streamed answer's server span, ended with the stream.
    trace: Trace,
}

impl Metered {
    /// Consumes the complete events at the front of `buf`.
    fn scan(&mut self, buf: &mut BytesMut) {
        while let Some(end) = find_event_end(buf) {
            let event: Bytes = buf.split_to(end.0).freeze();
            let _ = buf.split_to(end.1);
            self.event(&event);
        }
        if self.done {
            self.finish();
        }
    }

    fn event(&mut self, event: &[u8]) {
        let Ok(text) = std::str::from_utf8(event) else { return };
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else { continue };
            if let Some(c) = v.pointer("/usage/completion_tokens").and_then(|c| c.as_u64()) {
                self.final_completion = Some(c);
            }
            if let Some(p) = v.pointer("/usage/prompt_tokens").and_then(|c| c.as_u64()) {
                self.prompt = p;
            }
            let first = v.pointer("/choices/0");
            let token = first.is_some_and(|c| c.pointer("/delta/content").is_some() || c.get("text").is_some())
                && first.and_then(|c| c.get("finish_reason")).is_none_or(|f| f.is_null());
            self.chunks += u64::from(token);
        }
    }

    fn finish(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let completion = self.final_completion.unwrap_or(self.chunks);
        let cut = !self.done;
        self.meter.record(&self.workspace, &self.endpoint, self.key, self.prompt, completion, cut);
        let trace = std::mem::replace(&mut self.trace, Trace::off());
        if trace.is_on() {
            trace.set(KeyValue::new("gen_ai.usage.input_tokens", self.prompt as i64));
            trace.set(KeyValue::new("gen_ai.usage.output_tokens", completion as i64));
            trace.set(KeyValue::new("sluice.stream_cut", cut));
            trace.finish(200);
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The end of the first event in `buf`: (event length, separator length).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rpm: u64, tpm: u64) -> ServerlessRoute {
        ServerlessRoute {
            workspace: "default".into(),
            key_hashes: [key_hash("primary-key-0123456789"), key_hash("secondary-key-0123456789")],
            replica_set: "serverless/m".into(),
            tokens_per_minute: tpm,
            requests_per_minute: rpm,
            model: "m".into(),
        }
    }

    #[test]
    fn either_header_carries_either_key() {
        let r = route(10, 10);
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&r, &h), None);
        h.insert("api-key", HeaderValue::from_static("secondary-key-0123456789"));
        assert_eq!(key_of(&r, &h), Some(KeyName::Secondary));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer primary-key-0123456789"));
        assert_eq!(key_of(&r, &h), Some(KeyName::Primary));
        h.insert("authorization", HeaderValue::from_static("Bearer nope"));
        assert_eq!(key_of(&r, &h), None);
    }

    #[test]
    fn requests_per_minute_refuse_the_next_request_with_a_wait() {
        let m = ServerlessMeter::default();
        let r = route(2, 1_000);
        assert_eq!(m.admit("e", &r).unwrap().remaining_requests, 1);
        assert_eq!(m.admit("e", &r).unwrap().remaining_requests, 0);
        let (wait, why) = m.admit("e", &r).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(why.contains("2 requests per minute"), "{why}");
        assert!(m.admit("other", &r).is_ok(), "windows are per endpoint");
        assert_eq!(m.totals().iter().find(|(n, _)| n == "e").unwrap().1.refused, 1);
    }

    #[test]
    fn tokens_used_close_the_window() {
        let m = ServerlessMeter::default();
        let r = route(100, 50);
        m.admit("e", &r).unwrap();
        m.record("default", "e", KeyName::Primary, 30, 25, false);
        let (_, why) = m.admit("e", &r).unwrap_err();
        assert!(why.contains("50 tokens per minute"), "{why}");
        let pending = m.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1, TokenCounts { requests: 1, prompt_tokens: 30, completion_tokens: 25 });
        assert!(m.take_pending().is_empty());
    }

    fn metered(m: &ServerlessMeter) -> Metered {
        Metered {
            meter: m.clone(),
            workspace: "default".into(),
            endpoint: "e".into(),
            key: KeyName::Primary,
            prompt: 7,
            chunks: 0,
            final_completion: None,
            done: false,
            recorded: false,
            trace: Trace::off(),
        }
    }

    #[test]
    fn a_stream_is_counted_per_content_chunk_and_recorded_once() {
        let m = ServerlessMeter::default();
        let mut x = metered(&m);
        let mut buf = BytesMut::new();
        for piece in [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"He\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_re",
            "ason\":null}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        ] {
            buf.extend_from_slice(piece.as_bytes());
            x.scan(&mut buf);
        }
        assert_eq!(x.chunks, 2);
        drop(x); // cut before [DONE]
        let p = m.take_pending();
        assert_eq!(p[0].1, TokenCounts { requests: 1, prompt_tokens: 7, completion_tokens: 2 });
        assert_eq!(m.totals()[0].1.streams_cut, 1);

        let mut x = metered(&m);
        buf.extend_from_slice(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\r\n\r\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
        );
        x.scan(&mut buf);
        assert!(x.recorded, "recorded at [DONE]");
        drop(x);
        let p = m.take_pending();
        assert_eq!(p[0].1, TokenCounts { requests: 1, prompt_tokens: 9, completion_tokens: 1 });
        assert_eq!(m.totals()[0].1.streams_cut, 1, "a finished stream is not cut");
    }
}
