//! Checkpoints store what changed: an `append` channel stores the appended items, so the
//! bytes per checkpoint stay flat while the list grows, and state still rebuilds exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{MemorySaver, RunRequest, Runner, SqliteSaver};
use serde_json::json;

const CHAT: &str = r#"
[graph]
name = "chat"
recursion_limit = 1000
[state]
turn = { type = "integer", default = 0 }
messages = { type = "messages" }
[nodes.reply]
set = { turn = "state.turn + 1", messages = "[{'role': 'assistant', 'content': 'reply number ' + string(state.turn + 1) + ' with some padding text to weigh it'}]" }
[[edges]]
from = "START"
to = "reply"
[[edges]]
from = "reply"
to = "reply"
when = "state.turn < 200"
[[edges]]
from = "reply"
to = "END"
default = true
"#;

#[tokio::test]
async fn bytes_per_checkpoint_do_not_grow_with_the_list() {
    let runner =
        Runner::new(Arc::new(common::load(CHAT))).with_checkpointer(Arc::new(MemorySaver::new()));
    let out = runner.invoke(RunRequest::new().thread("c")).await;
    assert_eq!(out.state["messages"].as_array().unwrap().len(), 200);
    let history = runner.history("c").await.unwrap();
    let first = history[5].bytes;
    let last = history[199].bytes;
    // Same-sized deltas: the 200th checkpoint is about as big as the 5th (digits grow a little).
    assert!(
        last <= first + 16,
        "checkpoint bytes grew with the list: {first} -> {last}"
    );
    let total: usize = history.iter().map(|h| h.bytes).sum();
    let final_size = serde_json::to_vec(&out.state).unwrap().len();
    // Linear: the final state plus a fixed per-checkpoint overhead (ids, next nodes, ...).
    // Storing the whole list every step would be ~100x the final size here.
    assert!(
        total < final_size + history.len() * 300,
        "total stored {total} bytes for a final state of {final_size}"
    );
    // And reading it back folds the deltas into the same list.
    assert_eq!(runner.state("c", None).await.unwrap().values, out.state);
    assert_eq!(
        runner.state("c", Some(100)).await.unwrap().values["messages"]
            .as_array()
            .unwrap()
            .len(),
        100,
        "checkpoint N follows N steps"
    );
}

#[tokio::test]
async fn sqlite_rebuilds_the_same_state_after_many_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let graph = Arc::new(common::load(CHAT));
    let out = Runner::new(graph.clone())
        .with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()))
        .invoke(
            RunRequest::new()
                .thread("c")
                .input(json!({"messages": [{"role": "user", "content": "hi", "id": "u1"}]})),
        )
        .await;
    let reopened = Runner::new(graph).with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()));
    let snapshot = reopened.state("c", None).await.unwrap();
    assert_eq!(snapshot.values, out.state);
    assert_eq!(snapshot.values["messages"][0]["id"], "u1");
}
