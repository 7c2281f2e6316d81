//! Reducer features from LangGraph: `Overwrite` bypasses a reducer for one write (at most one
//! per channel and step; later writes in that step are dropped), `RemoveMessage` deletes by
//! id (or all), `add` concatenates strings, and one node may write a channel several times,
//! applied in order.
//!
//! Expected states are LangGraph 1.2.24's for the same graphs
//! (`tests/langgraph_parity/multi_agent.py`), mirroring `test_overwrite_sequential`,
//! `test_overwrite_parallel`, `test_remove_message_from_node` and
//! `test_multiple_writes_same_channel_from_same_node` in `libs/langgraph/tests/test_pregel.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunRequest, RunStatus, Runner, SqliteSaver};
use serde_json::json;

fn chain(b_writes: &str, parallel: bool) -> String {
    let edges = if parallel {
        "[[edges]]\nfrom = \"a\"\nto = \"b\"\n[[edges]]\nfrom = \"a\"\nto = \"c\"\n[[edges]]\nfrom = [\"b\", \"c\"]\nto = \"d\"\n[[edges]]\nfrom = \"d\"\nto = \"END\""
    } else {
        "[[edges]]\nfrom = \"a\"\nto = \"b\"\n[[edges]]\nfrom = \"b\"\nto = \"c\"\n[[edges]]\nfrom = \"c\"\nto = \"END\"\n[[edges]]\nfrom = \"d\"\nto = \"END\""
    };
    format!(
        r#"
[graph]
name = "overwrite"
[state]
values = {{ type = "array", reducer = "append", default = [] }}
[nodes.a]
set = {{ values = "['a']" }}
[nodes.b]
set = {{ values = "{b_writes}" }}
[nodes.c]
set = {{ values = "['c']" }}
[nodes.d]
set = {{ values = "['d']" }}
[[edges]]
from = "START"
to = "a"
{edges}
{}
"#,
        if parallel {
            ""
        } else {
            "[[edges]]\nfrom = \"START\"\nto = \"d\""
        }
    )
}

#[tokio::test]
async fn overwrite_replaces_an_append_channel_for_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    // LangGraph (sequential a → b(Overwrite) → c): {"values": ["b", "c"]}. Here `d` also
    // runs beside `a` in the first step, appending before the overwrite.
    let graph = chain("{'__overwrite__': ['b']}", false);
    let runner = Runner::new(Arc::new(common::load(&graph))).with_checkpointer(saver);
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("o")
                .input(json!({"values": ["start"]})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["values"], json!(["b", "c"]));
    // Rebuilt from the stored deltas, the thread reads the same.
    let read = runner.state("o", None).await.unwrap();
    assert_eq!(read.values["values"], json!(["b", "c"]));
}

