//! One conformance suite for every HTTP adapter, each against a local server on 127.0.0.1
//! (wiremock) that speaks that vendor's documented wire format. Every case also asserts what
//! the adapter sent. Streaming and non-streaming must give the same reply on the same case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agents::llm::{
    ApiKey, ChatModel, ChatRequest, ChatResponse, ErrorKind, Message, ProviderConfig, Resilient,
    RetryPolicy, StopReason, StreamEvent, ToolSpec, connect_with,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-test-conformance-4f9c2b7d1e";

/// What differs between vendors: paths, auth, and how replies look on the wire.
trait Vendor: Sync {
    fn name(&self) -> &'static str;
    fn model(&self, server: &MockServer) -> String;
    fn path(&self) -> &'static str;
    fn auth(&self) -> (&'static str, String);
    /// A complete reply with `text` and `calls` (id, name, arguments).
    fn reply(&self, text: &str, calls: &[(&str, &str, Value)]) -> Value;
    /// The same reply as server-sent events.
    fn sse(&self, text: &str, calls: &[(&str, &str, Value)]) -> String;
    /// Checks the body the adapter sent for `request`.
    fn check_request(&self, sent: &Value, request: &ChatRequest);
    /// Checks that a streaming request asked for a stream.
    fn check_stream_request(&self, request: &Request) {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["stream"], true);
    }
    /// The paths the adapter may call (complete and stream), as a regex.
    fn path_regex(&self) -> String {
        format!("^{}$", self.path().replace('.', "\\."))
    }
}

struct OpenAi;
struct Anthropic;
struct Compat;
struct Gemini;
struct Perplexity;

fn sse_lines(events: &[(Option<&str>, Value)]) -> String {
    let mut out = String::new();
    for (name, data) in events {
        if let Some(n) = name {
            out.push_str(&format!("event: {n}\n"));
        }
        out.push_str(&format!("data: {data}\n\n"));
    }
    out
}

fn openai_reply(text: &str, calls: &[(&str, &str, Value)]) -> Value {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "served-model",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    })
}

fn openai_sse(text: &str, calls: &[(&str, &str, Value)]) -> String {
    let mut events = vec![(
        None,
        json!({"model": "served-model", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
    )];
    let mid = text.len() / 2;
    for part in [&text[..mid], &text[mid..]] {
        if !part.is_empty() {
            events.push((None, json!({"model": "served-model", "choices": [{"index": 0, "delta": {"content": part}}]})));
        }
    }
    for (i, (id, name, args)) in calls.iter().enumerate() {
        let args = args.to_string();
        let half = args.len() / 2;
        events.push((None, json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}}]})));
        for piece in [&args[..half], &args[half..]] {
            events.push((None, json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}}]})));
        }
    }
    events.push((None, json!({"choices": [{"index": 0, "delta": {}, "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}]})));
    events.push((
        None,
        json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7}}),
    ));
    let mut out = sse_lines(&events);
    out.push_str("data: [DONE]\n\n");
    out
}

fn check_openai_request(sent: &Value, request: &ChatRequest, max_tokens_field: &str) {
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], request.messages[1].content);
    if !request.tools.is_empty() {
        assert_eq!(sent["tools"][0]["type"], "function");
        assert_eq!(sent["tools"][0]["function"]["name"], request.tools[0].name);
        assert_eq!(
            sent["tools"][0]["function"]["parameters"],
            request.tools[0].parameters
        );
    }
    if let Some(schema) = &request.output_schema {
        assert_eq!(sent["response_format"]["type"], "json_schema");
        assert_eq!(&sent["response_format"]["json_schema"]["schema"], schema);
    }
    assert_eq!(sent[max_tokens_field], json!(request.max_tokens.unwrap()));
}

impl Vendor for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }
    fn model(&self, _server: &MockServer) -> String {
        "openai:gpt-4o-mini".into()
    }
    fn path(&self) -> &'static str {
        "/v1/chat/completions"
    }
    fn auth(&self) -> (&'static str, String) {
        ("authorization", format!("Bearer {KEY}"))
    }
    fn reply(&self, text: &str, calls: &[(&str, &str, Value)]) -> Value {
        openai_reply(text, calls)
    }
    fn sse(&self, text: &str, calls: &[(&str, &str, Value)]) -> String {
        openai_sse(text, calls)
    }
    fn check_request(&self, sent: &Value, request: &ChatRequest) {
        assert_eq!(sent["model"], "gpt-4o-mini");
        check_openai_request(sent, request, "max_completion_tokens");
    }
}

