//! `Runner::update_state_as` is LangGraph's `update_state(values, as_node=...)`: the values
//! are written as that node's, standing for the step the thread was about to run, and the
//! thread goes on from that node's edges. Each expected `next` is what LangGraph 1.2.24
//! gives for the same graph and calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{MemorySaver, RunError, RunRequest, RunStatus, Runner, ThreadStatus};
use serde_json::json;

fn runner(toml: &str) -> Runner {
    Runner::new(Arc::new(common::load(toml))).with_checkpointer(Arc::new(MemorySaver::new()))
}

const PIPELINE: &str = r#"
[graph]
name = "pipeline"
[state]
log = { type = "array", reducer = "append", default = [] }
[nodes.a]
set = { log = "['a']" }
[nodes.b]
set = { log = "['b']" }
interrupt = "before"
[nodes.c]
set = { log = "['c']" }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "a"
to = "b"
[[edges]]
from = "b"
to = "c"
[[edges]]
from = "c"
to = "END"
"#;

/// Written as `b` at the breakpoint before `b`, the update takes `b`'s place: the thread
/// goes on at `c`, and `b` never runs.
#[tokio::test]
async fn as_the_node_about_to_run_skips_it() {
    let runner = runner(PIPELINE);
    let first = runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(first.status, RunStatus::Interrupted);
    assert_eq!(runner.state("t", None).await.unwrap().next, ["b"]);

    runner
        .update_state_as("t", &json!({"log": ["b (by hand)"]}), Some("b"))
        .await
        .unwrap();
    let edited = runner.state("t", None).await.unwrap();
    assert_eq!(edited.next, ["c"]);
    assert_eq!(edited.values["log"], json!(["a", "b (by hand)"]));

    let done = runner
        .invoke(RunRequest::new().thread("t").resume(json!(null)))
        .await;
    assert_eq!(done.status, RunStatus::Done, "{:?}", done.error);
    assert_eq!(done.state["log"], json!(["a", "b (by hand)", "c"]));
}

/// Written as `a` (the node that just ran), the thread goes on at `b`, as before the update;
/// without `as_node` nothing moves either.
#[tokio::test]
async fn as_the_node_that_ran_keeps_the_next_node() {
    let runner = runner(PIPELINE);
    runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    runner
        .update_state_as("t", &json!({"log": ["a2"]}), Some("a"))
        .await
        .unwrap();
    assert_eq!(runner.state("t", None).await.unwrap().next, ["b"]);
    runner
        .update_state("t", &json!({"log": ["plain"]}))
        .await
        .unwrap();
    assert_eq!(runner.state("t", None).await.unwrap().next, ["b"]);
    let done = runner
        .invoke(RunRequest::new().thread("t").resume(json!(null)))
        .await;
    assert_eq!(done.state["log"], json!(["a", "a2", "plain", "b", "c"]));
}

/// Written as the `ask` node, the update is the answer: the question is dropped and a run
/// with no input goes on from the node after it. Conditions are evaluated on the update.
#[tokio::test]
async fn as_an_ask_node_answers_for_it_and_routes_on_the_new_state() {
    let runner = runner(
        r#"
[graph]
name = "approval"
[state]
answer = { type = "string", default = "" }
log = { type = "array", reducer = "append", default = [] }
[nodes.approve]
ask = "Send the quote?"
output = "answer"
[nodes.send]
set = { log = "['sent']" }
[nodes.hold]
set = { log = "['held']" }
[[edges]]
from = "START"
to = "approve"
[[edges]]
from = "approve"
to = "send"
when = "state.answer == 'yes'"
[[edges]]
from = "approve"
to = "hold"
default = true
[[edges]]
from = "send"
to = "END"
[[edges]]
from = "hold"
to = "END"
"#,
    );
    let first = runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(first.status, RunStatus::Interrupted);

    runner
        .update_state_as("t", &json!({"answer": "yes"}), Some("approve"))
        .await
        .unwrap();
    let edited = runner.state("t", None).await.unwrap();
    assert_eq!(edited.next, ["send"]);
    assert_eq!(edited.status, Some(ThreadStatus::Idle));
    assert!(edited.interrupt.is_none());

    let done = runner.invoke(RunRequest::new().thread("t")).await;
    assert_eq!(done.status, RunStatus::Done, "{:?}", done.error);
    assert_eq!(done.state["log"], json!(["sent"]));
    assert_eq!(done.state["answer"], "yes");
}

/// Both sources of a join written by hand release it, as a run would.
#[tokio::test]
async fn as_the_last_source_of_a_join_releases_it() {
    let runner = runner(
        r#"
[graph]
name = "join"
[state]
log = { type = "array", reducer = "append", default = [] }
[nodes.left]
set = { log = "['left']" }
[nodes.right]
set = { log = "['right']" }
interrupt = "before"
[nodes.merge]
set = { log = "['merge']" }
[[edges]]
from = "START"
to = "left"
[[edges]]
from = "START"
to = "right"
[[edges]]
from = ["left", "right"]
to = "merge"
[[edges]]
from = "merge"
to = "END"
"#,
    );
    let first = runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(first.status, RunStatus::Interrupted);
    runner
        .update_state_as("t", &json!({"log": ["left (by hand)"]}), Some("left"))
        .await
        .unwrap();
    // The update stands for the pending step: `right` no longer runs (as in LangGraph
    // 1.2.24, where `next` is then empty too), and the join waits for it.
    assert!(runner.state("t", None).await.unwrap().next.is_empty());
    runner
        .update_state_as("t", &json!({"log": ["right (by hand)"]}), Some("right"))
        .await
        .unwrap();
    assert_eq!(runner.state("t", None).await.unwrap().next, ["merge"]);
}

#[tokio::test]
async fn an_unknown_node_is_refused_by_name() {
    let runner = runner(PIPELINE);
    runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    let err = runner
        .update_state_as("t", &json!({}), Some("nosuch"))
        .await
        .unwrap_err();
    match err {
        RunError::Input { message } => assert!(message.contains("`nosuch`"), "{message}"),
        other => panic!("expected an input error, got {other:?}"),
    }
}
