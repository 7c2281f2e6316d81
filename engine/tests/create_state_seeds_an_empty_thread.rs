//! `Runner::create_state` is LangGraph's `update_state` on a thread with no checkpoint: the
//! values become its first checkpoint (source `update`), no node runs, and the thread goes
//! on where START leads or, given `as_node`, from that node's edges. The expected values and
//! `next` are what LangGraph 1.2.24 gives for the same graph and calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{
    CheckpointSource, MemorySaver, RunError, RunRequest, RunStatus, Runner, ThreadStatus,
};
use serde_json::json;

const SIMPLE: &str = r#"
[graph]
name = "simple"
[state]
log = { type = "array", reducer = "append", default = [] }
n = { type = "integer", default = 0 }
[nodes.a]
set = { log = "['a']", n = "state.n + 1" }
[nodes.b]
set = { log = "['b']" }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "a"
to = "b"
[[edges]]
from = "b"
to = "END"
"#;

fn runner() -> Runner {
    Runner::new(Arc::new(common::load(SIMPLE))).with_checkpointer(Arc::new(MemorySaver::new()))
}

#[tokio::test]
async fn the_values_become_the_first_checkpoint_and_no_node_runs() {
    let runner = runner();
    let id = runner
        .create_state("t", &json!({"n": 5, "log": ["x"]}), None)
        .await
        .unwrap();
    let state = runner.state("t", None).await.unwrap();
    assert_eq!(state.values, json!({"log": ["x"], "n": 5}));
    assert_eq!(state.next, ["a"]);
    assert_eq!(state.checkpoint_id, Some(id));
    let history = runner.history("t").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].source, CheckpointSource::Update);
    assert_eq!(state.status, Some(ThreadStatus::Idle));
    // A second update, as a node, seeds the history further (LangGraph's `supersteps`).
    runner
        .update_state_as("t", &json!({"n": 7}), Some("a"))
        .await
        .unwrap();
    let state = runner.state("t", None).await.unwrap();
    assert_eq!(state.values, json!({"log": ["x"], "n": 7}));
    assert_eq!(state.next, ["b"]);
    // A run without input goes on from there.
    let out = runner.invoke(RunRequest::new().thread("t")).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state, json!({"log": ["x", "b"], "n": 7}));
}

#[tokio::test]
async fn as_a_node_the_thread_goes_on_from_its_edges() {
    let runner = runner();
    runner
        .create_state("t", &json!({"n": 5, "log": ["x"]}), Some("a"))
        .await
        .unwrap();
    let state = runner.state("t", None).await.unwrap();
    assert_eq!(state.values, json!({"log": ["x"], "n": 5}));
    assert_eq!(state.next, ["b"]);
}

#[tokio::test]
async fn a_thread_with_state_or_a_bad_update_is_refused_and_left_as_it_was() {
    let runner = runner();
    runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    let before = runner.history("t").await.unwrap().len();
    let err = runner
        .create_state("t", &json!({"n": 1}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Thread { message } if message.contains("already has state")),
        "{err:?}"
    );
    assert_eq!(runner.history("t").await.unwrap().len(), before);
    let err = runner
        .create_state("u", &json!({"n": 1}), Some("nosuch"))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Input { .. }), "{err:?}");
    let err = runner
        .create_state("u", &json!({"nosuch": 1}), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nosuch"), "{err}");
    assert!(runner.history("u").await.unwrap_or_default().is_empty());
    // Refused values leave no thread record behind.
    let saver = runner.checkpointer().unwrap();
    assert!(saver.thread("u").await.unwrap().is_none());
}
