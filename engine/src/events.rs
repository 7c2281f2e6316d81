//! The run's event stream: one event type for everything a run reports.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// Something that happened in a run. Serialized as `{"event": "...", ...}` JSON lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began on a thread.
    RunStarted {
        /// The thread.
        thread_id: String,
        /// The graph's name.
        graph: String,
    },
    /// A super-step began.
    StepStarted {
        /// The step number.
        step: u64,
        /// The nodes it runs.
        nodes: Vec<String>,
    },
    /// A task began.
    NodeStarted {
        /// The step number.
        step: u64,
        /// The node.
        node: String,
        /// The task's id (`node`, or `node[i]` for a `for_each` element).
        task: String,
    },
    /// A task finished.
    NodeFinished {
        /// The step number.
        step: u64,
        /// The node.
        node: String,
        /// The task's id.
        task: String,
        /// What the task wrote, by channel.
        update: Value,
    },
    /// Data a node emitted with `NodeContext::emit`.
    Custom {
        /// The node that emitted it.
        node: String,
        /// What it emitted.
        data: Value,
    },
    /// What an agent or an integration reports while it works
    /// ([`NodeContext::progress`](crate::NodeContext::progress)). Printed as a `custom`
    /// event whose `data` is the progress object, as before it had a type.
    #[serde(rename = "custom")]
    Progress {
        /// The node of the agent or integration.
        node: String,
        /// What it reports.
        #[serde(rename = "data")]
        progress: Progress,
    },
    /// A node paid for something (tokens of a model call), with its cost when known.
    Usage {
        /// The node that paid.
        node: String,
        /// The task's id.
        task: String,
        /// The model that answered (`provider:model`).
        model: String,
        /// Prompt tokens.
        input_tokens: u64,
        /// Reply tokens.
        output_tokens: u64,
        /// What the call cost, when the model's price is known.
        #[serde(skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The run stopped to wait for a person (or at an `interrupt` before or after a node).
    Interrupt {
        /// The node.
        node: String,
        /// The task waiting.
        task: String,
        /// What is asked.
        value: Value,
    },
    /// A checkpoint was stored.
    Checkpoint {
        /// Its id.
        checkpoint_id: u64,
        /// The checkpoint before it on the thread.
        #[serde(skip_serializing_if = "Option::is_none")]
        parent: Option<u64>,
        /// The step it closes.
        step: u64,
        /// What made it (`input`, `loop`, ...).
        source: crate::checkpoint::CheckpointSource,
        /// The nodes the thread runs next from it.
        next: Vec<String>,
        /// Its stored size.
        bytes: usize,
    },
    /// The whole state, after the input and after every committed step; sent only when the
    /// request asks for it ([`RunRequest::emit_values`](crate::RunRequest::emit_values)).
    Values {
        /// The step it follows (`None`: the input).
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
        /// The state.
        state: Value,
    },
    /// A super-step committed.
    StepFinished {
        /// The step number.
        step: u64,
    },
    /// The run failed.
    Error {
        /// Why.
        message: String,
    },
    /// An event of a subgraph's run, sent only when the request asks for them
    /// ([`RunRequest::stream_subgraphs`](crate::RunRequest::stream_subgraphs)).
    Subgraph {
        /// Where it happened: `node:task` of each subgraph task from the top, joined by `|`.
        namespace: String,
        /// The subgraph's event.
        inner: Box<Event>,
    },
    /// The run ended: the last event.
    RunFinished {
        /// How it ended.
        status: crate::pregel::RunStatus,
        /// The thread's state at the end.
        state: Value,
    },
}

/// What an agent or an integration reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Progress {
    /// A step of an agent: `{"agent": NAME, "<step>": ...}`.
    Agent {
        /// The agent's name.
        agent: String,
        /// What it did.
        #[serde(flatten)]
        step: AgentStep,
    },
    /// An integration call, recorded (dry run) or sent.
    Integration {
        /// The integration tool's name.
        integration: String,
        /// What became of the call.
        #[serde(flatten)]
        call: IntegrationCall,
    },
}

/// One step of an agent at work.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStep {
    /// A piece of the model's text, as it is generated.
    Token(String),
    /// The model asked for a tool.
    ToolCall {
        /// The model's id for the call.
        id: String,
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A tool's answer (`output`) or failure (`error`).
    ToolResult {
        /// The model's id for the call.
        id: String,
        /// The tool.
        name: String,
        /// What the tool returned.
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
        /// Why the tool failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The model asked for a tool outside the agent's allowlist; it was not called.
    ToolRefused {
        /// The model's id for the call.
        id: String,
        /// The tool asked for.
        name: String,
    },
    /// The answer did not fit the output schema (the problem); the model is asked again.
    SchemaRetry(String),
    /// The answer was written to memory.
    Remembered {
        /// Where it was written.
        namespace: String,
        /// Its key.
        key: String,
    },
    /// Writing the answer to memory failed (the answer is kept).
    MemoryError(String),
    /// The agent handed the conversation to another agent.
    Handoff {
        /// The agent it handed to.
        to: String,
        /// Why, in the model's words.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl AgentStep {
    /// The step's name as it appears in the event: `token`, `tool_call`, ...
    pub fn name(&self) -> &'static str {
        match self {
            AgentStep::Token(_) => "token",
            AgentStep::ToolCall { .. } => "tool_call",
            AgentStep::ToolResult { .. } => "tool_result",
            AgentStep::ToolRefused { .. } => "tool_refused",
            AgentStep::SchemaRetry(_) => "schema_retry",
            AgentStep::Remembered { .. } => "remembered",
            AgentStep::Handoff { .. } => "handoff",
            AgentStep::MemoryError(_) => "memory_error",
        }
    }
}

/// What became of an integration call. Serialized with `dry_run: true` (recorded) or
/// `false` (sent) beside its fields.
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrationCall {
    /// Recorded, not sent (dry-run mode, or the vendor is not configured), and why.
    Recorded {
        /// Why it was not sent.
        reason: String,
    },
    /// Sent: how many requests, and how many of them were replies recorded before (a task
    /// that ran again) instead of new calls.
    Sent {
        /// Requests the call made.
        requests: usize,
        /// Of those, replies recorded before and returned again.
        replayed: usize,
    },
}

impl Serialize for IntegrationCall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            IntegrationCall::Recorded { reason } => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("dry_run", &true)?;
                map.serialize_entry("reason", reason)?;
                map.end()
            }
            IntegrationCall::Sent { requests, replayed } => {
                let mut map = s.serialize_map(Some(3))?;
                map.serialize_entry("dry_run", &false)?;
                map.serialize_entry("requests", requests)?;
                map.serialize_entry("replayed", replayed)?;
                map.end()
            }
        }
    }
}

