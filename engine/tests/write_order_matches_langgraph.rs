//! Within a step, writes fold in LangGraph's order: plain nodes by name, then `for_each`
//! tasks (LangGraph's `Send`) by node name and element order. The same in the first step,
//! in later steps and on resume, whatever the order of edges or declarations.
//! (LangGraph's `test_parallel_node_execution`, `test_concurrent_emit_sends`,
//! `test_partial_pending_checkpoint`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use engine::{
    MemorySaver, NodeContext, NodeError, Registry, RunRequest, RunStatus, Runner, node_fn,
};
use serde_json::{Value, json};

/// Declared and wired in reverse alphabetical order, so neither order can pass by chance.
const GRAPH: &str = r#"
[graph]
name = "order"
[state]
log = { type = "array", reducer = "append", default = [] }
items = { type = "array", default = [1, 2] }
[nodes.zeta]
set = { log = "['zeta']" }
[nodes.alpha]
set = { log = "['alpha']" }
[nodes.yank]
for_each = "state.items"
set = { log = "['yank' + string(item)]" }
[nodes.omega]
set = { log = "['omega']" }
[nodes.beta]
set = { log = "['beta']" }
[[edges]]
from = "START"
to = "zeta"
[[edges]]
from = "START"
to = "alpha"
[[edges]]
from = "zeta"
to = "yank"
[[edges]]
from = "zeta"
to = "omega"
[[edges]]
from = "alpha"
to = "beta"
[[edges]]
from = "yank"
to = "END"
[[edges]]
from = "omega"
to = "END"
[[edges]]
from = "beta"
to = "END"
"#;

#[tokio::test]
async fn every_step_folds_by_node_name_then_fan_out_tasks() {
    let out = Runner::new(Arc::new(common::load(GRAPH)))
        .invoke(RunRequest::new())
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(
        out.state["log"],
        json!(["alpha", "zeta", "beta", "omega", "yank1", "yank2"])
    );
}

#[tokio::test]
async fn a_resumed_step_folds_in_the_same_order() {
    // `alpha` fails once; `zeta` finished and its write was saved. On resume the saved
    // write and the re-run one still fold alpha first.
    let down = Arc::new(AtomicBool::new(true));
    let mut registry = Registry::new();
    {
        let down = down.clone();
        registry.register_tool(
            "flaky",
            node_fn(move |_: Value, _: &NodeContext| {
                if down.load(Ordering::SeqCst) {
                    Err(NodeError::permanent("down"))
                } else {
                    Ok(json!("alpha"))
                }
            }),
        );
    }
    registry.register_tool(
        "steady",
        node_fn(|_: Value, _: &NodeContext| Ok(json!("zeta"))),
    );
    let graph = common::load_with(
        r#"
[graph]
name = "resume_order"
[state]
log = { type = "array", reducer = "append", default = [] }
[nodes.zeta]
tool = "steady"
output = "log"
[nodes.alpha]
tool = "flaky"
output = "log"
[[edges]]
from = "START"
to = "zeta"
[[edges]]
from = "START"
to = "alpha"
[[edges]]
from = "zeta"
to = "END"
[[edges]]
from = "alpha"
to = "END"
"#,
        &registry,
    );
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let out = runner.invoke(RunRequest::new().thread("t")).await;
    assert_eq!(out.status, RunStatus::Failed);
    down.store(false, Ordering::SeqCst);
    let out = runner.invoke(RunRequest::new().thread("t")).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["log"], json!(["alpha", "zeta"]));
}
