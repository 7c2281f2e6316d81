//! The OpenAI chat-completions wire format, spoken by OpenAI, Perplexity and the
//! "OpenAI-compatible" servers (Ollama, vLLM, llama.cpp).
//!
//! Requests are built from `async-openai`'s typed wire structs. The transport is our own
//! [`Http`], not `async-openai`'s client, because that client drops the `Retry-After`
//! header and the raw body that retries and error reports need. Replies are read leniently:
//! fields those servers omit or type differently, and finish reasons newer than the typed
//! enums, are tolerated, and an unreadable reply keeps its raw body in the error.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionNamedToolChoice,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, ChatCompletionStreamOptions, ChatCompletionTool,
    ChatCompletionToolChoiceOption, ChatCompletionTools, CreateChatCompletionRequest, FunctionCall,
    FunctionName, FunctionObject, ResponseFormat, ResponseFormatJsonSchema, StopConfiguration,
    ToolChoiceOptions,
};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::http::{Http, async_stream};
use super::{
    ApiKey, Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, LlmError, Message,
    Role, StopReason, StreamEvent, ToolCall, ToolChoice, Usage,
};

/// Which server speaks the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Perplexity,
    Compatible,
}

impl Flavor {
    fn provider(self) -> &'static str {
        match self {
            Flavor::OpenAi => "openai",
            Flavor::Perplexity => "perplexity",
            Flavor::Compatible => "openai-compat",
        }
    }
}

/// A model behind a chat-completions endpoint.
pub struct OpenAiWire {
    flavor: Flavor,
    http: Http,
    url: String,
    base: String,
    model: String,
    key: Option<ApiKey>,
}

impl std::fmt::Debug for OpenAiWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiWire")
            .field("flavor", &self.flavor)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key)
            .finish()
    }
}

impl OpenAiWire {
    pub(crate) fn new(
        flavor: Flavor,
        http: Http,
        base: &str,
        model: &str,
        key: Option<ApiKey>,
    ) -> Self {
        let base = base.trim_end_matches('/').to_string();
        OpenAiWire {
            flavor,
            http,
            url: format!("{base}/chat/completions"),
            base,
            model: model.to_string(),
            key,
        }
    }

    /// The request, typed by `async-openai` so field names and shapes follow OpenAI's spec.
    fn body(&self, request: &ChatRequest, stream: bool) -> CreateChatCompletionRequest {
        let mut body = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: request.messages.iter().map(message).collect(),
            temperature: request.temperature,
            ..Default::default()
        };
        if !request.tools.is_empty() {
            body.tools = Some(
                request
                    .tools
                    .iter()
                    .map(|t| {
                        ChatCompletionTools::Function(ChatCompletionTool {
                            function: FunctionObject {
                                name: t.name.clone(),
                                description: Some(t.description.clone()),
                                parameters: Some(t.parameters.clone()),
                                strict: None,
                            },
                        })
                    })
                    .collect(),
            );
            body.tool_choice = Some(match &request.tool_choice {
                ToolChoice::Auto => ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::Auto),
                ToolChoice::None => ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::None),
                ToolChoice::Required => {
                    ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::Required)
                }
                ToolChoice::Tool(name) => {
                    ChatCompletionToolChoiceOption::Function(ChatCompletionNamedToolChoice {
                        function: FunctionName { name: name.clone() },
                    })
                }
            });
        }
        if let Some(schema) = &request.output_schema {
            body.response_format = Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: "output".into(),
                    schema: Some(schema.clone()),
                    strict: Some(true),
                },
            });
        }
        if let Some(n) = request.max_tokens {
            // OpenAI renamed the field; compatible servers still read the old name.
            if self.flavor == Flavor::OpenAi {
                body.max_completion_tokens = Some(n);
            } else {
                #[allow(deprecated)]
                {
                    body.max_tokens = Some(n);
                }
            }
        }
        if !request.stop.is_empty() {
            body.stop = Some(StopConfiguration::StringArray(request.stop.clone()));
        }
        if stream {
            body.stream = Some(true);
            body.stream_options = Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            });
        }
        body
    }

    fn post(&self, body: &CreateChatCompletionRequest) -> reqwest::RequestBuilder {
        let mut req = self.http.client().post(&self.url).json(body);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key.expose());
        }
        req
    }

    fn unreadable(&self, what: &str, body: &Value) -> LlmError {
        LlmError::unreadable(
            self.flavor.provider(),
            format!("unexpected reply from {}: {what}", self.base),
            &body.to_string(),
        )
    }
}

fn message(m: &Message) -> ChatCompletionRequestMessage {
    match m.role {
        Role::Tool => ChatCompletionRequestToolMessage {
            content: m.content.clone().into(),
            tool_call_id: m.tool_call_id.clone().unwrap_or_default(),
        }
        .into(),
        Role::Assistant => {
            let mut reply = ChatCompletionRequestAssistantMessage::default();
            if !m.content.is_empty() || m.tool_calls.is_empty() {
                reply.content = Some(m.content.clone().into());
            }
            if !m.tool_calls.is_empty() {
                reply.tool_calls = Some(
                    m.tool_calls
                        .iter()
                        .map(|c| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: c.id.clone(),
                                    function: FunctionCall {
                                        name: c.name.clone(),
                                        arguments: c.arguments.to_string(),
                                    },
                                },
                            )
                        })
                        .collect(),
                );
            }
            reply.into()
        }
        Role::System => ChatCompletionRequestSystemMessage {
            content: m.content.clone().into(),
            name: None,
        }
        .into(),
        Role::User => ChatCompletionRequestUserMessage {
            content: m.content.clone().into(),
            name: None,
        }
        .into(),
    }
}

