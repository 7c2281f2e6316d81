//! The library as a backend embeds it: `brainops::Engine`, stores opened from URLs, async
//! closure nodes, streamed runs with their outcome, and the built-in agents compiled on
//! their first call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brainops::memory;
use brainops::{Engine, EngineError, Event, RunRequest, RunStatus, node_async};
use serde_json::{Value, json};

const COUNTER: &str = r#"
[graph]
name = "counter"
[state]
count = { type = "integer", default = 0 }
note = { type = "object" }
[nodes.bump]
set = { count = "state.count + 1" }
[nodes.note]
tool = "crm.note"
args = { count = "state.count" }
output = "note"
[[edges]]
from = "START"
to = "bump"
[[edges]]
from = "bump"
to = "note"
[[edges]]
from = "note"
to = "END"
"#;

/// An agent spec that may call the embedder's own tool `crm.lookup`.
const SPEC: &str = r#"
name = "customer.crm_reader"
category = "customer"
description = "Looks a customer up in the CRM."
instructions = "Look up {{ input.id }}."
tools = ["crm.lookup"]
model = ["local:smollm2-135m"]
[output]
type = "object"
properties.found = { type = "boolean" }
"#;

#[tokio::test]
async fn an_async_closure_tool_runs_and_the_stream_ends_with_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counter.toml"), COUNTER).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let engine = Engine::builder()
        .without_catalog()
        .tool(
            "crm.note",
            node_async(move |input: Value, ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    tokio::task::yield_now().await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(json!({"count": input["count"], "node": ctx.node()}))
                }
            }),
        )
        .graphs(dir.path())
        .build()
        .await
        .unwrap();
    let runner = engine.runner("counter").unwrap();
    let mut run = runner.stream(RunRequest::new().thread("t1").input(json!({})));
    let mut events = Vec::new();
    while let Some(event) = run.next().await {
        events.push(event);
    }
    let outcome = run.outcome().await;
    assert_eq!(outcome.status, RunStatus::Done, "{:?}", outcome.error);
    assert_eq!(outcome.state["note"], json!({"count": 1, "node": "note"}));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished {
            status: RunStatus::Done,
            ..
        })
    ));
    // The engine's store kept the thread: history and state read back.
    assert_eq!(runner.history("t1").await.unwrap().len(), 3);
    assert_eq!(runner.state("t1", None).await.unwrap().values["count"], 1);
}

#[tokio::test]
async fn a_tool_given_to_the_builder_is_offered_to_agent_specs() {
    let agents = tempfile::tempdir().unwrap();
    std::fs::create_dir(agents.path().join("customer")).unwrap();
    std::fs::write(agents.path().join("customer/crm_reader.toml"), SPEC).unwrap();
    let lookup = || node_async(|_input: Value, _ctx| async { Ok(json!({"found": true})) });

    // Without the tool, the spec names what it is missing.
    let missing = Engine::builder()
        .agent_dir(agents.path())
        .build()
        .await
        .err()
        .expect("a spec whose tool does not exist");
    assert!(matches!(missing, EngineError::Catalog(_)), "{missing}");
    assert!(missing.to_string().contains("crm.lookup"), "{missing}");

    // Given to the builder (in any order with the catalog), the spec compiles against it.
    let engine = Engine::builder()
        .agent_dir(agents.path())
        .tool("crm.lookup", lookup())
        .build()
        .await
        .unwrap();
    assert!(engine.registry().agent("customer.crm_reader").is_some());
    assert!(
        engine
            .registry()
            .agent("customer.support_triager")
            .is_some()
    );
    assert!(engine.registry().tool("crm.lookup").is_some());
    let (registry, catalog) = Engine::builder()
        .agent_dir(agents.path())
        .tool("crm.lookup", lookup())
        .catalog()
        .unwrap();
    assert_eq!(
        catalog.get("customer.crm_reader").unwrap().spec().tools,
        ["crm.lookup"]
    );
    assert!(catalog.len() > 50, "the built-in catalog is there too");
    assert!(registry.tool("crm.lookup").is_some());
}

