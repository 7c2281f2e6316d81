//! The agent runtime: call the model, run the tools it asks for (in parallel, allowlist
//! enforced), feed the results back, and end with a result valid against the output schema.
//!
//! Everything streams into the run's events as `custom` events from the node:
//! `{"agent", "token"}` for each piece of text, `{"agent", "tool_call"}`,
//! `{"agent", "tool_result"}`, `{"agent", "tool_refused"}` and `{"agent", "schema_retry"}`;
//! each model call's tokens and cost arrive as `usage` events.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use engine::events::{AgentStep, Progress};
use engine::{Node, NodeContext, NodeError, Registry, UsageRecord};
use futures_util::StreamExt;
use futures_util::future::join_all;
use memory::{LazyMemories, Namespace};
use serde_json::{Value, json};
use tracing::Instrument;

use super::spec::MemorySpec;
use super::{Agent, AgentSpec, ModelSource};
use crate::llm::{
    ChatModel, ChatRequest, ChatResponse, Message, Role, StreamEvent, ToolCall, ToolSpec, pricing,
};

/// An agent run by a model, as its [`AgentSpec`] says.
pub struct LlmAgent {
    spec: AgentSpec,
    /// The tools offered to the model: the spec's allowlist, nothing else.
    offered: Vec<ToolSpec>,
    handlers: HashMap<String, Arc<dyn Node>>,
    models: Arc<dyn ModelSource>,
    memories: Option<LazyMemories>,
    /// The output schema, compiled once.
    validator: Option<jsonschema::Validator>,
    /// The spec's worked example as prompt text, rendered once.
    example_text: Option<String>,
    /// `(tool, agent)`: the handoff tools offered, and the agent each hands to.
    handoffs: Vec<(String, String)>,
}

/// The agents a conversation already went through, from the messages in an agent's input:
/// those that handed it on (a handoff call, or a `handoff` field) and those it was handed
/// to. They are not offered again, so a conversation never circles back (no ping-pong, no
/// supervisor asking the same specialist twice) and every run of handoffs ends.
fn visited(input: &Value, handoffs: &[(String, String)]) -> std::collections::HashSet<String> {
    let mut seen = std::collections::HashSet::new();
    let Value::Object(fields) = input else {
        return seen;
    };
    for list in fields.values().filter_map(Value::as_array) {
        for m in list {
            let mut passed = false;
            if let Some(to) = m.get("handoff").and_then(Value::as_str) {
                seen.insert(to.to_string());
                passed = true;
            }
            let calls = m.get("tool_calls").and_then(Value::as_array);
            for call in calls.into_iter().flatten() {
                let Some(tool) = call.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if let Some((_, to)) = handoffs.iter().find(|(t, _)| t == tool) {
                    seen.insert(to.clone());
                }
                passed |= tool.starts_with("transfer_to_");
            }
            if passed && let Some(name) = m.get("name").and_then(Value::as_str) {
                seen.insert(name.to_string());
            }
        }
    }
    seen
}

/// The answer schema of a model without tool calls: `handoff` names an agent or "none".
fn handoff_schema(
    targets: &[&str],
    output: Option<&Value>,
) -> Result<(Value, jsonschema::Validator), String> {
    let mut choices: Vec<Value> = targets.iter().map(|t| json!(t)).collect();
    choices.push(json!("none"));
    let answer = output.cloned().unwrap_or_else(|| json!({"type": "string"}));
    let schema = json!({
        "type": "object",
        "required": ["handoff", "answer"],
        "properties": {"handoff": {"enum": choices}, "answer": answer},
    });
    let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
    Ok((schema, validator))
}

/// The tool that hands the conversation to `agent` (`transfer_to_billing_desk`).
fn handoff_tool(agent: &str) -> String {
    format!(
        "transfer_to_{}",
        agent.split_once('.').map_or(agent, |(_, name)| name)
    )
}

