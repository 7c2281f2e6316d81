//! Dynamic routing (LangGraph's `Command(goto=...)` and `Send`), in TOML through `next`
//! and in Rust through `ctx.goto` / `ctx.send`; checked against the declared `goto` list,
//! checkpointed and resumable, and a resume that carries `goto` and `update`.
//!
//! Expected states are LangGraph 1.2.24's for the same graphs
//! (`tests/langgraph_parity/multi_agent.py`), mirroring `test_send_sequences`,
//! `test_command_goto_with_static_breakpoints` and `test_multistep_plan` in
//! `libs/langgraph/tests/test_pregel.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Goto, NodeError, Registry, RunRequest, RunStatus, Runner, SqliteSaver, node_fn};
use serde_json::json;

const TRIAGE: &str = r#"
[graph]
name = "triage"
[state]
category = { type = "string" }
path = { type = "array", reducer = "append", default = [] }
[nodes.triage]
set = { path = "['triage']" }
goto = ["billing", "support", "END"]
next = "state.category == 'billing' ? 'billing' : 'support'"
[nodes.billing]
set = { path = "['billing']" }
[nodes.support]
set = { path = "['support']" }
[[edges]]
from = "START"
to = "triage"
[[edges]]
from = "billing"
to = "END"
[[edges]]
from = "support"
to = "END"
"#;

#[tokio::test]
async fn a_set_node_routes_with_next_as_langgraph_command_goto() {
    let runner = Runner::new(Arc::new(common::load(TRIAGE)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"category": "billing"})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["path"], json!(["triage", "billing"]));
    let out = runner
        .invoke(RunRequest::new().input(json!({"category": "refund"})))
        .await;
    assert_eq!(out.state["path"], json!(["triage", "support"]));
}

#[test]
fn goto_targets_are_drawn_as_dashed_routes_and_count_for_reachability() {
    let graph = common::load(TRIAGE);
    let routes: Vec<(String, bool)> = graph
        .edges()
        .iter()
        .filter(|e| e.from == ["triage"])
        .map(|e| (e.to.clone(), e.goto))
        .collect();
    assert_eq!(
        routes,
        [
            ("billing".to_string(), true),
            ("support".to_string(), true),
            ("END".to_string(), true)
        ]
    );
}

#[test]
fn bad_goto_declarations_are_load_errors_at_their_place() {
    let bad = TRIAGE.replace(
        r#"goto = ["billing", "support", "END"]"#,
        r#"goto = ["biling", "support", "END"]"#,
    );
    let err = common::load_err(&bad, &Registry::new()).to_string();
    assert!(
        err.contains("test.toml:9:9: error: `goto` names unknown node `biling`"),
        "{err}"
    );
    assert!(err.contains("did you mean `billing`"), "{err}");

    let no_list = TRIAGE.replace(r#"goto = ["billing", "support", "END"]"#, "");
    let err = common::load_err(&no_list, &Registry::new()).to_string();
    assert!(err.contains("has `next` but no `goto` list"), "{err}");

    let bad_cel = TRIAGE.replace("state.category ==", "state.category ===");
    let err = common::load_err(&bad_cel, &Registry::new()).to_string();
    assert!(err.contains("node `triage` next"), "{err}");
}

#[tokio::test]
async fn a_route_outside_the_goto_list_fails_the_run_naming_node_and_list() {
    let graph = TRIAGE.replace(
        "next = \"state.category == 'billing' ? 'billing' : 'support'\"",
        "next = \"state.category\"",
    );
    let runner = Runner::new(Arc::new(common::load(&graph)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"category": "collections"})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    let message = out.error.unwrap().message;
    assert!(message.contains("node `triage` wrote `goto`"), "{message}");
    assert!(
        message.contains("`collections` is not in its goto list [billing, support, END]"),
        "{message}"
    );
    // The failed step leaves the committed state: triage's own write is not in it.
    assert_eq!(out.state["path"], json!([]));
}

const SEND: &str = r#"
[graph]
name = "fan"
[state]
items = { type = "array" }
results = { type = "array", reducer = "append", default = [] }
[nodes.plan]
set = {}
goto = ["worker"]
next = "state.items.map(n, {'node': 'worker', 'arg': {'n': n}})"
[nodes.worker]
set = { results = "[item.n * 10]" }
[nodes.total]
set = { results = "[state.results.map(r, r).size() == 0 ? 0 : state.results[0] + state.results[1] + state.results[2]]" }
[[edges]]
from = "START"
to = "plan"
[[edges]]
from = "worker"
to = "total"
[[edges]]
from = "total"
to = "END"
"#;

#[tokio::test]
async fn sent_work_items_run_as_tasks_in_send_order_then_edges_fire_once() {
    // LangGraph: {"results": [30, 10, 20, 60]}.
    let runner = Runner::new(Arc::new(common::load(SEND)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"items": [3, 1, 2]})))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["results"], json!([30, 10, 20, 60]));
}

