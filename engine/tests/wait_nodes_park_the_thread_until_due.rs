//! A `wait` node parks its thread until a time (for `seconds`, or `until` an RFC 3339 time
//! or Unix seconds): continuing the thread early parks it again with the same due time;
//! after it, the thread goes on. Bad settings are load errors at their place; bad values
//! fail the run naming the node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use engine::{InterruptKind, Registry, RunRequest, RunStatus, Runner, SqliteSaver};
use serde_json::json;

const NAP: &str = r#"
[graph]
name = "nap"
[state]
seconds = { type = "number", default = 0.6 }
at = { type = "any" }
woke = { type = "string" }
log = { type = "array", reducer = "append", default = [] }
[nodes.before]
set = { log = "['before']" }
[nodes.nap]
wait = { seconds = "state.seconds" }
output = "woke"
[nodes.after]
set = { log = "['after']" }
[[edges]]
from = "START"
to = "before"
[[edges]]
from = "before"
to = "nap"
[[edges]]
from = "nap"
to = "after"
[[edges]]
from = "after"
to = "END"
"#;

fn runner(src: &str, db: &std::path::Path) -> Runner {
    let graph = common::load_with(src, &Registry::new());
    Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(SqliteSaver::open(db).unwrap()))
}

#[tokio::test]
async fn a_wait_parks_until_due_and_an_early_continue_parks_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let out = runner(NAP, &db).invoke(RunRequest::new().thread("t")).await;
    assert_eq!(out.status, RunStatus::Interrupted);
    let i = out.interrupt.clone().unwrap();
    assert_eq!((i.kind, i.node.as_str()), (InterruptKind::Wait, "nap"));
    let due = i.value["until_ms"].as_u64().unwrap();
    assert_eq!(out.state["log"], json!(["before"]));

    // Too early: parked again, with the due time fixed when the wait began.
    let out = runner(NAP, &db).invoke(RunRequest::new().thread("t")).await;
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(out.interrupt.unwrap().value["until_ms"].as_u64(), Some(due));

    tokio::time::sleep(Duration::from_millis(700)).await;
    // A resume value is ignored: the time decides.
    let out = runner(NAP, &db)
        .invoke(RunRequest::new().thread("t").resume(json!("now!")))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["log"], json!(["before", "after"]));
    let woke: jiff::Timestamp = out.state["woke"].as_str().unwrap().parse().unwrap();
    assert_eq!(woke.as_millisecond() as u64, due);
}

#[tokio::test]
async fn until_takes_a_time_or_unix_seconds_and_a_past_time_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let src = NAP.replace(
        "wait = { seconds = \"state.seconds\" }",
        "wait = { until = \"state.at\" }",
    );
    for (i, at) in [json!("2000-01-01T00:00:00Z"), json!(946_684_800)]
        .into_iter()
        .enumerate()
    {
        let db = dir.path().join(format!("{i}.db"));
        let out = runner(&src, &db)
            .invoke(RunRequest::new().thread("t").input(json!({ "at": at })))
            .await;
        assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
        assert_eq!(out.state["woke"], "2000-01-01T00:00:00Z");
    }
    let db = dir.path().join("future.db");
    let out = runner(&src, &db)
        .invoke(
            RunRequest::new()
                .thread("t")
                .input(json!({ "at": "2999-01-01T09:00:00-06:00" })),
        )
        .await;
    assert_eq!(out.status, RunStatus::Interrupted);
    assert_eq!(
        out.interrupt.unwrap().value["until"],
        "2999-01-01T15:00:00Z"
    );
}

#[tokio::test]
async fn bad_values_fail_the_run_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let until = NAP.replace(
        "wait = { seconds = \"state.seconds\" }",
        "wait = { until = \"state.at\" }",
    );
    for (src, input, says) in [
        (
            NAP.to_string(),
            json!({"seconds": -1}),
            "wait.seconds: expected a non-negative number",
        ),
        (
            until.clone(),
            json!({"at": "next tuesday"}),
            "wait.until: `next tuesday` is not an RFC 3339 time",
        ),
        (
            until,
            json!({"at": [1]}),
            "wait.until: expected an RFC 3339 time or Unix seconds",
        ),
    ] {
        let db = dir.path().join(format!("{}.db", says.len()));
        let out = runner(&src, &db)
            .invoke(RunRequest::new().thread("t").input(input))
            .await;
        assert_eq!(out.status, RunStatus::Failed);
        let message = out.error.unwrap().message;
        assert!(
            message.contains("nap") && message.contains(says),
            "{message}"
        );
    }
}

#[test]
fn bad_wait_settings_are_load_errors_at_their_place() {
    let registry = Registry::new();
    let both = NAP.replace(
        "wait = { seconds = \"state.seconds\" }",
        "wait = { seconds = \"1\", until = \"state.at\" }",
    );
    let err = common::load_err(&both, &registry);
    assert!(
        err.diagnostics
            .iter()
            .any(|d| d.line == 12 && d.message.contains("exactly one of `seconds` and `until`")),
        "{err:#?}"
    );
    let unknown = NAP.replace(
        "wait = { seconds = \"state.seconds\" }",
        "wait = { minutes = \"5\" }",
    );
    let err = common::load_err(&unknown, &registry);
    assert!(
        err.diagnostics.iter().any(|d| d.line == 12
            && d.col == 10
            && d.message.contains("`wait.minutes` is not a wait setting")),
        "{err:#?}"
    );
    let bad_cel = NAP.replace(
        "wait = { seconds = \"state.seconds\" }",
        "wait = { seconds = \"state.seconds +\" }",
    );
    let err = common::load_err(&bad_cel, &registry);
    assert!(
        err.diagnostics
            .iter()
            .any(|d| d.line == 12 && d.message.contains("node `nap` wait.seconds")),
        "{err:#?}"
    );
}
