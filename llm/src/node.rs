//! `llm.chat`: a graph node that asks a model.
//!
//! ```toml
//! [nodes.draft]
//! tool = "llm.chat"
//! args = { prompt = "'Thank ' + state.lead.name + ' for the inspection.'", system = "'Be brief.'" }
//! output = "note"
//! ```
//!
//! Arguments: `prompt` (or `messages`: a list of `{role, content}`), optional `system`,
//! `model` (default: the local model; several, as a list, are tried in order), `schema`
//! (the reply is then a JSON value valid against it), `max_tokens`, `temperature`. Returns
//! the reply's text, or its JSON with a schema. Usage and cost go to the run's totals and
//! event stream.

use std::sync::Arc;

use async_trait::async_trait;
use engine::{Node, NodeContext, NodeError, UsageRecord};
use serde_json::Value;
use tracing::Instrument;

use super::{
    ChatModel, ChatRequest, Fallback, LlmError, Message, ProviderConfig, Resilient, RetryPolicy,
    connect, pricing,
};

/// The `llm.chat` node.
#[derive(Debug, Clone, Default)]
pub struct ChatNode {
    config: ProviderConfig,
}

impl ChatNode {
    /// The `llm.chat` tool over these providers.
    pub fn new(config: ProviderConfig) -> Self {
        ChatNode { config }
    }
}

/// A model error as a node error: retryable errors stay retryable, others are permanent.
pub fn failed(e: &LlmError) -> NodeError {
    if e.retryable() {
        NodeError::transient(e.to_string())
    } else {
        NodeError::permanent(e.to_string())
    }
}

#[async_trait]
impl Node for ChatNode {
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        let names: Vec<String> = match input.get("model") {
            None | Some(Value::Null) => vec![super::DEFAULT_MODEL.to_string()],
            Some(Value::String(m)) => vec![m.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect(),
            Some(other) => {
                return Err(NodeError::permanent(format!(
                    "llm.chat: `model` must be a model string or a list of them, not {other}"
                )));
            }
        };
        if names.is_empty() {
            return Err(NodeError::permanent("llm.chat: `model` lists no model"));
        }
        let model = chain(&names, &self.config).map_err(|e| failed(&e))?;

        let mut messages = Vec::new();
        if let Some(system) = input.get("system").and_then(Value::as_str) {
            messages.push(Message::system(system));
        }
        match (input.get("messages"), input.get("prompt")) {
            (Some(list), _) => {
                let list: Vec<Message> = serde_json::from_value(list.clone()).map_err(|e| {
                    NodeError::permanent(format!(
                        "llm.chat: `messages` must be a list of {{role, content}}: {e}"
                    ))
                })?;
                messages.extend(list);
            }
            (None, Some(Value::String(prompt))) => messages.push(Message::user(prompt.clone())),
            (None, Some(other)) => messages.push(Message::user(other.to_string())),
            (None, None) => {
                return Err(NodeError::permanent(
                    "llm.chat needs `prompt` (a string) or `messages` in its args",
                ));
            }
        }
        let mut request = ChatRequest::new(messages);
        request.output_schema = input.get("schema").filter(|s| !s.is_null()).cloned();
        request.max_tokens = input
            .get("max_tokens")
            .and_then(Value::as_u64)
            .map(|n| n.min(u64::from(u32::MAX)) as u32);
        request.temperature = input
            .get("temperature")
            .and_then(Value::as_f64)
            .map(|t| t as f32);

        let span = crate::trace::chat_span(&names, &request, None);
        let reply = match model.complete(&request).instrument(span.clone()).await {
            Ok(reply) => reply,
            Err(e) => {
                crate::trace::record_error(&span, &e);
                return Err(failed(&e));
            }
        };
        let name = answered_by(&names, &reply.model);
        let cost_usd = pricing::cost_usd(&name, reply.usage);
        crate::trace::record_reply(&span, &reply, &name, cost_usd);
        ctx.record_usage(UsageRecord {
            cost_usd,
            model: name,
            input_tokens: reply.usage.input_tokens,
            output_tokens: reply.usage.output_tokens,
        });
        match request.output_schema {
            Some(_) => serde_json::from_str(&reply.text).map_err(|e| {
                NodeError::permanent(format!(
                    "llm.chat: the reply is not JSON ({e}): {}",
                    reply.text
                ))
            }),
            None => Ok(Value::String(reply.text)),
        }
    }
}

/// The models `names` name, each retried under the default policy, tried in order.
///
/// A model that cannot be set up (its key is not in the environment) is left out of a
/// chain when another can be, so `["anthropic:...", "local:smollm2-135m"]` runs on the
/// local model where no key is set; the first problem is the error when none can.
pub fn chain(names: &[String], config: &ProviderConfig) -> Result<Arc<dyn ChatModel>, LlmError> {
    let mut models: Vec<Arc<dyn ChatModel>> = Vec::with_capacity(names.len());
    let mut first_problem = None;
    for name in names {
        match connect(name, config) {
            Ok(model) => models.push(Arc::new(Resilient::new(model, RetryPolicy::default()))),
            Err(e) => {
                tracing::info!(model = %name, "left out of the fallback chain: {e}");
                first_problem.get_or_insert(e);
            }
        }
    }
    match models.len() {
        0 => Err(first_problem.unwrap_or_else(|| {
            LlmError::new(super::ErrorKind::InvalidRequest, "config", "no model named")
        })),
        1 => Ok(models.remove(0)),
        _ => Ok(Arc::new(Fallback::new(models))),
    }
}

/// Which of the fallback chain's models gave `reported` (the model id in the reply), so a
/// fallback's tokens are priced at its own rate. Providers report the id they were asked for,
/// often with a date suffix (`gpt-4o-mini-2024-07-18`); the first model is assumed otherwise.
pub fn answered_by(names: &[String], reported: &str) -> String {
    names
        .iter()
        .find(|name| {
            let id = name
                .split_once('#')
                .or_else(|| name.split_once(':'))
                .map_or(name.as_str(), |(_, id)| id);
            !id.is_empty() && reported.starts_with(id)
        })
        .or(names.first())
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod answered_by_tests {
    use super::answered_by;

    #[test]
    fn the_fallback_that_answered_is_priced() {
        let chain = vec![
            "anthropic:claude-sonnet-4-5".to_string(),
            "openai:gpt-4o-mini".to_string(),
            "openai-compat:http://127.0.0.1:8080/v1#llama-3".to_string(),
        ];
        assert_eq!(
            answered_by(&chain, "gpt-4o-mini-2024-07-18"),
            "openai:gpt-4o-mini"
        );
        assert_eq!(
            answered_by(&chain, "claude-sonnet-4-5-20250929"),
            "anthropic:claude-sonnet-4-5"
        );
        assert_eq!(answered_by(&chain, "llama-3"), chain[2]);
        assert_eq!(answered_by(&chain, "something-else"), chain[0]);
        assert_eq!(answered_by(&[], "x"), "");
    }
}
