//! A run's own settings, as LangGraph takes them from `config`: a recursion limit for this
//! run, and a read-only `context` that expressions (`context.NAME`), Rust nodes
//! (`NodeContext::context`) and subgraphs see, and that is not checkpointed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{MemorySaver, Registry, RunError, RunRequest, RunStatus, Runner, loader, node_fn};
use serde_json::json;

const GREETER: &str = r#"
[graph]
name = "greeter"
[state]
greeting = { type = "string", default = "" }
tier = { type = "string", default = "" }
seen_by_tool = { type = "any" }
[nodes.greet]
set = { greeting = "'Hello ' + context.user_name", tier = "has(context.plan) ? context.plan : 'free'" }
[nodes.lookup]
tool = "context.echo"
[[edges]]
from = "START"
to = "greet"
[[edges]]
from = "greet"
to = "lookup"
[[edges]]
from = "lookup"
to = "END"
"#;

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register_tool(
        "context.echo",
        node_fn(|_, ctx| Ok(json!({"seen_by_tool": ctx.context().clone()}))),
    );
    registry
}

#[tokio::test]
async fn expressions_and_rust_nodes_read_the_runs_context() {
    let graph = common::load_with(GREETER, &registry());
    let runner = Runner::new(Arc::new(graph));
    let out = runner
        .invoke(
            RunRequest::new()
                .input(json!({}))
                .context(json!({"user_name": "Ada", "plan": "pro"})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["greeting"], "Hello Ada");
    assert_eq!(out.state["tier"], "pro");
    assert_eq!(
        out.state["seen_by_tool"],
        json!({"user_name": "Ada", "plan": "pro"})
    );

    // Without `plan` the `has()` guard takes the default; without any context a read of a
    // missing key fails the node, naming the expression.
    let out = runner
        .invoke(
            RunRequest::new()
                .input(json!({}))
                .context(json!({"user_name": "Bo"})),
        )
        .await;
    assert_eq!(out.state["tier"], "free");
    assert_eq!(out.state["seen_by_tool"], json!({"user_name": "Bo"}));
    let out = runner.invoke(RunRequest::new().input(json!({}))).await;
    assert_eq!(out.status, RunStatus::Failed);
    let message = out.error.unwrap().message;
    assert!(message.contains("context.user_name"), "{message}");
}

#[tokio::test]
async fn the_context_is_not_checkpointed_a_resume_brings_its_own() {
    let graph = common::load(
        r#"
[graph]
name = "approve"
[state]
answer = { type = "any" }
approved_by = { type = "string", default = "" }
[nodes.ask]
ask = "Approve?"
output = "answer"
[nodes.sign]
set = { approved_by = "context.user_name" }
[[edges]]
from = "START"
to = "ask"
[[edges]]
from = "ask"
to = "sign"
[[edges]]
from = "sign"
to = "END"
"#,
    );
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let first = runner
        .invoke(
            RunRequest::new()
                .thread("t1")
                .input(json!({}))
                .context(json!({"user_name": "asker"})),
        )
        .await;
    assert_eq!(first.status, RunStatus::Interrupted, "{:?}", first.error);
    let resumed = runner
        .invoke(
            RunRequest::new()
                .thread("t1")
                .resume(json!("yes"))
                .context(json!({"user_name": "approver"})),
        )
        .await;
    assert_eq!(resumed.status, RunStatus::Done, "{:?}", resumed.error);
    assert_eq!(resumed.state["approved_by"], "approver");
    assert_eq!(resumed.state["answer"], "yes");
}

#[tokio::test]
async fn a_subgraph_sees_its_callers_context() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("child.toml"),
        r#"
[graph]
name = "child"
[state]
owner = { type = "string", default = "" }
[nodes.mark]
set = { owner = "context.tenant" }
[[edges]]
from = "START"
to = "mark"
[[edges]]
from = "mark"
to = "END"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("parent.toml"),
        r#"
[graph]
name = "parent"
[state]
owner = { type = "string", default = "" }
[nodes.inner]
graph = "child.toml"
[[edges]]
from = "START"
to = "inner"
[[edges]]
from = "inner"
to = "END"
"#,
    )
    .unwrap();
    let graph = loader::load_file(dir.path().join("parent.toml"), &Registry::new()).unwrap();
    let out = Runner::new(Arc::new(graph))
        .invoke(
            RunRequest::new()
                .input(json!({}))
                .context(json!({"tenant": "acme-roofing"})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["owner"], "acme-roofing");
}

#[tokio::test]
async fn a_runs_recursion_limit_replaces_the_graphs() {
    let graph = common::load(
        r#"
[graph]
name = "loop"
recursion_limit = 50
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
when = "state.n < 10"
[[edges]]
from = "spin"
to = "END"
default = true
"#,
    );
    let runner = Runner::new(Arc::new(graph));
    // Ten steps fit the graph's 50 but not this run's 5.
    let out = runner
        .invoke(RunRequest::new().input(json!({})).recursion_limit(5))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.error.unwrap().detail,
        RunError::RecursionLimit { limit: 5 }
    );
    let out = runner.invoke(RunRequest::new().input(json!({}))).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["n"], 10);
}

#[test]
fn context_is_a_known_variable_and_a_typo_still_is_not() {
    let graph = common::load_err(
        r#"
[graph]
name = "typo"
[state]
x = { type = "string", default = "" }
[nodes.a]
set = { x = "contxt.user" }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "a"
to = "END"
"#,
        &Registry::new(),
    );
    assert!(
        graph.to_string().contains("unknown variable `contxt`"),
        "{graph}"
    );
}
