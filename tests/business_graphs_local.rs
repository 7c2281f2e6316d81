//! Every business graph once with the real local model (SmolLM2-135M, in-process) behind
//! every agent: each run finishes, and every agent's output validates against its spec's
//! output schema. What a 135M model decides is not asserted; that it speaks the contract is.
//! Needs the model file: `eval "$(scripts/local-model.sh)"`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use agents::integrations::{IntegrationConfig, Mode};
use agents::{Catalog, Providers};
use engine::{MemorySaver, Registry, RunRequest, RunStatus, Runner, loader};
use memory::{EmbeddedStore, HashingEmbedder, LazyMemories, Memories, MemoryStore};
use serde_json::{Value, json};

fn setup(dir: &Path) -> (Registry, Catalog) {
    let store =
        EmbeddedStore::open(dir.join("memory.db"), Arc::new(HashingEmbedder::new(64))).unwrap();
    agents::Setup {
        models: Arc::new(Providers::default().for_every_agent(vec!["local:smollm2-135m".into()])),
        memories: Some(LazyMemories::ready(Memories::new(
            Arc::new(store) as Arc<dyn MemoryStore>
        ))),
        integrations: IntegrationConfig::with_vars(Mode::DryRun, |_| None),
        ..agents::Setup::default()
    }
    .build()
    .unwrap()
}

