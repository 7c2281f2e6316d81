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
    RunStarted {
        thread_id: String,
        graph: String,
    },
    StepStarted {
        step: u64,
        nodes: Vec<String>,
    },
    NodeStarted {
        step: u64,
        node: String,
        task: String,
    },
    NodeFinished {
        step: u64,
        node: String,
        task: String,
        update: Value,
    },
    /// Data a node emitted with `NodeContext::emit`.
    Custom {
        node: String,
        data: Value,
    },
    /// A node paid for something (tokens of a model call), with its cost when known.
    Usage {
        node: String,
        task: String,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    Interrupt {
        node: String,
        task: String,
        value: Value,
    },
    Checkpoint {
        checkpoint_id: u64,
        step: u64,
        bytes: usize,
    },
    StepFinished {
        step: u64,
    },
    Error {
        message: String,
    },
    RunFinished {
        status: String,
        state: Value,
    },
}

/// The sending half handed to the executor and to nodes.
#[derive(Clone, Debug)]
pub struct EventSink(mpsc::UnboundedSender<Event>);

impl EventSink {
    /// A sink and the stream that receives what is sent into it.
    pub fn channel() -> (EventSink, EventStream) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink(tx), EventStream(rx))
    }

    pub fn send(&self, event: Event) {
        // A dropped receiver means nobody listens any more; the run goes on.
        let _ = self.0.send(event);
    }
}

/// The events of a run, as a `futures` `Stream`. It ends when the run ends.
#[derive(Debug)]
pub struct EventStream(mpsc::UnboundedReceiver<Event>);

impl EventStream {
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
