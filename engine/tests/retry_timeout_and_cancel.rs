//! Per-node retry with backoff retries transient failures only; `timeout_s` bounds each
//! attempt; a run can be cancelled from outside and resumed later.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use engine::{
    CancelToken, MemorySaver, Node, NodeContext, NodeError, Registry, RunError, RunRequest,
    RunStatus, Runner, node_fn,
};
use serde_json::{Value, json};

fn graph_with(tool: &str, extra: &str, registry: &Registry) -> engine::Graph {
    common::load_with(
        &format!(
            "[graph]\nname = \"r\"\n[state]\nout = {{ type = \"any\" }}\n[nodes.call]\ntool = \"{tool}\"\noutput = \"out\"\n{extra}\n[[edges]]\nfrom = \"START\"\nto = \"call\"\n[[edges]]\nfrom = \"call\"\nto = \"END\"\n"
        ),
        registry,
    )
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let c = calls.clone();
    registry.register_tool(
        "flaky",
        node_fn(move |_: Value, ctx: &NodeContext| {
            c.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() < 3 {
                Err(NodeError::transient("503 from the weather API"))
            } else {
                Ok(json!(ctx.attempt()))
            }
        }),
    );
    let graph = graph_with(
        "flaky",
        "retry = { max_attempts = 4, initial_ms = 1 }",
        &registry,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["out"], 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_attempts_are_reported() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let c = calls.clone();
    registry.register_tool(
        "broken",
        node_fn(move |_: Value, _: &NodeContext| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(NodeError::permanent("invalid address"))
        }),
    );
    let out = Runner::new(Arc::new(graph_with(
        "broken",
        "retry = { max_attempts = 5, initial_ms = 1 }",
        &registry,
    )))
    .invoke(RunRequest::new())
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        out.error.unwrap().detail,
        RunError::NodeFailed {
            node: "call".into(),
            attempts: 1,
            message: "invalid address".into()
        }
    );
}

struct Sleepy(Duration);

#[async_trait::async_trait]
impl Node for Sleepy {
    async fn call(&self, _: Value, _: &NodeContext) -> Result<Value, NodeError> {
        tokio::time::sleep(self.0).await;
        Ok(json!("late"))
    }
}

#[tokio::test]
async fn timeout_bounds_every_attempt() {
    let mut registry = Registry::new();
    registry.register_tool("sleepy", Arc::new(Sleepy(Duration::from_secs(5))));
    let graph = graph_with(
        "sleepy",
        "timeout_s = 0.05\nretry = { max_attempts = 2, initial_ms = 1 }",
        &registry,
    );
    let started = std::time::Instant::now();
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    match out.error.unwrap().detail {
        RunError::Timeout {
            node,
            seconds,
            attempts,
        } => {
            assert_eq!(node, "call");
            assert!((seconds - 0.05).abs() < 1e-9);
            assert_eq!(attempts, 2);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn cancel_stops_a_running_task_and_the_thread_can_resume() {
    let mut registry = Registry::new();
    registry.register_tool("sleepy", Arc::new(Sleepy(Duration::from_millis(300))));
    let graph = Arc::new(graph_with("sleepy", "", &registry));
    let saver = Arc::new(MemorySaver::new());
    let runner = Runner::new(graph).with_checkpointer(saver);
    let token = CancelToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        t.cancel();
    });
    let out = runner
        .invoke(RunRequest::new().thread("c").cancel_with(token))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.unwrap().detail, RunError::Cancelled);
    let out = runner.invoke(RunRequest::new().thread("c")).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["out"], "late");
}
