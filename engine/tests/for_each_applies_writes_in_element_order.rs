//! A `for_each` node runs one task per element; writes fold in element order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{NodeError, Registry, RunRequest, RunStatus, Runner};
use serde_json::{Value, json};

const FANOUT: &str = r#"
[graph]
name = "fanout"
[state]
numbers = { type = "array", default = [] }
results = { type = "array", reducer = "append", default = [] }
total   = { type = "integer", reducer = "add", default = 0 }
labels  = { type = "object", reducer = "merge", default = {} }
[nodes.square]
for_each = "state.numbers"
set = { results = "[item * item]", total = "item", labels = "{string(index): item}" }
[[edges]]
from = "START"
to = "square"
[[edges]]
from = "square"
to = "END"
"#;

#[tokio::test]
async fn squares_come_back_in_input_order() {
    let runner = Runner::new(Arc::new(common::load(FANOUT)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"numbers": [3, 1, 4, 1, 5, 9, 2, 6]})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["results"], json!([9, 1, 16, 1, 25, 81, 4, 36]));
    assert_eq!(out.state["total"], json!(31));
    assert_eq!(out.state["labels"]["7"], json!(6));
    assert_eq!(out.steps, 1);
}

#[tokio::test]
async fn empty_list_runs_no_task_and_moves_on() {
    let runner = Runner::new(Arc::new(common::load(FANOUT)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"numbers": []})))
        .await;
    assert_eq!(out.status, RunStatus::Done);
    assert_eq!(out.state["results"], json!([]));
}

#[tokio::test]
async fn parallel_tool_tasks_keep_element_order_whatever_finishes_first() {
    let mut registry = Registry::new();
    // Later elements finish first: the sleep shrinks as the element grows.
    registry.register_tool("slow.double", Arc::new(SlowDouble));
    let graph = common::load_with(
        r#"
[graph]
name = "fanout_tools"
[state]
numbers = { type = "array", default = [] }
results = { type = "array", reducer = "append", default = [] }
[nodes.double]
for_each = "state.numbers"
tool = "slow.double"
args = { n = "item" }
output = "results"
[[edges]]
from = "START"
to = "double"
[[edges]]
from = "double"
to = "END"
"#,
        &registry,
    );
    let out = Runner::new(Arc::new(graph))
        .invoke(RunRequest::new().input(json!({"numbers": [5, 4, 3, 2, 1]})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["results"], json!([10, 8, 6, 4, 2]));
}

struct SlowDouble;

#[async_trait::async_trait]
impl engine::Node for SlowDouble {
    async fn call(&self, input: Value, _: &engine::NodeContext) -> Result<Value, NodeError> {
        let n = input["n"].as_i64().unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(5 * (6 - n.min(6)) as u64)).await;
        Ok(json!(n * 2))
    }
}