impl LlmAgent {
    /// Resolves the spec's tools in `registry`; an unknown tool is an error naming it.
    pub fn new(
        spec: AgentSpec,
        registry: &Registry,
        models: Arc<dyn ModelSource>,
        memories: Option<LazyMemories>,
    ) -> Result<Self, String> {
        let mut offered = Vec::with_capacity(spec.tools.len());
        let mut handlers = HashMap::with_capacity(spec.tools.len());
        for name in &spec.tools {
            let handler = registry
                .tool(name)
                .ok_or_else(|| format!("agent `{}`: unknown tool `{name}`", spec.name))?;
            let (description, parameters) = match registry.tool_info(name) {
                Some(info) => (info.description.clone(), info.parameters.clone()),
                None => (String::new(), json!({"type": "object"})),
            };
            offered.push(ToolSpec {
                name: name.clone(),
                description,
                parameters,
            });
            handlers.insert(name.clone(), Arc::clone(handler));
        }
        let validator = match &spec.output {
            Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| {
                format!(
                    "agent `{}`: `output` is not a valid JSON Schema: {e}",
                    spec.name
                )
            })?),
            None => None,
        };
        let example_text = spec.example.as_ref().map(|e| {
            format!(
                "\n\nAn example (for another input):\nInput: {}\nAnswer: {}",
                e.input, e.output
            )
        });
        let mut handoffs = Vec::with_capacity(spec.handoffs.len());
        for target in &spec.handoffs {
            let tool = handoff_tool(target);
            offered.push(ToolSpec {
                name: tool.clone(),
                description: format!(
                    "Hand the conversation to the agent `{target}`, who answers it from here. Call it when the message is theirs to answer."
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {"reason": {"type": "string", "description": "why they should answer"}},
                }),
            });
            handoffs.push((tool, target.clone()));
        }
        Ok(LlmAgent {
            spec,
            offered,
            handlers,
            models,
            memories,
            validator,
            example_text,
            handoffs,
        })
    }

    fn emit(&self, ctx: &NodeContext, step: AgentStep) {
        ctx.progress(Progress::Agent {
            agent: self.spec.name.clone(),
            step,
        });
    }

    /// The memory namespace for `input`.
    fn namespace(&self, spec: &MemorySpec, input: &Value) -> Result<Namespace, NodeError> {
        let mut segments = Vec::with_capacity(spec.namespace.len());
        for t in &spec.namespace {
            segments.push(t.render(input).map_err(|e| {
                NodeError::permanent(format!("agent `{}`: memory namespace {e}", self.spec.name))
            })?);
        }
        let namespace = Namespace::new(segments).map_err(NodeError::from)?;
        if namespace.is_root() {
            return Err(NodeError::permanent(format!(
                "agent `{}`: the memory namespace is empty; it must start with the tenant",
                self.spec.name
            )));
        }
        Ok(namespace)
    }

    /// The memories to show the model, as lines of text.
    async fn recall(&self, input: &Value) -> Result<Option<String>, NodeError> {
        let (Some(spec), Some(memories)) = (&self.spec.memory, &self.memories) else {
            return Ok(None);
        };
        if spec.recall == 0 {
            return Ok(None);
        }
        let namespace = self.namespace(spec, input)?;
        let query = input.to_string();
        let memories = memories
            .get()
            .await
            .and_then(|m| m.for_tenant(namespace.tenant().unwrap_or_default()))
            .map_err(NodeError::from)?;
        let hits = memories
            .recall(&namespace, Some(&query), None, spec.recall)
            .await
            .map_err(NodeError::from)?;
        if hits.is_empty() {
            return Ok(None);
        }
        let mut text = String::from("\n\nWhat you remember:");
        for hit in &hits {
            let line = hit
                .item
                .value
                .get("text")
                .and_then(Value::as_str)
                .map_or_else(|| hit.item.value.to_string(), str::to_string);
            text.push_str("\n- ");
            text.push_str(&line);
        }
        Ok(Some(text))
    }

    /// Writes the memory `memory.remember` describes for this answer. It is keyed by the
    /// task, so a retried or resumed task rewrites its memory rather than adding another.
    /// A failed write is reported (a `memory_error` event and a warning) without costing
    /// the answer, which is already paid for.
    async fn remember(&self, input: &Value, output: &Value, ctx: &NodeContext) {
        let (Some(spec), Some(memories)) = (&self.spec.memory, &self.memories) else {
            return;
        };
        let Some(template) = &spec.remember else {
            return;
        };
        let written = async {
            let namespace = self.namespace(spec, input)?;
            let text = template
                .render_with(&[("input", input), ("output", output)])
                .map_err(|e| NodeError::permanent(format!("`memory.remember`: {e}")))?;
            let mut fields = serde_json::Map::new();
            fields.insert("agent".into(), json!(self.spec.name));
            fields.insert("input".into(), input.clone());
            fields.insert("output".into(), output.clone());
            let key = ctx.child("memory").idempotency_key();
            let memories = memories
                .get()
                .await
                .and_then(|m| m.for_tenant(namespace.tenant().unwrap_or_default()))
                .map_err(NodeError::from)?;
            memories
                .remember(&namespace, spec.kind, &text, fields, None, Some(key))
                .await
                .map_err(NodeError::from)
        };
        match written.await {
            Ok(done) => self.emit(
                ctx,
                AgentStep::Remembered {
                    namespace: done.namespace.path(),
                    key: done.key,
                },
            ),
            Err(e) => {
                tracing::warn!(agent = %self.spec.name, error = %e, "could not write the agent's memory");
                self.emit(ctx, AgentStep::MemoryError(e.to_string()));
            }
        }
    }

    /// One model turn, streamed (text pieces go to the events as they come), in a `chat`
    /// span.
    async fn turn(
        &self,
        model: &dyn ChatModel,
        request: &ChatRequest,
        ctx: &NodeContext,
    ) -> Result<ChatResponse, NodeError> {
        let span = crate::llm::trace::chat_span(&self.spec.models, request, Some(&self.spec.name));
        let reply = match self
            .streamed_reply(model, request, ctx)
            .instrument(span.clone())
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                engine::trace::fail(&span, &e.to_string());
                return Err(e);
            }
        };
        let name = crate::llm::node::answered_by(&self.spec.models, &reply.model);
        let cost_usd = pricing::cost_usd(&name, reply.usage);
        crate::llm::trace::record_reply(&span, &reply, &name, cost_usd);
        ctx.record_usage(UsageRecord {
            cost_usd,
            model: name,
            input_tokens: reply.usage.input_tokens,
            output_tokens: reply.usage.output_tokens,
        });
        Ok(reply)
    }

    async fn streamed_reply(
        &self,
        model: &dyn ChatModel,
        request: &ChatRequest,
        ctx: &NodeContext,
    ) -> Result<ChatResponse, NodeError> {
        let failed = |e: &crate::llm::LlmError| {
            let mut e = crate::llm::node::failed(e);
            if let NodeError::Failed { message, .. } = &mut e {
                *message = format!("agent `{}`: {message}", self.spec.name);
            }
            e
        };
        let mut stream = model.stream(request).await.map_err(|e| failed(&e))?;
        let mut reply = None;
        while let Some(event) = stream.next().await {
            match event.map_err(|e| failed(&e))? {
                StreamEvent::Text { delta } => self.emit(ctx, AgentStep::Token(delta)),
                StreamEvent::ToolCall { .. } => {}
                StreamEvent::Done { response } => reply = Some(response),
            }
        }
        reply.ok_or_else(|| {
            NodeError::transient(format!(
                "agent `{}`: the model's stream ended without a reply",
                self.spec.name
            ))
        })
    }

    /// Runs one requested call; the text is what the model is told. Only an interrupt (a
    /// tool asking a human) stops the agent.
    async fn call_tool(
        &self,
        call: &ToolCall,
        seq: usize,
        ctx: &NodeContext,
    ) -> Result<String, NodeError> {
        let Some(handler) = self.handlers.get(&call.name) else {
            tracing::warn!(agent = %self.spec.name, tool = %call.name, "refused a tool outside the agent's allowlist");
            self.emit(
                ctx,
                AgentStep::ToolRefused {
                    id: call.id.clone(),
                    name: call.name.clone(),
                },
            );
            return Ok(format!(
                "refused: `{}` is not one of your tools ({}); do not call it again",
                call.name,
                self.spec.tools.join(", ")
            ));
        };
        self.emit(
            ctx,
            AgentStep::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            },
        );
        let child = ctx.child(&format!("{}#{seq}", call.name));
        let span = tool_span(&self.spec.name, call);
        let result = handler
            .call(call.arguments.clone(), &child)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(output) if crate::llm::trace::content_enabled() && !span.is_disabled() => {
                span.record("gen_ai.tool.call.result", output.to_string().as_str());
            }
            Err(NodeError::Failed { message, .. }) => engine::trace::fail(&span, message),
            _ => {}
        }
        match result {
            Ok(output) => {
                self.emit(
                    ctx,
                    AgentStep::ToolResult {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        output: Some(output.clone()),
                        error: None,
                    },
                );
                Ok(output.to_string())
            }
            Err(NodeError::Interrupt(v)) => Err(NodeError::Interrupt(v)),
            Err(e) => {
                self.emit(
                    ctx,
                    AgentStep::ToolResult {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        output: None,
                        error: Some(e.to_string()),
                    },
                );
                Ok(format!("error: {e}"))
            }
        }
    }

    /// Hands the conversation to `target`: routes the run there (`ctx.goto`, checked
    /// against the node's `goto` list) and answers with this turn as messages, the handoff
    /// call and its result, for a `messages` channel.
    fn hand_off(
        &self,
        ctx: &NodeContext,
        target: &str,
        call: Option<&ToolCall>,
        text: String,
    ) -> Value {
        let reason = call
            .and_then(|c| c.arguments.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.emit(
            ctx,
            AgentStep::Handoff {
                to: target.to_string(),
                reason: reason.clone(),
            },
        );
        ctx.goto(target);
        let note = format!("Transferred to {target}");
        match call {
            Some(call) => json!([
                {"role": "assistant", "name": self.spec.name, "content": text,
                 "tool_calls": [{"id": call.id, "name": call.name, "arguments": call.arguments}]},
                {"role": "tool", "name": call.name, "tool_call_id": call.id, "content": note},
            ]),
            None => json!([
                {"role": "assistant", "name": self.spec.name,
                 "content": reason.unwrap_or(note), "handoff": target},
            ]),
        }
    }

    /// An agent with handoffs answers with messages: its answer as the assistant's message.
    fn as_messages(&self, result: Value) -> Value {
        if self.handoffs.is_empty() {
            return result;
        }
        let content = match result {
            Value::String(text) => text,
            other => other.to_string(),
        };
        json!([{"role": "assistant", "name": self.spec.name, "content": content}])
    }

    /// The result from a final answer, or what is wrong with it.
    fn finish(&self, text: &str) -> Result<Value, String> {
        let Some(validator) = &self.validator else {
            return Ok(Value::String(text.to_string()));
        };
        crate::llm::answer::json_answer(validator, text)
    }
}

