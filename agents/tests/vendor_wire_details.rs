//! Details of the Anthropic and Gemini wire formats that independent implementations
//! (LiteLLM's gateways) showed we got wrong: base URLs in each SDK's form, a 404 that names
//! the URL, Gemini's schema rules, Anthropic's streamed usage and split tool calls, floats
//! sent as written; and what a caller sees when a fallback chain or a silent server fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use agents::llm::{
    ApiKey, ChatModel, ChatRequest, Fallback, Message, ProviderConfig, Resilient, RetryPolicy,
    StreamEvent, ToolSpec, connect_with, gemini_schema, versioned_base,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-test-wire-details";

fn request() -> ChatRequest {
    let mut r = ChatRequest::new(vec![Message::user("Hello")]);
    r.temperature = Some(0.2);
    r.max_tokens = Some(50);
    r
}

fn anthropic_reply() -> Value {
    json!({"id": "m1", "type": "message", "role": "assistant", "model": "claude-x",
           "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 3, "output_tokens": 1}})
}

#[test]
fn base_urls_are_taken_with_or_without_their_version() {
    assert_eq!(
        versioned_base("https://gw.example", "v1"),
        "https://gw.example/v1"
    );
    assert_eq!(
        versioned_base("https://gw.example/", "v1"),
        "https://gw.example/v1"
    );
    assert_eq!(
        versioned_base("https://gw.example/v1/", "v1"),
        "https://gw.example/v1"
    );
    assert_eq!(
        versioned_base("http://127.0.0.1:4000/anthropic", "v1"),
        "http://127.0.0.1:4000/anthropic/v1"
    );
    assert_eq!(
        versioned_base("https://g.example", "v1beta"),
        "https://g.example/v1beta"
    );
    assert_eq!(
        versioned_base("https://g.example/v1beta", "v1beta"),
        "https://g.example/v1beta"
    );
    assert_eq!(
        versioned_base("https://g.example/v1", "v1beta"),
        "https://g.example/v1"
    );
}

/// `ANTHROPIC_BASE_URL` set the way Anthropic's SDKs document it (no `/v1`) reaches
/// `/v1/messages`; and temperatures go out as written, not widened from f32.
#[tokio::test]
async fn anthropic_without_v1_in_the_base_reaches_v1_messages() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_reply()))
        .mount(&server)
        .await;
    let config = ProviderConfig {
        anthropic_base: versioned_base(&server.uri(), "v1"),
        ..ProviderConfig::default()
    };
    let m = connect_with("anthropic:claude-x", &config, Some(ApiKey::new(KEY))).unwrap();
    assert_eq!(m.complete(&request()).await.unwrap().text, "hi");
    let sent =
        String::from_utf8(server.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(sent.contains("\"temperature\":0.2"), "{sent}");
}

#[tokio::test]
async fn a_404_names_the_url_that_was_called_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let config = ProviderConfig {
        anthropic_base: server.uri(),
        ..ProviderConfig::default()
    };
    let m = connect_with("anthropic:claude-x", &config, Some(ApiKey::new(KEY))).unwrap();
    let err = m.complete(&request()).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("{}/messages", server.uri())),
        "{shown}"
    );
    assert_eq!(shown.matches("404").count(), 1, "{shown}");
}

#[test]
fn gemini_enum_only_nodes_get_their_type() {
    let schema = json!({"type": "object", "properties": {
        "category": {"enum": ["leak", "billing"]},
        "priority": {"enum": [1, 2, 3]},
        "tags": {"type": "array", "items": {"enum": ["hail", "wind"]}}
    }});
    let out = gemini_schema(&schema);
    assert_eq!(out["properties"]["category"]["type"], "string");
    assert_eq!(out["properties"]["priority"]["type"], "integer");
    assert_eq!(out["properties"]["tags"]["items"]["type"], "string");
}

