//! The OpenAI chat-completions wire format, spoken by OpenAI, Perplexity and the
//! "OpenAI-compatible" servers (Ollama, vLLM, llama.cpp).
//!
//! Calls go through `async-openai`'s client: its typed request structs, request building,
//! auth and server-sent-event decoding. Its HTTP layer is ours ([`Transport`], installed
//! as the client's tower service), so every call gets the same timeouts, size limit and
//! error classification as the other providers, keeping the status, `Retry-After` and raw
//! body that `async-openai`'s own error type drops. Replies are read as JSON values
//! (`async-openai`'s bring-your-own-types calls) and leniently: fields those servers omit
//! or type differently, finish reasons newer than the typed enums, and Perplexity's
//! citations are all kept, and an unreadable reply keeps its raw body in the error.

use async_openai::config::Config;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::traits::RequestOptionsBuilder;
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
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::http::{Http, async_stream, classify, transport_error};
use super::secret::scrub;
use super::{
    ApiKey, Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, ErrorKind, LlmError,
    Message, Role, StopReason, StreamEvent, ToolCall, ToolChoice, Usage,
};

/// Which server speaks the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI itself.
    OpenAi,
    /// Perplexity (OpenAI's wire, its own quirks).
    Perplexity,
    /// Any OpenAI-compatible server (structured output negotiated).
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
    client: async_openai::Client<WireConfig>,
    http: Http,
    base: String,
    model: String,
    key: Option<ApiKey>,
}

impl std::fmt::Debug for OpenAiWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiWire")
            .field("flavor", &self.flavor)
            .field("base", &self.base)
            .field("model", &self.model)
            .field("key", &self.key)
            .finish()
    }
}

/// Where and how `async-openai` addresses a server. Unlike its `OpenAIConfig`, no
/// `Authorization` header is sent without a key (local compatible servers need none),
/// and nothing is read from the environment behind the caller's back.
pub(crate) struct WireConfig {
    base: String,
    headers: HeaderMap,
    key: SecretString,
}

impl WireConfig {
    fn new(provider: &str, base: &str, key: Option<&ApiKey>) -> Result<Self, LlmError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| {
                    LlmError::new(
                        ErrorKind::Auth,
                        provider,
                        "the API key holds characters an HTTP header cannot carry: set it again without them",
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(WireConfig {
            base: base.to_string(),
            headers,
            key: SecretString::from(key.map(|k| k.expose().to_string()).unwrap_or_default()),
        })
    }
}

impl Config for WireConfig {
    fn headers(&self) -> HeaderMap {
        self.headers.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn api_base(&self) -> &str {
        &self.base
    }

    fn api_key(&self) -> &SecretString {
        &self.key
    }
}

/// Sent with streaming calls, which tells [`Transport`] the reply is read event by event.
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

/// The HTTP layer under `async-openai`'s client: [`Http`]'s timeouts and error
/// classification, and its size limit and key scrubbing on bodies read whole. A streaming
/// call's body is scrubbed as it streams; its events are counted against the limit as they
/// are read.
#[derive(Clone)]
struct Transport {
    http: Http,
    provider: &'static str,
    key: Option<ApiKey>,
}

impl Transport {
    async fn send(self, factory: HttpRequestFactory) -> Result<reqwest::Response, LlmError> {
        let request = factory
            .build()
            .await
            .map_err(|e| from_openai(self.provider, e, self.key.as_ref()))?;
        let events = request.headers().get(ACCEPT) == Some(&EVENT_STREAM);
        let response = self
            .http
            .execute(self.provider, request, self.key.as_ref())
            .await?;
        if events {
            return Ok(match &self.key {
                Some(key) => Http::scrubbed(response, key),
                None => response,
            });
        }
        self.http
            .buffered(self.provider, response, self.key.as_ref())
            .await
    }
}

/// `async-openai`'s client for a server at `base`, over [`Transport`].
pub(crate) fn wire_client(
    provider: &'static str,
    http: &Http,
    base: &str,
    key: Option<&ApiKey>,
) -> Result<async_openai::Client<WireConfig>, LlmError> {
    let transport = Transport {
        http: http.clone(),
        provider,
        key: key.cloned(),
    };
    let config = WireConfig::new(provider, base, key)?;
    Ok(
        async_openai::Client::build(http.client().clone(), config).with_http_service(
            tower::service_fn(move |factory| transport.clone().send(factory)),
        ),
    )
}

/// Lets [`Transport`]'s errors pass through `async-openai` intact, to be unwrapped by
/// [`from_openai`].
impl From<LlmError> for OpenAIError {
    fn from(error: LlmError) -> Self {
        OpenAIError::Boxed(Box::new(error))
    }
}

/// An `async-openai` error as ours. Errors from [`Transport`] come back as they were made.
pub(crate) fn from_openai(provider: &str, error: OpenAIError, key: Option<&ApiKey>) -> LlmError {
    match error {
        OpenAIError::Boxed(e) => match e.downcast::<LlmError>() {
            Ok(ours) => *ours,
            Err(other) => LlmError::new(
                ErrorKind::Transient,
                provider,
                scrub(&other.to_string(), key),
            ),
        },
        OpenAIError::Reqwest(e) => transport_error(provider, &e, key),
        OpenAIError::JSONDeserialize(e, body) => LlmError::unreadable(
            provider,
            format!("the reply is not JSON: {e}"),
            &scrub(&body, key),
        ),
        OpenAIError::ApiError(api) => classify(
            provider,
            api.status_code.as_u16(),
            &json!({ "error": api.api_error }).to_string(),
            None,
            key,
        ),
        OpenAIError::StreamError(e) => LlmError::new(
            ErrorKind::Transient,
            provider,
            scrub(&format!("the stream broke: {e}"), key),
        ),
        other => LlmError::new(
            ErrorKind::InvalidRequest,
            provider,
            scrub(&other.to_string(), key),
        ),
    }
}

impl OpenAiWire {
    pub(crate) fn new(
        flavor: Flavor,
        http: Http,
        base: &str,
        model: &str,
        key: Option<ApiKey>,
    ) -> Result<Self, LlmError> {
        let base = base.trim_end_matches('/').to_string();
        let client = wire_client(flavor.provider(), &http, &base, key.as_ref())?;
        Ok(OpenAiWire {
            flavor,
            client,
            http,
            base,
            model: model.to_string(),
            key,
        })
    }