impl Vendor for Compat {
    fn name(&self) -> &'static str {
        "openai-compat"
    }
    fn model(&self, server: &MockServer) -> String {
        format!("openai-compat:{}/compat/v1#llama3", server.uri())
    }
    fn path(&self) -> &'static str {
        "/compat/v1/chat/completions"
    }
    fn auth(&self) -> (&'static str, String) {
        ("authorization", format!("Bearer {KEY}"))
    }
    fn reply(&self, text: &str, calls: &[(&str, &str, Value)]) -> Value {
        // Servers like Ollama send arguments as an object and omit ids and usage.
        let mut reply = openai_reply(text, calls);
        if let Some(list) = reply
            .pointer_mut("/choices/0/message/tool_calls")
            .and_then(Value::as_array_mut)
        {
            for (call, (_, _, args)) in list.iter_mut().zip(calls) {
                call["function"]["arguments"] = args.clone();
            }
        }
        reply
    }
    fn sse(&self, text: &str, calls: &[(&str, &str, Value)]) -> String {
        openai_sse(text, calls)
    }
    fn check_request(&self, sent: &Value, request: &ChatRequest) {
        assert_eq!(sent["model"], "llama3");
        check_openai_request(sent, request, "max_tokens");
    }
}

impl Vendor for Perplexity {
    fn name(&self) -> &'static str {
        "perplexity"
    }
    fn model(&self, _server: &MockServer) -> String {
        "perplexity:sonar".into()
    }
    fn path(&self) -> &'static str {
        "/chat/completions"
    }
    fn auth(&self) -> (&'static str, String) {
        ("authorization", format!("Bearer {KEY}"))
    }
    /// Perplexity's replies carry their sources; it has no tool calls.
    fn reply(&self, text: &str, calls: &[(&str, &str, Value)]) -> Value {
        let mut reply = openai_reply(text, calls);
        reply["citations"] = json!(["https://www.spc.noaa.gov/climo/reports/today.html"]);
        reply
    }
    fn sse(&self, text: &str, calls: &[(&str, &str, Value)]) -> String {
        openai_sse(text, calls).replacen(
            "\"usage\"",
            "\"citations\":[\"https://www.spc.noaa.gov/climo/reports/today.html\"],\"usage\"",
            1,
        )
    }
    fn check_request(&self, sent: &Value, request: &ChatRequest) {
        assert_eq!(sent["model"], "sonar");
        check_openai_request(sent, request, "max_tokens");
    }
}

