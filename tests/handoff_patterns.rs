//! The two handoff patterns shipped in `graphs/`, end to end with scripted models (test
//! doubles that answer from a script): the supervisor routes a customer message among the
//! customer, financial and operations agents until it is answered, and the swarm's agents
//! hand the conversation to each other directly. The path of handoffs is asserted, and
//! so is what each agent was offered and shown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use agents::agent::ScriptedModels;
use agents::integrations::{IntegrationConfig, Mode};
use agents::llm::ScriptedModel;
use engine::events::{AgentStep, Progress};
use engine::{Event, MemorySaver, Registry, RunOutcome, RunRequest, RunStatus, Runner, loader};
use memory::{EmbeddedStore, HashingEmbedder, LazyMemories, Memories, MemoryStore};
use serde_json::{Value, json};

struct Desk {
    registry: Registry,
    models: Arc<ScriptedModels>,
    _dir: tempfile::TempDir,
}

fn desk(models: ScriptedModels) -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        EmbeddedStore::open(dir.path().join("m.db"), Arc::new(HashingEmbedder::new(64))).unwrap(),
    );
    let models = Arc::new(models);
    let (registry, _) = agents::Setup {
        models: Arc::clone(&models) as _,
        memories: Some(LazyMemories::ready(Memories::new(
            store as Arc<dyn MemoryStore>,
        ))),
        integrations: IntegrationConfig::with_vars(Mode::Auto, |_| None),
        ..agents::Setup::default()
    }
    .build()
    .unwrap();
    Desk {
        registry,
        models,
        _dir: dir,
    }
}

/// Runs `graph` on `input`; returns the outcome, the nodes run step by step, and the
/// handoffs as (agent, to).
async fn run(
    desk: &Desk,
    graph: &str,
    input: Value,
) -> (RunOutcome, Vec<String>, Vec<(String, String)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("graphs")
        .join(graph);
    let graph = loader::load_file(&path, &desk.registry).unwrap_or_else(|e| panic!("{e}"));
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let (sink, mut events) = engine::EventSink::channel();
    let outcome = runner.run(RunRequest::new().input(input), Some(sink)).await;
    let (mut nodes, mut handoffs) = (Vec::new(), Vec::new());
    while let Ok(Some(event)) =
        tokio::time::timeout(std::time::Duration::from_millis(20), events.next()).await
    {
        match event {
            Event::StepStarted { nodes: n, .. } => nodes.extend(n),
            Event::Progress {
                progress:
                    Progress::Agent {
                        agent,
                        step: AgentStep::Handoff { to, .. },
                    },
                ..
            } => handoffs.push((agent, to)),
            _ => {}
        }
    }
    (outcome, nodes, handoffs)
}

fn tool_names(model: &ScriptedModel) -> Vec<String> {
    model.requests()[0]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect()
}

