//! How the engine's runs, threads and events look on LangGraph's wire: ids, timestamps,
//! error names, and the translation of engine events into stream-mode events.

use std::collections::{HashMap, HashSet};

use engine::{AgentStep, Event, InterruptInfo, InterruptKind, Progress, RunError, RunOutcome};
use serde_json::{Map, Value, json};

/// A stream event's name: a mode (`updates`), or a mode and a subgraph namespace
/// (`updates|sub:sub`).
pub(crate) type Name = std::borrow::Cow<'static, str>;

/// LangGraph's namespace for system assistant ids: `uuid5(NS, graph_id)`.
const ASSISTANT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6ba7b821_9dad_11d1_80b4_00c04fd430c8);

/// The reference server's deterministic id of the system assistant of `graph_id`.
pub(crate) fn assistant_uuid(graph_id: &str) -> String {
    uuid::Uuid::new_v5(&ASSISTANT_NAMESPACE, graph_id.as_bytes()).to_string()
}

/// A checkpoint id as clients see it: a UUID-shaped string whose last group is the engine's
/// per-thread number, so it sorts and round-trips.
pub(crate) fn checkpoint_wire(id: u64) -> String {
    format!("1ef00000-0000-6000-8000-{id:012x}")
}

/// Reads a checkpoint id written by [`checkpoint_wire`] (or a plain number).
pub(crate) fn checkpoint_parse(text: &str) -> Option<u64> {
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let (prefix, last) = text.rsplit_once('-')?;
    (prefix == "1ef00000-0000-6000-8000" && last.len() == 12)
        .then(|| u64::from_str_radix(last, 16).ok())
        .flatten()
}

/// A stable id for the interrupt a task raised at a checkpoint.
pub(crate) fn interrupt_id(thread_id: &str, checkpoint: Option<u64>, task: &str) -> String {
    let name = format!("{thread_id}/{}/{task}", checkpoint.unwrap_or(0));
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes())
        .simple()
        .to_string()
}

