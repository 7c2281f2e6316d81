//! A subgraph receives the parent channels it declares and writes back, through the
//! parent's reducers, only what it changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Registry, RunRequest, RunStatus, Runner, loader};
use serde_json::json;

#[tokio::test]
async fn subgraph_reads_and_writes_shared_channels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("invoice.toml"),
        r#"
[graph]
name = "invoice"
[state]
amount = { type = "number", default = 0 }
lines = { type = "array", reducer = "append", default = [] }
tax = { type = "number", default = 0 }
private = { type = "string", default = "child only" }
[nodes.compute]
set = { tax = "state.amount * 0.08", lines = "['tax line']" }
[[edges]]
from = "START"
to = "compute"
[[edges]]
from = "compute"
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
amount = { type = "number", default = 0 }
lines = { type = "array", reducer = "append", default = [] }
tax = { type = "number", default = 0 }
unrelated = { type = "string", default = "parent only" }
[nodes.start]
set = { lines = "['base line']" }
[nodes.billing]
graph = "invoice.toml"
[[edges]]
from = "START"
to = "start"
[[edges]]
from = "start"
to = "billing"
[[edges]]
from = "billing"
to = "END"
"#,
    )
    .unwrap();
    let graph = loader::load_file(dir.path().join("parent.toml"), &Registry::new()).unwrap();
    let out = Runner::new(Arc::new(graph))
        .invoke(RunRequest::new().input(json!({"amount": 100.0})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["tax"], json!(8.0));
    // The child saw ["base line"], appended one line; the parent receives only the new one.
    assert_eq!(out.state["lines"], json!(["base line", "tax line"]));
    assert_eq!(out.state["unrelated"], "parent only");
    assert!(out.state.get("private").is_none());
}

#[test]
fn subgraph_errors_are_reported_with_the_subgraph_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("child.toml"),
        "[graph]\nname = \"child\"\n[nodes.x]\nset = { nope = \"1\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("parent.toml"),
        "[graph]\nname = \"p\"\n[nodes.sub]\ngraph = \"child.toml\"\n[[edges]]\nfrom = \"START\"\nto = \"sub\"\n[[edges]]\nfrom = \"sub\"\nto = \"END\"\n",
    )
    .unwrap();
    let err = loader::load_file(dir.path().join("parent.toml"), &Registry::new()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("parent.toml:4:9: error: subgraph `child.toml` has errors"),
        "{text}"
    );
    assert!(
        text.contains("child.toml:4:9: error: node `x` writes `nope`"),
        "{text}"
    );
}
