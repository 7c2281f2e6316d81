//! Conditional edges route on the state after the step; when none matches and there is no
//! default edge, the run fails naming the node and the values the conditions saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{RunError, RunRequest, RunStatus, Runner};
use serde_json::json;

const ROUTER: &str = r#"
[graph]
name = "router"
[state]
score = { type = "integer", default = 0 }
route = { type = "string" }
[nodes.classify]
set = { score = "state.score * 2" }
[nodes.hot]
set = { route = "'hot'" }
[nodes.cold]
set = { route = "'cold'" }
[[edges]]
from = "START"
to = "classify"
[[edges]]
from = "classify"
to = "hot"
when = "state.score >= 100"
[[edges]]
from = "classify"
to = "cold"
when = "state.score > 0 && state.score < 100"
DEFAULT
[[edges]]
from = "hot"
to = "END"
[[edges]]
from = "cold"
to = "END"
"#;

async fn run(src: &str, score: i64) -> engine::RunOutcome {
    Runner::new(Arc::new(common::load(src)))
        .invoke(RunRequest::new().input(json!({"score": score})))
        .await
}

#[tokio::test]
async fn routes_on_the_updated_state() {
    let src = ROUTER.replace("DEFAULT", "");
    // 60 doubles to 120 before routing: the condition sees the step's writes.
    assert_eq!(run(&src, 60).await.state["route"], "hot");
    assert_eq!(run(&src, 10).await.state["route"], "cold");
}

#[tokio::test]
async fn no_match_fails_naming_node_and_values() {
    let src = ROUTER.replace("DEFAULT", "");
    let out = run(&src, 0).await;
    assert_eq!(out.status, RunStatus::Failed);
    let err = out.error.unwrap();
    match &err.detail {
        RunError::NoRoute { node, seen } => {
            assert_eq!(node, "classify");
            assert_eq!(seen["state"]["score"], json!(0));
            assert_eq!(seen["conditions"][0], "state.score >= 100");
        }
        other => panic!("expected NoRoute, got {other:?}"),
    }
    assert!(err.message.contains("classify"), "{}", err.message);
}

#[tokio::test]
async fn default_edge_catches_the_rest() {
    let src = ROUTER.replace(
        "DEFAULT",
        "[[edges]]\nfrom = \"classify\"\nto = \"END\"\ndefault = true\n",
    );
    let out = run(&src, 0).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["route"], json!(null));
    // A matching condition wins over the default edge.
    assert_eq!(run(&src, 60).await.state["route"], "hot");
}

#[tokio::test]
async fn default_fires_whenever_no_condition_matched_even_beside_an_unconditional_edge() {
    let graph = common::load(
        r#"
[graph]
name = "fallback"
[state]
trail = { type = "array", reducer = "append", default = [] }
[nodes.a]
set = { trail = "['a']" }
[nodes.audit]
set = { trail = "['audit']" }
[nodes.fallback]
set = { trail = "['fallback']" }
[[edges]]
from = "START"
to = "a"
[[edges]]
from = "a"
to = "audit"
[[edges]]
from = "a"
to = "fallback"
default = true
[[edges]]
from = "audit"
to = "END"
[[edges]]
from = "fallback"
to = "END"
"#,
    );
    let out = Runner::new(Arc::new(graph)).invoke(RunRequest::new()).await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["trail"], json!(["a", "audit", "fallback"]));
}
