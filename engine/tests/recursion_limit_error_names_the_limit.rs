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

fn chain(nodes: usize, limit: u32) -> String {
    let mut toml = format!(
        "[graph]\nname = \"chain\"\nrecursion_limit = {limit}\n[state]\nn = {{ type = \"integer\", default = 0 }}\n"
    );
    for i in 0..nodes {
        toml.push_str(&format!("[nodes.n{i}]\nset = {{ n = \"state.n + 1\" }}\n"));
    }
    let mut from = "START".to_string();
    for i in 0..nodes {
        toml.push_str(&format!("[[edges]]\nfrom = \"{from}\"\nto = \"n{i}\"\n"));
        from = format!("n{i}");
    }
    toml.push_str(&format!("[[edges]]\nfrom = \"{from}\"\nto = \"END\"\n"));
    toml
}

/// LangGraph counts the step that reads the input: a 100-node chain fails at a limit of
/// 100 and passes at 101.
#[tokio::test]
async fn a_chain_needs_one_step_more_than_its_length() {
    let out = Runner::new(Arc::new(common::load(&chain(100, 100))))
        .invoke(RunRequest::new())
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.error.map(|e| e.detail),
        Some(RunError::RecursionLimit { limit: 100 })
    );
    let out = Runner::new(Arc::new(common::load(&chain(100, 101))))
        .invoke(RunRequest::new())
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["n"], 100);
}