impl Vendor for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }
    fn model(&self, _server: &MockServer) -> String {
        "anthropic:claude-sonnet-4-5".into()
    }
    fn path(&self) -> &'static str {
        "/v1/messages"
    }
    fn auth(&self) -> (&'static str, String) {
        ("x-api-key", KEY.to_string())
    }
    fn reply(&self, text: &str, calls: &[(&str, &str, Value)]) -> Value {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for (id, name, args) in calls {
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
        }
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "served-model",
            "content": content,
            "stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" },
            "usage": {"input_tokens": 12, "output_tokens": 7}
        })
    }
    fn sse(&self, text: &str, calls: &[(&str, &str, Value)]) -> String {
        let mut events = vec![
            (
                Some("message_start"),
                json!({"type": "message_start", "message": {"id": "msg_1", "model": "served-model", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            ),
            (Some("ping"), json!({"type": "ping"})),
        ];
        let mut index = 0;
        if !text.is_empty() {
            events.push((Some("content_block_start"), json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
            let mid = text.len() / 2;
            for part in [&text[..mid], &text[mid..]] {
                events.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}})));
            }
            events.push((
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        }
        for (id, name, args) in calls {
            let args = args.to_string();
            let half = args.len() / 2;
            events.push((Some("content_block_start"), json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
            for piece in [&args[..half], &args[half..]] {
                events.push((Some("content_block_delta"), json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
            }
            events.push((
                Some("content_block_stop"),
                json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        }
        events.push((Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" }}, "usage": {"output_tokens": 7}})));
        events.push((Some("message_stop"), json!({"type": "message_stop"})));
        sse_lines(&events)
    }
    fn check_request(&self, sent: &Value, request: &ChatRequest) {
        assert_eq!(sent["model"], "claude-sonnet-4-5");
        assert_eq!(sent["system"], request.messages[0].content);
        assert_eq!(sent["messages"][0]["role"], "user");
        assert_eq!(
            sent["messages"][0]["content"][0]["text"],
            request.messages[1].content
        );
        assert_eq!(sent["max_tokens"], json!(request.max_tokens.unwrap()));
        if !request.tools.is_empty() {
            assert_eq!(sent["tools"][0]["name"], request.tools[0].name);
            assert_eq!(
                sent["tools"][0]["input_schema"],
                request.tools[0].parameters
            );
        }
        if let Some(schema) = &request.output_schema {
            let tools = sent["tools"].as_array().unwrap();
            let output = tools.iter().find(|t| t["name"] == "output").unwrap();
            assert_eq!(&output["input_schema"], schema);
            assert_eq!(
                sent["tool_choice"],
                json!({"type": "tool", "name": "output"})
            );
        }
    }
}

impl Vendor for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }
    fn model(&self, _server: &MockServer) -> String {
        "gemini:gemini-2.5-flash".into()
    }
    fn path(&self) -> &'static str {
        "/v1beta/models/gemini-2.5-flash:generateContent"
    }
    fn path_regex(&self) -> String {
        "^/v1beta/models/gemini-2\\.5-flash:(generateContent|streamGenerateContent)$".into()
    }
    fn auth(&self) -> (&'static str, String) {
        ("x-goog-api-key", KEY.to_string())
    }
    fn reply(&self, text: &str, calls: &[(&str, &str, Value)]) -> Value {
        let mut parts = Vec::new();
        if !text.is_empty() {
            parts.push(json!({"text": text}));
        }
        for (id, name, args) in calls {
            parts.push(json!({"functionCall": {"id": id, "name": name, "args": args}}));
        }
        json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7, "totalTokenCount": 19},
            "modelVersion": "served-model"
        })
    }
    fn sse(&self, text: &str, calls: &[(&str, &str, Value)]) -> String {
        let mut events = Vec::new();
        let mid = text.len() / 2;
        for part in [&text[..mid], &text[mid..]] {
            if !part.is_empty() {
                events.push((None, json!({"candidates": [{"content": {"role": "model", "parts": [{"text": part}]}}], "modelVersion": "served-model"})));
            }
        }
        for (id, name, args) in calls {
            events.push((None, json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"id": id, "name": name, "args": args}}]}}], "modelVersion": "served-model"})));
        }
        events.push((None, json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7}, "modelVersion": "served-model"})));
        sse_lines(&events)
    }
    fn check_request(&self, sent: &Value, request: &ChatRequest) {
        assert_eq!(
            sent["systemInstruction"]["parts"][0]["text"],
            request.messages[0].content
        );
        assert_eq!(sent["contents"][0]["role"], "user");
        assert_eq!(
            sent["contents"][0]["parts"][0]["text"],
            request.messages[1].content
        );
        assert_eq!(
            sent["generationConfig"]["maxOutputTokens"],
            json!(request.max_tokens.unwrap())
        );
        if !request.tools.is_empty() {
            let decl = &sent["tools"][0]["functionDeclarations"][0];
            assert_eq!(decl["name"], request.tools[0].name);
            assert_eq!(decl["parameters"]["properties"]["pitch"]["type"], "integer");
        }
        if request.output_schema.is_some() {
            let schema = &sent["generationConfig"]["responseSchema"];
            assert_eq!(
                sent["generationConfig"]["responseMimeType"],
                "application/json"
            );
            assert_eq!(schema["properties"]["bundles"]["type"], "integer");
            assert!(
                schema.get("additionalProperties").is_none(),
                "Gemini rejects additionalProperties"
            );
        }
    }
    fn check_stream_request(&self, request: &Request) {
        assert!(
            request.url.path().ends_with(":streamGenerateContent"),
            "{}",
            request.url
        );
        assert_eq!(request.url.query(), Some("alt=sse"));
    }
}

fn request() -> ChatRequest {
    let mut r = ChatRequest::new(vec![
        Message::system("You are the roofing assistant."),
        Message::user("How many bundles for 24.6 squares?"),
    ]);
    r.max_tokens = Some(256);
    r.temperature = Some(0.0);
    r
}

fn with_tools() -> ChatRequest {
    let mut r = request();
    r.tools = vec![ToolSpec {
        name: "roofing_estimate".into(),
        description: "Price a roof".into(),
        parameters: json!({"type": "object", "properties": {"area_sqft": {"type": "number"}, "pitch": {"type": "integer"}}, "required": ["area_sqft"]}),
    }];
    r
}

async fn model(
    vendor: &dyn Vendor,
    server: &MockServer,
    first_byte: Duration,
) -> Arc<dyn ChatModel> {
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        anthropic_base: format!("{}/v1", server.uri()),
        gemini_base: format!("{}/v1beta", server.uri()),
        perplexity_base: server.uri(),
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: first_byte,
        total_timeout: Duration::from_secs(10),
        max_response_bytes: 1 << 20,
    };
    connect_with(&vendor.model(server), &config, Some(ApiKey::new(KEY))).unwrap()
}

async fn mount(vendor: &dyn Vendor, server: &MockServer, template: ResponseTemplate) {
    let (name, value) = vendor.auth();
    Mock::given(method("POST"))
        .and(path_regex(vendor.path_regex()))
        .and(header(name, value.as_str()))
        .respond_with(template)
        .mount(server)
        .await;
}

fn sent(server_requests: &[Request]) -> Value {
    serde_json::from_slice(&server_requests.last().unwrap().body).unwrap()
}

