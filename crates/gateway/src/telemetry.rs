//! OpenTelemetry traces of the data plane and the management API.
//!
//! Off unless the server was started with an OTLP endpoint: then the binary installs the global
//! tracer provider and calls [`enable`]. While off, every function here is one relaxed atomic
//! load, so the hot path pays nothing for it.
//!
//! Spans follow the OpenTelemetry semantic conventions: one server span per request named
//! `{method} {route}` with `http.*` attributes, its parent taken from the caller's W3C
//! `traceparent`; child spans for the admission queue and for the replica call, whose context
//! goes to the replica in `traceparent` so a container that traces joins the same trace;
//! `gen_ai.*` attributes (operation, model, tokens) on serverless requests.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The instrumentation scope every span is recorded under.
pub const SCOPE: &str = "sluice";

/// Turns span recording on; the caller has installed a tracer provider and a propagator.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One span in progress, or nothing when tracing is off. Ends when finished or dropped (a
/// client that went away still leaves its span, without a status code).
pub struct Trace {
    cx: Option<Context>,
}

impl Trace {
    pub fn off() -> Self {
        Self { cx: None }
    }

    /// A server span for an incoming request, continuing the caller's trace when its headers
    /// carry one. `attributes` is only evaluated when tracing is on.
    pub fn server(
        name: impl FnOnce() -> String,
        headers: &HeaderMap,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Self {
        if !enabled() {
            return Self::off();
        }
        let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
        let tracer = global::tracer(SCOPE);
        let span = tracer
            .span_builder(name())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes())
            .start_with_context(&tracer, &parent);
        Self { cx: Some(parent.with_span(span)) }
    }

    /// A child span starting now (or at `start`).
    pub fn child(&self, name: &'static str, kind: SpanKind, start: Option<SystemTime>) -> Self {
        let Some(cx) = &self.cx else { return Self::off() };
        let tracer = global::tracer(SCOPE);
        let mut builder = tracer.span_builder(name).with_kind(kind);
        if let Some(start) = start {
            builder = builder.with_start_time(start);
        }
        let span = builder.start_with_context(&tracer, cx);
        Self { cx: Some(cx.with_span(span)) }
    }

    /// A child span that already happened.
    pub fn record_child(&self, name: &'static str, start: SystemTime, end: SystemTime, attributes: Vec<KeyValue>) {
        if self.cx.is_none() {
            return;
        }
        let mut child = self.child(name, SpanKind::Internal, Some(start));
        for kv in attributes {
            child.set(kv);
        }
        if let Some(cx) = child.cx.take() {
            cx.span().end_with_timestamp(end);
        }
    }

    pub fn is_on(&self) -> bool {
        self.cx.is_some()
    }

    pub fn set(&self, kv: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(kv);
        }
    }

    /// Writes this span's context as `traceparent` (and `tracestate`) into outgoing headers.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(cx) = &self.cx {
            global::get_text_map_propagator(|p| p.inject_context(cx, &mut HeaderInjector(headers)));
        }
    }

    /// Ends the span with the HTTP status it answered; 5xx marks it as an error, as the
    /// semantic conventions say for server spans (a 4xx is the caller's error, not ours).
    pub fn finish(mut self, status: u16) {
        let Some(cx) = self.cx.take() else { return };
        let span = cx.span();
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        if status >= 500 {
            span.set_status(Status::error(format!("HTTP {status}")));
        }
        span.end();
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Some(cx) = self.cx.take() {
            cx.span().end();
        }
    }
}

/// The `http.*` attributes every server span carries: method, route template and path.
pub fn http_attributes<B>(req: &http::Request<B>, route: String) -> Vec<KeyValue> {
    vec![
        KeyValue::new("http.request.method", req.method().as_str().to_owned()),
        KeyValue::new("http.route", route),
        KeyValue::new("url.path", req.uri().path().to_owned()),
    ]
}

/// Middleware for the management API: one server span per request, named by its route.
pub async fn trace_api(req: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
    let trace = Trace::server(
        || format!("{} {route}", req.method()),
        req.headers(),
        || http_attributes(&req, route.to_owned()),
    );
    let response = next.run(req).await;
    trace.finish(response.status().as_u16());
    response
}
