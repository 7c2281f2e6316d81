//! LLM providers behind one [`ChatModel`] trait: the model layer, usable alone (it needs
//! the engine only for the `llm.chat` node and usage records).
//!
//! One request shape ([`ChatRequest`]) and one reply shape ([`ChatResponse`]) for every
//! provider; [`connect`] turns a model string (`local:smollm2-135m`, the default and the
//! only one that needs no key and no network, or `openai:MODEL`, `anthropic:MODEL`,
//! `gemini:MODEL`, `perplexity:MODEL`, `openai-compat:BASE_URL#MODEL`) into a model. Errors are classified
//! ([`ErrorKind`]) so callers know what to retry, and keep the provider's status and body.
//! [`Resilient`] adds retries that honour `Retry-After`, and [`Fallback`] tries models in
//! order.
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

pub mod answer;
mod anthropic;
mod embeddings;
mod gemini;
mod http;
#[cfg(feature = "local-model")]
mod local;
pub mod node;
mod openai;
pub mod pricing;
mod resilient;
mod scripted;
mod secret;
pub mod trace;

pub use anthropic::Anthropic;
pub use embeddings::OpenAiEmbeddings;
pub use gemini::{Gemini, gemini_schema};
pub use http::client_builder as http_client_builder;
pub use http::cut as cut_text;
#[cfg(feature = "local-model")]
pub use local::Local;
pub use node::{ChatNode, chain};
pub use openai::{Flavor, OpenAiWire};
pub use resilient::{Fallback, Resilient, RetryPolicy};
pub use scripted::ScriptedModel;
pub use secret::ApiKey;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// The person (or the program speaking for one).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering `tool_call_id`.
    Tool,
}

/// A tool the model asked to call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The model's id for the call, echoed in the tool's result.
    pub id: String,
    /// The tool.
    pub name: String,
    /// The arguments as JSON (parsed from the provider's string form where it uses one).
    pub arguments: Value,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What they say.
    #[serde(default)]
    pub content: String,
    /// Calls requested by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::text(Role::System, text)
    }
    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::text(Role::User, text)
    }
    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::text(Role::Assistant, text)
    }
    /// A tool's result, answering the call `id`.
    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.into()),
        }
    }
    fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool is called.
    None,
    /// Some tool, the model picks which.
    Required,
    /// This tool.
    Tool(String),
}

/// One request, whatever the provider.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Whether it must, may or must not call one.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// When set, the reply's text is JSON valid against this schema.
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The most tokens the reply may have.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Texts that end the reply.
    #[serde(default)]
    pub stop: Vec<String>,
}

impl ChatRequest {
    /// A request with these messages and nothing else set.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest {
            messages,
            ..Default::default()
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    End,
    /// `max_tokens` was reached.
    MaxTokens,
    /// The model wants tools called.
    ToolCalls,
    /// A stop sequence was produced.
    StopSequence,
    /// The provider filtered the content.
    ContentFilter,
    /// Anything else the provider reported.
    Other,
}

/// Tokens used by one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Reply tokens.
    pub output_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// A reply, whatever the provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The reply's text (the JSON, with an output schema).
    pub text: String,
    /// Tools the model asked for.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Tokens used.
    pub usage: Usage,
    /// Sources the answer cites (Perplexity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<String>,
}

impl ChatResponse {
    /// A reply with nothing in it yet, that streamed pieces are added to.
    pub fn empty(model: impl Into<String>) -> Self {
        ChatResponse {
            model: model.into(),
            text: String::new(),
            tool_calls: Vec::new(),
            stop_reason: StopReason::End,
            usage: Usage::default(),
            citations: Vec::new(),
        }
    }
}

/// A piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// More text.
    Text {
        /// The text.
        delta: String,
    },
    /// More of tool call `index`: its id and name arrive first, the arguments in pieces.
    ToolCall {
        /// Which call (0, 1, ...).
        index: usize,
        /// The model's id for the call, in its first piece.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The tool, in the first piece.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// More of the arguments' JSON text.
        arguments_delta: String,
    },
    /// The whole reply, assembled; always the last event.
    Done {
        /// The reply.
        response: ChatResponse,
    },
}

/// A streamed reply: its pieces, then the whole.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// It can call tools.
    pub tools: bool,
    /// It can call several tools in one turn.
    pub parallel_tool_calls: bool,
    /// It can answer in a given JSON Schema.
    pub structured_output: bool,
    /// It can stream.
    pub streaming: bool,
}

