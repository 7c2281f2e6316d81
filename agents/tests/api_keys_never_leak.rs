//! An API key never reaches events, run outcomes, errors or checkpoints, even when the
//! provider echoes it back in an error body. (Its own test binary: it sets the key in the
//! process environment, as the backend does.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use agents::llm::{ChatNode, ProviderConfig};
use engine::{Registry, RunRequest, Runner, SqliteSaver, loader};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-live-leakcheck-8d1f0c3a9b7e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_nowhere_in_events_outcomes_or_checkpoints() {
    // SAFETY: this test binary has one test; nothing reads the environment concurrently.
    unsafe { std::env::set_var("OPENAI_API_KEY", KEY) };
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": format!("Incorrect API key provided: {KEY}"), "type": "invalid_request_error"}}),
        ))
        .mount(&server)
        .await;
    let mut registry = Registry::new();
    registry.register_tool(
        "llm.chat",
        Arc::new(ChatNode::new(ProviderConfig {
            openai_base: format!("{}/v1", server.uri()),
            ..ProviderConfig::default()
        })),
    );
    let graph = loader::load_str(
        r#"
[graph]
name = "leak"
[state]
note = { type = "string" }
[nodes.draft]
tool = "llm.chat"
args = { prompt = "'hello'", model = "'openai:gpt-4o-mini'" }
output = "note"
[[edges]]
from = "START"
to = "draft"
[[edges]]
from = "draft"
to = "END"
"#,
        "leak.toml",
        &registry,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("threads.db");
    let runner =
        Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(SqliteSaver::open(&db).unwrap()));
    let mut events = runner.stream(RunRequest::new().thread("t").input(json!({})));
    let mut seen = String::new();
    let mut failed = false;
    while let Some(event) = events.next().await {
        let text = serde_json::to_string(&event).unwrap();
        failed |= text.contains("Incorrect API key provided");
        seen.push_str(&text);
        seen.push_str(&format!("{event:?}"));
    }
    assert!(failed, "the provider's error reached the events: {seen}");
    assert!(!seen.contains(KEY), "the key leaked into events: {seen}");
    let outcome = runner.invoke(RunRequest::new().thread("t")).await;
    let outcome_text = format!("{} {outcome:?}", serde_json::to_string(&outcome).unwrap());
    assert!(
        !outcome_text.contains(KEY),
        "the key leaked into the outcome"
    );
    let stored = std::fs::read(&db).unwrap();
    let wal = std::fs::read(dir.path().join("threads.db-wal")).unwrap_or_default();
    for bytes in [&stored, &wal] {
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key leaked into the checkpoint store"
        );
    }
}
