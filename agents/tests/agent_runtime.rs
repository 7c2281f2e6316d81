//! The agent runtime against scripted models: the built-in catalog, every agent's worked
//! example, the tool allowlist, parallel tool calls, schema retries and streamed events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agents::agent::{Agent, Catalog, LlmAgent, ModelSource, ScriptedModels};
use agents::llm::ScriptedModel;
use agents::{AgentSpec, Category, Setup};
use engine::{Event, NodeContext, NodeError, Registry, RunRequest, Runner, ToolInfo, loader};
use serde_json::{Value, json};

fn scripted_setup(models: ScriptedModels) -> (Registry, Catalog) {
    Setup {
        models: Arc::new(models),
        ..Setup::default()
    }
    .build()
    .unwrap()
}

#[test]
fn the_catalog_has_fifty_agents_across_all_eight_categories() {
    let (_, catalog) = Setup::default().build().unwrap();
    assert!(catalog.len() >= 50, "{} agents", catalog.len());
    for category in Category::ALL {
        let n = catalog.in_category(category).count();
        assert!(n >= 5, "{category}: {n} agents");
    }
    for agent in catalog.iter() {
        let spec = agent.spec();
        assert!(spec.description.len() > 20, "{}", spec.name);
        assert!(spec.output.is_some(), "{} has no output schema", spec.name);
        assert!(
            spec.example.is_some(),
            "{} has no worked example",
            spec.name
        );
    }
}

