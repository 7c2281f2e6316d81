//! A thread's checkpoints can be listed and read; state can be updated by hand; a new thread
//! can be forked from any past checkpoint and run from there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::checkpoint::CheckpointSource;
use engine::{MemorySaver, RunRequest, RunStatus, Runner};
use serde_json::json;

const COUNTER: &str = r#"
[graph]
name = "counter"
[state]
count = { type = "integer", default = 0 }
trail = { type = "array", reducer = "append", default = [] }
[nodes.bump]
set = { count = "state.count + 1", trail = "[state.count + 1]" }
[[edges]]
from = "START"
to = "bump"
[[edges]]
from = "bump"
to = "bump"
when = "state.count < 5"
[[edges]]
from = "bump"
to = "END"
default = true
"#;

#[tokio::test]
async fn list_read_update_and_fork() {
    let runner = Runner::new(Arc::new(common::load(COUNTER)))
        .with_checkpointer(Arc::new(MemorySaver::new()));
    let out = runner.invoke(RunRequest::new().thread("main")).await;
    assert_eq!(out.state["count"], 5);

    let history = runner.history("main").await.unwrap();
    assert_eq!(
        history.len(),
        6,
        "one input checkpoint and one per super-step"
    );
    assert_eq!(history[0].source, CheckpointSource::Input);
    assert_eq!(history[0].next, vec!["bump"]);
    assert_eq!(history[5].next, Vec::<String>::new());
    assert!(
        history
            .windows(2)
            .all(|w| w[1].parent == Some(w[0].checkpoint_id))
    );

    let at2 = runner.state("main", Some(2)).await.unwrap();
    assert_eq!(at2.values["count"], 2);
    assert_eq!(at2.values["trail"], json!([1, 2]));
    assert_eq!(at2.next, vec!["bump"]);

    // Fork from checkpoint 2 and change the past: the fork runs on to 5 from 10.
    let fork = runner.fork("main", 2, Some("alt".into())).await.unwrap();
    assert_eq!(fork, "alt");
    runner
        .update_state("alt", &json!({"count": 10, "trail": ["edited"]}))
        .await
        .unwrap();
    let alt = runner.invoke(RunRequest::new().thread("alt")).await;
    assert_eq!(alt.status, RunStatus::Done, "{:?}", alt.error);
    assert_eq!(
        alt.state["count"], 11,
        "count >= 5, so one more bump and out"
    );
    assert_eq!(alt.state["trail"], json!([1, 2, "edited", 11]));

    // The original thread is untouched.
    assert_eq!(runner.state("main", None).await.unwrap().values["count"], 5);
    assert!(runner.state("main", Some(99)).await.is_err());
}