#[tokio::test]
async fn graph_names_are_unique_in_a_directory_and_unknown_names_list_the_known() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), COUNTER).unwrap();
    std::fs::write(dir.path().join("b.toml"), COUNTER).unwrap();
    let note = node_async(|input: Value, _ctx| async move { Ok(input) });
    let twice = Engine::builder()
        .without_catalog()
        .tool("crm.note", Arc::clone(&note))
        .graphs(dir.path())
        .build()
        .await
        .err()
        .expect("two files declare `counter`");
    assert!(
        matches!(&twice, EngineError::DuplicateGraph { name, .. } if name == "counter"),
        "{twice}"
    );

    std::fs::remove_file(dir.path().join("b.toml")).unwrap();
    let engine = Engine::builder()
        .without_catalog()
        .tool("crm.note", note)
        .graphs(dir.path())
        .build()
        .await
        .unwrap();
    let unknown = engine.runner("countr").err().unwrap();
    assert_eq!(
        unknown.to_string(),
        "no graph named `countr`; loaded: counter"
    );
}

#[tokio::test]
async fn every_graph_in_graphs_loads_against_the_lazy_catalog() {
    let engine = Engine::builder()
        .graphs(concat!(env!("CARGO_MANIFEST_DIR"), "/graphs"))
        .build()
        .await
        .unwrap();
    let names: Vec<&str> = engine.graphs().map(|(n, _)| n).collect();
    assert!(names.contains(&"lead_to_proposal"), "{names:?}");
    assert!(names.contains(&"support_triage"), "{names:?}");
}

#[tokio::test]
async fn checkpointers_open_from_every_url_form() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("threads.db");
    for url in [
        "memory".to_string(),
        format!("sqlite:{}", file.display()),
        dir.path().join("plain.db").display().to_string(),
    ] {
        let store = brainops::open_checkpointer(&url).await.unwrap();
        assert!(store.threads().await.unwrap().is_empty(), "{url}");
    }
    assert!(file.exists());

    let bad = brainops::open_checkpointer("redis://u:hunter2@x")
        .await
        .err()
        .unwrap();
    assert!(bad.bad_input);
    assert!(bad.to_string().contains("is not a store"), "{bad}");
    assert!(!bad.to_string().contains("hunter2"), "{bad}");
    let empty = brainops::open_checkpointer("sqlite:").await.err().unwrap();
    assert!(empty.to_string().contains("path is empty"), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_checkpointer_and_memory_open_from_their_urls() {
    let name = pg::fresh_database().await;
    let url = pg::with_database(&pg::admin_url(), &name);
    let store = brainops::open_checkpointer(&url).await.unwrap();
    assert!(store.threads().await.unwrap().is_empty());

    let memories = brainops::open_memory(&url, "local").await.unwrap();
    let ns = memory::Namespace::parse("tenant:acme/notes").unwrap();
    let tenant = memories.for_tenant(ns.tenant().unwrap()).unwrap();
    tenant
        .store()
        .put(
            &ns,
            "k1",
            json!({"text": "Ada prefers morning calls"}),
            Default::default(),
        )
        .await
        .unwrap();
    assert!(tenant.store().get(&ns, "k1").await.unwrap().is_some());

    let down = brainops::open_checkpointer("postgres://postgres:secret@127.0.0.1:1/x")
        .await
        .err()
        .unwrap();
    assert!(!down.bad_input);
    assert!(!down.to_string().contains("secret"), "{down}");
}

#[tokio::test]
async fn a_builtin_agent_compiles_on_its_first_call_and_runs() {
    if std::env::var_os("BRAINOPS_LOCAL_MODEL").is_none() {
        eprintln!("skipped: BRAINOPS_LOCAL_MODEL is not set (scripts/local-model.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("triage.toml"),
        r#"
[graph]
name = "triage"
[state]
message = { type = "string", required = true }
triage = { type = "object" }
[nodes.triage]
agent = "customer.support_triager"
input = { message = "state.message", customer = "{'name': 'Cy Ruiz'}" }
output = "triage"
[[edges]]
from = "START"
to = "triage"
[[edges]]
from = "triage"
to = "END"
"#,
    )
    .unwrap();
    let engine = Engine::builder()
        .models(["local:smollm2-135m"])
        .graphs(dir.path())
        .build()
        .await
        .unwrap();
    let outcome = engine
        .runner("triage")
        .unwrap()
        .invoke(RunRequest::new().input(json!({"message": "Can you confirm my install date?"})))
        .await;
    assert_eq!(outcome.status, RunStatus::Done, "{:?}", outcome.error);
    let category = outcome.state["triage"]["category"].as_str().unwrap();
    assert!(
        [
            "billing",
            "scheduling",
            "warranty",
            "leak_emergency",
            "estimate",
            "other"
        ]
        .contains(&category),
        "{category}"
    );
    assert_eq!(outcome.usage.total.calls, 1);
}