#[async_trait]
impl Agent for LlmAgent {
    fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    async fn run(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        let spec = &self.spec;
        let mut system = spec.instructions.render(&input).map_err(|e| {
            NodeError::permanent(format!("agent `{}`: instructions: {e}", spec.name))
        })?;
        // The worked example shows the shape and register of an answer; small models follow
        // a demonstration far better than a schema alone.
        if let Some(example) = &self.example_text {
            system.push_str(example);
        }
        if let Some(remembered) = self.recall(&input).await? {
            system.push_str(&remembered);
        }
        let model = self
            .models
            .model(spec)
            .map_err(|e| crate::llm::node::failed(&e))?;
        // Agents the conversation already went through are not offered again.
        let spent = visited(&input, &self.handoffs);
        let open: Vec<&(String, String)> = self
            .handoffs
            .iter()
            .filter(|(_, target)| !spent.contains(target))
            .collect();
        let offered: Vec<ToolSpec> = self
            .offered
            .iter()
            .filter(|t| {
                !self.handoffs.iter().any(|(tool, _)| *tool == t.name)
                    || open.iter().any(|(tool, _)| *tool == t.name)
            })
            .cloned()
            .collect();
        let tools_possible = !offered.is_empty() && model.capabilities().tools;
        // Without tool calls, the handoff is a field of the answer.
        let choose_in_answer = !open.is_empty() && !model.capabilities().tools;
        let targets: Vec<&str> = open.iter().map(|(_, t)| t.as_str()).collect();
        let handoff_schema = if choose_in_answer {
            system.push_str(&format!(
                "\n\nIf one of these agents should answer instead, set `handoff` to its name: {}. Otherwise set `handoff` to \"none\" and give your `answer`.",
                targets.join(", ")
            ));
            Some(handoff_schema(&targets, spec.output.as_ref()).map_err(|e| {
                NodeError::permanent(format!(
                    "agent `{}`: the handoff answer schema: {e}",
                    spec.name
                ))
            })?)
        } else {
            None
        };

        let mut request = ChatRequest::new(vec![
            Message::system(system),
            Message::user(format!("Input:\n{input}")),
        ]);
        request.output_schema = match &handoff_schema {
            Some((schema, _)) => Some(schema.clone()),
            None => spec.output.clone(),
        };
        request.temperature = spec.temperature;
        request.max_tokens = spec.max_tokens;

        let mut rounds = 0;
        let mut fixes = 0;
        let mut calls = 0;
        loop {
            let offer = tools_possible && rounds < spec.max_tool_rounds;
            if offer && request.tools.is_empty() {
                request.tools = offered.clone();
            } else if !offer {
                request.tools.clear();
            }
            let reply = self.turn(model.as_ref(), &request, ctx).await?;

            let handoff = reply.tool_calls.iter().find_map(|call| {
                open.iter()
                    .find(|(tool, _)| *tool == call.name)
                    .map(|(_, target)| (call, target))
            });
            if let (Some((call, target)), true) = (handoff, offer) {
                // The handoff ends this agent's turn; other calls of the turn are not run.
                return Ok(self.hand_off(ctx, target, Some(call), reply.text.clone()));
            }
            let problem = if reply.tool_calls.is_empty() || choose_in_answer {
                let finished = match &handoff_schema {
                    Some((_, validator)) => crate::llm::answer::json_answer(validator, &reply.text)
                        .and_then(
                            |choice| match choice.get("handoff").and_then(Value::as_str) {
                                Some(target) if target != "none" => Ok(Err(target.to_string())),
                                _ => {
                                    let answer =
                                        choice.get("answer").cloned().unwrap_or(Value::Null);
                                    match &self.validator {
                                        Some(v) => {
                                            crate::llm::answer::json_answer(v, &answer.to_string())
                                        }
                                        None => Ok(answer),
                                    }
                                    .map(Ok)
                                }
                            },
                        ),
                    None => self.finish(&reply.text).map(Ok),
                };
                match finished {
                    Ok(Err(target)) => {
                        return Ok(self.hand_off(ctx, &target, None, reply.text.clone()));
                    }
                    Ok(Ok(result)) => {
                        self.remember(&input, &result, ctx).await;
                        return Ok(self.as_messages(result));
                    }
                    Err(problem) => format!(
                        "That answer does not match the required output: {problem}. Answer again with only the JSON."
                    ),
                }
            } else if offer {
                rounds += 1;
                let results = join_all(
                    reply
                        .tool_calls
                        .iter()
                        .enumerate()
                        .map(|(i, call)| self.call_tool(call, calls + i, ctx)),
                )
                .await;
                calls += reply.tool_calls.len();
                request.messages.push(Message {
                    role: Role::Assistant,
                    content: reply.text,
                    tool_calls: reply.tool_calls.clone(),
                    tool_call_id: None,
                });
                for (call, result) in reply.tool_calls.iter().zip(results) {
                    request
                        .messages
                        .push(Message::tool_result(call.id.clone(), result?));
                }
                continue;
            } else {
                format!(
                    "No more tool calls are possible (you may use {} rounds). Answer now.",
                    spec.max_tool_rounds
                )
            };

            if fixes >= spec.max_schema_retries {
                return Err(NodeError::permanent(format!(
                    "agent `{}` gave no valid answer after {} attempts: {problem}",
                    spec.name,
                    fixes + 1
                )));
            }
            fixes += 1;
            self.emit(ctx, AgentStep::SchemaRetry(problem.clone()));
            request.messages.push(Message::assistant(reply.text));
            request.messages.push(Message::user(problem));
        }
    }
}

/// An `execute_tool` span (GenAI conventions) for a tool an agent called; its arguments only
/// with `BRAINOPS_TRACE_CONTENT=1`.
fn tool_span(agent: &str, call: &ToolCall) -> tracing::Span {
    let span = tracing::info_span!(
        target: "brainops",
        "execute_tool",
        otel.name = %format_args!("execute_tool {}", call.name),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.name,
        gen_ai.tool.call.id = %call.id,
        gen_ai.agent.name = agent,
        gen_ai.tool.call.arguments = tracing::field::Empty,
        gen_ai.tool.call.result = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if crate::llm::trace::content_enabled() && !span.is_disabled() {
        span.record(
            "gen_ai.tool.call.arguments",
            call.arguments.to_string().as_str(),
        );
    }
    span
}
