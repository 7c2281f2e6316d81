//! Anthropic's Messages API (`POST /v1/messages`, `anthropic-version: 2023-06-01`).
//!
//! System messages go to the top-level `system`; tool results travel as `tool_result` blocks
//! in a user message. A request with an output schema forces a tool named `output` whose
//! input schema is that schema, and the tool's input becomes the reply's JSON text.

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::http::{Http, async_stream};
use super::{
    ApiKey, Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, ErrorKind, LlmError,
    Role, StopReason, StreamEvent, ToolCall, ToolChoice, Usage,
};

const VERSION: &str = "2023-06-01";
const OUTPUT_TOOL: &str = "output";
/// Anthropic requires `max_tokens`; used when the request sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A Claude model.
pub struct Anthropic {
    http: Http,
    url: String,
    model: String,
    key: ApiKey,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key)
            .finish()
    }
}

impl Anthropic {
    pub(crate) fn new(http: Http, base: &str, model: &str, key: ApiKey) -> Self {
        Anthropic {
            http,
            url: format!("{}/messages", base.trim_end_matches('/')),
            model: model.to_string(),
            key,
        }
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "max_tokens".into(),
            json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        );
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        if !system.is_empty() {
            body.insert("system".into(), json!(system.join("\n\n")));
        }
        let mut messages: Vec<Value> = Vec::new();
        for m in &request.messages {
            let (role, block) = match m.role {
                Role::System => continue,
                Role::User => ("user", vec![json!({"type": "text", "text": m.content})]),
                Role::Tool => (
                    "user",
                    vec![json!({
                        "type": "tool_result",
                        "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                        "content": m.content,
                    })],
                ),
                Role::Assistant => {
                    let mut blocks = Vec::new();
                    if !m.content.is_empty() {
                        blocks.push(json!({"type": "text", "text": m.content}));
                    }
                    for c in &m.tool_calls {
                        blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                    }
                    ("assistant", blocks)
                }
            };
            // Consecutive turns of one role merge: the API wants them alternating.
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(content) = last["content"].as_array_mut() {
                        content.extend(block);
                    }
                }
                _ => messages.push(json!({"role": role, "content": block})),
            }
        }
        body.insert("messages".into(), Value::Array(messages));
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        if let Some(schema) = &request.output_schema {
            tools.push(json!({
                "name": OUTPUT_TOOL,
                "description": "Give the final answer as this tool's input.",
                "input_schema": schema,
            }));
            body.insert(
                "tool_choice".into(),
                json!({"type": "tool", "name": OUTPUT_TOOL}),
            );
        } else if !tools.is_empty() {
            body.insert(
                "tool_choice".into(),
                match &request.tool_choice {
                    ToolChoice::Auto => json!({"type": "auto"}),
                    ToolChoice::None => json!({"type": "none"}),
                    ToolChoice::Required => json!({"type": "any"}),
                    ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
                },
            );
        }
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), super::float_param(t));
        }
        if !request.stop.is_empty() {
            body.insert("stop_sequences".into(), json!(request.stop));
        }
        if stream {
            body.insert("stream".into(), json!(true));
        }
        Value::Object(body)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .client()
            .post(&self.url)
            .header("x-api-key", self.key.expose())
            .header("anthropic-version", VERSION)
            .json(body)
    }
}

fn stop_reason(s: Option<&str>) -> StopReason {
    match s {
        Some("end_turn") | None => StopReason::End,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("tool_use") => StopReason::ToolCalls,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::ContentFilter,
        Some(_) => StopReason::Other,
    }
}

fn unreadable(what: &str, body: &Value) -> LlmError {
    LlmError::unreadable(
        "anthropic",
        format!("unexpected reply: {what}"),
        &body.to_string(),
    )
}

/// Turns the forced `output` tool call back into the reply's JSON text.
fn unwrap_output(mut response: ChatResponse, structured: bool) -> ChatResponse {
    if structured
        && let Some(pos) = response
            .tool_calls
            .iter()
            .position(|c| c.name == OUTPUT_TOOL)
    {
        let call = response.tool_calls.remove(pos);
        response.text = call.arguments.to_string();
        if response.stop_reason == StopReason::ToolCalls && response.tool_calls.is_empty() {
            response.stop_reason = StopReason::End;
        }
    }
    response
}

