//! A run's lease outlives a node call longer than the lease itself: the heartbeat renews it,
//! so a second run is refused for the whole run, and admitted once the first has finished.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use engine::{
    MemorySaver, Node, NodeContext, NodeError, Registry, RunError, RunRequest, RunStatus, Runner,
};
use serde_json::{Value, json};

struct Slow;

#[async_trait]
impl Node for Slow {
    async fn call(&self, _input: Value, _ctx: &NodeContext) -> Result<Value, NodeError> {
        tokio::time::sleep(Duration::from_millis(900)).await;
        Ok(json!("done"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_the_lease_through_a_long_call() {
    let mut registry = Registry::new();
    registry.register_tool("slow", Arc::new(Slow));
    let graph = Arc::new(common::load_with(
        r#"
[graph]
name = "long_call"
[state]
out = { type = "string" }
[nodes.call]
tool = "slow"
output = "out"
[[edges]]
from = "START"
to = "call"
[[edges]]
from = "call"
to = "END"
"#,
        &registry,
    ));
    let saver = Arc::new(MemorySaver::new());
    let lease = Duration::from_millis(200);
    let first = Runner::new(Arc::clone(&graph))
        .with_checkpointer(saver.clone())
        .with_lease(lease);
    let second = Runner::new(graph)
        .with_checkpointer(saver)
        .with_lease(lease);

    let running = tokio::spawn(async move {
        first
            .invoke(RunRequest::new().thread("t").input(json!({})))
            .await
    });
    // Well past the lease's length: only the heartbeat keeps it alive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = second
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(refused.status, RunStatus::Failed);
    assert!(
        matches!(
            refused.error.as_ref().map(|e| &e.detail),
            Some(RunError::Conflict { .. })
        ),
        "{:?}",
        refused.error
    );
    let done = running.await.unwrap();
    assert_eq!(done.status, RunStatus::Done, "{:?}", done.error);
    assert_eq!(done.state, json!({"out": "done"}));
    // Released at the end: the next run is admitted.
    let next = second.invoke(RunRequest::new().thread("t")).await;
    assert_eq!(next.status, RunStatus::Done, "{:?}", next.error);
}