/// The sending half handed to the executor and to nodes.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    /// Set on a subgraph's sink: its events arrive wrapped in [`Event::Subgraph`].
    namespace: Option<std::sync::Arc<str>>,
    /// Whether subgraph runs send their events here too.
    subgraphs: bool,
}

impl EventSink {
    /// A sink and the stream that receives what is sent into it.
    pub fn channel() -> (EventSink, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EventSink {
                tx,
                namespace: None,
                subgraphs: false,
            },
            EventStream(rx),
        )
    }

    /// Sends an event (dropped when nobody listens).
    pub fn send(&self, event: Event) {
        let event = match &self.namespace {
            Some(namespace) => Event::Subgraph {
                namespace: namespace.to_string(),
                inner: Box::new(event),
            },
            None => event,
        };
        // A dropped receiver means nobody listens any more; the run goes on.
        let _ = self.tx.send(event);
    }

    /// Whether this is a subgraph's sink (it keeps forwarding its own subgraphs' events).
    pub(crate) fn namespace_is_set(&self) -> bool {
        self.namespace.is_some()
    }

    /// The same sink, forwarding subgraph events (`on`) or not.
    pub(crate) fn with_subgraphs(mut self, on: bool) -> Self {
        self.subgraphs = on;
        self
    }

    /// A sink for the subgraph run of task `segment` (`node:task`), when subgraph events
    /// are wanted.
    pub(crate) fn nested(&self, segment: &str) -> Option<EventSink> {
        self.subgraphs.then(|| EventSink {
            tx: self.tx.clone(),
            namespace: Some(match &self.namespace {
                Some(outer) => format!("{outer}|{segment}").into(),
                None => segment.into(),
            }),
            subgraphs: true,
        })
    }
}

/// The events of a run, as a `futures` `Stream`. It ends when the run ends.
#[derive(Debug)]
pub struct EventStream(mpsc::UnboundedReceiver<Event>);

impl EventStream {
    /// The next event; `None` once the run has ended and everything was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn printed(progress: Progress) -> Value {
        serde_json::to_value(Event::Progress {
            node: "qualify".into(),
            progress,
        })
        .unwrap()
    }

    /// Typed progress prints the `custom` events that docs/agents.md documents.
    #[test]
    fn progress_prints_as_the_documented_custom_events() {
        let call = printed(Progress::Agent {
            agent: "revenue.lead_qualifier".into(),
            step: AgentStep::ToolCall {
                id: "c1".into(),
                name: "roofing.estimate".into(),
                arguments: json!({"area_sqft": 2000}),
            },
        });
        assert_eq!(
            call,
            json!({"event": "custom", "node": "qualify", "data": {
                "agent": "revenue.lead_qualifier",
                "tool_call": {"id": "c1", "name": "roofing.estimate", "arguments": {"area_sqft": 2000}}}})
        );
        let token = printed(Progress::Agent {
            agent: "a".into(),
            step: AgentStep::Token("Hi".into()),
        });
        assert_eq!(token["data"], json!({"agent": "a", "token": "Hi"}));
        let failed = printed(Progress::Agent {
            agent: "a".into(),
            step: AgentStep::ToolResult {
                id: "c1".into(),
                name: "t".into(),
                output: None,
                error: Some("boom".into()),
            },
        });
        assert_eq!(
            failed["data"],
            json!({"agent": "a", "tool_result": {"id": "c1", "name": "t", "error": "boom"}})
        );
        let recorded = printed(Progress::Integration {
            integration: "twilio.send_sms".into(),
            call: IntegrationCall::Recorded {
                reason: "dry-run mode".into(),
            },
        });
        assert_eq!(
            recorded["data"],
            json!({"integration": "twilio.send_sms", "dry_run": true, "reason": "dry-run mode"})
        );
        let sent = printed(Progress::Integration {
            integration: "stripe.create_payment_intent".into(),
            call: IntegrationCall::Sent {
                requests: 1,
                replayed: 0,
            },
        });
        assert_eq!(
            sent["data"],
            json!({"integration": "stripe.create_payment_intent", "dry_run": false, "requests": 1, "replayed": 0})
        );
    }

    #[test]
    fn run_finished_prints_its_status_as_a_word() {
        let e = Event::RunFinished {
            status: crate::RunStatus::Interrupted,
            state: json!({}),
        };
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            json!({"event": "run_finished", "status": "interrupted", "state": {}})
        );
    }
}