async fn collect(model: &dyn ChatModel, request: &ChatRequest) -> (Vec<StreamEvent>, ChatResponse) {
    let mut stream = model.stream(request).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }
    match events.last() {
        Some(StreamEvent::Done { response }) => {
            let response = response.clone();
            (events, response)
        }
        other => panic!("the stream must end with Done, got {other:?}"),
    }
}

/// Plain, tool call, parallel tool calls and structured output, each both ways.
async fn replies_match_both_ways(vendor: &dyn Vendor) {
    let cases: Vec<(&str, ChatRequest, String, Vec<(&str, &str, Value)>)> = vec![
        ("plain", request(), "About 74 bundles.".into(), vec![]),
        (
            "tool call",
            with_tools(),
            String::new(),
            vec![(
                "call_a",
                "roofing_estimate",
                json!({"area_sqft": 2000, "pitch": 6}),
            )],
        ),
        (
            "parallel tool calls",
            with_tools(),
            String::new(),
            vec![
                ("call_a", "roofing_estimate", json!({"area_sqft": 2000})),
                (
                    "call_b",
                    "roofing_estimate",
                    json!({"area_sqft": 1400, "pitch": 4}),
                ),
            ],
        ),
    ];
    for (label, req, text, calls) in cases {
        let server = MockServer::start().await;
        let m = model(vendor, &server, Duration::from_secs(5)).await;
        if !req.tools.is_empty() && !m.capabilities().tools {
            // Callers (the agent runtime) offer tools only to models that declare them.
            continue;
        }
        mount(
            vendor,
            &server,
            ResponseTemplate::new(200).set_body_json(vendor.reply(&text, &calls)),
        )
        .await;
        let whole = m
            .complete(&req)
            .await
            .unwrap_or_else(|e| panic!("{} {label}: {e}", vendor.name()));
        vendor.check_request(&sent(&server.received_requests().await.unwrap()), &req);
        assert_eq!(whole.text, text, "{label}");
        assert_eq!(whole.usage.input_tokens, 12, "{label}");
        assert_eq!(whole.usage.output_tokens, 7, "{label}");
        assert_eq!(whole.tool_calls.len(), calls.len(), "{label}");
        for (got, (id, name, args)) in whole.tool_calls.iter().zip(&calls) {
            assert_eq!(
                (got.id.as_str(), got.name.as_str(), &got.arguments),
                (*id, *name, args),
                "{label}"
            );
        }
        let expected_stop = if calls.is_empty() {
            StopReason::End
        } else {
            StopReason::ToolCalls
        };
        assert_eq!(whole.stop_reason, expected_stop, "{label}");

        let server = MockServer::start().await;
        let m = model(vendor, &server, Duration::from_secs(5)).await;
        mount(
            vendor,
            &server,
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(vendor.sse(&text, &calls)),
        )
        .await;
        let (events, streamed) = collect(m.as_ref(), &req).await;
        let received = server.received_requests().await.unwrap();
        let sent_body = sent(&received);
        vendor.check_stream_request(received.last().unwrap());
        vendor.check_request(&sent_body, &req);
        assert_eq!(
            streamed,
            whole,
            "{} {label}: streaming and non-streaming differ",
            vendor.name()
        );
        let deltas: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Text { delta } => Some(delta.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, text, "{label}: text arrives in deltas");
        if !calls.is_empty() {
            assert!(
                events
                    .iter()
                    .filter(|e| matches!(e, StreamEvent::ToolCall { .. }))
                    .count()
                    >= calls.len(),
                "{label}: every tool call arrives as events"
            );
        }
    }
}

async fn structured_output(vendor: &dyn Vendor) {
    let schema = json!({"type": "object", "properties": {"bundles": {"type": "integer"}}, "required": ["bundles"], "additionalProperties": false});
    let mut req = request();
    req.output_schema = Some(schema);
    let server = MockServer::start().await;
    let m = model(vendor, &server, Duration::from_secs(5)).await;
    let reply = if vendor.name() == "anthropic" {
        vendor.reply("", &[("toolu_1", "output", json!({"bundles": 74}))])
    } else {
        vendor.reply(r#"{"bundles":74}"#, &[])
    };
    mount(
        vendor,
        &server,
        ResponseTemplate::new(200).set_body_json(reply),
    )
    .await;
    let out = m.complete(&req).await.unwrap();
    vendor.check_request(&sent(&server.received_requests().await.unwrap()), &req);
    let parsed: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(parsed, json!({"bundles": 74}));
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.stop_reason, StopReason::End);
}

