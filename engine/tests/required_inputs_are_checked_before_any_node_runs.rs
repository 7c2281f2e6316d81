//! Channels declared `required` must be in a new run's input: everything missing is named
//! at once and no node runs. Input types are checked as they arrive (an integer beyond
//! 64 bits is refused there, not deep in a node).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{NodeContext, Registry, RunError, RunRequest, RunStatus, Runner, node_fn};
use serde_json::{Value, json};

const GRAPH: &str = r#"
[graph]
name = "quote"
[state]
lead = { type = "object", required = ["name", "area_sqft"] }
tenant = { type = "string", required = true }
count = { type = "integer", default = 0 }
note = { type = "string", required = false }
out = { type = "any" }
[nodes.price]
tool = "price"
output = "out"
[[edges]]
from = "START"
to = "price"
[[edges]]
from = "price"
to = "END"
"#;

#[tokio::test]
async fn missing_required_values_are_all_named_and_nothing_runs() {
    let calls = common::counter();
    let mut registry = Registry::new();
    {
        let calls = calls.clone();
        registry.register_tool(
            "price",
            node_fn(move |_: Value, _: &NodeContext| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(json!(1))
            }),
        );
    }
    let runner = Runner::new(Arc::new(common::load_with(GRAPH, &registry)));
    let out = runner
        .invoke(RunRequest::new().input(json!({"lead": {"name": "Ada", "area_sqft": null}})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    match out.error.map(|e| e.detail) {
        Some(RunError::Input { message }) => {
            assert!(
                message.contains("the input lacks `lead.area_sqft`, `tenant`"),
                "{message}"
            );
        }
        other => panic!("expected an input error, got {other:?}"),
    }
    assert_eq!(common::count(&calls), 0);

    let out = runner
        .invoke(RunRequest::new().input(json!({
            "lead": {"name": "Ada", "area_sqft": 2000}, "tenant": "tenant:acme"
        })))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(common::count(&calls), 1);

    let out = runner
        .invoke(RunRequest::new().input(json!({
            "lead": {"name": "Ada", "area_sqft": 2000}, "tenant": "tenant:acme",
            "count": 9223372036854775808u64
        })))
        .await;
    match out.error.map(|e| e.detail) {
        Some(RunError::Input { message }) => {
            assert!(
                message.contains("`count` must be of type integer"),
                "{message}"
            )
        }
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn required_fields_need_an_object_channel() {
    let err = common::load_err(
        &GRAPH.replace(
            "tenant = { type = \"string\", required = true }",
            "tenant = { type = \"string\", required = [\"x\"] }",
        ),
        &Registry::new(),
    );
    assert!(
        err.to_string()
            .contains("channel `tenant`: required fields need an object channel"),
        "{err}"
    );
}
