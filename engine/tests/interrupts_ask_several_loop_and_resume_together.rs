//! Interrupts, fully: several questions from one node (each resume answers the next, the
//! node re-runs with the earlier answers), asking again until the answer passes a CEL check,
//! questions built from the state, parallel questions in one step answered together with a
//! map of task → value, and a resume that also updates the state.
//!
//! Expected states are LangGraph 1.2.24's for the same graphs
//! (`tests/langgraph_parity/multi_agent.py`), mirroring `test_interrupt_multiple`,
//! `test_interrupt_loop`, `test_multi_resume` and `test_parallel_interrupts` in
//! `libs/langgraph/tests/test_pregel.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Registry, RunRequest, RunStatus, Runner, SqliteSaver, node_fn};
use serde_json::json;

fn runner(toml: &str, registry: &Registry, dir: &std::path::Path) -> Runner {
    let saver = Arc::new(SqliteSaver::open(dir.join("t.db")).unwrap());
    Runner::new(Arc::new(common::load_with(toml, registry))).with_checkpointer(saver)
}

#[tokio::test]
async fn a_rust_node_asks_twice_and_gets_both_answers_across_processes() {
    let mut registry = Registry::new();
    registry.register_tool(
        "two_questions",
        node_fn(|_, ctx| {
            let a = ctx.interrupt(json!({"value": 1}))?;
            let b = ctx.interrupt(json!({"value": 2}))?;
            Ok(json!({"my_key": format!(" {} {}", a.as_str().unwrap(), b.as_str().unwrap())}))
        }),
    );
    let toml = r#"
[graph]
name = "two"
[state]
my_key = { type = "string", reducer = "add" }
[nodes.node]
tool = "two_questions"
[[edges]]
from = "START"
to = "node"
[[edges]]
from = "node"
to = "END"
"#;
    let dir = tempfile::tempdir().unwrap();
    let out = runner(toml, &registry, dir.path())
        .invoke(RunRequest::new().thread("m").input(json!({"my_key": "DE"})))
        .await;
    assert_eq!(out.interrupt.unwrap().value, json!({"value": 1}));
    // Each resume in a fresh runner: the answers live in the store, not the process.
    let out = runner(toml, &registry, dir.path())
        .invoke(RunRequest::new().thread("m").resume(json!("answer 1")))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    assert_eq!(out.interrupt.unwrap().value, json!({"value": 2}));
    let out = runner(toml, &registry, dir.path())
        .invoke(RunRequest::new().thread("m").resume(json!("answer 2")))
        .await;
    // LangGraph: {"my_key": "DE answer 1 answer 2"}.
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["my_key"], "DE answer 1 answer 2");
}

const AGE: &str = r#"
[graph]
name = "age"
[state]
age = { type = "any" }
[nodes.node]
ask = "How old are you?"
check = "type(answer) == int && answer > 0"
reask = "'{{ string(answer) }}' is not a valid age. How old are you?"
output = "age"
[[edges]]
from = "START"
to = "node"
[[edges]]
from = "node"
to = "END"
"#;

#[tokio::test]
async fn an_ask_node_asks_again_until_its_check_accepts_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let r = runner(AGE, &Registry::new(), dir.path());
    let mut waits = vec![
        r.invoke(RunRequest::new().thread("l").input(json!({"age": 0})))
            .await
            .interrupt
            .unwrap()
            .value,
    ];
    for answer in [json!("foo"), json!(-5)] {
        let out = r.invoke(RunRequest::new().thread("l").resume(answer)).await;
        assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
        waits.push(out.interrupt.unwrap().value);
    }
    // LangGraph's questions, word for word.
    assert_eq!(
        waits,
        [
            json!("How old are you?"),
            json!("'foo' is not a valid age. How old are you?"),
            json!("'-5' is not a valid age. How old are you?")
        ]
    );
    let out = r
        .invoke(RunRequest::new().thread("l").resume(json!(30)))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["age"], 30);
}

#[tokio::test]
async fn several_questions_from_state_templates_give_a_list_of_answers() {
    let toml = r#"
[graph]
name = "intake"
[state]
lead = { type = "object" }
answers = { type = "array" }
[nodes.intake]
ask = ["Roof age for {{ state.lead.name }}?", "{{ {'question': 'Pitch?', 'options': ['low', 'steep']} }}"]
output = "answers"
[[edges]]
from = "START"
to = "intake"
[[edges]]
from = "intake"
to = "END"
"#;
    let dir = tempfile::tempdir().unwrap();
    let r = runner(toml, &Registry::new(), dir.path());
    let out = r
        .invoke(
            RunRequest::new()
                .thread("i")
                .input(json!({"lead": {"name": "Ada"}})),
        )
        .await;
    assert_eq!(out.interrupt.unwrap().value, "Roof age for Ada?");
    let out = r
        .invoke(RunRequest::new().thread("i").resume(json!(12)))
        .await;
    assert_eq!(
        out.interrupt.unwrap().value,
        json!({"question": "Pitch?", "options": ["low", "steep"]})
    );
    let out = r
        .invoke(RunRequest::new().thread("i").resume(json!("steep")))
        .await;
    assert_eq!(out.state["answers"], json!([12, "steep"]));
}

