//! `ask` nodes, `interrupt = "before"|"after"` and interrupts raised by Rust node code pause
//! a thread; a fresh runner over the same SQLite file (as a new process would) resumes it,
//! as many times as it is interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use engine::{
    NodeContext, NodeError, Registry, RunRequest, RunStatus, Runner, SqliteSaver, ThreadStatus,
    node_fn,
};
use serde_json::{Value, json};

const APPROVALS: &str = r#"
[graph]
name = "approvals"
[state]
first = { type = "string" }
second = { type = "string" }
checked = { type = "boolean", default = false }
sent = { type = "integer", reducer = "add", default = 0 }
[nodes.ask_first]
ask = "First approval?"
output = "first"
[nodes.ask_second]
ask = "Second approval?"
output = "second"
[nodes.check]
set = { checked = "true" }
interrupt = "before"
[nodes.send]
tool = "notify.send"
output = "sent"
interrupt = "after"
[nodes.wrap]
set = { sent = "0" }
[[edges]]
from = "START"
to = "ask_first"
[[edges]]
from = "ask_first"
to = "ask_second"
[[edges]]
from = "ask_second"
to = "check"
[[edges]]
from = "check"
to = "send"
[[edges]]
from = "send"
to = "wrap"
[[edges]]
from = "wrap"
to = "END"
"#;

fn runner(db: &Path, sends: Arc<std::sync::atomic::AtomicUsize>) -> Runner {
    let mut registry = Registry::new();
    registry.register_tool(
        "notify.send",
        node_fn(move |_: Value, _: &NodeContext| {
            sends.fetch_add(1, Ordering::SeqCst);
            Ok(json!(1))
        }),
    );
    let graph = common::load_with(APPROVALS, &registry);
    Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(SqliteSaver::open(db).unwrap()))
}

#[tokio::test]
async fn four_interrupts_each_resumed_by_a_new_runner() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("threads.db");
    let sends = common::counter();

    let out = runner(&db, sends.clone())
        .invoke(RunRequest::new().thread("t1"))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    let i = out.interrupt.unwrap();
    assert_eq!(
        (i.kind.as_str(), i.node.as_str(), i.value.clone()),
        ("ask", "ask_first", json!("First approval?"))
    );

    let out = runner(&db, sends.clone())
        .invoke(RunRequest::new().thread("t1").resume(json!("yes")))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(out.interrupt.as_ref().unwrap().node, "ask_second");
    assert_eq!(out.state["first"], "yes");

    let out = runner(&db, sends.clone())
        .invoke(RunRequest::new().thread("t1").resume(json!("also yes")))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    let i = out.interrupt.unwrap();
    assert_eq!((i.kind.as_str(), i.node.as_str()), ("before", "check"));
    assert_eq!(
        out.state["checked"], false,
        "interrupt before: the node has not run"
    );

    let out = runner(&db, sends.clone())
        .invoke(RunRequest::new().thread("t1").resume(Value::Null))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    let i = out.interrupt.unwrap();
    assert_eq!((i.kind.as_str(), i.node.as_str()), ("after", "send"));
    assert_eq!(out.state["sent"], 1, "interrupt after: the node has run");

    let r = runner(&db, sends.clone());
    let out = r
        .invoke(RunRequest::new().thread("t1").resume(Value::Null))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["second"], "also yes");
    assert_eq!(out.state["checked"], true);
    assert_eq!(
        common::count(&sends),
        1,
        "the side effect ran once across five invocations"
    );
    let info = r
        .checkpointer()
        .unwrap()
        .thread("t1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.status, ThreadStatus::Done);
}

#[tokio::test]
async fn resuming_a_thread_that_is_not_interrupted_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = runner(&dir.path().join("t.db"), common::counter())
        .invoke(RunRequest::new().thread("none").resume(json!(1)))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().message.contains("not interrupted"));
}

#[tokio::test]
async fn new_input_on_an_interrupted_thread_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    runner(&db, common::counter())
        .invoke(RunRequest::new().thread("t"))
        .await;
    let out = runner(&db, common::counter())
        .invoke(RunRequest::new().thread("t").input(json!({})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().message.contains("--resume"));
}

#[tokio::test]
async fn rust_node_code_can_interrupt_and_receive_the_resume_value() {
    let mut registry = Registry::new();
    registry.register_tool(
        "crew.confirm",
        node_fn(|input: Value, ctx: &NodeContext| {
            let answer = ctx.interrupt(json!({"confirm_crew_for": input["job"]}))?;
            match answer.as_str() {
                Some(name) => Ok(json!(format!(
                    "{name} booked for {}",
                    input["job"].as_str().unwrap_or("?")
                ))),
                None => Err(NodeError::permanent("answer with the crew name")),
            }
        }),
    );
    let graph = common::load_with(
        r#"
[graph]
name = "dynamic"
[state]
job = { type = "string", default = "J-7" }
booking = { type = "string" }
[nodes.confirm]
tool = "crew.confirm"
args = { job = "state.job" }
output = "booking"
[[edges]]
from = "START"
to = "confirm"
[[edges]]
from = "confirm"
to = "END"
"#,
        &registry,
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let graph = Arc::new(graph);
    let first =
        Runner::new(graph.clone()).with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()));
    let out = first.invoke(RunRequest::new().thread("d")).await;
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(
        out.interrupt.unwrap().value,
        json!({"confirm_crew_for": "J-7"})
    );
    drop(first);
    let second = Runner::new(graph).with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()));
    let out = second
        .invoke(RunRequest::new().thread("d").resume(json!("Crew B")))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["booking"], "Crew B booked for J-7");
}