#[async_trait]
impl ChatModel for Anthropic {
    fn name(&self) -> String {
        format!("anthropic:{}", self.model)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let reply = self
            .http
            .json(
                "anthropic",
                self.post(&self.body(request, false)),
                Some(&self.key),
            )
            .await?;
        let Some(blocks) = reply.get("content").and_then(Value::as_array) else {
            return Err(unreadable("no `content`", &reply));
        };
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""))
                }
                Some("tool_use") => tool_calls.push(ToolCall {
                    id: block
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    name: block
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    arguments: block.get("input").cloned().unwrap_or_else(|| json!({})),
                }),
                _ => {}
            }
        }
        let n = |k: &str| {
            reply
                .pointer(&format!("/usage/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let response = ChatResponse {
            model: reply
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.model)
                .to_string(),
            text,
            tool_calls,
            stop_reason: stop_reason(reply.get("stop_reason").and_then(Value::as_str)),
            usage: Usage {
                input_tokens: n("input_tokens"),
                output_tokens: n("output_tokens"),
            },
            citations: Vec::new(),
        };
        Ok(unwrap_output(response, request.output_schema.is_some()))
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let mut events = self
            .http
            .sse(
                "anthropic",
                self.post(&self.body(request, true)),
                Some(&self.key),
            )
            .await?;
        let structured = request.output_schema.is_some();
        let model = self.model.clone();
        Ok(async_stream(move |tx| async move {
            let mut response = ChatResponse::empty(model);
            // Content block index -> tool call index, and the arguments as they arrive.
            let mut block_tool: Vec<Option<usize>> = Vec::new();
            let mut raw_args: Vec<String> = Vec::new();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let data = match event.json("anthropic") {
                    Ok(v) => v,
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                let kind = data
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or(&event.event);
                let mut out = Vec::new();
                match kind {
                    "message_start" => {
                        if let Some(m) = data.pointer("/message/model").and_then(Value::as_str) {
                            response.model = m.to_string();
                        }
                        response.usage.input_tokens = data
                            .pointer("/message/usage/input_tokens")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                    }
                    "content_block_start" => {
                        let mut continue_call = false;
                        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                        let block = data.get("content_block").unwrap_or(&Value::Null);
                        while block_tool.len() <= index {
                            block_tool.push(None);
                        }
                        if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                            let id = block
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            // Some gateways split one call into several blocks sharing its id:
                            // they continue the call before them.
                            if let Some(last) = response.tool_calls.len().checked_sub(1)
                                && !id.is_empty()
                                && response.tool_calls[last].id == id
                            {
                                block_tool[index] = Some(last);
                                out.clear();
                                continue_call = true;
                            }
                        }
                        if !continue_call
                            && block.get("type").and_then(Value::as_str) == Some("tool_use")
                        {
                            let id = block
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            let name = block
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            let call = response.tool_calls.len();
                            block_tool[index] = Some(call);
                            response.tool_calls.push(ToolCall {
                                id: id.clone(),
                                name: name.clone(),
                                arguments: Value::Null,
                            });
                            raw_args.push(String::new());
                            if !(structured && name == OUTPUT_TOOL) {
                                out.push(StreamEvent::ToolCall {
                                    index: call,
                                    id: Some(id),
                                    name: Some(name),
                                    arguments_delta: String::new(),
                                });
                            }
                        }
                    }
                    "content_block_delta" => {
                        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                        let delta = data.get("delta").unwrap_or(&Value::Null);
                        match delta.get("type").and_then(Value::as_str) {
                            Some("text_delta") => {
                                let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                                response.text.push_str(text);
                                out.push(StreamEvent::Text {
                                    delta: text.to_string(),
                                });
                            }
                            Some("input_json_delta") => {
                                let part = delta
                                    .get("partial_json")
                                    .and_then(Value::as_str)
                                    .unwrap_or("");
                                if let Some(Some(call)) = block_tool.get(index).copied() {
                                    raw_args[call].push_str(part);
                                    if structured && response.tool_calls[call].name == OUTPUT_TOOL {
                                        out.push(StreamEvent::Text {
                                            delta: part.to_string(),
                                        });
                                    } else {
                                        out.push(StreamEvent::ToolCall {
                                            index: call,
                                            id: None,
                                            name: None,
                                            arguments_delta: part.to_string(),
                                        });
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    "message_delta" => {
                        if let Some(r) = data.pointer("/delta/stop_reason").and_then(Value::as_str)
                        {
                            response.stop_reason = stop_reason(Some(r));
                        }
                        if let Some(n) =
                            data.pointer("/usage/output_tokens").and_then(Value::as_u64)
                        {
                            response.usage.output_tokens = n;
                        }
                        // Gateways may report the input tokens here rather than at the start.
                        if let Some(n) = data
                            .pointer("/usage/input_tokens")
                            .and_then(Value::as_u64)
                            .filter(|&n| n > 0)
                        {
                            response.usage.input_tokens = n;
                        }
                    }
                    "message_stop" => break,
                    "error" => {
                        let message = data
                            .pointer("/error/message")
                            .and_then(Value::as_str)
                            .unwrap_or("stream error")
                            .to_string();
                        let kind = match data.pointer("/error/type").and_then(Value::as_str) {
                            Some("overloaded_error") | Some("api_error") => ErrorKind::Transient,
                            Some("rate_limit_error") => ErrorKind::RateLimited,
                            _ => ErrorKind::Permanent,
                        };
                        let mut err = LlmError::unreadable("anthropic", message, &event.data);
                        err.kind = kind;
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                    _ => {} // ping, content_block_stop
                }
                for e in out {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
            }
            for (call, raw) in response.tool_calls.iter_mut().zip(&raw_args) {
                call.arguments = if raw.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(raw).unwrap_or_else(|_| json!(raw))
                };
            }
            if structured {
                // The text was streamed from the output tool's arguments; keep it as sent.
                let streamed = std::mem::take(&mut response.text);
                response = unwrap_output(response, true);
                if response.text.is_empty() {
                    response.text = streamed;
                }
            }
            let _ = tx.send(Ok(StreamEvent::Done { response })).await;
        }))
    }
}