#[tokio::test]
async fn the_supervisor_routes_to_scheduling_then_answers_with_its_reply() {
    let status = json!({"status": "on_track", "summary": "Materials are ordered for the Dec 3 install.", "blockers": []});
    let desk = desk(
        ScriptedModels::new()
            .agent(
                "customer.supervisor",
                ScriptedModel::new("supervisor")
                    .then_tools(&[(
                        "transfer_to_job_status_reporter",
                        json!({"reason": "install date"}),
                    )])
                    .then_json(json!({"reply": "Your install is on track for December 3."})),
            )
            .agent(
                "operations.job_status_reporter",
                ScriptedModel::new("scheduling").always_json(status.clone()),
            ),
    );
    let (out, nodes, handoffs) = run(
        &desk,
        "customer_supervisor.toml",
        json!({"message": "When is my install?", "job": {"id": "J-1042", "install_date": "2026-12-03"}}),
    )
    .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(nodes, ["supervisor", "scheduling", "supervisor"]);
    assert_eq!(
        handoffs,
        [(
            "customer.supervisor".to_string(),
            "operations.job_status_reporter".to_string()
        )]
    );
    assert_eq!(out.state["replies"], json!([status]));
    // The conversation: the handoff call, its result, then the answer.
    let messages = out.state["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[0]["tool_calls"][0]["name"],
        "transfer_to_job_status_reporter"
    );
    assert_eq!(messages[1]["role"], "tool");
    assert_eq!(
        messages[1]["content"],
        "Transferred to operations.job_status_reporter"
    );
    assert_eq!(messages[2]["name"], "customer.supervisor");
    let answer: Value = serde_json::from_str(messages[2]["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer["reply"], "Your install is on track for December 3.");
    // The supervisor was offered one handoff per specialist, and saw the reply on its
    // second turn.
    let supervisor = desk.models.get("customer.supervisor").unwrap();
    assert_eq!(
        tool_names(supervisor),
        [
            "transfer_to_support_responder",
            "transfer_to_financing_option_explainer",
            "transfer_to_job_status_reporter"
        ]
    );
    let second = &supervisor.requests()[1];
    assert!(
        second
            .messages
            .iter()
            .any(|m| m.content.contains("Materials are ordered")),
        "the specialist's reply reaches the supervisor"
    );
}

#[tokio::test]
async fn the_supervisor_keeps_routing_until_the_message_is_answered() {
    let desk = desk(
        ScriptedModels::new()
            .agent(
                "customer.supervisor",
                ScriptedModel::new("supervisor")
                    .then_tools(&[("transfer_to_support_responder", json!({}))])
                    .then_tools(&[("transfer_to_financing_option_explainer", json!({}))])
                    .then_json(json!({"reply": "Leak booked for Monday; 12 months same as cash is open to you."})),
            )
            .agent(
                "customer.support_responder",
                ScriptedModel::new("support")
                    .always_json(json!({"reply": "We will inspect the leak Monday.", "needs_human": false})),
            )
            .agent(
                "financial.financing_option_explainer",
                ScriptedModel::new("billing").always_json(
                    json!({"message": "Two ways to pay.", "options": ["12 months same as cash"]}),
                ),
            ),
    );
    let (out, nodes, handoffs) = run(
        &desk,
        "customer_supervisor.toml",
        json!({"message": "My roof leaks, and can I pay over time?", "customer": {"name": "Cy"}}),
    )
    .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(
        nodes,
        [
            "supervisor",
            "support",
            "supervisor",
            "billing",
            "supervisor"
        ]
    );
    let to: Vec<&str> = handoffs.iter().map(|(_, to)| to.as_str()).collect();
    assert_eq!(
        to,
        [
            "customer.support_responder",
            "financial.financing_option_explainer"
        ]
    );
    assert_eq!(out.state["replies"].as_array().unwrap().len(), 2);
    // Each specialist is consulted once: the third turn offers only the one not asked yet.
    let supervisor = desk.models.get("customer.supervisor").unwrap();
    let third: Vec<String> = supervisor.requests()[2]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(third, ["transfer_to_job_status_reporter"]);
}

#[tokio::test]
async fn swarm_agents_hand_off_directly_and_the_one_that_answers_ends_the_run() {
    let desk = desk(
        ScriptedModels::new()
            .agent(
                "customer.front_desk",
                ScriptedModel::new("front").then_tools(&[(
                    "transfer_to_billing_desk",
                    json!({"reason": "payment plans"}),
                )]),
            )
            .agent(
                "financial.billing_desk",
                ScriptedModel::new("billing").then_tools(&[(
                    "transfer_to_scheduling_desk",
                    json!({"reason": "plans start after the install date"}),
                )]),
            )
            .agent(
                "operations.scheduling_desk",
                ScriptedModel::new("scheduling").then_json(
                    json!({"reply": "Your install is Dec 3; installments start after it."}),
                ),
            ),
    );
    let (out, nodes, handoffs) = run(
        &desk,
        "customer_swarm.toml",
        json!({"message": "Can I pay in installments after the install?", "job": {"install_date": "2026-12-03"}}),
    )
    .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(nodes, ["front_desk", "billing_desk", "scheduling_desk"]);
    let path: Vec<(&str, &str)> = handoffs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        path,
        [
            ("customer.front_desk", "financial.billing_desk"),
            ("financial.billing_desk", "operations.scheduling_desk")
        ]
    );
    // Two handoffs (a call and its result each), then the answer: the conversation is
    // carried from agent to agent.
    let messages = out.state["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[4]["name"], "operations.scheduling_desk");
    let scheduling = desk.models.get("operations.scheduling_desk").unwrap();
    let seen = scheduling.requests()[0].clone();
    assert!(
        seen.messages
            .iter()
            .any(|m| m.content.contains("plans start after the install date")),
        "the billing desk's handoff reason is in the conversation the scheduling desk sees"
    );
    // Both other desks already passed the conversation on: the scheduling desk is offered
    // no handoff (no ping-pong), so it answers.
    assert!(seen.tools.is_empty(), "{:?}", seen.tools);
    let billing = desk.models.get("financial.billing_desk").unwrap();
    assert_eq!(
        tool_names(billing),
        ["transfer_to_scheduling_desk"],
        "front desk is spent"
    );
}

#[tokio::test]
async fn a_model_without_tool_calls_hands_off_in_its_answer() {
    let desk = desk(
        ScriptedModels::new()
            .agent(
                "customer.front_desk",
                ScriptedModel::new("front").without_tools().then_json(
                    json!({"handoff": "operations.scheduling_desk", "answer": {"reply": ""}}),
                ),
            )
            .agent(
                "operations.scheduling_desk",
                ScriptedModel::new("scheduling").without_tools().then_json(
                    json!({"handoff": "none", "answer": {"reply": "Your crew arrives Dec 3."}}),
                ),
            ),
    );
    let (out, nodes, handoffs) = run(
        &desk,
        "customer_swarm.toml",
        json!({"message": "When does the crew come?", "job": {"install_date": "2026-12-03"}}),
    )
    .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(nodes, ["front_desk", "scheduling_desk"]);
    assert_eq!(handoffs.len(), 1);
    let front = desk.models.get("customer.front_desk").unwrap();
    let schema = front.requests()[0].output_schema.clone().unwrap();
    assert_eq!(
        schema["properties"]["handoff"]["enum"],
        json!([
            "financial.billing_desk",
            "operations.scheduling_desk",
            "none"
        ])
    );
    let last = out.state["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let answer: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer["reply"], "Your crew arrives Dec 3.");
}

#[tokio::test]
async fn a_handoff_to_an_agent_the_graph_does_not_route_to_fails_naming_it() {
    // The front desk's spec may hand to the billing desk, but this graph's node does not
    // list it in `goto`: the run fails with the node, the target and the list.
    let desk = desk(ScriptedModels::new().agent(
        "customer.front_desk",
        ScriptedModel::new("front").then_tools(&[("transfer_to_billing_desk", json!({}))]),
    ));
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/customer_swarm.toml"),
    )
    .unwrap()
    .replacen(
        "goto = [\"billing_desk\", \"scheduling_desk\"]",
        "goto = [\"scheduling_desk\"]",
        1,
    );
    let graph = loader::load_str(&source, "swarm.toml", &desk.registry).unwrap();
    let out = Runner::new(Arc::new(graph))
        .invoke(RunRequest::new().input(json!({"message": "Invoice?"})))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    let message = out.error.unwrap().message;
    assert!(
        message.contains("`financial.billing_desk` is not in its goto list [scheduling_desk]"),
        "{message}"
    );
}

/// Every agent on the real OpenAI adapter, against a local server that speaks OpenAI's
/// documented chat-completions wire format (streamed), so a handoff is a real tool call on
/// the wire: the front desk's reply calls `transfer_to_billing_desk`, the billing desk
/// answers in JSON text.
struct OpenAiWire {
    config: agents::llm::ProviderConfig,
}

impl agents::agent::ModelSource for OpenAiWire {
    fn model(
        &self,
        _agent: &agents::agent::AgentSpec,
    ) -> Result<Arc<dyn agents::llm::ChatModel>, agents::llm::LlmError> {
        agents::llm::connect_with(
            "openai:gpt-4o-mini",
            &self.config,
            Some(agents::llm::ApiKey::new(WIRE_KEY)),
        )
    }
}

const WIRE_KEY: &str = "sk-test-handoff-wire-7c1d";

/// OpenAI's streamed reply: text and tool calls as `chat.completion.chunk` events.
fn openai_stream(text: &str, call: Option<(&str, Value)>) -> String {
    let mut events = vec![
        json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
    ];
    if !text.is_empty() {
        events.push(
            json!({"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": text}}]}),
        );
    }
    if let Some((name, args)) = &call {
        events.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}}]}));
    }
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}));
    events.push(json!({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 9}}));
    let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    out
}

