//! A run's events arrive as a Stream in order: run, step, node start/finish with the update,
//! custom events from node code, checkpoints, interrupts, and the final state last.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Event, MemorySaver, NodeContext, Registry, RunRequest, Runner, node_fn};
use serde_json::{Value, json};

#[tokio::test]
async fn events_of_a_two_step_run_with_an_interrupt() {
    let mut registry = Registry::new();
    registry.register_tool(
        "progress.report",
        node_fn(|input: Value, ctx: &NodeContext| {
            ctx.emit(json!({"progress": 0.5}));
            Ok(json!(input["n"].as_i64().unwrap_or(0) * 10))
        }),
    );
    let graph = common::load_with(
        r#"
[graph]
name = "events"
[state]
n = { type = "integer", default = 4 }
out = { type = "integer" }
answer = { type = "string" }
[nodes.work]
tool = "progress.report"
args = { n = "state.n" }
output = "out"
[nodes.ask]
ask = "continue?"
output = "answer"
[[edges]]
from = "START"
to = "work"
[[edges]]
from = "work"
to = "ask"
[[edges]]
from = "ask"
to = "END"
"#,
        &registry,
    );
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let mut stream = runner.stream(RunRequest::new().thread("e"));
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e);
    }
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "run_started",
            "checkpoint",
            "step_started",
            "node_started",
            "custom",
            "node_finished",
            "checkpoint",
            "step_finished",
            "step_started",
            "node_started",
            "interrupt",
            "error_or_finish"
        ]
        .into_iter()
        .filter(|k| *k != "error_or_finish")
        .chain(["run_finished"])
        .collect::<Vec<_>>()
    );
    assert!(events.contains(&Event::NodeFinished {
        step: 1,
        node: "work".into(),
        task: "work".into(),
        update: json!({"out": 40})
    }));
    assert!(events.contains(&Event::Custom {
        node: "work".into(),
        data: json!({"progress": 0.5})
    }));
    match events.last().unwrap() {
        Event::RunFinished { status, state } => {
            assert_eq!(status, "interrupted");
            assert_eq!(state["out"], 40);
        }
        other => panic!("last event should be run_finished, got {other:?}"),
    }
}

#[tokio::test]
async fn stream_is_a_futures_stream() {
    fn assert_stream<S: futures_core::Stream<Item = Event>>(_: &S) {}
    let graph = common::load(
        "[graph]\nname = \"s\"\n[state]\nx = { type = \"integer\" }\n[nodes.a]\nset = { x = \"1\" }\n[[edges]]\nfrom = \"START\"\nto = \"a\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"\n",
    );
    let stream = Runner::new(Arc::new(graph)).stream(RunRequest::new());
    assert_stream(&stream);
}
