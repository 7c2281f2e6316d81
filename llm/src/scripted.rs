//! `ScriptedModel`: a test double that answers from a script instead of generating.
//!
//! It is for deterministic tests of graphs and agents (the path a run takes, the state it
//! ends in); it is never a model. Every request it gets is recorded for assertions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, ErrorKind, LlmError,
    StopReason, StreamEvent, ToolCall, Usage,
};

type Responder = dyn Fn(&ChatRequest) -> ChatResponse + Send + Sync;

/// Replies, in order, from a script; then from a responder function, if one is set.
pub struct ScriptedModel {
    name: String,
    script: Mutex<VecDeque<ChatResponse>>,
    responder: Option<Arc<Responder>>,
    requests: Mutex<Vec<ChatRequest>>,
    capabilities: Capabilities,
}

impl ScriptedModel {
    /// A scripted model named `scripted:NAME`, with no replies yet.
    pub fn new(name: &str) -> Self {
        ScriptedModel {
            name: name.to_string(),
            script: Mutex::new(VecDeque::new()),
            responder: None,
            requests: Mutex::new(Vec::new()),
            capabilities: Capabilities::ALL,
        }
    }

    /// Says it cannot call tools, as a small local model: agents then choose a handoff in
    /// their answer instead of by a tool call.
    pub fn without_tools(mut self) -> Self {
        self.capabilities.tools = false;
        self.capabilities.parallel_tool_calls = false;
        self
    }

    /// Answers every request the script does not cover with `f(request)`.
    pub fn responding(
        mut self,
        f: impl Fn(&ChatRequest) -> ChatResponse + Send + Sync + 'static,
    ) -> Self {
        self.responder = Some(Arc::new(f));
        self
    }

    /// Answers every uncovered request with `value` as JSON text.
    pub fn always_json(self, value: Value) -> Self {
        let name = self.name.clone();
        self.responding(move |_| text_reply(&name, value.to_string()))
    }

    /// Next reply: this text.
    pub fn then_text(self, text: &str) -> Self {
        let reply = text_reply(&self.name, text.to_string());
        self.then(reply)
    }

    /// Next reply: this JSON value, as text.
    pub fn then_json(self, value: Value) -> Self {
        let reply = text_reply(&self.name, value.to_string());
        self.then(reply)
    }

    /// Next reply: a request to call these tools (name, arguments), in parallel.
    pub fn then_tools(self, calls: &[(&str, Value)]) -> Self {
        let mut reply = ChatResponse::empty(self.name.clone());
        reply.stop_reason = StopReason::ToolCalls;
        reply.tool_calls = calls
            .iter()
            .enumerate()
            .map(|(i, (name, arguments))| ToolCall {
                id: format!("call_{i}"),
                name: name.to_string(),
                arguments: arguments.clone(),
            })
            .collect();
        reply.usage = Usage {
            input_tokens: 10,
            output_tokens: 5,
        };
        self.then(reply)
    }

    /// Adds a reply, given in turn.
    pub fn then(self, reply: ChatResponse) -> Self {
        if let Ok(mut script) = self.script.lock() {
            script.push_back(reply);
        }
        self
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn next(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if let Ok(mut seen) = self.requests.lock() {
            seen.push(request.clone());
        }
        let scripted = self.script.lock().ok().and_then(|mut s| s.pop_front());
        match (scripted, &self.responder) {
            (Some(reply), _) => Ok(reply),
            (None, Some(f)) => Ok(f(request)),
            (None, None) => Err(LlmError::new(
                ErrorKind::Permanent,
                "scripted",
                format!(
                    "ScriptedModel `{}` has no reply left for this request",
                    self.name
                ),
            )),
        }
    }
}

fn text_reply(model: &str, text: String) -> ChatResponse {
    let mut reply = ChatResponse::empty(model);
    reply.usage = Usage {
        input_tokens: 20,
        output_tokens: (text.len() as u64).div_ceil(4),
    };
    reply.text = text;
    reply
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn name(&self) -> String {
        format!("scripted:{}", self.name)
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.next(request)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        let reply = self.next(request)?;
        let mut events: Vec<Result<StreamEvent, LlmError>> = reply
            .text
            .split_inclusive(' ')
            .map(|piece| {
                Ok(StreamEvent::Text {
                    delta: piece.to_string(),
                })
            })
            .collect();
        for (index, call) in reply.tool_calls.iter().enumerate() {
            events.push(Ok(StreamEvent::ToolCall {
                index,
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments_delta: call.arguments.to_string(),
            }));
        }
        events.push(Ok(StreamEvent::Done { response: reply }));
        Ok(Box::pin(futures_util::stream::iter(events)))
    }
}