#[tokio::test]
async fn overwrite_in_a_parallel_step_drops_the_steps_later_writes() {
    // LangGraph: {"values": ["b", "d"]}: c's append, folded after b's overwrite, is dropped.
    let graph = chain("{'__overwrite__': ['b']}", true);
    let out = Runner::new(Arc::new(common::load(&graph)))
        .invoke(RunRequest::new().input(json!({"values": ["start"]})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["values"], json!(["b", "d"]));
    // The serialised dataclass form is understood too.
    let graph = chain("{'type': '__overwrite__', 'value': ['b']}", true);
    let out = Runner::new(Arc::new(common::load(&graph)))
        .invoke(RunRequest::new().input(json!({"values": ["start"]})))
        .await;
    assert_eq!(out.state["values"], json!(["b", "d"]));
}

#[tokio::test]
async fn two_overwrites_of_one_channel_in_a_step_fail_it() {
    // LangGraph: "Can receive only one Overwrite value per super-step."
    let graph = chain("{'__overwrite__': ['b']}", true).replace(
        "[nodes.c]\nset = { values = \"['c']\" }",
        "[nodes.c]\nset = { values = \"{'__overwrite__': ['c']}\" }",
    );
    let out = Runner::new(Arc::new(common::load(&graph)))
        .invoke(RunRequest::new().input(json!({"values": ["start"]})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    let message = out.error.unwrap().message;
    assert!(
        message.contains("only one overwrite per super-step"),
        "{message}"
    );
    assert_eq!(
        out.state["values"],
        json!(["start", "a"]),
        "the committed state"
    );
}

const CHAT: &str = r#"
[graph]
name = "chat"
[state]
messages = { type = "messages" }
[nodes.reply]
set = { messages = "[{'role': 'assistant', 'content': 'hi', 'id': 'm2'}]" }
[nodes.forget]
set = { messages = "[{'type': 'remove', 'id': 'm1'}]" }
[[edges]]
from = "START"
to = "reply"
[[edges]]
from = "reply"
to = "forget"
[[edges]]
from = "forget"
to = "END"
"#;

#[tokio::test]
async fn remove_message_deletes_by_id_and_remove_all_clears() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(CHAT))).with_checkpointer(saver);
    // LangGraph: the ids left are ["m2"].
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("c")
                .input(json!({"messages": [{"role": "user", "content": "hello", "id": "m1"}]})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    let ids: Vec<&str> = out.state["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m2"]);
    assert_eq!(
        runner.state("c", None).await.unwrap().values["messages"],
        out.state["messages"]
    );

    let all = CHAT.replace("'id': 'm1'}]\" }", "'id': '__remove_all__'}]\" }");
    let out = Runner::new(Arc::new(common::load(&all)))
        .invoke(RunRequest::new().input(json!({"messages": ["hello"]})))
        .await;
    assert_eq!(out.state["messages"], json!([]));

    // Removing a message that is not there fails the step, as in LangGraph.
    let missing = CHAT.replace("'id': 'm1'}]\" }", "'id': 'm9'}]\" }");
    let out = Runner::new(Arc::new(common::load(&missing)))
        .invoke(RunRequest::new().input(json!({"messages": ["hello"]})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .unwrap()
            .message
            .contains("no message with id `m9`"),
        "missing id"
    );
}

#[tokio::test]
async fn add_concatenates_strings_and_one_node_writes_a_channel_twice_in_order() {
    // LangGraph: {"log": ["x1", "x2"], "text": "hello world"}.
    let graph = r#"
[graph]
name = "text"
[state]
text = { type = "string", reducer = "add" }
log = { type = "array", reducer = "append", default = [] }
[nodes.a]
set = { text = "' world'" }
[nodes.b]
set = { log = ["['x1']", "['x2']"] }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "a"
to = "b"
[[edges]]
from = "b"
to = "END"
"#;
    let out = Runner::new(Arc::new(common::load(graph)))
        .invoke(RunRequest::new().input(json!({"text": "hello"})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["text"], "hello world");
    assert_eq!(out.state["log"], json!(["x1", "x2"]));
}

#[tokio::test]
async fn reducers_written_in_rust_are_registered_by_name_and_replayed_from_checkpoints() {
    let mut registry = engine::Registry::new();
    // Keeps the highest bid: a reducer TOML has no word for.
    registry.register_reducer("max", |current, write| {
        let w = write.as_i64().ok_or("a bid must be an integer")?;
        if current.as_i64().is_none_or(|c| w > c) {
            *current = json!(w);
        }
        Ok(())
    });
    let graph = r#"
[graph]
name = "auction"
[state]
best = { type = "integer", reducer = "max" }
[nodes.bid_low]
set = { best = "10" }
[nodes.bid_high]
set = { best = "42" }
[nodes.bid_mid]
set = { best = "30" }
[[edges]]
from = "START"
to = "bid_low"
[[edges]]
from = "START"
to = "bid_high"
[[edges]]
from = "bid_high"
to = "bid_mid"
[[edges]]
from = "bid_mid"
to = "END"
[[edges]]
from = "bid_low"
to = "END"
"#;
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner =
        Runner::new(Arc::new(common::load_with(graph, &registry))).with_checkpointer(saver);
    let out = runner
        .invoke(RunRequest::new().thread("a").input(json!({"best": 5})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["best"], 42);
    assert_eq!(runner.state("a", None).await.unwrap().values["best"], 42);
    // A refused write names the reducer and the node.
    let out = runner
        .invoke(RunRequest::new().thread("b").input(json!({"best": "high"})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .unwrap()
            .message
            .contains("reducer `max`: a bid must be an integer"),
        "refusal"
    );
    // An unknown reducer is a load error with the known ones.
    let err = common::load_err(&graph.replace("\"max\"", "\"maxx\""), &registry).to_string();
    assert!(
        err.contains("unknown reducer `maxx` for channel `best`"),
        "{err}"
    );
    assert!(err.contains("did you mean `max`"), "{err}");
}

#[tokio::test]
async fn a_state_update_overwrites_plain_and_reducer_channels_alike() {
    // The console's "edit and fork" writes each edited channel as an overwrite, whatever its
    // reducer; a plain channel must take the value, not the `{"__overwrite__": ..}` wrapper,
    // in the state and in what is stored (read back by another runner).
    let graph = r#"
[graph]
name = "edit"
[state]
lead = { type = "object" }
log = { type = "array", reducer = "append", default = [] }
[nodes.a]
set = { log = "['a']" }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "a"
to = "END"
"#;
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(graph))).with_checkpointer(saver.clone());
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("e")
                .input(json!({"lead": {"area": 2000}})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    runner
        .update_state(
            "e",
            &json!({"lead": {"__overwrite__": {"area": 1000}}, "log": {"__overwrite__": ["edited"]}}),
        )
        .await
        .unwrap();
    let again = Runner::new(Arc::new(common::load(graph))).with_checkpointer(saver);
    let read = again.state("e", None).await.unwrap();
    assert_eq!(read.values["lead"], json!({"area": 1000}));
    assert_eq!(read.values["log"], json!(["edited"]));
}