    /// The request as sent: typed by `async-openai` so field names and shapes follow
    /// OpenAI's spec, then given the output schema the way `mode` says.
    fn body(&self, request: &ChatRequest, stream: bool, mode: SchemaMode) -> Value {
        let typed = self.typed_body(request, stream, mode);
        let mut body = serde_json::to_value(&typed).unwrap_or(Value::Null);
        if let Some(t) = request.temperature {
            // `to_value` widens the f32 (0.20000000298023224); send it as written.
            body["temperature"] = super::float_param(t);
        }
        if let (Some(schema), SchemaMode::JsonObject) = (&request.output_schema, mode) {
            // llama-cpp-python's form: JSON mode constrained by a schema beside it.
            body["response_format"] = json!({"type": "json_object", "schema": schema});
        }
        body
    }

    fn typed_body(
        &self,
        request: &ChatRequest,
        stream: bool,
        mode: SchemaMode,
    ) -> CreateChatCompletionRequest {
        let mut messages: Vec<_> = request.messages.iter().map(message).collect();
        if let (Some(schema), SchemaMode::Prompt) = (&request.output_schema, mode) {
            messages.insert(
                0,
                message(&super::Message::system(schema_instruction(schema))),
            );
        }
        let mut body = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages,
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
        if let (Some(schema), SchemaMode::JsonSchema) = (&request.output_schema, mode) {
            body.response_format = Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: "output".into(),
                    schema: schema.clone(),
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
        match (&request.output_schema, self.flavor) {
            (Some(schema), Flavor::Compatible) => self.complete_structured(request, schema).await,
            _ => self.complete_with(request, SchemaMode::JsonSchema).await,
        }
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        if request.output_schema.is_none() || self.flavor != Flavor::Compatible {
            return self.stream_with(request, SchemaMode::JsonSchema).await;
        }
        // Negotiated as for a complete call; a stream's answer cannot be re-asked midway.
        let mut mode = schema_mode(&self.base);
        loop {
            match self.stream_with(request, mode).await {
                Err(e) if refuses_schema(&e) => match mode.next() {
                    Some(next) => mode = next,
                    None => return Err(e),
                },
                Ok(stream) => {
                    remember_schema_mode(&self.base, mode);
                    return Ok(stream);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How an OpenAI-compatible server takes a JSON Schema for its answer. Servers differ:
/// OpenAI, vLLM and llama.cpp's `llama-server` take `json_schema`; llama-cpp-python takes
/// only `json_object` with a `schema` beside it; others take neither. Tried in this order,
/// the first that a server accepts is remembered for its base URL for the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaMode {
    JsonSchema,
    JsonObject,
    Prompt,
}

impl SchemaMode {
    fn next(self) -> Option<SchemaMode> {
        match self {
            SchemaMode::JsonSchema => Some(SchemaMode::JsonObject),
            SchemaMode::JsonObject => Some(SchemaMode::Prompt),
            SchemaMode::Prompt => None,
        }
    }
}

fn schema_modes() -> &'static std::sync::Mutex<std::collections::HashMap<String, SchemaMode>> {
    static MODES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, SchemaMode>>,
    > = std::sync::OnceLock::new();
    MODES.get_or_init(Default::default)
}

/// What worked for `base` before, or the standard form.
pub(crate) fn schema_mode(base: &str) -> SchemaMode {
    schema_modes()
        .lock()
        .ok()
        .and_then(|m| m.get(base).copied())
        .unwrap_or(SchemaMode::JsonSchema)
}

fn remember_schema_mode(base: &str, mode: SchemaMode) {
    if let Ok(mut modes) = schema_modes().lock() {
        modes.insert(base.to_string(), mode);
    }
}

/// A refusal of the way the schema was sent: a 4xx or 5xx whose text names it.
fn refuses_schema(e: &LlmError) -> bool {
    let refused = matches!(e.status, Some(s) if s >= 400) || e.kind == ErrorKind::InvalidRequest;
    let text = format!("{} {}", e.message, e.body.as_deref().unwrap_or_default()).to_lowercase();
    refused && (text.contains("response_format") || text.contains("json_schema"))
}

/// The instruction that carries the schema when a server takes it no other way.
fn schema_instruction(schema: &Value) -> String {
    format!(
        "Answer with one JSON value only, no prose and no code fences. It must be valid against this JSON Schema:\n{schema}"
    )
}

/// Times a structured answer that breaks its schema is asked for again, with the errors.
const SCHEMA_RETRIES: usize = 2;

impl OpenAiWire {
    /// A structured answer from a compatible server: the schema sent in the form the server
    /// takes (negotiated), the answer checked against it, and asked again with the errors
    /// when it does not hold.
    async fn complete_structured(
        &self,
        request: &ChatRequest,
        schema: &Value,
    ) -> Result<ChatResponse, LlmError> {
        let provider = self.flavor.provider();
        let validator = jsonschema::validator_for(schema).map_err(|e| {
            LlmError::new(
                ErrorKind::InvalidRequest,
                provider,
                format!("the output schema is not a valid JSON Schema: {e}"),
            )
        })?;
        let mut mode = schema_mode(&self.base);
        let mut attempt = request.clone();
        let mut retries = 0;
        loop {
            let reply = match self.complete_with(&attempt, mode).await {
                Err(e) if refuses_schema(&e) => match mode.next() {
                    Some(next) => {
                        tracing::info!(base = %self.base, ?next, "the server refused the schema's form; trying the next");
                        mode = next;
                        continue;
                    }
                    None => return Err(e),
                },
                other => other?,
            };
            remember_schema_mode(&self.base, mode);
            if !reply.tool_calls.is_empty() {
                return Ok(reply);
            }
            let problems = match super::answer::json_answer(&validator, &reply.text) {
                Ok(value) => {
                    return Ok(ChatResponse {
                        text: value.to_string(),
                        ..reply
                    });
                }
                Err(problems) => problems,
            };
            if retries >= SCHEMA_RETRIES {
                return Err(LlmError::unreadable(
                    provider,
                    format!(
                        "the answer broke the output schema after {} tries: {problems}",
                        retries + 1
                    ),
                    &reply.text,
                ));
            }
            retries += 1;
            attempt
                .messages
                .push(super::Message::assistant(reply.text.clone()));
            attempt.messages.push(super::Message::user(format!(
                "That answer is not valid: {problems}. Answer again with JSON only, valid against the schema."
            )));
        }
    }

    async fn complete_with(
        &self,
        request: &ChatRequest,
        mode: SchemaMode,
    ) -> Result<ChatResponse, LlmError> {
        let provider = self.flavor.provider();
        let body = self.body(request, false, mode);
        let reply: Value = self
            .http
            .in_time(provider, async {
                self.client
                    .chat()
                    .create_byot(&body)
                    .await
                    .map_err(|e| from_openai(provider, e, self.key.as_ref()))
            })
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

    async fn stream_with(
        &self,
        request: &ChatRequest,
        mode: SchemaMode,
    ) -> Result<ChatStream, LlmError> {
        let provider = self.flavor.provider();
        let key = self.key.clone();
        let mut budget = self.http.stream_budget(provider);
        // Each event's JSON text is taken raw, to count it against the size limit and to
        // keep it in the error when it does not parse.
        let mut events = self
            .client
            .chat()
            .headers(HeaderMap::from_iter([(ACCEPT, EVENT_STREAM)]))
            .create_stream_byot::<_, Box<RawValue>>(self.body(request, true, mode))
            .await
            .map_err(|e| from_openai(provider, e, key.as_ref()))?;
        let model = self.model.clone();
        Ok(async_stream(move |tx| async move {
            let mut acc = Accumulator::new(model);
            loop {
                let event = match budget.next(&mut events).await {
                    Ok(Some(Ok(event))) => budget.count(event.get().len()).map(|()| event),
                    Ok(Some(Err(e))) => Err(from_openai(provider, e, key.as_ref())),
                    Ok(None) => break,
                    Err(stalled) => Err(stalled),
                };
                let chunk = event.and_then(|raw| {
                    serde_json::from_str::<Value>(raw.get()).map_err(|e| {
                        LlmError::unreadable(
                            provider,
                            format!("unreadable stream event: {e}"),
                            raw.get(),
                        )
                    })
                });
                let outs = chunk.and_then(|chunk| acc.chunk(provider, &chunk));
                match outs {
                    Ok(outs) => {
                        for out in outs {
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
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

    /// The events in one chunk; a chunk carrying an `error` (a failure after the stream
    /// began) is an error.
    fn chunk(&mut self, provider: &str, chunk: &Value) -> Result<Vec<StreamEvent>, LlmError> {
        let mut out = Vec::new();
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the server reported an error mid-stream");
            let mut e = LlmError::new(ErrorKind::Transient, provider, message);
            e.body = Some(chunk.to_string());
            return Err(e);
        }
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
            return Ok(out);
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
        Ok(out)
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