/// Each agent, given its example input, sends the model its rendered instructions, exactly
/// its allowed tools and its output schema, and returns the model's (valid) answer.
#[tokio::test]
async fn every_agent_runs_its_worked_example() {
    let (_, plain) = Setup::default().build().unwrap();
    let mut models = ScriptedModels::new();
    for agent in plain.iter() {
        let spec = agent.spec();
        let example = spec.example.clone().unwrap();
        models = models.agent(
            &spec.name,
            ScriptedModel::new(&spec.name).then_json(example.output),
        );
    }
    let models = Arc::new(models);
    let (_, catalog) = Setup {
        models: Arc::clone(&models) as Arc<dyn ModelSource>,
        ..Setup::default()
    }
    .build()
    .unwrap();
    let mut failures = Vec::new();
    for agent in catalog.iter() {
        let spec = agent.spec();
        let example = spec.example.clone().unwrap();
        let ctx = NodeContext::detached(&spec.name);
        // An agent with handoffs answers with messages: its answer as one assistant message.
        let expected = if spec.handoffs.is_empty() {
            example.output.clone()
        } else {
            serde_json::json!([{"role": "assistant", "name": spec.name, "content": example.output.to_string()}])
        };
        match agent.run(example.input.clone(), &ctx).await {
            Ok(out) if out == expected => {}
            Ok(out) => failures.push(format!("{}: returned {out}", spec.name)),
            Err(e) => failures.push(format!("{}: {e}", spec.name)),
        }
        let requests = models.get(&spec.name).unwrap().requests();
        let request = &requests[0];
        let system = &request.messages[0].content;
        let instructions = spec.instructions.render(&example.input).unwrap();
        assert!(system.starts_with(&instructions), "{}", spec.name);
        assert!(
            system.ends_with(&format!("Answer: {}", example.output)),
            "{}: the worked example is shown",
            spec.name
        );
        let offered: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
        // The allowlist, then one `transfer_to_<name>` per handoff.
        let mut allowed: Vec<String> = spec.tools.clone();
        allowed.extend(spec.handoffs.iter().map(|h| {
            format!(
                "transfer_to_{}",
                h.split_once('.').map_or(h.as_str(), |(_, n)| n)
            )
        }));
        assert_eq!(offered, allowed, "{}", spec.name);
        for tool in &request.tools {
            assert!(!tool.description.is_empty(), "{}: {}", spec.name, tool.name);
        }
        assert_eq!(request.output_schema, spec.output, "{}", spec.name);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

const SPEC: &str = r#"
name = "revenue.test_qualifier"
category = "revenue"
description = "A test agent that may only score leads."
instructions = "Qualify {{ input.lead.name }}."
tools = ["leads.score", "test.slow_a", "test.slow_b"]
max_schema_retries = 1

[output]
type = "object"
required = ["qualified"]
additionalProperties = false
properties.qualified = { type = "boolean" }
"#;

/// A registry with the domain tools plus one tool the agent may not call, which counts
/// its calls, and two that wait for each other (they finish only if run concurrently).
fn registry(forbidden_calls: Arc<AtomicUsize>) -> Registry {
    let (mut registry, _) = scripted_setup(ScriptedModels::new());
    registry.register_described_tool(
        "payments.charge",
        ToolInfo::new("Charges a card.", json!({"type": "object"})),
        engine::node_fn(move |_, _| {
            forbidden_calls.fetch_add(1, Ordering::SeqCst);
            Ok(json!({"charged": true}))
        }),
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    for name in ["test.slow_a", "test.slow_b"] {
        registry.register_tool(name, Arc::new(Waits(Arc::clone(&barrier))));
    }
    registry
}

struct Waits(Arc<tokio::sync::Barrier>);

#[async_trait::async_trait]
impl engine::Node for Waits {
    async fn call(&self, input: Value, _: &NodeContext) -> Result<Value, NodeError> {
        tokio::time::timeout(Duration::from_secs(5), self.0.wait())
            .await
            .map_err(|_| NodeError::permanent("the other tool never ran alongside"))?;
        Ok(json!({"echo": input}))
    }
}

fn test_agent(registry: &Registry, model: ScriptedModel) -> (LlmAgent, Arc<ScriptedModels>) {
    let spec = AgentSpec::from_toml(SPEC, "test.toml", &|t| registry.tool(t).is_some()).unwrap();
    let models = Arc::new(ScriptedModels::new().agent("revenue.test_qualifier", model));
    let agent = LlmAgent::new(
        spec,
        registry,
        Arc::clone(&models) as Arc<dyn ModelSource>,
        None,
    )
    .unwrap();
    (agent, models)
}

async fn qualify(agent: &LlmAgent) -> Result<Value, NodeError> {
    agent
        .run(
            json!({"lead": {"name": "Ada"}}),
            &NodeContext::detached("q"),
        )
        .await
}

/// The tool results a request carries back to the model, in order.
fn tool_results(request: &agents::llm::ChatRequest) -> Vec<&str> {
    request
        .messages
        .iter()
        .filter(|m| m.tool_call_id.is_some())
        .map(|m| m.content.as_str())
        .collect()
}

#[tokio::test]
async fn a_tool_outside_the_allowlist_is_refused_whatever_the_model_asks() {
    let charges = Arc::new(AtomicUsize::new(0));
    let registry = registry(Arc::clone(&charges));
    let model = ScriptedModel::new("m")
        .then_tools(&[
            ("payments.charge", json!({"amount_usd": 5000})),
            (
                "leads.score",
                json!({"roof_age_years": 22, "damage_reported": true}),
            ),
        ])
        .then_json(json!({"qualified": true}));
    let (agent, models) = test_agent(&registry, model);
    let out = qualify(&agent).await.unwrap();
    assert_eq!(out, json!({"qualified": true}));
    assert_eq!(charges.load(Ordering::SeqCst), 0, "the forbidden tool ran");

    let second = &models.get("revenue.test_qualifier").unwrap().requests()[1];
    let results = tool_results(second);
    assert!(
        results[0].starts_with("refused: `payments.charge` is not one of your tools"),
        "{}",
        results[0]
    );
    // The allowed call ran and its result went back to the model.
    let score: Value = serde_json::from_str(results[1]).unwrap();
    assert_eq!(score["score"], 45);
    assert!(second.tools.iter().all(|t| t.name != "payments.charge"));
}

#[tokio::test]
async fn tools_requested_together_run_in_parallel() {
    let registry = registry(Arc::new(AtomicUsize::new(0)));
    let model = ScriptedModel::new("m")
        .then_tools(&[
            ("test.slow_a", json!({"n": 1})),
            ("test.slow_b", json!({"n": 2})),
        ])
        .then_json(json!({"qualified": false}));
    let (agent, models) = test_agent(&registry, model);
    let out = qualify(&agent).await.unwrap();
    assert_eq!(out, json!({"qualified": false}));
    let second = &models.get("revenue.test_qualifier").unwrap().requests()[1];
    let results = tool_results(second);
    assert_eq!(results, [r#"{"echo":{"n":1}}"#, r#"{"echo":{"n":2}}"#]);
}

#[tokio::test]
async fn an_invalid_answer_is_sent_back_with_the_error_then_fails_clearly() {
    let registry = registry(Arc::new(AtomicUsize::new(0)));
    // First answer breaks the schema; the fix is accepted.
    let model = ScriptedModel::new("m")
        .then_json(json!({"qualified": "yes"}))
        .then_json(json!({"qualified": true}));
    let (agent, models) = test_agent(&registry, model);
    let out = qualify(&agent).await.unwrap();
    assert_eq!(out, json!({"qualified": true}));
    let retry = &models.get("revenue.test_qualifier").unwrap().requests()[1];
    let feedback = &retry.messages.last().unwrap().content;
    assert!(
        feedback.contains("/qualified") && feedback.contains("boolean"),
        "{feedback}"
    );

    // Never valid: one retry allowed (max_schema_retries = 1), then a permanent error.
    let model = ScriptedModel::new("m")
        .then_text("Sure! The lead looks great.")
        .then_json(json!({"qualified": true, "extra": 1}));
    let (agent, _) = test_agent(&registry, model);
    let err = qualify(&agent).await.unwrap_err();
    let NodeError::Failed { message, retryable } = err else {
        panic!("{err:?}")
    };
    assert!(!retryable);
    assert!(
        message.starts_with("agent `revenue.test_qualifier` gave no valid answer after 2 attempts"),
        "{message}"
    );
    assert!(message.contains("extra"), "{message}");
}

#[tokio::test]
async fn tokens_tool_calls_and_usage_stream_into_the_run_events() {
    let registry = registry(Arc::new(AtomicUsize::new(0)));
    let model = ScriptedModel::new("m")
        .then_tools(&[("leads.score", json!({"roof_age_years": 22}))])
        .then_json(json!({"qualified": true}));
    let (agent, _) = test_agent(&registry, model);
    let mut registry = registry.clone();
    registry.register_agent(
        "revenue.test_qualifier",
        Arc::new(agents::agent::AgentNode(Arc::new(agent))),
    );
    let graph = loader::load_str(
        r#"
[graph]
name = "qualify"
[state]
lead = { type = "object" }
result = { type = "object" }
[nodes.qualify]
agent = "revenue.test_qualifier"
input = { lead = "state.lead" }
output = "result"
[[edges]]
from = "START"
to = "qualify"
[[edges]]
from = "qualify"
to = "END"
"#,
        "qualify.toml",
        &registry,
    )
    .unwrap();
    let runner = Runner::new(Arc::new(graph));
    let (sink, mut stream) = engine::EventSink::channel();
    let outcome = runner
        .run(
            RunRequest::new().input(json!({"lead": {"name": "Ada"}})),
            Some(sink),
        )
        .await;
    assert_eq!(outcome.state["result"], json!({"qualified": true}));
    assert_eq!(outcome.usage.total.calls, 2);
    let mut kinds = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), stream.next()).await
    {
        match event {
            Event::Progress {
                progress: engine::events::Progress::Agent { step, .. },
                ..
            } => kinds.push(step.name().to_string()),
            Event::Usage { .. } => kinds.push("usage".into()),
            _ => {}
        }
    }
    kinds.dedup();
    assert_eq!(
        kinds,
        ["usage", "tool_call", "tool_result", "token", "usage"]
    );
}

#[test]
fn a_bad_spec_in_a_catalog_directory_is_an_error_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("revenue")).unwrap();
    std::fs::write(
        dir.path().join("revenue/pricer.toml"),
        SPEC.replace("test_qualifier", "pricer")
            .replace("\"leads.score\"", "\"leads.scroe\""),
    )
    .unwrap();
    let registry = registry(Arc::new(AtomicUsize::new(0)));
    let models: Arc<dyn ModelSource> = Arc::new(ScriptedModels::new());
    let err = Catalog::new()
        .load_dir(dir.path(), &registry, &models, None)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("revenue/pricer.toml:6:10: error: unknown tool `leads.scroe`"),
        "{text}"
    );

    // The file's place must match the spec's name.
    std::fs::write(dir.path().join("revenue/pricer.toml"), SPEC).unwrap();
    let err = Catalog::new()
        .load_dir(dir.path(), &registry, &models, None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("named `revenue.test_qualifier` but its file says `revenue.pricer`"),
        "{err}"
    );
}

