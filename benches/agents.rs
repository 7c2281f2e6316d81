//! Agent-layer benchmarks, with scripted models so only our code is timed:
//!
//! - one agent call (render, model turn, schema validation) and one with a tool round;
//! - domain tools at realistic sizes: a takeoff, 40 jobs on 6 crews over 10 days,
//!   10,000 login events;
//! - the storm_response business graph end to end (7 nodes, a 4-way fan-out, 2 agents,
//!   recorded integrations).
//!
//!   cargo bench --bench agents

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use agents::agent::{ModelSource, ScriptedModels};
use agents::integrations::{IntegrationConfig, Mode};
use agents::llm::ScriptedModel;
use criterion::{Criterion, criterion_group, criterion_main};
use engine::{NodeContext, Registry, RunRequest, Runner, loader};
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn setup(models: ScriptedModels) -> (Registry, agents::Catalog) {
    agents::Setup {
        models: Arc::new(models) as Arc<dyn ModelSource>,
        integrations: IntegrationConfig::with_vars(Mode::Auto, |_| None),
        ..agents::Setup::default()
    }
    .build()
    .unwrap()
}

fn agent_calls(c: &mut Criterion) {
    let rt = runtime();
    let answer = json!({"likelihood_note": "High.", "inspect": true, "what_to_check": ["Vents"]});
    let input = json!({"property": {"roof_age_years": 18, "material": "asphalt"}, "storm": {"hail_in": 1.5, "wind_mph": 60}});
    let plain = ScriptedModel::new("plain").always_json(answer.clone());
    let (_, catalog) = setup(ScriptedModels::new().agent("industry.hail_damage_analyst", plain));
    let agent = catalog.get("industry.hail_damage_analyst").unwrap().clone();
    let ctx = NodeContext::detached("bench");
    c.bench_function("agent/answer (render, turn, validate)", |b| {
        b.to_async(&rt).iter(|| agent.run(input.clone(), &ctx))
    });

    // Each call: a tool turn (the damage tool runs), then the answer.
    let with_tool = ScriptedModel::new("tool").responding({
        let answer = answer.clone();
        move |request| {
            let mut reply = agents::llm::ChatResponse::empty("tool");
            if request.messages.iter().any(|m| m.tool_call_id.is_some()) {
                reply.text = answer.to_string();
            } else {
                reply.tool_calls = vec![agents::llm::ToolCall {
                    id: "c1".into(),
                    name: "weather.damage_likelihood".into(),
                    arguments: json!({"hail_in": 1.5, "wind_mph": 60, "roof_age_years": 18, "material": "asphalt"}),
                }];
            }
            reply
        }
    });
    let (_, catalog) =
        setup(ScriptedModels::new().agent("industry.hail_damage_analyst", with_tool));
    let agent = catalog.get("industry.hail_damage_analyst").unwrap().clone();
    c.bench_function("agent/tool round + answer", |b| {
        b.to_async(&rt).iter(|| agent.run(input.clone(), &ctx))
    });
}

fn domain_tools(c: &mut Criterion) {
    let rt = runtime();
    let (registry, _) = setup(ScriptedModels::new());
    let ctx = NodeContext::detached("bench");
    let call = |name: &str, args: Value| {
        let tool = registry.tool(name).unwrap().clone();
        let ctx = ctx.clone();
        move || {
            let tool = tool.clone();
            let args = args.clone();
            let ctx = ctx.clone();
            async move { tool.call(args, &ctx).await.unwrap() }
        }
    };
    let takeoff = call(
        "roofing.takeoff",
        json!({"footprint_sqft": 3000, "pitch": 8, "roof_type": "hip"}),
    );
    c.bench_function("tools/roofing.takeoff", |b| b.to_async(&rt).iter(&takeoff));

    let jobs: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("j{i}"), "lat": 39.6 + (i % 7) as f64 * 0.03, "lon": -105.0 + (i % 5) as f64 * 0.04,
                        "skills": if i % 4 == 0 { json!(["metal"]) } else { json!(["shingle"]) }, "priority": i % 3}))
        .collect();
    let crews: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("crew{i}"), "lat": 39.7, "lon": -104.9 - i as f64 * 0.05,
                        "skills": if i < 2 { json!(["shingle", "metal"]) } else { json!(["shingle"]) }}))
        .collect();
    let days: Vec<Value> = (1..=10)
        .map(|d| json!({"date": format!("2026-12-{d:02}"), "workable": d % 4 != 0}))
        .collect();
    let schedule = call(
        "operations.schedule_crews",
        json!({"jobs": jobs, "crews": crews, "days": days}),
    );
    c.bench_function(
        "tools/operations.schedule_crews 40 jobs x 6 crews x 10 days",
        |b| b.to_async(&rt).iter(&schedule),
    );

    let events: Vec<Value> = (0..10_000)
        .map(|i| json!({"ts": 1_800_000_000 + i * 3, "ip": format!("10.0.{}.{}", i % 50, i % 7), "user": format!("user{}", i % 300), "success": i % 9 == 0}))
        .collect();
    let detect = call("security.detect_bruteforce", json!({"events": events}));
    c.bench_function("tools/security.detect_bruteforce 10k events", |b| {
        b.to_async(&rt).iter(&detect)
    });
}

fn business_graph(c: &mut Criterion) {
    let rt = runtime();
    let models = ScriptedModels::new()
        .agent(
            "industry.storm_report_summarizer",
            ScriptedModel::new("s").always_json(
                json!({"summary": "Hail.", "worst_areas": ["Aurora"], "hail_max_in": 1.75}),
            ),
        )
        .agent(
            "marketing.storm_campaign_planner",
            ScriptedModel::new("p").always_json(
                json!({"audience": "a", "message": "m", "channels": ["sms"], "send_window": "w"}),
            ),
        );
    let (registry, _) = setup(models);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/storm_response.toml");
    let graph = Arc::new(loader::load_file(&path, &registry).unwrap());
    let input: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/storm_response.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let runner = Runner::new(graph);
    c.bench_function("graph/storm_response end to end (scripted models)", |b| {
        b.to_async(&rt)
            .iter(|| runner.invoke(RunRequest::new().input(input.clone())))
    });
}

criterion_group!(benches, agent_calls, domain_tools, business_graph);
criterion_main!(benches);