impl Capabilities {
    /// Tools (also in parallel), structured output and streaming.
    pub const ALL: Capabilities = Capabilities {
        tools: true,
        parallel_tool_calls: true,
        structured_output: true,
        streaming: true,
    };
}

/// How a call failed, for deciding what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 429: retry after `retry_after` (or a backoff).
    RateLimited,
    /// Bad or missing key: retrying will not help.
    Auth,
    /// The request itself is wrong.
    InvalidRequest,
    /// The prompt does not fit the model's context.
    ContextTooLong,
    /// A timeout, a dropped connection, a 5xx: worth retrying.
    Transient,
    /// Anything else that retrying will not fix, including a reply we cannot read.
    Permanent,
}

/// A failed model call. Never holds an API key.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{provider}: {message}{}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct LlmError {
    /// What kind of failure: decides retries.
    pub kind: ErrorKind,
    /// The provider (`openai`, `anthropic`, ...).
    pub provider: String,
    /// What happened, with keys scrubbed.
    pub message: String,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// The provider's body, as received (cut at 64 KiB).
    pub body: Option<String>,
    /// How long the provider asked to wait (`Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl LlmError {
    /// The server never answered (no response headers within the first-byte timeout).
    pub fn is_silence(&self) -> bool {
        self.kind == ErrorKind::Transient && self.message.starts_with(http::SILENCE)
    }

    /// An error of `kind` from `provider`.
    pub fn new(kind: ErrorKind, provider: &str, message: impl Into<String>) -> Self {
        LlmError {
            kind,
            provider: provider.to_string(),
            message: message.into(),
            status: None,
            body: None,
            retry_after: None,
        }
    }

    /// A reply that could not be read: permanent, keeping the body (cut at 64 KiB).
    pub fn unreadable(provider: &str, message: impl Into<String>, body: &str) -> Self {
        let mut e = LlmError::new(ErrorKind::Permanent, provider, message);
        e.body = Some(http::cut(body));
        e
    }

    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::RateLimited | ErrorKind::Transient)
    }
}

/// A chat model.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// `provider:model`, as in model strings.
    fn name(&self) -> String;

    /// What the model can do.
    fn capabilities(&self) -> Capabilities;

    /// One whole reply.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Streams the reply; the last event is [`StreamEvent::Done`] with the whole reply.
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError>;
}

/// The model used when none is named: the local one, which needs no key and no network.
pub const DEFAULT_MODEL: &str = "local:smollm2-135m";

/// Where providers live and how long calls may take. Base URLs are overridable (for proxies,
/// and for tests against local servers).
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The OpenAI API's base URL (`OPENAI_BASE_URL`).
    pub openai_base: String,
    /// Anthropic's (`ANTHROPIC_BASE_URL`).
    pub anthropic_base: String,
    /// Gemini's (`GEMINI_BASE_URL`).
    pub gemini_base: String,
    /// Perplexity's (`PERPLEXITY_BASE_URL`).
    pub perplexity_base: String,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Until the response headers (or, streaming, the first event) arrive.
    pub first_byte_timeout: Duration,
    /// How long a whole call may take.
    pub total_timeout: Duration,
    /// Responses larger than this are refused.
    pub max_response_bytes: usize,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        let env = |names: &[&str], default: &str| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
                .unwrap_or_else(|| default.to_string())
        };
        ProviderConfig {
            openai_base: env(&["OPENAI_BASE_URL"], "https://api.openai.com/v1"),
            // Anthropic's SDKs and gateways set this without `/v1`; ours took it with.
            anthropic_base: versioned_base(
                &env(&["ANTHROPIC_BASE_URL"], "https://api.anthropic.com"),
                "v1",
            ),
            // Google's google-genai SDK takes a base without the API version and adds it.
            gemini_base: versioned_base(
                &env(
                    &["GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"],
                    "https://generativelanguage.googleapis.com",
                ),
                "v1beta",
            ),
            perplexity_base: env(&["PERPLEXITY_BASE_URL"], "https://api.perplexity.ai"),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
            max_response_bytes: 16 << 20,
        }
    }
}

/// A vendor base URL in the form its SDK documents, either with the API version (`.../v1`)
/// or without it: the version is added when the last path segment is not already one
/// (`v1`, `v1beta`, `v1alpha`, ...).
pub fn versioned_base(base: &str, version: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let last = base.rsplit('/').next().unwrap_or_default();
    let is_version = last.len() >= 2
        && last.starts_with('v')
        && last[1..].starts_with(|c: char| c.is_ascii_digit());
    if is_version {
        base.to_string()
    } else {
        format!("{base}/{version}")
    }
}

