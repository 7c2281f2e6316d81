//! When one of two parallel tasks fails, the finished one's writes are saved; resuming the
//! thread re-runs only the failed task.
//!
//! Mirrors `test_pending_writes_resume` in `libs/langgraph/tests/test_pregel.py`
//! (LangGraph 1.2.24): a task that fails with a retryable error after its retries, then
//! succeeds on a later resume of the thread, keeps its finished sibling's writes, and the
//! sibling is not run again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use engine::{
    NodeContext, NodeError, Registry, RunRequest, RunStatus, Runner, SqliteSaver, ThreadStatus,
    node_fn,
};
use serde_json::{Value, json};

const GRAPH: &str = r#"
[graph]
name = "pair"
[state]
charged = { type = "string" }
texted = { type = "string" }
[nodes.charge]
tool = "stripe.charge"
output = "charged"
[nodes.text]
tool = "twilio.text"
output = "texted"
[[edges]]
from = "START"
to = "charge"
[[edges]]
from = "START"
to = "text"
[[edges]]
from = ["charge", "text"]
to = "END"
"#;

#[tokio::test]
async fn resume_after_a_failure_skips_the_finished_sibling() {
    let calls = common::CallCounter::default();
    let sms_down = Arc::new(AtomicBool::new(true));
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    {
        let (calls, keys) = (calls.clone(), keys.clone());
        registry.register_tool(
            "stripe.charge",
            node_fn(move |_: Value, ctx: &NodeContext| {
                calls.hit("charge");
                keys.lock().unwrap().push(("charge", ctx.idempotency_key()));
                Ok(json!("ch_1"))
            }),
        );
    }
    {
        let (calls, down, keys) = (calls.clone(), sms_down.clone(), keys.clone());
        registry.register_tool(
            "twilio.text",
            node_fn(move |_: Value, ctx: &NodeContext| {
                calls.hit("text");
                keys.lock().unwrap().push(("text", ctx.idempotency_key()));
                if down.load(Ordering::SeqCst) {
                    Err(NodeError::permanent("SMS gateway down"))
                } else {
                    Ok(json!("SM1"))
                }
            }),
        );
    }
    let graph = Arc::new(common::load_with(GRAPH, &registry));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");

    let out = Runner::new(graph.clone())
        .with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()))
        .invoke(RunRequest::new().thread("order-9"))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .as_ref()
            .unwrap()
            .message
            .contains("SMS gateway down")
    );
    assert_eq!((calls.get("charge"), calls.get("text")), (1, 1));

    sms_down.store(false, Ordering::SeqCst);
    let runner = Runner::new(graph).with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()));
    let out = runner.invoke(RunRequest::new().thread("order-9")).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["charged"], "ch_1");
    assert_eq!(out.state["texted"], "SM1");
    assert_eq!(calls.get("charge"), 1, "the charge is not repeated");
    assert_eq!(calls.get("text"), 2, "only the failed task ran again");
    let keys = keys.lock().unwrap().clone();
    let text_keys: Vec<&String> = keys
        .iter()
        .filter(|(n, _)| *n == "text")
        .map(|(_, k)| k)
        .collect();
    let charge_keys: Vec<&String> = keys
        .iter()
        .filter(|(n, _)| *n == "charge")
        .map(|(_, k)| k)
        .collect();
    assert_eq!(text_keys.len(), 2);
    assert_eq!(
        text_keys[0], text_keys[1],
        "the re-run task sends the same idempotency key"
    );
    assert_ne!(charge_keys[0], text_keys[0]);
    let info = runner
        .checkpointer()
        .unwrap()
        .thread("order-9")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.status, ThreadStatus::Done);
}
