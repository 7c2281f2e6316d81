//! The local model (SmolLM2-135M, in-process) generates real tokens, streams them, and with
//! an output schema always answers JSON that validates. Content is not asserted: a 135M model
//! is for plumbing, not decisions. Needs the model file: `eval "$(scripts/local-model.sh)"`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agents::llm::{
    ChatModel, ChatRequest, ErrorKind, Local, Message, ProviderConfig, StreamEvent, connect,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn model() -> Local {
    Local::load("smollm2-135m").unwrap_or_else(|e| panic!("{e}"))
}

/// One generation at a time: on two cores, parallel generations slow each other down a lot.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ask(text: &str, max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::new(vec![
        Message::system("You are a helpful assistant for a roofing company."),
        Message::user(text),
    ]);
    r.max_tokens = Some(max_tokens);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_and_streams_the_same_tokens() {
    let _one = SERIAL.lock().await;
    let m = model();
    let req = ask("Say hello to a new customer in one sentence.", 24);
    let whole = m.complete(&req).await.unwrap();
    assert!(!whole.text.trim().is_empty(), "no text generated");
    assert!(whole.usage.output_tokens > 0 && whole.usage.output_tokens <= 24);
    assert!(
        whole.usage.input_tokens > 10,
        "the prompt went through the chat template"
    );

    let mut stream = m.stream(&req).await.unwrap();
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Text { delta } => deltas.push(delta),
            StreamEvent::Done { response } => done = Some(response),
            StreamEvent::ToolCall { .. } => panic!("no tools were offered"),
        }
    }
    let done = done.expect("the stream ends with Done");
    assert!(deltas.len() > 1, "tokens arrive one piece at a time");
    assert_eq!(deltas.concat(), done.text);
    // Greedy decoding: the streamed and the whole reply are the same tokens.
    assert_eq!(done, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_json_validates_on_ten_prompts() {
    let _one = SERIAL.lock().await;
    let m = model();
    let schema = json!({
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["quote", "repair", "inspection", "billing", "other"]},
            "urgent": {"type": "boolean"},
            "summary": {"type": "string", "maxLength": 80}
        },
        "required": ["intent", "urgent", "summary"],
        "additionalProperties": false
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let prompts = [
        "My roof leaks into the kitchen since last night's storm.",
        "How much would a new asphalt shingle roof cost for 2,000 sq ft?",
        "Can someone inspect my roof after the hail on Tuesday?",
        "I was charged twice on invoice 1042.",
        "Do you install gutters too?",
        "A tree branch punched a hole in my garage roof, water is coming in!",
        "I'd like a quote for metal roofing on a barn.",
        "When is my crew scheduled to arrive?",
        "Please send me a copy of my warranty.",
        "Our HOA needs an inspection report before Friday.",
    ];
    for prompt in prompts {
        let mut req = ask(&format!("Classify this customer message: {prompt}"), 96);
        req.output_schema = Some(schema.clone());
        let reply = m
            .complete(&req)
            .await
            .unwrap_or_else(|e| panic!("{prompt}: {e}"));
        let value: Value = serde_json::from_str(&reply.text)
            .unwrap_or_else(|e| panic!("{prompt}: not JSON ({e}): {}", reply.text));
        assert!(validator.is_valid(&value), "{prompt}: invalid: {value}");
    }
}

#[tokio::test]
async fn a_missing_model_file_says_how_to_get_it() {
    let err = Local::load("/nonexistent/brainops/model.gguf").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert!(err.message.contains("scripts/local-model.sh"), "{err}");
    assert!(err.message.contains("BRAINOPS_LOCAL_MODEL"), "{err}");
    // The default model string is the local one, and needs no key.
    let m = connect(agents::llm::DEFAULT_MODEL, &ProviderConfig::default()).unwrap();
    assert_eq!(m.name(), "local:smollm2-135m");
    assert!(m.capabilities().structured_output);
}

/// A graph node asks the local model; its tokens reach the event stream and the run's
/// totals, per node and in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_node_reports_usage_per_node_and_per_run() {
    let _one = SERIAL.lock().await;
    let registry = agents::builtin_registry();
    let graph = engine::loader::load_str(
        r#"
[graph]
name = "drafts"
[state]
name = { type = "string" }
note = { type = "string" }
intent = { type = "any" }
[nodes.draft]
tool = "llm.chat"
args = { prompt = "'Thank ' + state.name + ' for the inspection in one sentence.'", max_tokens = "20" }
output = "note"
[nodes.classify]
tool = "llm.chat"
args = { prompt = "'Is this a quote request? ' + state.note", max_tokens = "40", schema = "{'type': 'object', 'properties': {'quote': {'type': 'boolean'}}, 'required': ['quote']}" }
output = "intent"
[[edges]]
from = "START"
to = "draft"
[[edges]]
from = "draft"
to = "classify"
[[edges]]
from = "classify"
to = "END"
"#,
        "drafts.toml",
        &registry,
    )
    .unwrap();
    let runner = engine::Runner::new(std::sync::Arc::new(graph));
    let mut events = runner.stream(engine::RunRequest::new().input(json!({"name": "Ada"})));
    let mut usage_events = Vec::new();
    while let Some(event) = events.next().await {
        if let engine::Event::Usage {
            node,
            model,
            output_tokens,
            cost_usd,
            ..
        } = &event
        {
            usage_events.push((node.clone(), model.clone(), *output_tokens, *cost_usd));
        }
        if let engine::Event::RunFinished { state, .. } = &event {
            assert!(state["note"].as_str().is_some_and(|n| !n.is_empty()));
            assert!(state["intent"]["quote"].is_boolean(), "{state}");
        }
    }
    assert_eq!(usage_events.len(), 2, "{usage_events:?}");
    assert_eq!(usage_events[0].0, "draft");
    assert_eq!(usage_events[0].1, "local:smollm2-135m");
    assert!(usage_events[0].2 > 0 && usage_events[0].2 <= 20);
    assert_eq!(usage_events[0].3, Some(0.0), "the local model is free");

    let outcome = runner
        .invoke(engine::RunRequest::new().input(json!({"name": "Grace"})))
        .await;
    assert_eq!(outcome.usage.total.calls, 2);
    assert_eq!(outcome.usage.by_node["draft"].calls, 1);
    assert_eq!(
        outcome.usage.total.output_tokens,
        outcome.usage.by_node["draft"].output_tokens
            + outcome.usage.by_node["classify"].output_tokens
    );
    assert!(outcome.usage.total.input_tokens > 0);
}
