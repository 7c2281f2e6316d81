//! Google's Gemini API: `models/MODEL:generateContent` and `:streamGenerateContent?alt=sse`.
//!
//! The key goes in the `x-goog-api-key` header, never in the URL (URLs end up in logs).
//! Gemini accepts only a subset of JSON Schema in function declarations and response
//! schemas, so schemas are normalised first ([`gemini_schema`]). Gemini's function calls
//! carry no ids: they get `call_N`, and a tool result is matched back to its call's name.

use async_trait::async_trait;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::http::{Http, async_stream, cut};
use super::{
    ApiKey, Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, ErrorKind, LlmError,
    Role, StopReason, StreamEvent, ToolCall, ToolChoice, Usage,
};

/// A Gemini model.
pub struct Gemini {
    http: Http,
    base: String,
    model: String,
    key: ApiKey,
}

impl std::fmt::Debug for Gemini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gemini")
            .field("base", &self.base)
            .field("model", &self.model)
            .field("key", &self.key)
            .finish()
    }
}

/// Keeps the JSON Schema keywords Gemini understands, rewriting the ones it spells
/// differently: `const` becomes a one-value `enum`, a `["T", "null"]` type becomes `T` with
/// `nullable`, and `oneOf` becomes `anyOf`. Everything else (`additionalProperties`,
/// `$schema`, `default`, `examples`, `pattern`, ...) is dropped.
pub fn gemini_schema(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "type" => match value {
                Value::Array(types) => {
                    let real: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if real.len() < types.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(t) = real.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                }
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "properties" => {
                let props: Map<String, Value> = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), gemini_schema(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert("properties".into(), Value::Object(props));
            }
            "items" => {
                out.insert("items".into(), gemini_schema(value));
            }
            "anyOf" | "oneOf" => {
                let options: Vec<Value> = value
                    .as_array()
                    .map(|a| a.iter().map(gemini_schema).collect())
                    .unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(options));
            }
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "format" => {
                if matches!(value.as_str(), Some("enum" | "date-time")) {
                    out.insert(key.clone(), value.clone());
                }
            }
            "description" | "nullable" | "enum" | "required" | "minItems" | "maxItems"
            | "minimum" | "maximum" | "propertyOrdering" | "title" => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    // Google documents `type` as required and `enum` as a STRING format: an enum-only node
    // (`{"enum": ["roof", "gutter"]}`) gets the type its values have.
    if !out.contains_key("type")
        && let Some(Value::Array(values)) = out.get("enum")
    {
        let ty = if values.iter().all(Value::is_string) {
            Some("string")
        } else if values.iter().all(|v| v.is_i64() || v.is_u64()) {
            Some("integer")
        } else if values.iter().all(Value::is_number) {
            Some("number")
        } else if values.iter().all(Value::is_boolean) {
            Some("boolean")
        } else {
            None
        };
        if let Some(ty) = ty {
            out.insert("type".into(), json!(ty));
        }
    }
    Value::Object(out)
}

impl Gemini {
    pub(crate) fn new(http: Http, base: &str, model: &str, key: ApiKey) -> Self {
        Gemini {
            http,
            base: base.trim_end_matches('/').to_string(),
            model: model.to_string(),
            key,
        }
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = Map::new();
        let mut system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        // Gemini 2.x refuses function declarations together with a JSON response type
        // ("Function calling with a response mime type: 'application/json' is
        // unsupported"): while tools are offered the schema travels in the instruction, and
        // the caller checks the answer against it.
        let schema_in_prompt = match &request.output_schema {
            Some(schema) if !request.tools.is_empty() => Some(format!(
                "When you answer instead of calling a function, answer with one JSON value only, valid against this JSON Schema:\n{schema}"
            )),
            _ => None,
        };
        if let Some(text) = &schema_in_prompt {
            system.push(text);
        }
        if !system.is_empty() {
            body.insert(
                "systemInstruction".into(),
                json!({"parts": [{"text": system.join("\n\n")}]}),
            );
        }
        let mut contents: Vec<Value> = Vec::new();
        for m in &request.messages {
            let (role, parts) = match m.role {
                Role::System => continue,
                Role::User => ("user", vec![json!({"text": m.content})]),
                Role::Assistant => {
                    let mut parts = Vec::new();
                    if !m.content.is_empty() {
                        parts.push(json!({"text": m.content}));
                    }
                    for c in &m.tool_calls {
                        parts.push(json!({"functionCall": {"name": c.name, "args": c.arguments}}));
                    }
                    ("model", parts)
                }
                Role::Tool => {
                    let id = m.tool_call_id.as_deref().unwrap_or("");
                    let name = request
                        .messages
                        .iter()
                        .flat_map(|p| &p.tool_calls)
                        .find(|c| c.id == id)
                        .map_or(id, |c| c.name.as_str());
                    let response = serde_json::from_str::<Value>(&m.content)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({"result": m.content}));
                    (
                        "user",
                        vec![json!({"functionResponse": {"name": name, "response": response}})],
                    )
                }
            };
            match contents.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(existing) = last["parts"].as_array_mut() {
                        existing.extend(parts);
                    }
                }
                _ => contents.push(json!({"role": role, "parts": parts})),
            }
        }
        body.insert("contents".into(), Value::Array(contents));
        if !request.tools.is_empty() {
            let declarations: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parameters": gemini_schema(&t.parameters)}))
                .collect();
            body.insert(
                "tools".into(),
                json!([{"functionDeclarations": declarations}]),
            );
            let config = match &request.tool_choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            };
            body.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": config}),
            );
        }
        let mut generation = Map::new();
        if let Some(t) = request.temperature {
            generation.insert("temperature".into(), super::float_param(t));
        }
        if let Some(n) = request.max_tokens {
            generation.insert("maxOutputTokens".into(), json!(n));
        }
        if !request.stop.is_empty() {
            generation.insert("stopSequences".into(), json!(request.stop));
        }
        if let (Some(schema), None) = (&request.output_schema, &schema_in_prompt) {
            generation.insert("responseMimeType".into(), json!("application/json"));
            generation.insert("responseSchema".into(), gemini_schema(schema));
        }
        if !generation.is_empty() {
            body.insert("generationConfig".into(), Value::Object(generation));
        }
        Value::Object(body)
    }

    fn post(&self, method: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .client()
            .post(format!("{}/models/{}:{method}", self.base, self.model))
            .header("x-goog-api-key", self.key.expose())
            .json(body)
    }
}

