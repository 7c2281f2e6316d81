//! `defer = true` holds a node back until nothing else is left to run (map-reduce joins
//! over fan-outs of different lengths), and a `for_each` over an empty list runs nothing
//! after it unless `on_empty = "continue"`.
//!
//! Expected states are LangGraph 1.2.24's for the same graphs
//! (`tests/langgraph_parity/multi_agent.py`), mirroring
//! `test_in_one_fan_out_state_graph_defer_node` and `test_send_sequences` (zero sends) in
//! `libs/langgraph/tests/test_pregel.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Registry, RunRequest, RunStatus, Runner, SqliteSaver};
use serde_json::json;

const DEFER: &str = r#"
[graph]
name = "defer"
[state]
log = { type = "array", reducer = "append", default = [] }
[nodes.a]
set = { log = "['a']" }
[nodes.b]
set = { log = "['b']" }
[nodes.b2]
set = { log = "['b2']" }
[nodes.c]
set = { log = "['c']" }
[nodes.join]
set = { log = "['join']" }
defer = true
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "START"
to = "b"
[[edges]]
from = "b"
to = "b2"
[[edges]]
from = "b2"
to = "c"
[[edges]]
from = "a"
to = "join"
[[edges]]
from = "c"
to = "join"
[[edges]]
from = "join"
to = "END"
"#;

#[tokio::test]
async fn a_deferred_node_runs_once_after_every_branch() {
    // LangGraph: {"log": ["a", "b", "b2", "c", "join"]}.
    let out = Runner::new(Arc::new(common::load(DEFER)))
        .invoke(RunRequest::new().input(json!({})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["log"], json!(["a", "b", "b2", "c", "join"]));
}

#[tokio::test]
async fn a_held_deferred_node_survives_a_restart_in_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(DEFER))).with_checkpointer(open());
    let mut first = RunRequest::new().thread("d").input(json!({}));
    first.interrupt_before = vec!["c".into()];
    let out = runner.invoke(first).await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    let snapshot = runner.state("d", None).await.unwrap();
    assert_eq!(snapshot.next, ["c", "join"], "join is held, not lost");
    let runner = Runner::new(Arc::new(common::load(DEFER))).with_checkpointer(open());
    let out = runner
        .invoke(RunRequest::new().thread("d").resume(json!(null)))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["log"], json!(["a", "b", "b2", "c", "join"]));
}

const EMPTY: &str = r#"
[graph]
name = "empty"
[state]
items = { type = "array" }
log = { type = "array", reducer = "append", default = [] }
[nodes.start]
set = { log = "['start']" }
[nodes.work]
for_each = "state.items"
set = { log = "['work']" }
[nodes.after]
set = { log = "['after']" }
[[edges]]
from = "START"
to = "start"
[[edges]]
from = "start"
to = "work"
[[edges]]
from = "work"
to = "after"
[[edges]]
from = "after"
to = "END"
"#;

#[tokio::test]
async fn an_empty_fan_out_runs_nothing_after_it_unless_told() {
    // LangGraph (zero Sends): {"log": ["start"]}.
    let out = Runner::new(Arc::new(common::load(EMPTY)))
        .invoke(RunRequest::new().input(json!({"items": []})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["log"], json!(["start"]));

    let told = EMPTY.replace(
        "for_each = \"state.items\"",
        "for_each = \"state.items\"\non_empty = \"continue\"",
    );
    let out = Runner::new(Arc::new(common::load(&told)))
        .invoke(RunRequest::new().input(json!({"items": []})))
        .await;
    assert_eq!(out.state["log"], json!(["start", "after"]));
    // A list with elements is unchanged by either setting.
    let out = Runner::new(Arc::new(common::load(&told)))
        .invoke(RunRequest::new().input(json!({"items": [1, 2]})))
        .await;
    assert_eq!(out.state["log"], json!(["start", "work", "work", "after"]));
}

#[test]
fn on_empty_without_for_each_and_unknown_values_are_load_errors() {
    let bad = EMPTY.replace(
        "[nodes.after]\nset = { log = \"['after']\" }",
        "[nodes.after]\nset = { log = \"['after']\" }\non_empty = \"continue\"",
    );
    let err = common::load_err(&bad, &Registry::new()).to_string();
    assert!(
        err.contains("`on_empty` applies to `for_each` nodes only"),
        "{err}"
    );
    let bad = EMPTY.replace(
        "for_each = \"state.items\"",
        "for_each = \"state.items\"\non_empty = \"maybe\"",
    );
    let err = common::load_err(&bad, &Registry::new()).to_string();
    assert!(err.contains("unknown variant `maybe`"), "{err}");
}