#[tokio::test]
async fn a_swarm_handoff_is_a_tool_call_on_a_real_provider_adapter() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {WIRE_KEY}").as_str(),
        ))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let system = body["messages"][0]["content"].as_str().unwrap_or_default();
            let sse = if system.starts_with("You are WeatherCraft Roofing's front desk") {
                openai_stream(
                    "",
                    Some((
                        "transfer_to_billing_desk",
                        json!({"reason": "installments"}),
                    )),
                )
            } else {
                openai_stream(r#"{"reply": "Yes: 12 months same as cash."}"#, None)
            };
            ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream")
        })
        .mount(&server)
        .await;
    let config = agents::llm::ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        ..agents::llm::ProviderConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (registry, _) = agents::Setup {
        models: Arc::new(OpenAiWire { config }),
        integrations: IntegrationConfig::with_vars(Mode::Auto, |_| None),
        ..agents::Setup::default()
    }
    .build()
    .unwrap();
    let desk = Desk {
        registry,
        models: Arc::new(ScriptedModels::new()),
        _dir: dir,
    };
    let (out, nodes, handoffs) = run(
        &desk,
        "customer_swarm.toml",
        json!({"message": "Can I pay in installments?"}),
    )
    .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(nodes, ["front_desk", "billing_desk"]);
    assert_eq!(
        handoffs,
        [(
            "customer.front_desk".to_string(),
            "financial.billing_desk".to_string()
        )]
    );
    // On the wire: the front desk was offered the handoffs as OpenAI function tools, and the
    // billing desk saw the handoff call in its conversation.
    let sent: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 2);
    let tools: Vec<&str> = sent[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["transfer_to_billing_desk", "transfer_to_scheduling_desk"]
    );
    assert!(
        sent[1].to_string().contains("transfer_to_billing_desk"),
        "{}",
        sent[1]
    );
    let last = out.state["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["name"], "financial.billing_desk");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .contains("12 months same as cash")
    );
}