const PARALLEL: &str = r#"
[graph]
name = "parallel"
[state]
answers = { type = "array", reducer = "append", default = [] }
a = { type = "string" }
b = { type = "string" }
[nodes.ask_a]
ask = "A?"
output = "a"
[nodes.ask_b]
ask = "B?"
output = "b"
[nodes.after]
set = { answers = "['a:' + state.a, 'b:' + state.b, 'after']" }
[[edges]]
from = "START"
to = "ask_a"
[[edges]]
from = "START"
to = "ask_b"
[[edges]]
from = ["ask_a", "ask_b"]
to = "after"
[[edges]]
from = "after"
to = "END"
"#;

#[tokio::test]
async fn parallel_questions_wait_together_and_one_map_answers_them() {
    let dir = tempfile::tempdir().unwrap();
    let r = runner(PARALLEL, &Registry::new(), dir.path());
    let out = r
        .invoke(RunRequest::new().thread("p").input(json!({})))
        .await;
    let waiting = out.interrupt.unwrap();
    let all: Vec<(&str, &serde_json::Value)> =
        waiting.all().map(|i| (i.task.as_str(), &i.value)).collect();
    assert_eq!(all, [("ask_a", &json!("A?")), ("ask_b", &json!("B?"))]);
    // One value for two questions is refused, naming them.
    let out = r
        .invoke(RunRequest::new().thread("p").resume(json!("yes")))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    let message = out.error.unwrap().message;
    assert!(
        message.contains("2 questions are waiting (tasks `ask_a`, `ask_b`)"),
        "{message}"
    );
    // Answering one leaves the other waiting; its answer is kept.
    let out = r
        .invoke(
            RunRequest::new()
                .thread("p")
                .resume_each([("ask_a".into(), json!("yes"))]),
        )
        .await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    let waiting = out.interrupt.unwrap();
    assert_eq!(waiting.task, "ask_b");
    assert!(waiting.siblings.is_empty());
    assert_eq!(out.state["a"], "yes", "the answered sibling's write shows");
    let out = r
        .invoke(
            RunRequest::new()
                .thread("p")
                .resume_each([("ask_b".into(), json!("no"))]),
        )
        .await;
    // LangGraph: {"answers": ["a:yes", "b:no", "after"]}.
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["answers"], json!(["a:yes", "b:no", "after"]));

    // Both at once on a new thread, with a state update riding along.
    let out = r
        .invoke(RunRequest::new().thread("p2").input(json!({})))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    let out = r
        .invoke(
            RunRequest::new()
                .thread("p2")
                .resume_each([
                    ("ask_a".into(), json!("yes")),
                    ("ask_b".into(), json!("no")),
                ])
                .update(json!({"answers": ["updated"]})),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(
        out.state["answers"],
        json!(["updated", "a:yes", "b:no", "after"])
    );
    // An unknown task is refused.
    let out = r
        .invoke(RunRequest::new().thread("p3").input(json!({})))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    let out = r
        .invoke(
            RunRequest::new()
                .thread("p3")
                .resume_each([("ask_c".into(), json!(1))]),
        )
        .await;
    assert!(
        out.error
            .unwrap()
            .message
            .contains("no question of task `ask_c` is waiting"),
        "unknown task"
    );
}

#[test]
fn ask_settings_are_checked_at_load() {
    let bad = AGE.replace("type(answer) == int", "type(answr) == int");
    let err = common::load_err(&bad, &Registry::new()).to_string();
    assert!(err.contains("node `node` check"), "{err}");
    let bad = AGE.replace(
        "How old are you?\"\ncheck",
        "How old is {{ state.age ?\"\ncheck",
    );
    let err = common::load_err(&bad, &Registry::new()).to_string();
    assert!(err.contains("`{{` without a closing `}}`"), "{err}");
    let bad = AGE.replace("ask = \"How old are you?\"", "set = {}");
    let err = common::load_err(&bad, &Registry::new()).to_string();
    assert!(err.contains("has `check` but no `ask`"), "{err}");
}
