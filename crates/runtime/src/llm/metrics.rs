//! `GET /metrics`: the engine's counters and gauges in the Prometheus text format. Every family is declared
//! once, in [`render`]; names follow `sluice_llm_<name>_<unit>[_total]`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::IntoResponse;
use http::header;

use super::state::{Engine, LlmState};

pub async fn metrics(State(state): State<Arc<LlmState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state))
}

/// One sample: name, kind, help, value.
type Family = (&'static str, &'static str, &'static str, u64);

/// The whole exposition text.
pub fn render(state: &LlmState) -> String {
    let mut families: Vec<Family> = match &state.engine {
        Engine::Generator(generator) => {
            let stats = generator.stats();
            vec![
                ("sluice_llm_prompt_tokens_total", "counter", "Prompt tokens admitted.", stats.prompt_tokens_total),
                ("sluice_llm_generated_tokens_total", "counter", "Tokens generated.", stats.generated_tokens_total),
                (
                    "sluice_llm_prompt_cached_tokens_total",
                    "counter",
                    "Prompt tokens whose KV cells were reused from an earlier request (prefix cache).",
                    stats.prompt_cached_tokens_total,
                ),
                (
                    "sluice_llm_requests_completed_total",
                    "counter",
                    "Requests whose generation finished (stop, length or deadline).",
                    stats.completed_total,
                ),
                (
                    "sluice_llm_requests_cancelled_total",
                    "counter",
                    "Requests dropped before their generation finished (client gone).",
                    stats.cancelled_total,
                ),
                (
                    "sluice_llm_active_sequences",
                    "gauge",
                    "Sequences being generated.",
                    u64::from(stats.active_sequences),
                ),
                (
                    "sluice_llm_waiting_requests",
                    "gauge",
                    "Requests waiting for a sequence slot.",
                    u64::from(stats.waiting),
                ),
                (
                    "sluice_llm_kv_cache_tokens_used",
                    "gauge",
                    "KV cache cells holding tokens.",
                    u64::from(stats.kv_cache_tokens_used),
                ),
                (
                    "sluice_llm_kv_cache_tokens_budget",
                    "gauge",
                    "KV cache cells available in all.",
                    u64::from(stats.kv_cache_tokens_budget),
                ),
            ]
        }
        Engine::Embedder(engine) => {
            let counters = &engine.counters;
            let admitted = engine.queue_capacity.max(1) - engine.admission.available_permits();
            vec![
                (
                    "sluice_llm_prompt_tokens_total",
                    "counter",
                    "Input tokens embedded.",
                    counters.prompt_tokens.load(Ordering::Relaxed),
                ),
                (
                    "sluice_llm_embedded_inputs_total",
                    "counter",
                    "Input strings embedded.",
                    counters.inputs.load(Ordering::Relaxed),
                ),
                (
                    "sluice_llm_requests_completed_total",
                    "counter",
                    "Embedding requests answered.",
                    counters.requests_completed.load(Ordering::Relaxed),
                ),
                (
                    "sluice_llm_waiting_requests",
                    "gauge",
                    "Embedding requests admitted and not yet answered.",
                    admitted as u64,
                ),
            ]
        }
    };
    families.push((
        "sluice_llm_requests_rejected_total",
        "counter",
        "Requests refused with 429 because the engine's queue was full.",
        state.counters.rejected_queue_full.load(Ordering::Relaxed),
    ));
    families.push((
        "sluice_llm_requests_deadline_exceeded_total",
        "counter",
        "Non-streaming requests answered 408 because their x-sluice-deadline-ms passed.",
        state.counters.deadline_exceeded.load(Ordering::Relaxed),
    ));
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}
