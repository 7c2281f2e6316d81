//! `local:smollm2-135m`: the in-process model, the default. No key, no network.
//!
//! Generation is CPU-bound, so it runs on the blocking pool. With an output schema the
//! tokens are constrained by a grammar built from the schema, and the result is validated
//! against the schema too (the grammar does not bound numbers); an invalid result is sampled
//! again, so callers only ever see JSON that validates.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use local_model::{Finish, GenOptions, LocalError, LocalModel};
use serde_json::Value;

use super::http::async_stream;
use super::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, ErrorKind, LlmError, Role,
    StopReason, StreamEvent, ToolChoice, Usage,
};

const PROVIDER: &str = "local";
/// Samples tried before a structured request gives up on producing valid JSON.
const STRUCTURED_ATTEMPTS: u32 = 4;

/// The local model.
pub struct Local {
    name: String,
    model: Arc<LocalModel>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").field("name", &self.name).finish()
    }
}

fn local_error(e: LocalError) -> LlmError {
    let kind = match e {
        LocalError::ContextTooLong { .. } => ErrorKind::ContextTooLong,
        LocalError::Schema(_) => ErrorKind::InvalidRequest,
        LocalError::Missing(_) | LocalError::Load { .. } => ErrorKind::Permanent,
        LocalError::Inference(_) => ErrorKind::Permanent,
    };
    LlmError::new(kind, PROVIDER, e.to_string())
}

impl Local {
    /// Loads (once per process and file) the model `name` names: `smollm2-135m` is the
    /// default file (`$BRAINOPS_LOCAL_MODEL` or the cache); a path to a `.gguf` also works.
    pub fn load(name: &str) -> Result<Self, LlmError> {
        let path = if name.ends_with(".gguf") {
            PathBuf::from(name)
        } else if name == "smollm2-135m" || name == "default" {
            local_model::default_path()
        } else {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                PROVIDER,
                format!(
                    "unknown local model `{name}`; use local:smollm2-135m or local:/path/to/model.gguf"
                ),
            ));
        };
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<LocalModel>>>> = OnceLock::new();
        let cache = LOADED.get_or_init(Default::default);
        let mut loaded = cache
            .lock()
            .map_err(|_| LlmError::new(ErrorKind::Permanent, PROVIDER, "model cache poisoned"))?;
        let model = match loaded.get(&path) {
            Some(m) => Arc::clone(m),
            None => {
                let m = Arc::new(LocalModel::load(&path).map_err(local_error)?);
                loaded.insert(path, Arc::clone(&m));
                m
            }
        };
        Ok(Local {
            name: name.to_string(),
            model,
        })
    }

    fn plan(&self, request: &ChatRequest) -> Result<(Vec<(String, String)>, GenOptions), LlmError> {
        if matches!(
            request.tool_choice,
            ToolChoice::Required | ToolChoice::Tool(_)
        ) && !request.tools.is_empty()
        {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                PROVIDER,
                "the local model does not call tools; use a provider model for tool calling",
            ));
        }
        let mut messages: Vec<(String, String)> = request
            .messages
            .iter()
            .map(|m| {
                let (role, content) = match m.role {
                    Role::System => ("system", m.content.clone()),
                    Role::User => ("user", m.content.clone()),
                    Role::Assistant => ("assistant", m.content.clone()),
                    Role::Tool => ("user", format!("Tool result: {}", m.content)),
                };
                (role.to_string(), content)
            })
            .collect();
        let grammar = match &request.output_schema {
            Some(schema) => {
                messages.push((
                    "system".into(),
                    format!("Answer with JSON only, following this JSON Schema: {schema}"),
                ));
                Some(local_model::schema_grammar(schema).map_err(local_error)?)
            }
            None => None,
        };
        Ok((
            messages,
            GenOptions {
                max_tokens: request.max_tokens.unwrap_or(256),
                temperature: request.temperature.unwrap_or(0.0),
                stop: request.stop.clone(),
                grammar,
                seed: 42,
            },
        ))
    }

    fn response(&self, text: String, g: &local_model::Generation) -> ChatResponse {
        response(self.name.clone(), text, g)
    }
}