/// Arguments arrive as a JSON string (OpenAI) or, from some servers, as an object.
fn arguments(raw: Option<&Value>) -> Value {
    match raw {
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Some(other) => other.clone(),
        None => json!({}),
    }
}

fn stop_reason(finish: Option<&str>, has_calls: bool) -> StopReason {
    match finish {
        Some("stop") | Some("eos") | None if has_calls => StopReason::ToolCalls,
        Some("stop") | Some("eos") | Some("end_turn") => StopReason::End,
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolCalls,
        Some("content_filter") => StopReason::ContentFilter,
        None => StopReason::End,
        Some(_) => StopReason::Other,
    }
}

/// Text content: a string, null, or (some servers) a list of text parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn usage(v: Option<&Value>) -> Usage {
    let n = |k: &str| {
        v.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        input_tokens: n("prompt_tokens"),
        output_tokens: n("completion_tokens"),
    }
}

/// Perplexity's sources: `citations` (URLs) or `search_results` (objects with a `url`).
fn citations(v: &Value) -> Vec<String> {
    if let Some(list) = v.get("citations").and_then(Value::as_array) {
        return list
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
    }
    v.get("search_results")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| r.get("url").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl ChatModel for OpenAiWire {
    fn name(&self) -> String {
        match self.flavor {
            Flavor::Compatible => format!("openai-compat:{}#{}", self.base, self.model),
            f => format!("{}:{}", f.provider(), self.model),
        }
    }

    fn capabilities(&self) -> Capabilities {
        let tools = self.flavor != Flavor::Perplexity;
        Capabilities {
            tools,
            parallel_tool_calls: tools,
            structured_output: true,
            streaming: true,
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let provider = self.flavor.provider();
        let reply = self
            .http
            .json(
                provider,
                self.post(&self.body(request, false)),
                self.key.as_ref(),
            )
            .await?;
        let Some(choice) = reply.pointer("/choices/0") else {
            return Err(self.unreadable("no `choices`", &reply));
        };
        let msg = choice.get("message").unwrap_or(&Value::Null);
        let mut tool_calls = Vec::new();
        for (i, call) in msg
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(name) = call.pointer("/function/name").and_then(Value::as_str) else {
                return Err(self.unreadable("a tool call without a name", &reply));
            };
            tool_calls.push(ToolCall {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{i}"), str::to_string),
                name: name.to_string(),
                arguments: arguments(call.pointer("/function/arguments")),
            });
        }
        Ok(ChatResponse {
            model: reply
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.model)
                .to_string(),
            text: content_text(msg.get("content")),
            stop_reason: stop_reason(
                choice.get("finish_reason").and_then(Value::as_str),
                !tool_calls.is_empty(),
            ),
            tool_calls,
            usage: usage(reply.get("usage")),
            citations: citations(&reply),
        })
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let provider = self.flavor.provider();
        let mut events = self
            .http
            .sse(
                provider,
                self.post(&self.body(request, true)),
                self.key.as_ref(),
            )
            .await?;
        let model = self.model.clone();
        Ok(async_stream(move |tx| async move {
            let mut acc = Accumulator::new(model);
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if event.data.trim() == "[DONE]" {
                    break;
                }
                let chunk = match event.json(provider) {
                    Ok(v) => v,
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                for out in acc.chunk(&chunk) {
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
            let _ = tx
                .send(Ok(StreamEvent::Done {
                    response: acc.finish(),
                }))
                .await;
        }))
    }
}

/// Builds the whole reply from stream chunks.
struct Accumulator {
    response: ChatResponse,
    finish: Option<String>,
    raw_args: Vec<String>,
}

impl Accumulator {
    fn new(model: String) -> Self {
        Accumulator {
            response: ChatResponse::empty(model),
            finish: None,
            raw_args: Vec::new(),
        }
    }

    fn chunk(&mut self, chunk: &Value) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if let Some(m) = chunk.get("model").and_then(Value::as_str) {
            self.response.model = m.to_string();
        }
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            self.response.usage = usage(chunk.get("usage"));
        }
        let cites = citations(chunk);
        if !cites.is_empty() {
            self.response.citations = cites;
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return out;
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let text = content_text(delta.get("content"));
        if !text.is_empty() {
            self.response.text.push_str(&text);
            out.push(StreamEvent::Text { delta: text });
        }
        for (pos, call) in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize);
            while self.response.tool_calls.len() <= index {
                self.response.tool_calls.push(ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: Value::Null,
                });
                self.raw_args.push(String::new());
            }
            let id = call.get("id").and_then(Value::as_str).map(str::to_string);
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(str::to_string);
            let args = match call.pointer("/function/arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            if let Some(id) = &id {
                self.response.tool_calls[index].id.clone_from(id);
            }
            if let Some(name) = &name {
                self.response.tool_calls[index].name.push_str(name);
            }
            self.raw_args[index].push_str(&args);
            out.push(StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments_delta: args,
            });
        }
        out
    }

    fn finish(mut self) -> ChatResponse {
        for (i, (call, raw)) in self
            .response
            .tool_calls
            .iter_mut()
            .zip(&self.raw_args)
            .enumerate()
        {
            call.arguments = arguments(Some(&Value::String(raw.clone())));
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
        }
        self.response.stop_reason =
            stop_reason(self.finish.as_deref(), !self.response.tool_calls.is_empty());
        self.response
    }
}
