//! `run --thread ID` without input continues an unfinished thread; on a finished one it must
//! not start over (that would repeat every side effect of the run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use engine::{MemorySaver, Registry, RunRequest, RunStatus, Runner, node_fn};
use serde_json::json;

#[tokio::test]
async fn continuing_a_finished_thread_runs_no_node() {
    let calls = common::counter();
    let mut registry = Registry::new();
    let seen = Arc::clone(&calls);
    registry.register_tool(
        "count",
        node_fn(move |_input, _ctx| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(json!(1))
        }),
    );
    let graph = common::load_with(
        r#"
[graph]
name = "once"
[state]
n = { type = "integer", reducer = "add", default = 0 }
[nodes.count]
tool = "count"
output = "n"
[[edges]]
from = "START"
to = "count"
[[edges]]
from = "count"
to = "END"
"#,
        &registry,
    );
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let first = runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(first.status, RunStatus::Done);
    let again = runner.invoke(RunRequest::new().thread("t")).await;
    assert_eq!(again.status, RunStatus::Done);
    assert_eq!(again.steps, 0);
    assert_eq!(again.state, json!({"n": 1}));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // New input is a new run.
    let second = runner
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(second.state, json!({"n": 2}));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
