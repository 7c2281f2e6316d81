//! A step that fails while folding or routing leaves nothing of itself in the state the
//! run reports: the outcome of a failed run is the last committed state, the same that
//! `Runner::state` reads back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{MemorySaver, RunError, RunRequest, RunStatus, Runner};
use serde_json::json;

#[tokio::test]
async fn a_replace_conflict_reports_the_state_before_the_step() {
    let graph = common::load(
        r#"
[graph]
name = "conflict"
[state]
owner = { type = "string", default = "nobody" }
log = { type = "array", reducer = "append", default = ["start"] }
seen = { type = "object", reducer = "merge", default = { a = 1 } }
total = { type = "integer", reducer = "add", default = 5 }
chat = { type = "messages" }
[nodes.alice]
set = { log = "['alice']", seen = "{'a': 2, 'b': 3}", total = "1", chat = "[{'id': 'm0', 'content': 'edited'}]", owner = "'alice'" }
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
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let input = json!({ "chat": [{ "id": "m0", "content": "hello" }] });
    let out = runner
        .invoke(RunRequest::new().thread("t").input(input))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(matches!(
        out.error.as_ref().map(|e| &e.detail),
        Some(RunError::ReplaceConflict { .. })
    ));
    let committed = json!({
        "owner": "nobody",
        "log": ["start"],
        "seen": { "a": 1 },
        "total": 5,
        "chat": [{ "id": "m0", "content": "hello" }],
    });
    assert_eq!(out.state, committed);
    let stored = runner.state("t", None).await.unwrap();
    assert_eq!(stored.values, out.state);
}

#[tokio::test]
async fn a_routing_error_reports_the_state_before_the_step() {
    let graph = common::load(
        r#"
[graph]
name = "no_route"
[state]
count = { type = "integer", default = 0 }
[nodes.bump]
set = { count = "state.count + 1" }
[nodes.done]
set = { count = "state.count" }
[[edges]]
from = "START"
to = "bump"
[[edges]]
from = "bump"
to = "done"
when = "state.count > 5"
[[edges]]
from = "done"
to = "END"
"#,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(matches!(
        out.error.as_ref().map(|e| &e.detail),
        Some(RunError::NoRoute { .. })
    ));
    assert_eq!(out.state["count"], 0);
}
