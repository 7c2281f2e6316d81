//! A conditional self-loop runs exactly until its exit condition holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunRequest, RunStatus, Runner};
use serde_json::json;

const LOOP: &str = r#"
[graph]
name = "loop"
recursion_limit = 200
[state]
count = { type = "integer", default = 0 }
[nodes.bump]
set = { count = "state.count + 1" }
[[edges]]
from = "START"
to = "bump"
[[edges]]
from = "bump"
to = "bump"
when = "state.count < state_limit"
[[edges]]
from = "bump"
to = "END"
when = "state.count >= state_limit"
"#;

#[tokio::test]
async fn loop_stops_at_ten() {
    let src = LOOP.replace("state_limit", "10");
    let runner = Runner::new(Arc::new(common::load(&src)));
    let out = runner.invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Done);
    assert_eq!(out.state["count"], json!(10));
    assert_eq!(out.steps, 10);
}

#[tokio::test]
async fn loop_starts_from_the_input() {
    let src = LOOP.replace("state_limit", "10");
    let runner = Runner::new(Arc::new(common::load(&src)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"count": 7})))
        .await;
    assert_eq!(out.state["count"], json!(10));
    assert_eq!(out.steps, 3);
}