fn stop_reason(finish: Option<&str>, has_calls: bool) -> StopReason {
    if has_calls {
        return StopReason::ToolCalls;
    }
    match finish {
        Some("STOP") | None => StopReason::End,
        Some("MAX_TOKENS") => StopReason::MaxTokens,
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII") => {
            StopReason::ContentFilter
        }
        Some(_) => StopReason::Other,
    }
}

/// Folds one response (or stream chunk) into `response`; returns the events it adds.
fn absorb(response: &mut ChatResponse, chunk: &Value) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    if let Some(m) = chunk.get("modelVersion").and_then(Value::as_str) {
        response.model = m.to_string();
    }
    if let Some(u) = chunk.get("usageMetadata") {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        response.usage = Usage {
            input_tokens: n("promptTokenCount"),
            output_tokens: n("candidatesTokenCount"),
        };
    }
    let Some(candidate) = chunk.pointer("/candidates/0") else {
        return out;
    };
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(text) = part.get("text").and_then(Value::as_str) {
            response.text.push_str(text);
            out.push(StreamEvent::Text {
                delta: text.to_string(),
            });
        } else if let Some(call) = part.get("functionCall") {
            let index = response.tool_calls.len();
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{index}"), str::to_string);
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            out.push(StreamEvent::ToolCall {
                index,
                id: Some(id.clone()),
                name: Some(name.clone()),
                arguments_delta: args.to_string(),
            });
            response.tool_calls.push(ToolCall {
                id,
                name,
                arguments: args,
            });
        }
    }
    if let Some(f) = candidate.get("finishReason").and_then(Value::as_str) {
        response.stop_reason = stop_reason(Some(f), !response.tool_calls.is_empty());
    }
    out
}

#[async_trait]
impl ChatModel for Gemini {
    fn name(&self) -> String {
        format!("gemini:{}", self.model)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let reply = self
            .http
            .json(
                "gemini",
                self.post("generateContent", &self.body(request)),
                Some(&self.key),
            )
            .await?;
        if reply.pointer("/candidates/0").is_none() {
            let mut e = LlmError::new(
                ErrorKind::Permanent,
                "gemini",
                match reply
                    .pointer("/promptFeedback/blockReason")
                    .and_then(Value::as_str)
                {
                    Some(reason) => format!("the prompt was blocked: {reason}"),
                    None => "unexpected reply: no `candidates`".into(),
                },
            );
            e.body = Some(cut(&reply.to_string()));
            return Err(e);
        }
        let mut response = ChatResponse::empty(self.model.as_str());
        absorb(&mut response, &reply);
        response.stop_reason = stop_reason(
            reply
                .pointer("/candidates/0/finishReason")
                .and_then(Value::as_str),
            !response.tool_calls.is_empty(),
        );
        Ok(response)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let mut events = self
            .http
            .sse(
                "gemini",
                self.post("streamGenerateContent?alt=sse", &self.body(request)),
                Some(&self.key),
            )
            .await?;
        let model = self.model.clone();
        Ok(async_stream(move |tx| async move {
            let mut response = ChatResponse::empty(model.as_str());
            let mut finish = None;
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let chunk = match event.json("gemini") {
                    Ok(v) => v,
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                if let Some(f) = chunk
                    .pointer("/candidates/0/finishReason")
                    .and_then(Value::as_str)
                {
                    finish = Some(f.to_string());
                }
                for out in absorb(&mut response, &chunk) {
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
            response.stop_reason = stop_reason(finish.as_deref(), !response.tool_calls.is_empty());
            let _ = tx.send(Ok(StreamEvent::Done { response })).await;
        }))
    }
}