async fn rate_limit_then_success(vendor: &dyn Vendor) {
    let server = MockServer::start().await;
    let (name, value) = vendor.auth();
    Mock::given(method("POST"))
        .and(path_regex(vendor.path_regex()))
        .and(header(name, value.as_str()))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({"error": {"type": "rate_limit_error", "message": "slow down"}}),
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount(
        vendor,
        &server,
        ResponseTemplate::new(200).set_body_json(vendor.reply("ok", &[])),
    )
    .await;
    let bare = model(vendor, &server, Duration::from_secs(5)).await;
    let started = Instant::now();
    let err = bare.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.status, Some(429));
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
    assert!(err.body.as_deref().unwrap().contains("slow down"));
    assert!(err.message.contains("slow down"), "{}", err.message);
    let _ = started;

    // The bare call used the one 429; a second one makes the retrying model wait.
    Mock::given(method("POST"))
        .and(path_regex(vendor.path_regex()))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let resilient = Resilient::new(
        bare,
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
        },
    );
    let started = Instant::now();
    let out = resilient.complete(&request()).await.unwrap();
    assert_eq!(out.text, "ok");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was honoured: {:?}",
        started.elapsed()
    );
}

async fn server_error_then_success(vendor: &dyn Vendor) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(vendor.path_regex()))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount(
        vendor,
        &server,
        ResponseTemplate::new(200).set_body_json(vendor.reply("recovered", &[])),
    )
    .await;
    let m = Resilient::new(
        model(vendor, &server, Duration::from_secs(5)).await,
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
    );
    let out = m.complete(&request()).await.unwrap();
    assert_eq!(out.text, "recovered");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

async fn malformed_body_is_kept(vendor: &dyn Vendor) {
    let server = MockServer::start().await;
    mount(
        vendor,
        &server,
        ResponseTemplate::new(200).set_body_string("<html>gateway</html>"),
    )
    .await;
    let m = model(vendor, &server, Duration::from_secs(5)).await;
    let err = m.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.body.as_deref(), Some("<html>gateway</html>"));

    let server = MockServer::start().await;
    mount(
        vendor,
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"unexpected": true})),
    )
    .await;
    let m = model(vendor, &server, Duration::from_secs(5)).await;
    let err = m.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.body.as_deref().unwrap().contains("unexpected"));
}

async fn timeout_is_transient(vendor: &dyn Vendor) {
    let server = MockServer::start().await;
    mount(
        vendor,
        &server,
        ResponseTemplate::new(200)
            .set_body_json(vendor.reply("late", &[]))
            .set_delay(Duration::from_millis(1500)),
    )
    .await;
    let m = model(vendor, &server, Duration::from_millis(200)).await;
    let started = Instant::now();
    let err = m.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(started.elapsed() < Duration::from_millis(1200));
}

async fn errors_are_classified_and_never_hold_the_key(vendor: &dyn Vendor) {
    for (status, body, kind) in [
        (
            401,
            json!({"error": {"message": format!("invalid key {KEY}")}}),
            ErrorKind::Auth,
        ),
        (
            400,
            json!({"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}),
            ErrorKind::ContextTooLong,
        ),
        (
            400,
            json!({"error": {"message": "messages: field required"}}),
            ErrorKind::InvalidRequest,
        ),
        (
            503,
            json!({"error": {"message": "overloaded"}}),
            ErrorKind::Transient,
        ),
    ] {
        let server = MockServer::start().await;
        mount(
            vendor,
            &server,
            ResponseTemplate::new(status).set_body_json(body),
        )
        .await;
        let m = model(vendor, &server, Duration::from_secs(5)).await;
        let err = m.complete(&request()).await.unwrap_err();
        assert_eq!(err.kind, kind, "{status}: {err}");
        assert_eq!(err.status, Some(status));
        for text in [
            err.to_string(),
            format!("{err:?}"),
            serde_json::to_string(&err).unwrap(),
            format!("{m:?}", m = m.name()),
        ] {
            assert!(!text.contains(KEY), "the key leaked: {text}");
        }
    }
}

macro_rules! conformance {
    ($module:ident, $vendor:expr) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn replies_match_both_ways() {
                super::replies_match_both_ways(&$vendor).await;
            }
            #[tokio::test]
            async fn structured_output() {
                super::structured_output(&$vendor).await;
            }
            #[tokio::test]
            async fn rate_limit_then_success() {
                super::rate_limit_then_success(&$vendor).await;
            }
            #[tokio::test]
            async fn server_error_then_success() {
                super::server_error_then_success(&$vendor).await;
            }
            #[tokio::test]
            async fn malformed_body_is_kept() {
                super::malformed_body_is_kept(&$vendor).await;
            }
            #[tokio::test]
            async fn timeout_is_transient() {
                super::timeout_is_transient(&$vendor).await;
            }
            #[tokio::test]
            async fn errors_are_classified_and_never_hold_the_key() {
                super::errors_are_classified_and_never_hold_the_key(&$vendor).await;
            }
        }
    };
}

conformance!(openai, OpenAi);
conformance!(openai_compatible, Compat);
conformance!(anthropic, Anthropic);
conformance!(gemini, Gemini);
conformance!(perplexity, Perplexity);