/// Gemini 2.x refuses function declarations with a JSON mime type: with tools offered the
/// schema goes into the instruction instead; without tools the mime type stays.
#[tokio::test]
async fn gemini_never_sends_tools_with_a_json_mime_type() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "{\"a\": 1}"}]},
                            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}
        })))
        .mount(&server)
        .await;
    let config = ProviderConfig {
        gemini_base: versioned_base(&server.uri(), "v1beta"),
        ..ProviderConfig::default()
    };
    let m = connect_with("gemini:gemini-2.5-flash", &config, Some(ApiKey::new(KEY))).unwrap();
    let mut r = request();
    r.output_schema = Some(json!({"type": "object", "properties": {"a": {"type": "integer"}}}));
    m.complete(&r).await.unwrap();
    r.tools = vec![ToolSpec {
        name: "lookup".into(),
        description: "Looks up a customer.".into(),
        parameters: json!({"type": "object", "properties": {"id": {"type": "string"}}}),
    }];
    m.complete(&r).await.unwrap();
    let received = server.received_requests().await.unwrap();
    assert!(received[0].url.path().starts_with("/v1beta/models/"));
    let plain: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        plain["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(plain["generationConfig"]["temperature"], json!(0.2));
    let with_tools: Value = serde_json::from_slice(&received[1].body).unwrap();
    assert!(
        with_tools["generationConfig"]
            .get("responseMimeType")
            .is_none()
    );
    assert!(with_tools["tools"][0]["functionDeclarations"].is_array());
    let instruction = with_tools["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(instruction.contains("JSON Schema"), "{instruction}");
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// A gateway that reports input tokens in `message_delta` and splits one tool call into
/// two `tool_use` blocks with the same id.
#[tokio::test]
async fn anthropic_streams_from_gateways_keep_usage_and_whole_tool_calls() {
    let events = sse(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "m1", "model": "claude-x", "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"id\": "}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"c42\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"input_tokens": 21, "output_tokens": 9}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(events),
        )
        .mount(&server)
        .await;
    let config = ProviderConfig {
        anthropic_base: versioned_base(&server.uri(), "v1"),
        ..ProviderConfig::default()
    };
    let m = connect_with("anthropic:claude-x", &config, Some(ApiKey::new(KEY))).unwrap();
    let mut r = request();
    r.tools = vec![ToolSpec {
        name: "lookup".into(),
        description: "Looks up a customer.".into(),
        parameters: json!({"type": "object", "properties": {"id": {"type": "string"}}}),
    }];
    let mut stream = m.stream(&r).await.unwrap();
    let mut done = None;
    while let Some(event) = stream.next().await {
        if let StreamEvent::Done { response } = event.unwrap() {
            done = Some(response);
        }
    }
    let response = done.unwrap();
    assert_eq!(response.usage.input_tokens, 21);
    assert_eq!(response.usage.output_tokens, 9);
    assert_eq!(response.tool_calls.len(), 1, "{:?}", response.tool_calls);
    assert_eq!(response.tool_calls[0].arguments, json!({"id": "c42"}));
}

#[tokio::test]
async fn a_failed_fallback_chain_is_the_chains_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})),
        )
        .mount(&server)
        .await;
    let config = ProviderConfig {
        anthropic_base: versioned_base(&server.uri(), "v1"),
        gemini_base: versioned_base(&server.uri(), "v1beta"),
        ..ProviderConfig::default()
    };
    let chain = Fallback::new(vec![
        connect_with("anthropic:claude-x", &config, Some(ApiKey::new(KEY))).unwrap(),
        connect_with("gemini:gemini-2.5-flash", &config, Some(ApiKey::new(KEY))).unwrap(),
    ]);
    let err = chain.complete(&request()).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("fallback: every model failed: anthropic:"),
        "{shown}"
    );
    assert!(shown.contains("gemini:"), "{shown}");
    assert_eq!(shown.matches("(HTTP 401)").count(), 2, "{shown}");
}

/// A server that never answers is tried twice, not once per attempt of the policy.
#[tokio::test]
async fn a_silent_server_is_retried_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let config = ProviderConfig {
        anthropic_base: versioned_base(&server.uri(), "v1"),
        first_byte_timeout: Duration::from_millis(200),
        ..ProviderConfig::default()
    };
    let model = connect_with("anthropic:claude-x", &config, Some(ApiKey::new(KEY))).unwrap();
    let patient = Resilient::new(
        model,
        RetryPolicy {
            max_attempts: 4,
            initial: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
    );
    let err = Arc::new(patient).complete(&request()).await.unwrap_err();
    assert!(err.is_silence(), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