#[tokio::test]
async fn sends_are_checkpointed_and_an_interrupt_before_the_workers_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(SEND))).with_checkpointer(saver);
    let mut first = RunRequest::new()
        .thread("f1")
        .input(json!({"items": [3, 1, 2]}));
    first.interrupt_before = vec!["worker".into()];
    let out = runner.invoke(first).await;
    assert_eq!(out.status, RunStatus::Interrupted, "{:?}", out.error);
    let snapshot = runner.state("f1", None).await.unwrap();
    assert_eq!(snapshot.next, ["worker", "worker", "worker"]);
    // A new runner (another process) picks the stored work items up.
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(SEND))).with_checkpointer(saver);
    let out = runner
        .invoke(RunRequest::new().thread("f1").resume(json!(null)))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["results"], json!([30, 10, 20, 60]));
}

#[tokio::test]
async fn rust_nodes_route_with_ctx_goto_and_ctx_send() {
    let mut registry = Registry::new();
    registry.register_tool(
        "router",
        node_fn(|input, ctx| {
            let category = input["category"].as_str().unwrap_or_default();
            if category == "billing" {
                ctx.goto("billing");
            } else {
                for n in [1, 2] {
                    ctx.send("support", json!({"n": n}));
                }
            }
            Ok(json!({"path": ["router"]}))
        }),
    );
    let toml = r#"
[graph]
name = "rust_router"
[state]
category = { type = "string" }
path = { type = "array", reducer = "append", default = [] }
[nodes.route]
tool = "router"
args = { category = "state.category" }
goto = ["billing", "support"]
[nodes.billing]
set = { path = "['billing']" }
[nodes.support]
set = { path = "['support ' + string(item.n)]" }
[[edges]]
from = "START"
to = "route"
[[edges]]
from = "billing"
to = "END"
[[edges]]
from = "support"
to = "END"
"#;
    let runner = Runner::new(Arc::new(common::load_with(toml, &registry)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"category": "billing"})))
        .await;
    assert_eq!(
        out.state["path"],
        json!(["router", "billing"]),
        "{:?}",
        out.error
    );
    let out = runner
        .invoke(RunRequest::new().input(json!({"category": "other"})))
        .await;
    assert_eq!(
        out.state["path"],
        json!(["router", "support 1", "support 2"])
    );
}

#[tokio::test]
async fn routes_of_a_failed_attempt_are_dropped_and_the_retry_chooses_again() {
    let calls = common::counter();
    let c = Arc::clone(&calls);
    let mut registry = Registry::new();
    registry.register_tool(
        "flaky_router",
        node_fn(move |_, ctx| {
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 0 {
                ctx.goto("wrong");
                return Err(NodeError::transient("503"));
            }
            ctx.goto("right");
            Ok(json!(null))
        }),
    );
    let toml = r#"
[graph]
name = "retry_routes"
[state]
path = { type = "array", reducer = "append", default = [] }
[nodes.route]
tool = "flaky_router"
goto = ["wrong", "right"]
retry = { max_attempts = 2, initial_ms = 1 }
[nodes.wrong]
set = { path = "['wrong']" }
[nodes.right]
set = { path = "['right']" }
[[edges]]
from = "START"
to = "route"
[[edges]]
from = "wrong"
to = "END"
[[edges]]
from = "right"
to = "END"
"#;
    let runner = Runner::new(Arc::new(common::load_with(toml, &registry)));
    let out = runner.invoke(RunRequest::new().input(json!({}))).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["path"], json!(["right"]));
}

const REVIEW: &str = r#"
[graph]
name = "review"
[state]
draft = { type = "string" }
approved = { type = "boolean" }
path = { type = "array", reducer = "append", default = [] }
[nodes.review]
ask = "approve?"
output = "approved"
[nodes.review_done]
set = { path = "['review']" }
# Where a resume's or a command's `goto` may lead: declared, so drawings show them.
goto = ["publish", "escalate"]
[nodes.publish]
set = { path = "['publish:' + state.draft]" }
[nodes.escalate]
set = { path = "['escalate:' + state.draft]" }
[[edges]]
from = "START"
to = "review"
[[edges]]
from = "review"
to = "review_done"
[[edges]]
from = "review_done"
to = "END"
[[edges]]
from = "publish"
to = "END"
[[edges]]
from = "escalate"
to = "END"
"#;

#[tokio::test]
async fn a_resume_carries_goto_and_update_and_a_command_starts_from_a_finished_thread() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteSaver::open(dir.path().join("t.db")).unwrap());
    let runner = Runner::new(Arc::new(common::load(REVIEW))).with_checkpointer(saver);
    let out = runner
        .invoke(RunRequest::new().thread("r").input(json!({"draft": "v1"})))
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    // LangGraph: Command(resume=True, update={"draft": "v2"}, goto="escalate") runs
    // escalate beside the resumed node, on the updated state.
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("r")
                .resume(json!(true))
                .update(json!({"draft": "v2"}))
                .goto(Goto::Node("escalate".into())),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["draft"], "v2");
    assert_eq!(out.state["approved"], true);
    assert_eq!(out.state["path"], json!(["escalate:v2", "review"]));

    // A command on the finished thread: the update, then the run goes to `publish`.
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("r")
                .update(json!({"draft": "v3"}))
                .goto(Goto::Node("publish".into())),
        )
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(
        out.state["path"],
        json!(["escalate:v2", "review", "publish:v3"])
    );
    // Unknown targets are refused before anything runs.
    let out = runner
        .invoke(
            RunRequest::new()
                .thread("r")
                .goto(Goto::Node("nowhere".into())),
        )
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .unwrap()
            .message
            .contains("goto: `nowhere` is not a node"),
        "unknown goto"
    );
}