#[test]
fn gemini_schemas_keep_only_what_gemini_accepts() {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "kind": {"const": "lead"},
            "phone": {"type": ["string", "null"], "pattern": "^[0-9-]+$"},
            "tags": {"type": "array", "items": {"type": "string", "default": "x"}, "maxItems": 5},
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"},
            "choice": {"oneOf": [{"type": "integer"}, {"type": "string"}]}
        },
        "required": ["kind"]
    });
    assert_eq!(
        agents::llm::gemini_schema(&schema),
        json!({
            "type": "object",
            "properties": {
                "kind": {"enum": ["lead"], "type": "string"},
                "phone": {"nullable": true, "type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                "when": {"type": "string", "format": "date-time"},
                "email": {"type": "string"},
                "choice": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
            },
            "required": ["kind"]
        })
    );
}

/// Perplexity speaks the OpenAI wire and adds its sources; they reach the caller both ways.
#[tokio::test]
async fn perplexity_returns_its_citations() {
    let server = MockServer::start().await;
    let config = ProviderConfig {
        perplexity_base: server.uri(),
        ..ProviderConfig::default()
    };
    let m = connect_with("perplexity:sonar", &config, Some(ApiKey::new(KEY))).unwrap();
    assert!(!m.capabilities().tools);
    let mut reply = openai_reply("Hail of 1.75 in. was reported in Denver [1].", &[]);
    reply["citations"] = json!(["https://www.spc.noaa.gov/climo/reports/today.html"]);
    reply["search_results"] = json!([{"title": "SPC reports", "url": "https://www.spc.noaa.gov/climo/reports/today.html"}]);
    Mock::given(method("POST"))
        .and(path_regex("^/chat/completions$"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(reply))
        .mount(&server)
        .await;
    let out = m.complete(&request()).await.unwrap();
    assert_eq!(
        out.citations,
        vec!["https://www.spc.noaa.gov/climo/reports/today.html".to_string()]
    );
    assert_eq!(
        sent(&server.received_requests().await.unwrap())["model"],
        "sonar"
    );

    let server = MockServer::start().await;
    let config = ProviderConfig {
        perplexity_base: server.uri(),
        ..ProviderConfig::default()
    };
    let m = connect_with("perplexity:sonar", &config, Some(ApiKey::new(KEY))).unwrap();
    let body = openai_sse("Hail reported [1].", &[]).replacen(
        "\"usage\"",
        "\"search_results\":[{\"url\":\"https://example.org/hail\"}],\"usage\"",
        1,
    );
    Mock::given(method("POST"))
        .and(path_regex("^/chat/completions$"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(body),
        )
        .mount(&server)
        .await;
    let (_, streamed) = collect(m.as_ref(), &request()).await;
    assert_eq!(
        streamed.citations,
        vec!["https://example.org/hail".to_string()]
    );
}

#[test]
fn a_missing_key_names_the_variable() {
    // Run with the variables unset in this process's view: a key passed explicitly wins, and
    // without one the error names what to set.
    let config = ProviderConfig::default();
    for (model, variable) in [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        (
            "anthropic:claude-sonnet-4-5",
            "ANTHROPIC_API_KEY or CLAUDE_API_KEY",
        ),
        ("gemini:gemini-2.5-flash", "GEMINI_API_KEY"),
        ("perplexity:sonar", "PERPLEXITY_API_KEY"),
    ] {
        let names: Vec<&str> = variable.split(" or ").collect();
        if names.iter().any(|n| std::env::var(n).is_ok()) {
            continue; // A developer's real key is set; nothing to check here.
        }
        let err = match connect_with(model, &config, None) {
            Err(e) => e,
            Ok(_) => panic!("{model} connected without a key"),
        };
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.message.contains(variable), "{model}: {err}");
    }
}

/// A reply larger than the limit is refused, not buffered without bound.
#[tokio::test]
async fn oversized_replies_are_refused() {
    let server = MockServer::start().await;
    let big = "x".repeat(300_000);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_reply(&big, &[])))
        .mount(&server)
        .await;
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        max_response_bytes: 100_000,
        ..ProviderConfig::default()
    };
    let m = connect_with("openai:gpt-4o-mini", &config, Some(ApiKey::new(KEY))).unwrap();
    let err = m.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("larger than 100000 bytes"), "{err}");
}

/// An OpenAI model on a local server that answers every call with `events` as an event
/// stream; the server is returned to keep it alive.
async fn openai_streaming(
    events: String,
    max_response_bytes: usize,
) -> (MockServer, Arc<dyn ChatModel>) {
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
        openai_base: format!("{}/v1", server.uri()),
        max_response_bytes,
        ..ProviderConfig::default()
    };
    let model = connect_with("openai:gpt-4o-mini", &config, Some(ApiKey::new(KEY))).unwrap();
    (server, model)
}

