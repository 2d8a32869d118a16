//! OpenTelemetry export: the server started with `--otlp-endpoint` sends its spans over OTLP/HTTP
//! to a collector. The collector here is an HTTP listener that decodes the protobuf bodies with
//! the OpenTelemetry project's own message types (`opentelemetry-proto`), as a real collector's
//! OTLP receiver does.

use crate::harness::{BIN, Server, deploy_iris, post_json, primary_key, repo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the collector received: every span, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    bad_requests: Arc<Mutex<Vec<String>>>,
}

async fn start_collector() -> (String, Received) {
    let received = Received::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let r = r.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                if ct != "application/x-protobuf" {
                    r.bad_requests.lock().unwrap().push(format!("content-type {ct:?}"));
                    return axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
                }
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        let mut spans = r.spans.lock().unwrap();
                        for rs in req.resource_spans {
                            let service = rs
                                .resource
                                .as_ref()
                                .and_then(|res| string_attr(&res.attributes, "service.name"))
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                            }
                        }
                        axum::http::StatusCode::OK
                    }
                    Err(e) => {
                        r.bad_requests.lock().unwrap().push(e.to_string());
                        axum::http::StatusCode::BAD_REQUEST
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

/// A server exporting to a fresh collector, its spans batched for 100 ms. Bind the directory
/// first, so the server stops before it is removed.
async fn traced_server(extra: &[&str]) -> (tempfile::TempDir, Server, Received) {
    let (collector, received) = start_collector().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["--otlp-endpoint", collector.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start_with_env(&tmp.path().join("data"), &args, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    (tmp, server, received)
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attrs.iter().find(|kv| kv.key == key)?.value.as_ref()? {
        AnyValue { value: Some(any_value::Value::IntValue(i)) } => Some(*i),
        _ => None,
    }
}

impl Received {
    /// Waits until a span matches `pred` (the batch processor exports every few hundred ms).
    async fn wait_for(&self, what: &str, pred: impl Fn(&Span) -> bool) -> (String, Span) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.spans.lock().unwrap().iter().find(|(_, s)| pred(s)).cloned() {
                return found;
            }
            let names: Vec<String> = self.spans.lock().unwrap().iter().map(|(_, s)| s.name.clone()).collect();
            assert!(Instant::now() < until, "no span {what}; received: {names:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn scoring_and_management_requests_are_exported_as_spans_continuing_the_callers_trace() {
    let (_tmp, server, received) = traced_server(&[]).await;
    deploy_iris(&server);
    let key = primary_key(&server, "iris-ep");
    let score = format!("{}/endpoints/iris-ep/score", server.url);

    // The caller's W3C trace context: the gateway's span continues it.
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let resp = reqwest::Client::new()
        .post(&score)
        .bearer_auth(&key)
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .header("x-request-id", "otel-req-1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap_or_default());
    // A wrong key is traced too, with its status, and is not an error of ours.
    let (denied, _) = post_json(&score, Some("wrong-key"), b"{}").await;
    assert_eq!(denied, 401);

    let (service, server_span) = received
        .wait_for("for the scoring request", |s| {
            hex(&s.trace_id) == trace_id && s.kind == span::SpanKind::Server as i32
        })
        .await;
    assert_eq!(service, "sluice", "service.name of the resource");
    assert_eq!(server_span.name, "POST /endpoints/{endpoint}/score");
    assert_eq!(hex(&server_span.parent_span_id), parent_id, "the caller's span is the parent");
    let attrs = &server_span.attributes;
    assert_eq!(string_attr(attrs, "sluice.endpoint").as_deref(), Some("iris-ep"));
    assert_eq!(string_attr(attrs, "sluice.deployment").as_deref(), Some("blue"));
    assert_eq!(string_attr(attrs, "sluice.request_id").as_deref(), Some("otel-req-1"));
    assert_eq!(string_attr(attrs, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(int_attr(attrs, "http.response.status_code"), Some(200));
    assert!(server_span.end_time_unix_nano > server_span.start_time_unix_nano);

    // Children: the wait for an admission slot and the call to the replica, inside the span.
    for (name, kind) in [("queue", span::SpanKind::Internal), ("replica", span::SpanKind::Client)] {
        let (_, child) = received.wait_for(name, |s| s.name == name && s.parent_span_id == server_span.span_id).await;
        assert_eq!(child.trace_id, server_span.trace_id);
        assert_eq!(child.kind, kind as i32, "{name}");
        assert!(child.start_time_unix_nano >= server_span.start_time_unix_nano, "{name} starts inside");
        assert!(child.end_time_unix_nano <= server_span.end_time_unix_nano, "{name} ends inside");
    }

    let (_, denied_span) = received
        .wait_for("for the 401", |s| {
            s.name == "POST /endpoints/{endpoint}/score"
                && int_attr(&s.attributes, "http.response.status_code") == Some(401)
        })
        .await;
    assert!(denied_span.parent_span_id.is_empty(), "no caller context: a root span");
    let unset = denied_span.status.as_ref().is_none_or(|st| st.code == 0);
    assert!(unset, "a 401 is the caller's error, not the server's: {:?}", denied_span.status);
    assert_eq!(string_attr(&denied_span.attributes, "sluice.deployment"), None);

    // The management API: one span per request, named by its route.
    let (_, created) = received
        .wait_for("for the deployment's creation", |s| {
            s.name == "POST /api/v1/workspaces/{workspace}/online-endpoints/{endpoint}/deployments"
        })
        .await;
    let path = string_attr(&created.attributes, "url.path").unwrap_or_default();
    assert_eq!(path, "/api/v1/workspaces/default/online-endpoints/iris-ep/deployments");
    assert!(int_attr(&created.attributes, "http.response.status_code").is_some_and(|c| (200..300).contains(&c)));
    assert!(received.bad_requests.lock().unwrap().is_empty(), "{:?}", received.bad_requests.lock().unwrap());
}

#[test]
fn a_bad_otlp_endpoint_stops_the_server_with_what_to_write() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, want) in
        [("collector:4318", "must be an http:// URL"), ("https://otel.example", "https is not supported")]
    {
        let out = std::process::Command::new(BIN)
            .args(["server", "--addr", "127.0.0.1:0", "--otlp-endpoint", flag, "--data-dir"])
            .arg(tmp.path().join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--otlp-endpoint") && err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn an_unreachable_collector_costs_scoring_nothing() {
    // Nothing listens on the port: export fails in the background, requests are answered.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &tmp.path().join("data"),
        &["--otlp-endpoint", &format!("http://127.0.0.1:{port}")],
        &[("OTEL_BSP_SCHEDULE_DELAY", "50")],
    );
    deploy_iris(&server);
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    for _ in 0..20 {
        let (status, text) = post_json(&format!("{}/endpoints/iris-ep/score", server.url), Some(&key), &body).await;
        assert_eq!(status, 200, "{text}");
    }
}

#[tokio::test]
async fn serverless_spans_carry_the_model_and_the_tokens_of_plain_and_streamed_answers() {
    use crate::serverless::{create_endpoint, keys, post, sse_events};
    let (tmp, server, received) = traced_server(&[]).await;
    create_endpoint(&server, tmp.path(), "tiny", "SmolLM2-135M-Instruct", &[]);
    let (key, _) = keys(&server, "tiny");
    let url = format!("{}/serverless/tiny/v1/chat/completions", server.url);
    let ask = |stream: bool| {
        serde_json::json!({"messages": [{"role": "user", "content": "Name a river."}], "max_tokens": 7,
            "temperature": 0, "stream": stream, "stream_options": {"include_usage": true}})
    };
    let plain: serde_json::Value = post(&url, ("api-key", &key), ask(false)).await.json().await.unwrap();
    let streamed = post(&url, ("api-key", &key), ask(true)).await.text().await.unwrap();
    let last_usage = sse_events(&streamed)
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
        .next_back()
        .expect("a usage chunk");

    let spans = |n: usize| {
        let received = received.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                let found: Vec<Span> = received
                    .spans
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, s)| s.clone())
                    .filter(|s| s.name == "chat smollm2-135m-instruct")
                    .collect();
                if found.len() >= n || Instant::now() > until {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let found = spans(2).await;
    let names: Vec<String> = received.spans.lock().unwrap().iter().map(|(_, s)| s.name.clone()).collect();
    assert_eq!(found.len(), 2, "one span per chat request; received {names:?}");
    let tokens = |s: &Span| {
        (int_attr(&s.attributes, "gen_ai.usage.input_tokens"), int_attr(&s.attributes, "gen_ai.usage.output_tokens"))
    };
    let want_plain = (plain["usage"]["prompt_tokens"].as_i64(), plain["usage"]["completion_tokens"].as_i64());
    let want_streamed = (last_usage["prompt_tokens"].as_i64(), last_usage["completion_tokens"].as_i64());
    let mut got: Vec<_> = found.iter().map(tokens).collect();
    let mut want = vec![want_plain, want_streamed];
    got.sort();
    want.sort();
    assert_eq!(got, want, "the spans' token counts are the answers' usage");
    for s in &found {
        assert_eq!(string_attr(&s.attributes, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(string_attr(&s.attributes, "gen_ai.request.model").as_deref(), Some("smollm2-135m-instruct"));
        assert_eq!(string_attr(&s.attributes, "sluice.serverless_endpoint").as_deref(), Some("tiny"));
        assert_eq!(int_attr(&s.attributes, "http.response.status_code"), Some(200));
    }
}

#[tokio::test]
async fn the_replica_gets_the_trace_context_of_its_call() {
    let python = crate::harness::test_python();
    let (tmp, server, received) = traced_server(&["--python", python.to_str().unwrap()]).await;
    // A scoring script that answers the trace context it was called with.
    let dep = crate::python::write_code(
        tmp.path(),
        "def init():\n    pass\n\n\ndef run(raw_data, request_headers):\n    return {k.lower(): v for k, v in request_headers.items() if k.lower() == 'traceparent'}\n",
    );
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/sklearn-score/endpoint.yml"]);
    server.cli_ok(&["online-deployment", "create", "--file", &dep, "--all-traffic"]);
    let key = primary_key(&server, "sklearn-ep");
    let (status, text) =
        crate::harness::wait_for_200(&format!("{}/endpoints/sklearn-ep/score", server.url), &key, b"{}").await;
    assert_eq!(status, 200, "{text}");
    let seen: serde_json::Value = serde_json::from_str(&text).unwrap();
    let traceparent =
        seen["traceparent"].as_str().unwrap_or_else(|| panic!("no traceparent reached the script: {seen}"));
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    let (_, call) =
        received.wait_for("for the replica call", |s| s.name == "replica" && hex(&s.trace_id) == parts[1]).await;
    assert_eq!(hex(&call.span_id), parts[2], "the script's parent is the replica call's span");
}
