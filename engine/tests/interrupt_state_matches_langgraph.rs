//! At an interrupt, the reported state includes what the step's finished sibling tasks
//! wrote (as LangGraph's `get_state` does), both in the run's outcome and when read back;
//! running the thread again without an answer raises the same interrupt again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunRequest, RunStatus, Runner, SqliteSaver, ThreadStatus};
use serde_json::json;

const GRAPH: &str = r#"
[graph]
name = "review"
[state]
draft = { type = "string" }
log = { type = "array", reducer = "append", default = [] }
approval = { type = "string" }
[nodes.write]
set = { draft = "'Roof quote: $9,800'", log = "['written']" }
[nodes.approve]
ask = "Send the quote?"
output = "approval"
[nodes.after]
set = { log = "['after ' + state.approval]" }
[[edges]]
from = "START"
to = "write"
[[edges]]
from = "START"
to = "approve"
[[edges]]
from = ["write", "approve"]
to = "after"
[[edges]]
from = "after"
to = "END"
"#;

#[tokio::test]
async fn the_state_at_an_interrupt_has_the_finished_siblings_writes() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(GRAPH))).with_checkpointer(saver);

    let out = runner.invoke(RunRequest::new().thread("q1")).await;
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(out.state["draft"], "Roof quote: $9,800");
    assert_eq!(out.state["log"], json!(["written"]));
    let read = runner.state("q1", None).await.unwrap();
    assert_eq!(read.values, out.state);
    assert_eq!(read.status, Some(ThreadStatus::Interrupted));
    // The committed checkpoint itself is unchanged: reading it by id shows no sibling write.
    let at = runner.state("q1", read.checkpoint_id).await.unwrap();
    assert_eq!(at.values["draft"], json!(null));

    // Run again with no answer: the same question, status interrupted, same state.
    let again = runner.invoke(RunRequest::new().thread("q1")).await;
    assert_eq!(again.status, RunStatus::Interrupted, "{:?}", again.error);
    assert_eq!(again.interrupt, out.interrupt);
    assert_eq!(again.state, out.state);
    assert_eq!(
        runner.state("q1", None).await.unwrap().status,
        Some(ThreadStatus::Interrupted)
    );

    // The answer then finishes it, with the sibling's write applied once.
    let done = runner
        .invoke(RunRequest::new().thread("q1").resume(json!("yes")))
        .await;
    assert_eq!(done.status, RunStatus::Done, "{:?}", done.error);
    assert_eq!(done.state["log"], json!(["written", "after yes"]));
}