/// A streamed reply is held to the size limit as its events arrive.
#[tokio::test]
async fn oversized_streams_are_refused() {
    let big = "x".repeat(300_000);
    let (_server, m) = openai_streaming(openai_sse(&big, &[]), 100_000).await;
    let mut stream = m.stream(&request()).await.unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    let err = last.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("larger than 100000 bytes"), "{err}");
}

/// An `error` event after a stream began ends it with that error, which keeps the event.
#[tokio::test]
async fn an_error_event_mid_stream_ends_the_stream() {
    let events = sse_lines(&[
        (
            None,
            json!({"model": "served-model", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        ),
        (
            None,
            json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
        ),
    ]);
    let (_server, m) = openai_streaming(events, 1 << 20).await;
    let mut stream = m.stream(&request()).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(
        matches!(first, StreamEvent::Text { ref delta } if delta == "Hel"),
        "{first:?}"
    );
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert_eq!(
        err.message,
        "The server had an error while processing your request."
    );
    assert!(err.body.unwrap().contains("server_error"));
    assert!(stream.next().await.is_none());
}

/// A stream that echoes the key, in an event that does not parse, never shows it: the
/// error keeps the event, scrubbed (the bytes are scrubbed before they are decoded).
#[tokio::test]
async fn a_stream_echoing_the_key_never_shows_it() {
    let events = format!(
        "data: {}\n\ndata: {{unreadable, key {KEY}\n\n",
        json!({"model": "served-model", "choices": [{"index": 0, "delta": {"content": "Hel"}}]})
    );
    let (_server, m) = openai_streaming(events, 1 << 20).await;
    let mut stream = m.stream(&request()).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    let err = stream.next().await.unwrap().unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(err.body.unwrap().contains("key ***"), "{shown}");
}

/// A keyless OpenAI-compatible server (a local Ollama, say) is sent no `Authorization`.
#[tokio::test]
async fn a_keyless_compatible_server_gets_no_authorization() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/chat/completions$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_reply("hi", &[])))
        .mount(&server)
        .await;
    let model = format!("openai-compat:{}/v1#llama3", server.uri());
    let m = connect_with(&model, &ProviderConfig::default(), None).unwrap();
    assert_eq!(m.complete(&request()).await.unwrap().text, "hi");
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert!(!received[0].headers.contains_key("authorization"));
}

/// Dropping a call cancels it: the caller gets control back at once, whatever the server does.
#[tokio::test]
async fn dropping_a_call_cancels_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(openai_reply("late", &[]))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        ..ProviderConfig::default()
    };
    let m = connect_with("openai:gpt-4o-mini", &config, Some(ApiKey::new(KEY))).unwrap();
    let started = Instant::now();
    let req = request();
    let call = m.complete(&req);
    let outcome = tokio::time::timeout(Duration::from_millis(200), call).await;
    assert!(outcome.is_err(), "the call was still waiting on the server");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

/// OpenAI embeddings: the request, vectors put back in input order, and usage.
#[tokio::test]
async fn openai_embeddings_come_back_in_input_order() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/embeddings$"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.0, 1.0, 0.5]},
                {"object": "embedding", "index": 0, "embedding": [1.0, 0.0, -0.5]}
            ],
            "usage": {"prompt_tokens": 9, "total_tokens": 9}
        })))
        .mount(&server)
        .await;
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        ..ProviderConfig::default()
    };
    let e = agents::llm::OpenAiEmbeddings::connect(
        "openai:text-embedding-3-small",
        &config,
        Some(ApiKey::new(KEY)),
        Some(3),
    )
    .unwrap();
    let inputs = vec![
        "hail damage on the north slope".to_string(),
        "invoice 1042 paid".to_string(),
    ];
    let (vectors, usage) = e.embed(&inputs).await.unwrap();
    assert_eq!(vectors, vec![vec![1.0, 0.0, -0.5], vec![0.0, 1.0, 0.5]]);
    assert_eq!(usage.input_tokens, 9);
    let sent = sent(&server.received_requests().await.unwrap());
    assert_eq!(sent["model"], "text-embedding-3-small");
    assert_eq!(sent["input"], json!(inputs));
    assert_eq!(sent["dimensions"], 3);
    assert!(format!("{e:?}").contains("***") && !format!("{e:?}").contains(KEY));
}