/// A task id in UUID form, stable for (thread, step, task).
pub(crate) fn task_id(thread_id: &str, step: u64, task: &str) -> String {
    let name = format!("{thread_id}/{step}/{task}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// `[{"value", "id"}]` for an ask; empty for a stop before or after a node, as LangGraph
/// reports static breakpoints.
pub(crate) fn interrupts(
    thread_id: &str,
    checkpoint: Option<u64>,
    interrupt: Option<&InterruptInfo>,
) -> Vec<Value> {
    // Every waiting question of the step (parallel interrupts), in task order.
    interrupt
        .into_iter()
        .flat_map(InterruptInfo::all)
        .filter(|i| i.kind == InterruptKind::Ask)
        .map(|i| interrupt_json(thread_id, checkpoint, i))
        .collect()
}

/// One question as `{"value", "id"}`.
pub(crate) fn interrupt_json(
    thread_id: &str,
    checkpoint: Option<u64>,
    interrupt: &InterruptInfo,
) -> Value {
    json!({
        "value": interrupt.value,
        "id": interrupt_id(thread_id, checkpoint, &interrupt.task),
    })
}

/// ISO-8601 with offset, as the reference server writes timestamps.
pub(crate) fn iso(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, by the shared store's clock when there is one
/// ([`engine::checkpoint::now_ms`]).
pub(crate) fn now_ms() -> u64 {
    engine::checkpoint::now_ms()
}

/// The exception-like name an `error` event carries for a run error (LangGraph's own name
/// where one exists).
pub(crate) fn error_name(e: &RunError) -> &'static str {
    match e {
        RunError::NodeFailed { .. } => "NodeError",
        RunError::Timeout { .. } => "TimeoutError",
        RunError::NoRoute { .. } => "InvalidUpdateError",
        RunError::ReplaceConflict { .. } => "InvalidUpdateError",
        RunError::RecursionLimit { .. } => "GraphRecursionError",
        RunError::Expression { .. } => "ExpressionError",
        RunError::BadWrite { .. } => "InvalidUpdateError",
        RunError::Input { .. } => "ValueError",
        RunError::Cancelled => "CancelledError",
        RunError::Checkpoint { .. } => "CheckpointError",
        RunError::Conflict { .. } => "ConflictError",
        RunError::Thread { .. } => "ValueError",
        #[allow(unreachable_patterns)]
        _ => "RunError",
    }
}

/// `{"error", "message"}` for a failed outcome.
pub(crate) fn outcome_error(outcome: &RunOutcome) -> Option<Value> {
    outcome
        .error
        .as_ref()
        .map(|e| json!({"error": error_name(&e.detail), "message": e.message}))
}

/// The stream modes a run was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Modes {
    pub(crate) values: bool,
    pub(crate) updates: bool,
    pub(crate) custom: bool,
    pub(crate) messages_tuple: bool,
    pub(crate) messages: bool,
    pub(crate) tasks: bool,
    pub(crate) debug: bool,
    pub(crate) checkpoints: bool,
    pub(crate) events: bool,
}

/// The modes the reference accepts on run endpoints.
pub(crate) const KNOWN_MODES: &[&str] = &[
    "values",
    "updates",
    "custom",
    "messages-tuple",
    "messages",
    "tasks",
    "debug",
    "checkpoints",
    "events",
];

impl Modes {
    pub(crate) fn parse(modes: &[String]) -> Result<Modes, String> {
        let mut m = Modes::default();
        for mode in modes {
            match mode.as_str() {
                "values" => m.values = true,
                "updates" => m.updates = true,
                "custom" => m.custom = true,
                "messages-tuple" => m.messages_tuple = true,
                "messages" => m.messages = true,
                "tasks" => m.tasks = true,
                "debug" => m.debug = true,
                "checkpoints" => m.checkpoints = true,
                "events" => m.events = true,
                other => {
                    return Err(format!(
                        "stream_mode: unknown mode `{other}`; use one of {}",
                        KNOWN_MODES.join(", ")
                    ));
                }
            }
        }
        Ok(m)
    }
}

/// Turns one run's engine events into stream-mode events `(name, data)`.
pub(crate) struct Translator {
    modes: Modes,
    run_id: String,
    thread_id: String,
    graph_id: String,
    assistant_id: String,
    step: u64,
    /// Per agent task: the message id its tokens go under, and the text so far.
    messages: Vec<(String, String, String)>,
    announced: HashSet<String>,
    /// The checkpoint just stored, sent in `checkpoints` mode with the values after it.
    checkpoint: Option<StoredCheckpoint>,
    /// The run's input and the state before the running step, for `events` mode's
    /// `on_chain_start` inputs.
    input: Value,
    state: Value,
    /// `events` mode: the arguments of agents' tool calls under way, by call id, for
    /// `on_tool_end`'s input.
    tool_inputs: HashMap<String, Value>,
    /// The run's `config.tags`: the root chain's tags, inherited by every event under it.
    tags: Vec<Value>,
}

/// A checkpoint as `Event::Checkpoint` reports it, waiting for its state.
struct StoredCheckpoint {
    id: u64,
    parent: Option<u64>,
    step: u64,
    source: engine::CheckpointSource,
    next: Vec<String>,
}

impl Translator {
    pub(crate) fn new(
        modes: Modes,
        run_id: &str,
        thread_id: &str,
        graph_id: &str,
        assistant_id: &str,
    ) -> Self {
        Translator {
            modes,
            run_id: run_id.into(),
            thread_id: thread_id.into(),
            graph_id: graph_id.into(),
            assistant_id: assistant_id.into(),
            step: 0,
            messages: Vec::new(),
            announced: HashSet::new(),
            checkpoint: None,
            input: Value::Null,
            state: Value::Null,
            tool_inputs: HashMap::new(),
            tags: Vec::new(),
        }
    }

    /// The run's `config.tags` (strings), which `events` mode's events carry as LangGraph
    /// 1.2.24 passes a run's tags down: the root chain's own, and after the step tag below
    /// it (`["graph:step:1", "crm", "nightly"]`).
    pub(crate) fn with_tags(mut self, tags: &[Value]) -> Self {
        if self.modes.events {
            self.tags = tags.to_vec();
        }
        self
    }

    /// The tags of an event under the running step's task.
    fn step_tags(&self) -> Value {
        let mut tags = Vec::with_capacity(self.tags.len() + 1);
        tags.push(Value::String(format!("graph:step:{}", self.step)));
        tags.extend(self.tags.iter().cloned());
        Value::Array(tags)
    }

    /// The run's input, the root chain's input in `events` mode.
    pub(crate) fn with_input(mut self, input: Option<&Value>) -> Self {
        if self.modes.events {
            self.input = input.cloned().unwrap_or(Value::Null);
        }
        self
    }

    /// One of LangChain's `astream_events(version="v2")` events: the graph is the root
    /// chain (the run's id), each task a chain under it (the task's id).
    fn chain_event(&self, event: &str, node: Option<&str>, data: Value) -> Value {
        match node {
            None => json!({
                "event": event, "name": self.graph_id, "run_id": self.run_id, "tags": self.tags,
                "metadata": {"run_id": self.run_id, "thread_id": self.thread_id, "graph_id": self.graph_id, "assistant_id": self.assistant_id},
                "data": data, "parent_ids": [],
            }),
            Some(node) => json!({
                "event": event, "name": node,
                "run_id": task_id(&self.thread_id, self.step, node),
                "tags": self.step_tags(),
                "metadata": self.message_metadata(node),
                "data": data, "parent_ids": [self.run_id],
            }),
        }
    }

    fn message_metadata(&self, node: &str) -> Value {
        json!({
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "graph_id": self.graph_id,
            "assistant_id": self.assistant_id,
            "langgraph_step": self.step,
            "langgraph_node": node,
            "langgraph_triggers": [format!("branch:to:{node}")],
            "langgraph_path": ["__pregel_pull", node],
            "langgraph_checkpoint_ns": format!("{node}:{}", task_id(&self.thread_id, self.step, node)),
            "checkpoint_ns": format!("{node}:{}", task_id(&self.thread_id, self.step, node)),
        })
    }

    /// The events `event` becomes, appended to `out`.
    pub(crate) fn translate(&mut self, event: &Event, out: &mut Vec<(Name, Value)>) {
        if self.modes.events {
            self.event(event, out);
        }
        match event {
            Event::StepStarted { step, .. } => self.step = *step,
            // A subgraph's events carry its namespace in the event name (`updates|sub:sub`).
            Event::Subgraph { namespace, inner } => match &**inner {
                Event::NodeFinished { node, update, .. } if self.modes.updates => out.push((
                    Name::Owned(format!("updates|{namespace}")),
                    json!({ node.clone(): update }),
                )),
                Event::Custom { data, .. } if self.modes.custom => {
                    out.push((Name::Owned(format!("custom|{namespace}")), data.clone()))
                }
                _ => {}
            },
            Event::Checkpoint {
                checkpoint_id,
                parent,
                step,
                source,
                next,
                ..
            } if self.modes.checkpoints || self.modes.debug => {
                self.checkpoint = Some(StoredCheckpoint {
                    id: *checkpoint_id,
                    parent: *parent,
                    step: *step,
                    source: *source,
                    next: next.clone(),
                });
            }
            Event::Values { state, .. } => {
                if self.modes.values {
                    out.push((Name::Borrowed("values"), state.clone()));
                }
                // The engine reports a checkpoint, then the state it holds.
                if let Some(cp) = self.checkpoint.take() {
                    // LangGraph's debug events number a checkpoint by its metadata's step.
                    let step = cp.step as i64 - 1;
                    let payload = self.checkpoint_json(cp, state);
                    let debug = |payload| json!({"step": step, "timestamp": iso(now_ms()), "type": "checkpoint", "payload": payload});
                    match (self.modes.checkpoints, self.modes.debug) {
                        (true, true) => {
                            out.push((Name::Borrowed("checkpoints"), payload.clone()));
                            out.push((Name::Borrowed("debug"), debug(payload)));
                        }
                        (true, false) => out.push((Name::Borrowed("checkpoints"), payload)),
                        (false, true) => out.push((Name::Borrowed("debug"), debug(payload))),
                        (false, false) => {}
                    }
                }
            }
            Event::NodeStarted { step, node, task } if self.modes.tasks || self.modes.debug => {
                let payload = json!({
                    "id": task_id(&self.thread_id, *step, task),
                    "name": node,
                    "input": Value::Null,
                    "triggers": [format!("branch:to:{node}")],
                    "metadata": {},
                });
                self.push_task(*step, "task", payload, out);
            }
            Event::NodeFinished {
                step,
                node,
                task,
                update,
            } => {
                if self.modes.updates {
                    let mut m = Map::new();
                    m.insert(node.clone(), update.clone());
                    out.push((Name::Borrowed("updates"), Value::Object(m)));
                }
                if self.modes.tasks || self.modes.debug {
                    let payload = json!({
                        "id": task_id(&self.thread_id, *step, task),
                        "name": node,
                        "error": Value::Null,
                        "result": update,
                        "interrupts": [],
                    });
                    self.push_task(*step, "task_result", payload, out);
                }
                // A node's finished message ends its token stream.
                self.messages.retain(|(n, _, _)| n != node);
            }
            Event::Custom { data, .. } if self.modes.custom => {
                out.push((Name::Borrowed("custom"), data.clone()))
            }
            Event::Progress { node, progress } => {
                if let Progress::Agent {
                    step: AgentStep::Token(text),
                    ..
                } = progress
                {
                    self.token(node, text, out);
                }
                if self.modes.custom {
                    out.push((
                        Name::Borrowed("custom"),
                        serde_json::to_value(progress).unwrap_or(Value::Null),
                    ));
                }
            }
            _ => {}
        }
    }

    /// `events` mode: the run as the root chain, each task a chain under it (start, its
    /// update as a stream chunk, end), agent tokens as chat-model stream chunks.
    fn event(&mut self, event: &Event, out: &mut Vec<(Name, Value)>) {
        match event {
            Event::RunStarted { .. } => out.push((
                Name::Borrowed("events"),
                self.chain_event("on_chain_start", None, json!({"input": self.input})),
            )),
            Event::Values { state, .. } => self.state = state.clone(),
            Event::NodeStarted { node, .. } => out.push((
                Name::Borrowed("events"),
                self.chain_event("on_chain_start", Some(node), json!({"input": self.state})),
            )),
            Event::NodeFinished { node, update, .. } => {
                out.push((
                    Name::Borrowed("events"),
                    self.chain_event("on_chain_stream", Some(node), json!({"chunk": update})),
                ));
                out.push((
                    Name::Borrowed("events"),
                    self.chain_event(
                        "on_chain_end",
                        Some(node),
                        json!({"output": update, "input": self.state}),
                    ),
                ));
                out.push((
                    Name::Borrowed("events"),
                    self.chain_event(
                        "on_chain_stream",
                        None,
                        json!({"chunk": {node.as_str(): update}}),
                    ),
                ));
            }
            Event::Progress {
                node,
                progress:
                    Progress::Agent {
                        step: AgentStep::Token(text),
                        ..
                    },
            } => {
                let id = format!("run-{}-{node}-{}", self.run_id, self.step);
                out.push((
                    Name::Borrowed("events"),
                    json!({
                        "event": "on_chat_model_stream", "name": node, "run_id": id,
                        "tags": self.step_tags(),
                        "metadata": self.message_metadata(node),
                        "data": {"chunk": message_chunk(&id, text, "AIMessageChunk")},
                        "parent_ids": [self.run_id, task_id(&self.thread_id, self.step, node)],
                    }),
                ));
            }
            Event::Progress {
                node,
                progress:
                    Progress::Agent {
                        step:
                            AgentStep::ToolCall {
                                id,
                                name,
                                arguments,
                            },
                        ..
                    },
            } => {
                self.tool_inputs.insert(id.clone(), arguments.clone());
                out.push((
                    Name::Borrowed("events"),
                    self.tool_event("on_tool_start", node, id, name, json!({"input": arguments})),
                ));
            }
            Event::Progress {
                node,
                progress:
                    Progress::Agent {
                        step:
                            AgentStep::ToolResult {
                                id,
                                name,
                                output,
                                error,
                            },
                        ..
                    },
            } => {
                let input = self.tool_inputs.remove(id).unwrap_or(Value::Null);
                let (kind, data) = match error {
                    Some(message) => ("on_tool_error", json!({"error": message, "input": input})),
                    // A tool called by a model answers with a ToolMessage.
                    None => (
                        "on_tool_end",
                        json!({"output": {
                            "content": match output {
                                Some(Value::String(text)) => text.clone(),
                                Some(other) => other.to_string(),
                                None => String::new(),
                            },
                            "additional_kwargs": {}, "response_metadata": {}, "type": "tool",
                            "name": name, "id": null, "tool_call_id": id, "artifact": null,
                            "status": "success",
                        }, "input": input}),
                    ),
                };
                out.push((
                    Name::Borrowed("events"),
                    self.tool_event(kind, node, id, name, data),
                ));
            }
            _ => {}
        }
    }

    /// An agent's tool call as LangChain's tool callbacks report it, under the task's chain.
    fn tool_event(&self, event: &str, node: &str, call: &str, tool: &str, data: Value) -> Value {
        json!({
            "event": event, "name": tool, "run_id": format!("run-{}-tool-{call}", self.run_id),
            "tags": self.step_tags(),
            "metadata": self.message_metadata(node),
            "data": data,
            "parent_ids": [self.run_id, task_id(&self.thread_id, self.step, node)],
        })
    }

    /// A checkpoint as LangGraph's `checkpoints` stream mode sends it.
    fn checkpoint_json(&self, cp: StoredCheckpoint, values: &Value) -> Value {
        let config = |id: u64| {
            json!({"configurable": {
                "thread_id": self.thread_id,
                "checkpoint_ns": "",
                "checkpoint_id": checkpoint_wire(id),
            }})
        };
        let tasks: Vec<Value> = cp
            .next
            .iter()
            .map(|n| {
                json!({
                    "id": task_id(&self.thread_id, cp.step + 1, n),
                    "name": n,
                    "interrupts": [],
                    "state": null,
                })
            })
            .collect();
        json!({
            "config": config(cp.id),
            "parent_config": cp.parent.map(config),
            "values": values,
            "metadata": {
                "source": cp.source.as_str(),
                "step": cp.step as i64 - 1,
                "parents": {},
            },
            "next": cp.next,
            "tasks": tasks,
        })
    }

    fn push_task(&self, step: u64, kind: &str, payload: Value, out: &mut Vec<(Name, Value)>) {
        if self.modes.debug {
            out.push((
                Name::Borrowed("debug"),
                json!({"step": step, "timestamp": iso(now_ms()), "type": kind, "payload": payload}),
            ));
        }
        if self.modes.tasks {
            out.push((Name::Borrowed("tasks"), payload));
        }
    }

    fn token(&mut self, node: &str, text: &str, out: &mut Vec<(Name, Value)>) {
        if !self.modes.messages_tuple && !self.modes.messages {
            return;
        }
        let index = match self.messages.iter().position(|(n, _, _)| n == node) {
            Some(i) => i,
            None => {
                let id = format!("run-{}-{node}-{}", self.run_id, self.step);
                self.messages.push((node.to_string(), id, String::new()));
                self.messages.len() - 1
            }
        };
        let id = self.messages[index].1.clone();
        self.messages[index].2.push_str(text);
        let metadata = self.message_metadata(node);
        if self.modes.messages_tuple {
            out.push((
                Name::Borrowed("messages"),
                json!([message_chunk(&id, text, "AIMessageChunk"), metadata.clone()]),
            ));
        }
        if self.modes.messages {
            if self.announced.insert(id.clone()) {
                out.push((
                    Name::Borrowed("messages/metadata"),
                    json!({ id.clone(): {"metadata": metadata} }),
                ));
            }
            let so_far = self.messages[index].2.clone();
            out.push((
                Name::Borrowed("messages/partial"),
                json!([message_chunk(&id, &so_far, "ai")]),
            ));
        }
    }

    /// The events that close a run: its interrupt (in `values` and `updates`) or its error.
    pub(crate) fn finish(
        &mut self,
        outcome: &RunOutcome,
        cancelled: bool,
        out: &mut Vec<(Name, Value)>,
    ) {
        if let Some(error) = outcome_error(outcome)
            && !cancelled
        {
            out.push((Name::Borrowed("error"), error));
            return;
        }
        if self.modes.events {
            out.push((
                Name::Borrowed("events"),
                self.chain_event("on_chain_end", None, json!({"output": outcome.state})),
            ));
        }
        if let Some(info) = &outcome.interrupt {
            let list = interrupts(&self.thread_id, outcome.checkpoint_id, Some(info));
            if self.modes.updates {
                out.push((Name::Borrowed("updates"), json!({ "__interrupt__": list })));
            }
            if self.modes.values && info.kind == InterruptKind::Ask {
                let mut state = outcome.state.as_object().cloned().unwrap_or_default();
                state.insert("__interrupt__".into(), Value::Array(list));
                out.push((Name::Borrowed("values"), Value::Object(state)));
            }
        }
    }
}

/// A message chunk in LangChain's shape.
fn message_chunk(id: &str, content: &str, kind: &str) -> Value {
    json!({
        "content": content,
        "additional_kwargs": {},
        "response_metadata": {},
        "type": kind,
        "name": Value::Null,
        "id": id,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "usage_metadata": Value::Null,
        "tool_call_chunks": [],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The id the reference server gives the system assistant of a graph named `agent`
    /// (LangGraph's `uuid5(UUID("6ba7b821-…"), "agent")`, checked with Python's uuid).
    #[test]
    fn system_assistant_ids_match_the_reference_server() {
        assert_eq!(
            assistant_uuid("agent"),
            "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
        );
    }

    #[test]
    fn checkpoint_ids_round_trip() {
        for id in [0, 1, 255, 1 << 40] {
            assert_eq!(checkpoint_parse(&checkpoint_wire(id)), Some(id));
        }
        assert_eq!(checkpoint_parse("7"), Some(7));
        assert_eq!(checkpoint_parse("not-a-checkpoint"), None);
    }

    #[test]
    fn events_mode_reports_an_agents_tool_calls_as_tool_callbacks() {
        let modes = Modes::parse(&["events".to_string()]).unwrap();
        let mut t = Translator::new(modes, "run-1", "thread-1", "g", "a");
        let agent = |step| Event::Progress {
            node: "triage".into(),
            progress: Progress::Agent {
                agent: "customer.support".into(),
                step,
            },
        };
        let mut out = Vec::new();
        t.translate(
            &agent(AgentStep::ToolCall {
                id: "call_1".into(),
                name: "roofing.quote".into(),
                arguments: json!({"squares": 24}),
            }),
            &mut out,
        );
        t.translate(
            &agent(AgentStep::ToolResult {
                id: "call_1".into(),
                name: "roofing.quote".into(),
                output: Some(json!({"total_usd": 100})),
                error: None,
            }),
            &mut out,
        );
        t.translate(
            &agent(AgentStep::ToolResult {
                id: "call_2".into(),
                name: "crm.lookup".into(),
                output: None,
                error: Some("not found".into()),
            }),
            &mut out,
        );
        let events: Vec<&Value> = out.iter().map(|(_, e)| e).collect();
        assert!(out.iter().all(|(name, _)| name == "events"));
        assert_eq!(events[0]["event"], "on_tool_start");
        assert_eq!(events[0]["name"], "roofing.quote");
        assert_eq!(events[0]["data"], json!({"input": {"squares": 24}}));
        assert_eq!(events[1]["event"], "on_tool_end");
        assert_eq!(events[1]["run_id"], events[0]["run_id"]);
        assert_eq!(events[1]["data"]["input"], json!({"squares": 24}));
        assert_eq!(events[1]["data"]["output"]["type"], "tool");
        assert_eq!(events[1]["data"]["output"]["tool_call_id"], "call_1");
        assert_eq!(
            events[1]["data"]["output"]["content"],
            r#"{"total_usd":100}"#
        );
        assert_eq!(events[1]["parent_ids"][0], "run-1");
        assert_eq!(events[2]["event"], "on_tool_error");
        assert_eq!(events[2]["data"]["error"], "not found");
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn timestamps_have_an_offset() {
        assert_eq!(iso(1_795_952_814_168), "2026-11-29T11:46:54.168000+00:00");
    }
}
