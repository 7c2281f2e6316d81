//! Model calls as spans with OpenTelemetry's GenAI attributes, and the hook that carries
//! the caller's trace context into each request to a vendor.
//!
//! Prompts and replies are recorded only when `BRAINOPS_TRACE_CONTENT=1`; the model string
//! is reduced to provider and model id, so a base URL (which may hold credentials) never
//! becomes an attribute.

use std::sync::OnceLock;

pub use engine::trace::content_enabled;
use tracing::Span;
use tracing::field::Empty;

use crate::{ChatRequest, ChatResponse, LlmError};

/// `gen_ai.system` and the model id of a model string (`openai:gpt-4o-mini`,
/// `openai-compat:URL#model`, `local:smollm2-135m`).
pub fn provider_and_model(name: &str) -> (&'static str, &str) {
    let (provider, rest) = name.split_once(':').unwrap_or(("", name));
    let model = rest.rsplit_once('#').map_or(rest, |(_, m)| m);
    let system = match provider {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "gemini" => "gcp.gemini",
        "perplexity" => "perplexity",
        "openai-compat" => "openai_compatible",
        "local" => "brainops.local",
        "scripted" => "brainops.scripted",
        _ => "unknown",
    };
    (
        system,
        if provider == "openai-compat" && !rest.contains('#') {
            ""
        } else {
            model
        },
    )
}

/// `provider:model` of a model string, without a base URL (the `brainops.model` attribute
/// and the metrics' `model` label).
fn model_label(name: &str) -> String {
    let (_, model) = provider_and_model(name);
    let provider = name.split_once(':').map_or("", |(p, _)| p);
    format!("{provider}:{model}")
}

/// A `chat` span for a call to the first of `models` (the others are fallbacks), by
/// `agent` when an agent makes it.
pub fn chat_span(models: &[String], request: &ChatRequest, agent: Option<&str>) -> Span {
    let first = models.first().map_or("", String::as_str);
    let (system, model) = provider_and_model(first);
    let span = tracing::info_span!(
        target: "brainops",
        "chat",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.system = system,
        gen_ai.provider.name = system,
        gen_ai.request.model = model,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.agent.name = agent,
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        brainops.cost_usd = Empty,
        brainops.model = model_label(first).as_str(),
        gen_ai.input.messages = Empty,
        gen_ai.output.messages = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(n) = request.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(n));
    }
    if let Some(t) = request.temperature {
        span.record("gen_ai.request.temperature", f64::from(t));
    }
    if content_enabled() {
        let messages = serde_json::to_string(&request.messages).unwrap_or_default();
        span.record("gen_ai.input.messages", messages.as_str());
    }
    span
}

/// Records what answered (`answered_by`, one of the chain's model strings), the tokens and
/// the cost.
pub fn record_reply(span: &Span, reply: &ChatResponse, answered_by: &str, cost_usd: Option<f64>) {
    if span.is_disabled() {
        return;
    }
    let (system, _) = provider_and_model(answered_by);
    span.record("brainops.model", model_label(answered_by).as_str());
    span.record("gen_ai.system", system);
    span.record("gen_ai.provider.name", system);
    span.record("gen_ai.response.model", reply.model.as_str());
    // OpenAI's words, which the GenAI conventions use.
    let finish = match reply.stop_reason {
        crate::StopReason::End | crate::StopReason::StopSequence => "stop",
        crate::StopReason::MaxTokens => "length",
        crate::StopReason::ToolCalls => "tool_calls",
        crate::StopReason::ContentFilter => "content_filter",
        crate::StopReason::Other => "other",
    };
    span.record("gen_ai.response.finish_reasons", finish);
    span.record(
        "gen_ai.usage.input_tokens",
        engine::trace::int(reply.usage.input_tokens),
    );
    span.record(
        "gen_ai.usage.output_tokens",
        engine::trace::int(reply.usage.output_tokens),
    );
    if let Some(cost) = cost_usd {
        span.record("brainops.cost_usd", cost);
    }
    if content_enabled() {
        let out = serde_json::json!([{
            "role": "assistant",
            "content": reply.text,
            "tool_calls": reply.tool_calls,
        }]);
        span.record("gen_ai.output.messages", out.to_string().as_str());
    }
}

/// Marks the call failed with its (already scrubbed) error.
pub fn record_error(span: &Span, e: &LlmError) {
    if span.is_disabled() {
        return;
    }
    span.record("error.type", format!("{:?}", e.kind).as_str());
    engine::trace::fail(span, &e.to_string());
}

type Inject = fn(&mut reqwest::header::HeaderMap);

static OUTGOING: OnceLock<Inject> = OnceLock::new();

/// Installs what adds headers to every request sent to a model vendor: the process's
/// tracing setup puts the current trace context there (`traceparent`). Set once; later
/// calls are ignored.
pub fn on_outgoing_request(inject: Inject) {
    let _ = OUTGOING.set(inject);
}

pub(crate) fn outgoing(headers: &mut reqwest::header::HeaderMap) {
    if let Some(inject) = OUTGOING.get() {
        inject(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::provider_and_model;

    #[test]
    fn a_model_string_gives_its_provider_and_id_and_never_the_base_url() {
        assert_eq!(
            provider_and_model("openai:gpt-4o-mini"),
            ("openai", "gpt-4o-mini")
        );
        assert_eq!(
            provider_and_model("gemini:gemini-2.0-flash"),
            ("gcp.gemini", "gemini-2.0-flash")
        );
        assert_eq!(
            provider_and_model("openai-compat:http://user:pw@127.0.0.1:8080/v1#qwen"),
            ("openai_compatible", "qwen")
        );
        assert_eq!(
            provider_and_model("openai-compat:http://user:pw@127.0.0.1:8080/v1"),
            ("openai_compatible", "")
        );
        assert_eq!(
            provider_and_model("local:smollm2-135m"),
            ("brainops.local", "smollm2-135m")
        );
    }
}