/// OpenAI as the memory store's embedder: the vectors index and find memories, a reply of
/// the wrong width is refused, and a store filled by another embedder refuses this one.
#[tokio::test]
async fn openai_embedder_serves_the_memory_store() {
    use memory::{EmbeddedStore, MemoryStore, Namespace, PutOptions, Search};
    let server = MockServer::start().await;
    // A deterministic stand-in for the model: one direction per topic word.
    let respond = |req: &wiremock::Request| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let data: Vec<Value> = body["input"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.as_str().unwrap();
                let v = [
                    t.contains("hail"),
                    t.contains("invoice"),
                    t.contains("crew"),
                    true,
                ]
                .map(|b| if b { 1.0 } else { 0.0 });
                json!({"object": "embedding", "index": i, "embedding": v})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "model": "text-embedding-3-small", "data": data, "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
        )
    };
    Mock::given(method("POST"))
        .and(path_regex("^/v1/embeddings$"))
        .respond_with(respond)
        .mount(&server)
        .await;
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        ..ProviderConfig::default()
    };
    let embedder = agents::llm::OpenAiEmbedder::connect(
        "openai:text-embedding-3-small@4",
        &config,
        Some(ApiKey::new(KEY)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("m.db"), Arc::new(embedder)).unwrap();
    let ns = Namespace::parse("tenant:acme/notes").unwrap();
    for (k, t) in [
        ("a", "hail on the north slope"),
        ("b", "invoice 7 paid"),
        ("c", "crew B on Tuesday"),
    ] {
        store
            .put(&ns, k, json!({"text": t}), PutOptions::default())
            .await
            .unwrap();
    }
    let hits = store
        .search(&Search::new(ns.clone()).query("was there any hail?"))
        .await
        .unwrap();
    assert_eq!(hits[0].item.key, "a");
    let sent = sent(&server.received_requests().await.unwrap());
    assert_eq!(sent["dimensions"], 4);
    assert_eq!(sent["model"], "text-embedding-3-small");

    // An embedder declared 3-d that gets 4-d vectors refuses them, naming the mismatch.
    let wrong = agents::llm::OpenAiEmbedder::connect(
        "openai:text-embedding-3-small@3",
        &config,
        Some(ApiKey::new(KEY)),
    )
    .unwrap();
    let err = memory::Embedder::embed(&wrong, &["x".to_string()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("4-d vectors, expected 3"), "{err}");
    let refused = EmbeddedStore::open(dir.path().join("m.db"), Arc::new(wrong)).unwrap_err();
    assert!(
        refused.to_string().contains("holds 4-d vectors"),
        "{refused}"
    );
    let unknown =
        agents::llm::OpenAiEmbedder::connect("openai:my-embedder", &config, Some(ApiKey::new(KEY)))
            .unwrap_err();
    assert!(
        unknown.to_string().contains("openai:my-embedder@1536"),
        "{unknown}"
    );
}

/// The tokens an OpenAI embedder spends under a memory store reach the run's usage: the
/// store has no node context, so the embedder reports to the call running on its task.
#[tokio::test]
async fn embedding_tokens_reach_the_runs_usage() {
    use memory::{EmbeddedStore, LazyMemories, Memories, MemoryStore};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/embeddings$"))
        .respond_with(|req: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let n = body["input"].as_array().unwrap().len();
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [1.0, 0.0, 0.0, 1.0]}))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "model": "text-embedding-3-small", "data": data,
                "usage": {"prompt_tokens": 7 * n, "total_tokens": 7 * n}
            }))
        })
        .mount(&server)
        .await;
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        ..ProviderConfig::default()
    };
    let embedder = agents::llm::OpenAiEmbedder::connect(
        "openai:text-embedding-3-small@4",
        &config,
        Some(ApiKey::new(KEY)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Cached, as the CLI uses it: `remember` looks for a near-duplicate
    // and then stores, and only the first of the two embeds the text.
    let embedder = Arc::new(memory::Cached::new(embedder, 100));
    let store: Arc<dyn MemoryStore> =
        Arc::new(EmbeddedStore::open(dir.path().join("m.db"), embedder).unwrap());
    let mut registry = engine::Registry::new();
    memory::register_tools(&mut registry, LazyMemories::ready(Memories::new(store)));
    let graph = engine::loader::load_str(
        r#"
[graph]
name = "embedding_usage"
[state]
note = { type = "string" }
hits = { type = "array" }
stored = { type = "object" }
[nodes.remember]
remember = { namespace = ["'tenant:acme'"], value = "state.note" }
output = "stored"
[nodes.recall]
recall = { namespace = ["'tenant:acme'"], query = "'hail'", limit = 1 }
output = "hits"
[[edges]]
from = "START"
to = "remember"
[[edges]]
from = "remember"
to = "recall"
[[edges]]
from = "recall"
to = "END"
"#,
        "usage.toml",
        &registry,
    )
    .unwrap();
    let outcome = engine::Runner::new(Arc::new(graph))
        .invoke(engine::RunRequest::new().input(json!({"note": "Hail dented the north slope."})))
        .await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.state["hits"].as_array().unwrap().len(), 1);
    let usage = &outcome.usage;
    assert_eq!(usage.by_node["remember"].input_tokens, 7);
    assert_eq!(usage.by_node["recall"].input_tokens, 7);
    assert_eq!(usage.total.calls, 2);
    assert!((usage.total.cost_usd - 14.0 * 0.02 / 1e6).abs() < 1e-15);
}
