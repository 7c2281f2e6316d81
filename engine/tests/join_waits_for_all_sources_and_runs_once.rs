//! A join (`from = [..]`) runs its target once, after every source finished — even when
//! the branches have different lengths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunRequest, RunStatus, Runner};
use serde_json::json;

#[tokio::test]
async fn join_after_branches_of_unequal_length() {
    let graph = common::load(
        r#"
[graph]
name = "join"
[state]
trail = { type = "array", reducer = "append", default = [] }
joins = { type = "integer", reducer = "add", default = 0 }
[nodes.a]
set = { trail = "['a']" }
[nodes.b1]
set = { trail = "['b1']" }
[nodes.b2]
set = { trail = "['b2']" }
[nodes.b3]
set = { trail = "['b3']" }
[nodes.c]
set = { trail = "['c']", joins = "1" }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "START"
to = "b1"
[[edges]]
from = "b1"
to = "b2"
[[edges]]
from = "b2"
to = "b3"
[[edges]]
from = ["a", "b3"]
to = "c"
[[edges]]
from = "c"
to = "END"
"#,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(
        out.state["joins"],
        json!(1),
        "the join target ran exactly once"
    );
    assert_eq!(out.state["trail"], json!(["a", "b1", "b2", "b3", "c"]));
    assert_eq!(out.steps, 4);
}

#[tokio::test]
async fn join_waits_across_a_checkpointed_restart() {
    use engine::MemorySaver;
    let src = r#"
[graph]
name = "join_pause"
[state]
trail = { type = "array", reducer = "append", default = [] }
[nodes.a]
set = { trail = "['a']" }
[nodes.b]
set = { trail = "['b']" }
interrupt = "after"
[nodes.b2]
set = { trail = "['b2']" }
[nodes.c]
set = { trail = "['c']" }
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
from = ["a", "b2"]
to = "c"
[[edges]]
from = "c"
to = "END"
"#;
    let saver = Arc::new(MemorySaver::new());
    let runner = Runner::new(Arc::new(common::load(src))).with_checkpointer(saver.clone());
    let first = runner.invoke(RunRequest::new().thread("j")).await;
    assert_eq!(first.status, RunStatus::Interrupted);
    // A new runner (as a new process would) picks up the join's progress from the checkpoint.
    let runner = Runner::new(Arc::new(common::load(src))).with_checkpointer(saver);
    let out = runner
        .invoke(RunRequest::new().thread("j").resume(json!(null)))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["trail"], json!(["a", "b", "b2", "c"]));
}
