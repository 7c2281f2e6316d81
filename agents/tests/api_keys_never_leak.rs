//! An API key never reaches events, run outcomes, errors, logs or checkpoints, even when the
//! provider echoes it back in an error body. (Its own test binary: it sets the key in the
//! process environment, as the backend does.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use agents::llm::{ChatNode, ProviderConfig};
use engine::{Registry, RunRequest, Runner, SqliteSaver, loader};
use serde_json::json;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-live-leakcheck-8d1f0c3a9b7e";

/// Every log event, at every level, formatted with all its fields.
struct CapturedLogs(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for CapturedLogs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut logs = self.0.lock().unwrap();
        span.record(&mut Fields(&mut logs));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut logs = self.0.lock().unwrap();
        let _ = write!(
            logs,
            "\n{} {}:",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Fields(&mut logs));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_nowhere_in_events_outcomes_logs_or_checkpoints() {
    let logs = Arc::new(Mutex::new(String::new()));
    tracing::subscriber::set_global_default(CapturedLogs(logs.clone())).unwrap();
    // SAFETY: this test binary has one test; nothing reads the environment concurrently.
    unsafe { std::env::set_var("OPENAI_API_KEY", KEY) };
    let server = MockServer::start().await;
    // The fallback model's reply does not parse and echoes the key: a reader that logs an
    // unreadable body must not log it.
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "gpt-4o"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(format!("<html>proxy: bad credentials {KEY}</html>")),
        )
        .mount(&server)
        .await;
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
args = { prompt = "'hello'", model = "['openai:gpt-4o-mini', 'openai:gpt-4o']" }
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
    assert!(
        seen.contains("the reply is not JSON"),
        "the fallback's unreadable reply reached the events: {seen}"
    );
    assert!(!seen.contains(KEY), "the key leaked into events: {seen}");
    let outcome = runner.invoke(RunRequest::new().thread("t")).await;
    let outcome_text = format!("{} {outcome:?}", serde_json::to_string(&outcome).unwrap());
    assert!(
        !outcome_text.contains(KEY),
        "the key leaked into the outcome"
    );
    let logged = logs.lock().unwrap().clone();
    assert!(
        logged.contains("falling back"),
        "the fallback was logged: {logged}"
    );
    assert!(
        !logged.contains(KEY),
        "the key leaked into the logs: {logged}"
    );
    let stored = std::fs::read(&db).unwrap();
    let wal = std::fs::read(dir.path().join("threads.db-wal")).unwrap_or_default();
    for bytes in [&stored, &wal] {
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key leaked into the checkpoint store"
        );
    }

    // A stream that echoes the key in an event that does not parse: async-openai logs such
    // an event, so the bytes must be scrubbed before it decodes them.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(format!(
                    "data: {}\n\ndata: {{unreadable, key {KEY}\n\n",
                    json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})
                )),
        )
        .mount(&server)
        .await;
    let model = agents::llm::connect_with(
        "openai:gpt-4o-mini",
        &ProviderConfig {
            openai_base: format!("{}/v1", server.uri()),
            ..ProviderConfig::default()
        },
        None,
    )
    .unwrap();
    let request = agents::llm::ChatRequest::new(vec![agents::llm::Message::user("hello")]);
    let mut stream = model.stream(&request).await.unwrap();
    let mut failure = None;
    while let Some(item) = futures_util::StreamExt::next(&mut stream).await {
        if let Err(e) = item {
            failure = Some(format!("{e} {e:?}"));
        }
    }
    let failure = failure.expect("the unreadable event is an error");
    assert!(
        !failure.contains(KEY),
        "the key leaked into a stream error: {failure}"
    );
    let logs = logs.lock().unwrap().clone();
    assert!(
        logs.contains("unreadable, key ***"),
        "async-openai logged the unreadable event, scrubbed: {logs}"
    );
    assert!(!logs.contains(KEY), "the key leaked into the logs: {logs}");
}
