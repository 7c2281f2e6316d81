//! Map over subgraphs: `for_each` on a subgraph node runs one child per element, in
//! parallel, each on its own checkpointed thread, with its results folded in element order;
//! a question inside any child is answered on its own; `input`/`outputs` map keys to
//! differently named parent channels; `stateful = true` keeps a child's state across calls.
//!
//! Expected states are LangGraph 1.2.24's for the same graphs
//! (`tests/langgraph_parity/multi_agent.py`), mirroring `test_send_to_nested_graphs`,
//! `test_multiple_subgraphs` and `test_subgraph_checkpoint_true` in
//! `libs/langgraph/tests/test_pregel.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Registry, RunRequest, RunStatus, Runner, SqliteSaver, loader};
use serde_json::json;

const JOKE: &str = r#"
[graph]
name = "joke"
[state]
subject = { type = "string" }
jokes = { type = "array", reducer = "append", default = [] }
approved = { type = "any" }
[nodes.write]
set = { jokes = "['joke about ' + state.subject]" }
[[edges]]
from = "START"
to = "write"
[[edges]]
from = "write"
to = "END"
"#;

const PARENT: &str = r#"
[graph]
name = "jokes"
[state]
subjects = { type = "array" }
lines = { type = "array", reducer = "append", default = [] }
[nodes.generate]
graph = "joke.toml"
for_each = "state.subjects"
input = { subject = "item" }
outputs = { lines = "jokes" }
[[edges]]
from = "START"
to = "generate"
[[edges]]
from = "generate"
to = "END"
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn one_child_run_per_element_with_renamed_keys_folded_in_element_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "joke.toml", JOKE);
    let parent = write(dir.path(), "parent.toml", PARENT);
    let graph = loader::load_file(&parent, &Registry::new()).unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(saver.clone());
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("j")
                .input(json!({"subjects": ["cats", "dogs", "bats"]})),
        )
        .await;
    // LangGraph (two subjects): {"jokes": ["joke about cats", "joke about dogs"]}.
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(
        out.state["lines"],
        json!(["joke about cats", "joke about dogs", "joke about bats"])
    );
    // Each child ran on its own checkpointed thread, named after its element's task.
    for i in 0..3 {
        let child = runner_for(dir.path())
            .state(&format!("j/generate[{i}]@0"), None)
            .await;
        let child = child.unwrap();
        assert_eq!(
            child.values["jokes"].as_array().unwrap().len(),
            1,
            "child {i}"
        );
    }
}

fn runner_for(dir: &std::path::Path) -> Runner {
    let graph = loader::load_file(dir.join("joke.toml"), &Registry::new()).unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.join("t.db")).unwrap());
    Runner::new(Arc::new(graph)).with_checkpointer(saver)
}

