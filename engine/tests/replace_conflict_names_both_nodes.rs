//! Two tasks writing one `replace` channel in the same step is an error naming both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunError, RunRequest, RunStatus, Runner};

#[tokio::test]
async fn parallel_writers_of_a_replace_channel_conflict() {
    let graph = common::load(
        r#"
[graph]
name = "conflict"
[state]
owner = { type = "string" }
[nodes.alice]
set = { owner = "'alice'" }
[nodes.bob]
set = { owner = "'bob'" }
[[edges]]
from = "START"
to = "alice"
[[edges]]
from = "START"
to = "bob"
[[edges]]
from = "alice"
to = "END"
[[edges]]
from = "bob"
to = "END"
"#,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert_eq!(
        err.detail,
        RunError::ReplaceConflict {
            channel: "owner".into(),
            first: "alice".into(),
            second: "bob".into(),
            step: 1
        }
    );
    assert!(
        err.message.contains("alice") && err.message.contains("bob"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn for_each_tasks_writing_a_replace_channel_conflict_by_index() {
    let graph = common::load(
        r#"
[graph]
name = "conflict_fanout"
[state]
items = { type = "array", default = [1, 2] }
last = { type = "integer" }
[nodes.each]
for_each = "state.items"
set = { last = "item" }
[[edges]]
from = "START"
to = "each"
[[edges]]
from = "each"
to = "END"
"#,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    match out.error.map(|e| e.detail) {
        Some(RunError::ReplaceConflict { first, second, .. }) => {
            assert_eq!((first.as_str(), second.as_str()), ("each[0]", "each[1]"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}