fn response(model: String, text: String, g: &local_model::Generation) -> ChatResponse {
    {
        ChatResponse {
            model,
            text,
            tool_calls: Vec::new(),
            stop_reason: match g.finish {
                Finish::End => StopReason::End,
                Finish::MaxTokens => StopReason::MaxTokens,
                Finish::StopSequence => StopReason::StopSequence,
            },
            usage: Usage {
                input_tokens: g.prompt_tokens as u64,
                output_tokens: g.output_tokens as u64,
            },
            citations: Vec::new(),
        }
    }
}

/// Checks a structured answer against its schema; `Err` says why not.
fn validate(schema: &Value, text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let validator = jsonschema::validator_for(schema).map_err(|e| format!("bad schema: {e}"))?;
    match validator.iter_errors(&value).next() {
        Some(e) => Err(format!("{e} at {}", e.instance_path())),
        None => Ok(()),
    }
}

#[async_trait]
impl ChatModel for Local {
    fn name(&self) -> String {
        format!("local:{}", self.name)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: false,
            parallel_tool_calls: false,
            structured_output: true,
            streaming: true,
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let (messages, mut options) = self.plan(request)?;
        let model = Arc::clone(&self.model);
        let schema = request.output_schema.clone();
        let mut usage = Usage::default();
        let mut last_problem = String::new();
        for attempt in 0..STRUCTURED_ATTEMPTS {
            let (m, msgs, opts) = (Arc::clone(&model), messages.clone(), options.clone());
            let generation =
                tokio::task::spawn_blocking(move || m.generate(&msgs, &opts, |_| true))
                    .await
                    .map_err(|e| LlmError::new(ErrorKind::Permanent, PROVIDER, e.to_string()))?
                    .map_err(local_error)?;
            usage += Usage {
                input_tokens: generation.prompt_tokens as u64,
                output_tokens: generation.output_tokens as u64,
            };
            let Some(schema) = &schema else {
                return Ok(self.response(generation.text.clone(), &generation));
            };
            let text = generation.text.trim().to_string();
            match validate(schema, &text) {
                Ok(()) => {
                    let mut response = self.response(text, &generation);
                    response.usage = usage;
                    return Ok(response);
                }
                Err(problem) => {
                    tracing::debug!(attempt, "local structured output invalid: {problem}");
                    last_problem = problem;
                    // Sample differently next time.
                    options.temperature = options.temperature.max(0.7);
                    options.seed = options.seed.wrapping_add(attempt + 1);
                }
            }
        }
        Err(LlmError::new(
            ErrorKind::Permanent,
            PROVIDER,
            format!(
                "no answer valid against the output schema after {STRUCTURED_ATTEMPTS} samples: {last_problem}"
            ),
        ))
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        if request.output_schema.is_some() {
            // Only a validated answer may be shown: generate it whole, then stream it.
            let response = self.complete(request).await?;
            return Ok(async_stream(move |tx| async move {
                let _ = tx
                    .send(Ok(StreamEvent::Text {
                        delta: response.text.clone(),
                    }))
                    .await;
                let _ = tx.send(Ok(StreamEvent::Done { response })).await;
            }));
        }
        let (messages, options) = self.plan(request)?;
        let model = Arc::clone(&self.model);
        let name = self.name.clone();
        Ok(async_stream(move |tx| async move {
            let pieces = tx.clone();
            let done = tokio::task::spawn_blocking(move || {
                model.generate(&messages, &options, |piece| {
                    pieces
                        .blocking_send(Ok(StreamEvent::Text {
                            delta: piece.to_string(),
                        }))
                        .is_ok()
                })
            })
            .await;
            let result = match done {
                Ok(Ok(g)) => Ok(StreamEvent::Done {
                    response: response(name, g.text.clone(), &g),
                }),
                Ok(Err(e)) => Err(local_error(e)),
                Err(e) => Err(LlmError::new(ErrorKind::Permanent, PROVIDER, e.to_string())),
            };
            let _ = tx.send(result).await;
        }))
    }
}
