//! A run that needs more super-steps than `recursion_limit` fails, naming the limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunError, RunRequest, RunStatus, Runner};

#[tokio::test]
async fn endless_loop_hits_the_limit() {
    let graph = common::load(
        r#"
[graph]
name = "endless"
recursion_limit = 25
[state]
n = { type = "integer", default = 0 }
[nodes.spin]
set = { n = "state.n + 1" }
[[edges]]
from = "START"
to = "spin"
[[edges]]
from = "spin"
to = "spin"
"#,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    assert_eq!(err.detail, RunError::RecursionLimit { limit: 25 });
    assert!(
        err.message.contains("recursion limit of 25"),
        "{}",
        err.message
    );
    // The state reached before the limit is reported.
    assert_eq!(out.state["n"], 25);
}
