//! Optional OpenTelemetry trace export over OTLP/HTTP (protobuf), the protocol every collector
//! (the OpenTelemetry Collector, Jaeger, Tempo, Honeycomb's agent, ...) accepts on port 4318.
//!
//! Where the spans come from is `sluice_gateway::telemetry`; this module only installs the SDK:
//! a batching span processor on its own thread (so export never runs on a request's task), the
//! W3C trace-context propagator, and the resource (`service.name` is `sluice` unless
//! `OTEL_SERVICE_NAME` says otherwise). The SDK reads the other standard variables itself:
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`,
//! `OTEL_RESOURCE_ATTRIBUTES`.

use opentelemetry::global;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The traces URL to export to, or `None` when export is off.
///
/// `configured` (the `--otlp-endpoint` flag or `otlp_endpoint` in the config file) is a base URL,
/// as is `OTEL_EXPORTER_OTLP_ENDPOINT` (`generic_env`): both get `/v1/traces`.
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (`traces_env`) is used as it is, as the spec says.
pub fn traces_url(
    configured: Option<&str>,
    traces_env: Option<&str>,
    generic_env: Option<&str>,
) -> Result<Option<String>, String> {
    let (source, given, url) = match (configured, traces_env, generic_env) {
        (Some(base), _, _) => ("--otlp-endpoint", base, join(base)),
        (None, Some(full), _) if !full.trim().is_empty() => {
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full, full.trim().to_owned())
        }
        (None, _, Some(base)) if !base.trim().is_empty() => ("OTEL_EXPORTER_OTLP_ENDPOINT", base, join(base)),
        _ => return Ok(None),
    };
    let uri = url.parse::<axum::http::Uri>().ok();
    match uri.as_ref().and_then(|u| Some((u.scheme_str()?, u.host()?))) {
        Some(("http", host)) if !host.is_empty() => Ok(Some(url)),
        Some(("https", _)) => Err(format!(
            "{source} {given:?}: https is not supported; export to a collector on this host or network over http (OTLP/HTTP, port 4318) and let it forward over TLS"
        )),
        _ => Err(format!("{source} {given:?} must be an http:// URL with a host, e.g. http://127.0.0.1:4318")),
    }
}

fn join(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") }
}

/// Installs the tracer provider and turns spans on. Call before the async runtime starts (the
/// exporter's HTTP client is a blocking one, used only on the processor's thread).
pub fn start(url: &str, service_name: Option<String>) -> Result<SdkTracerProvider, String> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("cannot start the OTLP exporter for {url}: {e}"))?;
    let mut resource =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if service_name.is_none() {
        resource = resource.with_service_name("sluice");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    sluice_gateway::telemetry::enable();
    Ok(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_and_base_urls_get_the_signal_path() {
        let url = |c, t, g| traces_url(c, t, g).unwrap();
        assert_eq!(url(None, None, None), None);
        assert_eq!(url(Some("http://c:4318/"), Some("http://t/x"), None).as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(url(None, Some("http://t:4318/custom"), Some("http://g")).as_deref(), Some("http://t:4318/custom"));
        assert_eq!(url(None, None, Some("http://g:4318")).as_deref(), Some("http://g:4318/v1/traces"));
        assert_eq!(url(Some("http://c/v1/traces"), None, None).as_deref(), Some("http://c/v1/traces"));
        assert_eq!(url(None, Some(" "), None), None);
    }

    #[test]
    fn bad_endpoints_say_what_to_write() {
        let err = traces_url(Some("collector:4318"), None, None).unwrap_err();
        assert!(err.contains("--otlp-endpoint") && err.contains("http://"), "{err}");
        let err = traces_url(None, None, Some("https://otel.example")).unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && err.contains("https is not supported"), "{err}");
        let err = traces_url(Some("not a url"), None, None).unwrap_err();
        assert!(err.contains("\"not a url\" must be an http:// URL"), "{err}");
    }
}