/// Runs `file` with `input`, answering interrupts from `answers` (node -> value), and
/// checks each (state key, agent) output that the run produced against the agent's schema.
async fn run(file: &str, input: Value, answers: &[(&str, Value)], outputs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let (registry, catalog) = setup(dir.path());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("graphs")
        .join(file);
    let graph = loader::load_file(&path, &registry).unwrap_or_else(|e| panic!("{e}"));
    let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::new(MemorySaver::new()));
    let mut outcome = runner
        .invoke(RunRequest::new().thread("local").input(input))
        .await;
    let mut resumes = 0;
    let mut calls = outcome.usage.total.calls;
    while outcome.status == RunStatus::Interrupted {
        let node = outcome.interrupt.as_ref().map(|i| i.node.clone()).unwrap();
        let answer = answers
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, a)| a.clone());
        let answer = answer.unwrap_or_else(|| panic!("{file}: no answer for `{node}`"));
        outcome = runner
            .invoke(RunRequest::new().thread("local").resume(answer))
            .await;
        calls += outcome.usage.total.calls;
        resumes += 1;
        assert!(resumes < 5, "{file}: interrupted again and again");
    }
    assert_eq!(
        outcome.status,
        RunStatus::Done,
        "{file}: {:?}",
        outcome.error
    );
    let mut checked = 0;
    for (key, agent) in outputs {
        let schema = catalog.get(agent).unwrap().spec().output.clone().unwrap();
        let produced: Vec<&Value> = match &outcome.state[*key] {
            Value::Array(items) => items.iter().collect(),
            Value::Object(o) if o.is_empty() => Vec::new(),
            Value::Null => Vec::new(),
            other => vec![other],
        };
        for value in produced {
            if let Err(e) = agents::agent::validate(&schema, value) {
                panic!("{file}: `{key}` from {agent} breaks its schema: {e}\n{value}");
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "{file}: no agent ran");
    assert!(calls >= checked as u64, "{file}: usage was not reported");
    eprintln!("{file}: {checked} agent outputs valid; {calls} model calls");
}

/// One generation at a time: on two cores, parallel generations slow each other down.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_to_proposal_on_the_local_model() {
    let _one = SERIAL.lock().await;
    run(
        "lead_to_proposal.toml",
        json!({"lead": {
        "name": "Ada Park", "email": "ada@example.com", "source": "referral",
        "roof_age_years": 22, "damage_reported": true, "insurance_claim": true,
        "storm_hail_in": 1.25, "timeline_days": 21, "homeowner": true,
        "footprint_sqft": 2000, "pitch": 6, "roof_type": "gable"}}),
        &[("approve", json!("approve"))],
        &[
            ("qualification", "revenue.lead_qualifier"),
            ("proposal", "revenue.proposal_writer"),
            ("follow_up", "revenue.follow_up_writer"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_response_on_the_local_model() {
    let _one = SERIAL.lock().await;
    run("storm_response.toml", json!({
        "storm": {"date": "2026-11-20", "reports": [{"place": "Capitol Hill", "lat": 39.74, "lon": -104.99, "hail_in": 1.75, "wind_mph": 55}]},
        "customers": [{"id": "c1", "name": "Ada Park", "phone": "+15550101", "lat": 39.75, "lon": -104.98, "roof_age_years": 22, "material": "asphalt"}],
        "crews": [{"id": "inspector-1", "lat": 39.70, "lon": -104.95, "skills": ["inspection"]}],
        "days": [{"date": "2026-11-21"}]}),
        &[],
        &[("summary", "industry.storm_report_summarizer"), ("campaign", "marketing.storm_campaign_planner")],
    ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_collections_on_the_local_model() {
    let _one = SERIAL.lock().await;
    run("invoice_collections.toml", json!({
        "customer": {"id": "c-17", "name": "Ada Park", "email": "ada@example.com", "stripe_id": "cus_Q1"},
        "job": {"id": "J-1042", "invoice_id": "INV-1042", "tax_rate_pct": 8, "deposit_usd": 3000, "days_overdue": 20,
            "line_items": [{"description": "Shingles", "quantity": 30, "unit_price_usd": 120}]},
        "payments": [{"id": "p-1", "amount_usd": 100, "invoice": "INV-1042"}]}),
        &[],
        &[("memo", "financial.invoice_drafter"), ("reminder", "financial.collections_follow_up")],
    ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_triage_on_the_local_model() {
    let _one = SERIAL.lock().await;
    run("support_triage.toml", json!({
        "customer": {"id": "c-17", "name": "Cy Ruiz", "email": "cy@example.com", "job": {"install_date": "2026-12-03"}},
        "message": "When is my install?"}),
        &[("human", json!("We will call you today."))],
        &[("triage", "customer.support_triager"), ("draft", "customer.support_responder")],
    ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_incident_on_the_local_model() {
    let _one = SERIAL.lock().await;
    let events: Vec<Value> = (0..12)
        .map(|i| json!({"ts": 1_800_000_000 + i * 10, "ip": "203.0.113.9", "user": "ops", "success": false}))
        .collect();
    run(
        "security_incident.toml",
        json!({"events": events}),
        &[("approve_lock", json!("lock"))],
        &[
            ("triage", "security.suspicious_login_triager"),
            ("notice", "security.incident_notifier"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_campaign_on_the_local_model() {
    let _one = SERIAL.lock().await;
    run(
        "content_campaign.toml",
        json!({"topic": "hail damage roof inspection", "city": "Denver", "month": "March"}),
        &[("review", json!("approve"))],
        &[
            ("brief", "marketing.seo_brief_writer"),
            ("calendar", "marketing.content_calendar_planner"),
            ("posts", "marketing.social_post_writer"),
        ],
    )
    .await;
}

/// The handoff patterns on the local model (it cannot call tools, so each agent chooses a
/// handoff in its answer): the run ends (no agent is offered one the conversation already
/// went through), and the agent that answers speaks its schema.
async fn handoffs_on_the_local_model(file: &str, input: Value) {
    let dir = tempfile::tempdir().unwrap();
    let (registry, catalog) = setup(dir.path());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("graphs")
        .join(file);
    let graph = loader::load_file(&path, &registry).unwrap_or_else(|e| panic!("{e}"));
    let outcome = Runner::new(Arc::new(graph))
        .invoke(RunRequest::new().input(input))
        .await;
    assert_eq!(
        outcome.status,
        RunStatus::Done,
        "{file}: {:?}",
        outcome.error
    );
    let messages = outcome.state["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    let agent = last["name"].as_str().unwrap();
    assert!(
        last.get("handoff").is_none(),
        "{file}: the last message is an answer"
    );
    let answer: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
    let schema = catalog.get(agent).unwrap().spec().output.clone().unwrap();
    if let Err(e) = agents::agent::validate(&schema, &answer) {
        panic!("{file}: the answer of {agent} breaks its schema: {e}\n{answer}");
    }
    eprintln!(
        "{file}: {} handoffs, answered by {agent}",
        messages.len() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_swarm_on_the_local_model() {
    let _one = SERIAL.lock().await;
    handoffs_on_the_local_model(
        "customer_swarm.toml",
        json!({"message": "Can I pay for the new roof in installments?", "job": {"install_date": "2026-12-03"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_supervisor_on_the_local_model() {
    let _one = SERIAL.lock().await;
    handoffs_on_the_local_model(
        "customer_supervisor.toml",
        json!({"message": "When is my install?", "customer": {"name": "Cy Ruiz"},
               "job": {"id": "J-1042", "stage": "materials ordered", "install_date": "2026-12-03"}}),
    )
    .await;
}