/// An agent with a `memory` spec recalls the memories under its namespace that best match
/// its input and shows them to the model.
#[tokio::test]
async fn an_agent_with_memory_recalls_into_its_prompt() {
    use memory::{
        EmbeddedStore, HashingEmbedder, Kind, LazyMemories, Memories, MemoryStore, Namespace,
    };
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(dir.path().join("m.db"), Arc::new(HashingEmbedder::new(64))).unwrap();
    let memories = Memories::new(Arc::new(store) as Arc<dyn MemoryStore>);
    let ns = Namespace::parse("tenant:acme/customers").unwrap();
    memories
        .remember(
            &ns,
            Kind::Semantic,
            "Ada Park has a large dog; keep the side gate shut",
            serde_json::Map::new(),
            None,
            None,
        )
        .await
        .unwrap();
    memories
        .remember(
            &Namespace::parse("tenant:other/customers").unwrap(),
            Kind::Semantic,
            "Ada Park owes $9,000",
            serde_json::Map::new(),
            None,
            None,
        )
        .await
        .unwrap();
    let spec = SPEC.replace(
        "max_schema_retries = 1",
        "max_schema_retries = 1\nmemory = { namespace = [\"tenant:{{ input.tenant }}\", \"customers\"], recall = 2 }",
    );
    let registry = registry(Arc::new(AtomicUsize::new(0)));
    let spec = AgentSpec::from_toml(&spec, "test.toml", &|t| registry.tool(t).is_some()).unwrap();
    let models = Arc::new(ScriptedModels::new().agent(
        "revenue.test_qualifier",
        ScriptedModel::new("m").then_json(json!({"qualified": true})),
    ));
    let agent = LlmAgent::new(
        spec,
        &registry,
        Arc::clone(&models) as Arc<dyn ModelSource>,
        Some(LazyMemories::ready(memories)),
    )
    .unwrap();
    agent
        .run(
            json!({"tenant": "acme", "lead": {"name": "Ada Park"}}),
            &NodeContext::detached("q"),
        )
        .await
        .unwrap();
    let system = &models.get("revenue.test_qualifier").unwrap().requests()[0].messages[0].content;
    assert!(system.starts_with("Qualify Ada Park."), "{system}");
    assert!(
        system.contains("What you remember:\n- Ada Park has a large dog; keep the side gate shut"),
        "{system}"
    );
    assert!(
        !system.contains("$9,000"),
        "another tenant's memory leaked: {system}"
    );
}