#[tokio::test]
async fn a_question_inside_each_child_is_answered_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "joke.toml",
        &JOKE.replace(
            "[[edges]]\nfrom = \"START\"\nto = \"write\"",
            "[nodes.approve]\nask = \"Tell the {{ state.subject }} joke?\"\noutput = \"approved\"\n[[edges]]\nfrom = \"START\"\nto = \"approve\"\n[[edges]]\nfrom = \"approve\"\nto = \"write\"",
        ),
    );
    let parent = write(dir.path(), "parent.toml", PARENT);
    let load = || {
        let graph = loader::load_file(&parent, &Registry::new()).unwrap();
        let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
        Runner::new(Arc::new(graph)).with_checkpointer(saver)
    };
    let out = load()
        .invoke(
            RunRequest::new()
                .thread("q")
                .input(json!({"subjects": ["cats", "dogs"]})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    let waiting = out.interrupt.unwrap();
    let asks: Vec<(&str, &serde_json::Value)> =
        waiting.all().map(|i| (i.task.as_str(), &i.value)).collect();
    assert_eq!(
        asks,
        [
            ("generate[0]", &json!("Tell the cats joke?")),
            ("generate[1]", &json!("Tell the dogs joke?"))
        ]
    );
    // Answer the dogs child only: it finishes, the cats child still waits.
    let out = load()
        .invoke(
            RunRequest::new()
                .thread("q")
                .resume_each([("generate[1]".into(), json!(true))]),
        )
        .await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    assert_eq!(out.interrupt.as_ref().unwrap().task, "generate[0]");
    assert_eq!(
        out.state["lines"],
        json!(["joke about dogs"]),
        "the finished child's write"
    );
    let out = load()
        .invoke(RunRequest::new().thread("q").resume(json!(true)))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    // Folded in element order, whatever order they finished in.
    assert_eq!(
        out.state["lines"],
        json!(["joke about cats", "joke about dogs"])
    );
}

#[tokio::test]
async fn a_stateful_child_keeps_its_state_across_the_parents_runs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "inner.toml",
        r#"
[graph]
name = "inner"
[state]
seen = { type = "array", reducer = "append", default = [] }
[nodes.note]
set = { seen = "[state.seen.size()]" }
[[edges]]
from = "START"
to = "note"
[[edges]]
from = "note"
to = "END"
"#,
    );
    let outer = write(
        dir.path(),
        "outer.toml",
        r#"
[graph]
name = "outer"
[state]
seen = { type = "array", reducer = "append", default = [] }
[nodes.call]
graph = "inner.toml"
input = { seen = "[]" }
stateful = true
[[edges]]
from = "START"
to = "call"
[[edges]]
from = "call"
to = "END"
"#,
    );
    let graph = Arc::new(loader::load_file(&outer, &Registry::new()).unwrap());
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(graph.clone()).with_checkpointer(saver);
    let mut out = None;
    for _ in 0..3 {
        out = Some(
            runner
                .invoke(RunRequest::new().thread("s").input(json!({"seen": []})))
                .await,
        );
    }
    // LangGraph (checkpointer=True): {"seen": [0, 1, 2]}.
    let out = out.unwrap();
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["seen"], json!([0, 1, 2]));

    // Without `stateful`, each call starts the child afresh.
    let fresh = std::fs::read_to_string(&outer)
        .unwrap()
        .replace("stateful = true\n", "");
    let outer2 = write(
        dir.path(),
        "outer2.toml",
        &fresh.replace("name = \"outer\"", "name = \"outer2\""),
    );
    let graph = Arc::new(loader::load_file(&outer2, &Registry::new()).unwrap());
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t2.db")).unwrap());
    let runner = Runner::new(graph).with_checkpointer(saver);
    let mut last = None;
    for _ in 0..3 {
        last = Some(
            runner
                .invoke(RunRequest::new().thread("s").input(json!({"seen": []})))
                .await,
        );
    }
    assert_eq!(last.unwrap().state["seen"], json!([0, 0, 0]));
}

#[test]
fn subgraph_key_maps_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "joke.toml", JOKE);
    let bad = write(
        dir.path(),
        "bad.toml",
        &PARENT
            .replace(
                "input = { subject = \"item\" }",
                "input = { subjet = \"item\" }",
            )
            .replace(
                "outputs = { lines = \"jokes\" }",
                "outputs = { lines = \"joke\" }",
            ),
    );
    let err = loader::load_file(&bad, &Registry::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`input.subjet` is not a channel of subgraph `joke`"),
        "{err}"
    );
    assert!(err.contains("did you mean `subject`"), "{err}");
    assert!(err.contains("`outputs.lines` names `joke`"), "{err}");
    let bad = write(
        dir.path(),
        "bad2.toml",
        &PARENT.replace("graph = \"joke.toml\"", "set = {}"),
    );
    let err = loader::load_file(&bad, &Registry::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has `outputs` but no `graph`"), "{err}");
    common::load(
        "[graph]\nname = \"ok\"\n[nodes.a]\nset = {}\n[[edges]]\nfrom = \"START\"\nto = \"a\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"",
    );
}
