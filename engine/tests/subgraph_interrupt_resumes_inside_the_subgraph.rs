//! An `ask` inside a subgraph interrupts the parent; resuming the parent resumes the
//! subgraph where it stopped, without re-running the subgraph's finished nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use engine::{NodeContext, Registry, RunRequest, RunStatus, Runner, SqliteSaver, loader, node_fn};
use serde_json::{Value, json};

#[tokio::test]
async fn ask_in_a_subgraph_pauses_and_resumes_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inspection.toml"),
        r#"
[graph]
name = "inspection"
[state]
visits = { type = "integer", reducer = "add", default = 0 }
slot = { type = "string" }
[nodes.book]
tool = "count.visit"
output = "visits"
[nodes.pick_slot]
ask = "Which slot suits the homeowner?"
output = "slot"
[[edges]]
from = "START"
to = "book"
[[edges]]
from = "book"
to = "pick_slot"
[[edges]]
from = "pick_slot"
to = "END"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("storm.toml"),
        r#"
[graph]
name = "storm"
[state]
visits = { type = "integer", reducer = "add", default = 0 }
slot = { type = "string" }
[nodes.inspect]
graph = "inspection.toml"
[[edges]]
from = "START"
to = "inspect"
[[edges]]
from = "inspect"
to = "END"
"#,
    )
    .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registry = Registry::new();
    let c = calls.clone();
    registry.register_tool(
        "count.visit",
        node_fn(move |_: Value, _: &NodeContext| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(json!(1))
        }),
    );
    let graph = Arc::new(loader::load_file(dir.path().join("storm.toml"), &registry).unwrap());
    let db = dir.path().join("t.db");
    let out = Runner::new(graph.clone())
        .with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()))
        .invoke(RunRequest::new().thread("storm-1"))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    let interrupt = out.interrupt.unwrap();
    assert_eq!(interrupt.node, "inspect");
    assert_eq!(interrupt.value, json!("Which slot suits the homeowner?"));

    let out = Runner::new(graph)
        .with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()))
        .invoke(RunRequest::new().thread("storm-1").resume(json!("Tue 9am")))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["slot"], "Tue 9am");
    assert_eq!(
        out.state["visits"], 1,
        "the subgraph's change is written back once"
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the subgraph's finished node did not run again"
    );
}