/// `memory.remember` writes one memory per task after a valid answer, holding the input and
/// the answer: the same task run again rewrites its memory, another task adds one, and
/// every memory lands in the tenant's own namespace.
#[tokio::test]
async fn an_agent_remembers_its_answers_once_per_task() {
    use memory::{EmbeddedStore, HashingEmbedder, LazyMemories, Memories, MemoryStore, Namespace};
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MemoryStore> = Arc::new(
        EmbeddedStore::open(dir.path().join("m.db"), Arc::new(HashingEmbedder::new(64))).unwrap(),
    );
    let spec = SPEC.replace(
        "max_schema_retries = 1",
        "max_schema_retries = 1\nmemory = { namespace = [\"tenant:{{ input.tenant }}\", \"leads\"], recall = 0, remember = \"{{ input.lead.name }} qualified: {{ output.qualified }}\" }",
    );
    let registry = registry(Arc::new(AtomicUsize::new(0)));
    let spec = AgentSpec::from_toml(&spec, "test.toml", &|t| registry.tool(t).is_some()).unwrap();
    let models = Arc::new(
        ScriptedModels::new().agent(
            "revenue.test_qualifier",
            ScriptedModel::new("m")
                .then_json(json!({"qualified": true}))
                .then_json(json!({"qualified": true}))
                .then_json(json!({"qualified": false})),
        ),
    );
    let agent = LlmAgent::new(
        spec,
        &registry,
        Arc::clone(&models) as Arc<dyn ModelSource>,
        Some(LazyMemories::ready(Memories::new(Arc::clone(&store)))),
    )
    .unwrap();
    let ada = json!({"tenant": "acme", "lead": {"name": "Ada Park"}});
    let ctx = NodeContext::detached("qualify");
    agent.run(ada.clone(), &ctx).await.unwrap();
    agent.run(ada.clone(), &ctx).await.unwrap();
    let bo = json!({"tenant": "acme", "lead": {"name": "Bo Chen"}});
    agent
        .run(bo, &NodeContext::detached("qualify_again"))
        .await
        .unwrap();

    let hits = store
        .search(&memory::Search::new(Namespace::parse("tenant:acme/leads").unwrap()).limit(10))
        .await
        .unwrap();
    let mut texts: Vec<&str> = hits
        .iter()
        .map(|h| h.item.value["text"].as_str().unwrap())
        .collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["Ada Park qualified: true", "Bo Chen qualified: false"]
    );
    let ada_memory = &hits
        .iter()
        .find(|h| h.item.value["text"] == "Ada Park qualified: true")
        .unwrap()
        .item;
    assert_eq!(ada_memory.key, "detached:0:qualify/memory");
    assert_eq!(ada_memory.value["kind"], "episodic");
    assert_eq!(ada_memory.value["agent"], "revenue.test_qualifier");
    assert_eq!(ada_memory.value["input"], ada);
    assert_eq!(ada_memory.value["output"], json!({"qualified": true}));
    assert_eq!(
        store
            .list_namespaces(&Namespace::parse("tenant:acme").unwrap(), None)
            .await
            .unwrap(),
        [Namespace::parse("tenant:acme/leads").unwrap()]
    );
}
