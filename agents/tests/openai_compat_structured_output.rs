//! `openai-compat:` negotiates how a server takes an output schema: the standard
//! `json_schema`, then `json_object` with the schema beside it (llama-cpp-python's form),
//! then the schema in the prompt; what worked is remembered per base URL. Every answer is
//! checked against the schema and asked for again with the errors.
//!
//! The learned form is kept per base URL, and wiremock reuses its servers' ports, so each
//! test gives its server a base path of its own.
//!
//! The servers here are wiremock responders speaking each server's documented replies; the
//! real llama.cpp server is in `tests/openai_compat_real_server.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agents::llm::{ChatRequest, Message, ProviderConfig, connect_with};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn reply(content: &str) -> Value {
    json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "smollm2",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    })
}

fn schema() -> Value {
    json!({"type": "object", "required": ["score"], "additionalProperties": false,
           "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 100}}})
}

fn request() -> ChatRequest {
    let mut r = ChatRequest::new(vec![Message::user("Score this lead from 0 to 100.")]);
    r.output_schema = Some(schema());
    r
}

/// Answers as llama-cpp-python's server does: `json_schema` is a 422 naming
/// `response_format.type`; `json_object` with a schema is taken.
struct LlamaCppPython {
    answers: Vec<&'static str>,
    served: AtomicUsize,
}

impl Respond for LlamaCppPython {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        match body
            .pointer("/response_format/type")
            .and_then(Value::as_str)
        {
            Some("json_schema") => ResponseTemplate::new(422).set_body_json(json!({"detail": [{
                "type": "literal_error", "loc": ["body", "response_format", "type"],
                "msg": "Input should be 'text' or 'json_object'", "input": "json_schema"}]})),
            Some("json_object") => {
                assert_eq!(body["response_format"]["schema"], schema());
                let i = self.served.fetch_add(1, Ordering::SeqCst);
                let answer = self.answers[i.min(self.answers.len() - 1)];
                ResponseTemplate::new(200).set_body_json(reply(answer))
            }
            other => panic!("unexpected response_format {other:?}"),
        }
    }
}

#[tokio::test]
async fn json_object_with_the_schema_after_a_refusal_and_remembered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(LlamaCppPython {
            answers: vec![r#"{"score": 87}"#],
            served: AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    let model = format!("openai-compat:{}/remembered/v1#smollm2", server.uri());
    let m = connect_with(&model, &ProviderConfig::default(), None).unwrap();
    let out = m.complete(&request()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap(),
        json!({"score": 87})
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // The same server again, from a new handle: straight to the form that worked.
    let m = connect_with(&model, &ProviderConfig::default(), None).unwrap();
    m.complete(&request()).await.unwrap();
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 3);
    let last: Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(last["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn an_answer_that_breaks_the_schema_is_asked_again_with_the_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(LlamaCppPython {
            answers: vec![
                r#"{"score": "high"}"#,
                r#"{"score": 140}"#,
                r#"{"score": 64}"#,
            ],
            served: AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    let model = format!("openai-compat:{}/retry/v1#smollm2", server.uri());
    let m = connect_with(&model, &ProviderConfig::default(), None).unwrap();
    let out = m.complete(&request()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap(),
        json!({"score": 64})
    );
    let received = server.received_requests().await.unwrap();
    let last: Value = serde_json::from_slice(&received.last().unwrap().body).unwrap();
    let messages = last["messages"].as_array().unwrap();
    let correction = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(correction.contains("not valid"), "{correction}");
    assert!(correction.contains("140"), "{correction}");
    assert_eq!(messages[messages.len() - 2]["content"], r#"{"score": 140}"#);
}

#[tokio::test]
async fn an_answer_that_never_holds_fails_naming_the_problem() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(LlamaCppPython {
            answers: vec!["I think it is a good lead."],
            served: AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    let model = format!("openai-compat:{}/never/v1#smollm2", server.uri());
    let m = connect_with(&model, &ProviderConfig::default(), None).unwrap();
    let err = m.complete(&request()).await.unwrap_err();
    assert!(
        err.message
            .contains("broke the output schema after 3 tries"),
        "{err}"
    );
    assert!(err.message.contains("not JSON"), "{err}");
}

/// A server that takes no `response_format` at all gets the schema in the prompt.
#[tokio::test]
async fn the_schema_goes_into_the_prompt_when_no_form_is_taken() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    Mock::given(method("POST"))
        .respond_with(move |request: &Request| {
            seen.fetch_add(1, Ordering::SeqCst);
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            if body.get("response_format").is_some() {
                return ResponseTemplate::new(400).set_body_json(
                    json!({"error": {"message": "response_format is not supported"}}),
                );
            }
            let system = body["messages"][0]["content"].as_str().unwrap_or_default();
            assert!(system.contains("JSON Schema"), "{system}");
            assert!(system.contains("\"score\""), "{system}");
            ResponseTemplate::new(200).set_body_json(reply("```json\n{\"score\": 12}\n```"))
        })
        .mount(&server)
        .await;
    let model = format!("openai-compat:{}/prompt/v1#plain", server.uri());
    let m = connect_with(&model, &ProviderConfig::default(), None).unwrap();
    let out = m.complete(&request()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap(),
        json!({"score": 12})
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