/// A float parameter as the caller wrote it: an `f32` widened to `f64` would go out as
/// `0.20000000298023224`; its shortest text form goes out as `0.2`.
pub(crate) fn float_param(x: f32) -> serde_json::Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Reads a key from the first set variable of `names`, or says which to set.
pub fn key_from_env(provider: &str, names: &[&str]) -> Result<ApiKey, LlmError> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        .map(ApiKey::new)
        .ok_or_else(|| {
            LlmError::new(
                ErrorKind::Auth,
                provider,
                format!("no API key: set {} in the environment", names.join(" or ")),
            )
        })
}

/// How model strings are written, for error messages.
const MODEL_FORMS: &str = "use local:smollm2-135m, openai:MODEL, anthropic:MODEL, gemini:MODEL, perplexity:MODEL or openai-compat:BASE_URL#MODEL";

/// Checks the form of a model string without connecting (for specs loaded before any run).
pub fn check_model_name(model: &str) -> Result<(), String> {
    const PROVIDERS: [&str; 6] = [
        "local",
        "openai",
        "anthropic",
        "gemini",
        "perplexity",
        "openai-compat",
    ];
    let remedy = MODEL_FORMS;
    match model.split_once(':') {
        Some((provider, rest)) if PROVIDERS.contains(&provider) && !rest.is_empty() => {
            if provider == "openai-compat" && !rest.contains('#') {
                Err(format!(
                    "model `{model}`: openai-compat needs BASE_URL#MODEL"
                ))
            } else {
                Ok(())
            }
        }
        Some((provider, _)) if !PROVIDERS.contains(&provider) => Err(format!(
            "model `{model}`: unknown provider `{provider}`; {remedy}"
        )),
        _ => Err(format!("model `{model}` is not PROVIDER:MODEL; {remedy}")),
    }
}

/// Builds the model a model string names, with keys from the environment.
pub fn connect(model: &str, config: &ProviderConfig) -> Result<Arc<dyn ChatModel>, LlmError> {
    connect_with(model, config, None)
}

/// Like [`connect`], with `key` instead of the environment's key when given.
pub fn connect_with(
    model: &str,
    config: &ProviderConfig,
    key: Option<ApiKey>,
) -> Result<Arc<dyn ChatModel>, LlmError> {
    let key_or = |provider: &str, names: &[&str]| match &key {
        Some(k) => Ok(k.clone()),
        None => key_from_env(provider, names),
    };
    let bad = |why: &str| {
        LlmError::new(
            ErrorKind::InvalidRequest,
            "config",
            format!("model `{model}`: {why}; {MODEL_FORMS}"),
        )
    };
    let (provider, rest) = model.split_once(':').ok_or_else(|| bad("no provider"))?;
    if rest.is_empty() {
        return Err(bad("no model name"));
    }
    if provider == "local" {
        #[cfg(feature = "local-model")]
        return Ok(Arc::new(Local::load(rest)?));
        #[cfg(not(feature = "local-model"))]
        return Err(bad("this build has no local model (feature `local-model`)"));
    }
    let http = http::Http::new(config)?;
    Ok(match provider {
        "openai" => Arc::new(OpenAiWire::new(
            Flavor::OpenAi,
            http,
            &config.openai_base,
            rest,
            Some(key_or("openai", &["OPENAI_API_KEY"])?),
        )?),
        "perplexity" => Arc::new(OpenAiWire::new(
            Flavor::Perplexity,
            http,
            &config.perplexity_base,
            rest,
            Some(key_or("perplexity", &["PERPLEXITY_API_KEY"])?),
        )?),
        "openai-compat" => {
            let (base, name) = rest
                .rsplit_once('#')
                .ok_or_else(|| bad("openai-compat needs BASE_URL#MODEL"))?;
            let key = key
                .clone()
                .or_else(|| std::env::var("OPENAI_COMPAT_API_KEY").ok().map(ApiKey::new));
            Arc::new(OpenAiWire::new(Flavor::Compatible, http, base, name, key)?)
        }
        "gemini" => Arc::new(Gemini::new(
            http,
            &config.gemini_base,
            rest,
            key_or("gemini", &["GEMINI_API_KEY", "GOOGLE_API_KEY"])?,
        )),
        "anthropic" => Arc::new(Anthropic::new(
            http,
            &config.anthropic_base,
            rest,
            key_or("anthropic", &["ANTHROPIC_API_KEY", "CLAUDE_API_KEY"])?,
        )),
        other => return Err(bad(&format!("unknown provider `{other}`"))),
    })
}
