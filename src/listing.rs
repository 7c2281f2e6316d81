//! The agent catalog as JSON: one shape for `brainops agents list|show` and the console's
//! `/agents` pages.

use engine::Registry;
use serde_json::{Value, json};

/// One line of the catalog: name, category, description, tools, model chain.
pub fn agent_summary(spec: &agents::AgentSpec) -> Value {
    json!({"name": spec.name, "category": spec.category, "description": spec.description,
           "tools": spec.tools, "models": spec.models})
}

/// An agent's whole spec: its instructions, tools with their argument schemas, output
/// schema, model chain, memory and worked example.
pub fn agent_detail(spec: &agents::AgentSpec, registry: &Registry) -> Value {
    let tools: Vec<Value> = spec
        .tools
        .iter()
        .map(|t| match registry.tool_info(t) {
            Some(info) => {
                json!({"name": t, "description": info.description, "parameters": info.parameters})
            }
            None => json!({"name": t}),
        })
        .collect();
    let memory = spec.memory.as_ref().map(|m| {
        json!({"namespace": m.namespace.iter().map(|t| t.source()).collect::<Vec<_>>(), "recall": m.recall})
    });
    json!({
        "name": spec.name,
        "category": spec.category,
        "description": spec.description,
        "models": spec.models,
        "temperature": spec.temperature.map(|t| (f64::from(t) * 1000.0).round() / 1000.0),
        "max_tokens": spec.max_tokens,
        "max_tool_rounds": spec.max_tool_rounds,
        "max_schema_retries": spec.max_schema_retries,
        "tools": tools,
        "handoffs": spec.handoffs,
        "instructions": spec.instructions.source().trim(),
        "output": spec.output,
        "memory": memory,
        "example": spec.example,
        "file": spec.file,
    })
}

/// Every agent of the catalog in full, in catalog order.
pub fn catalog_detail(catalog: &agents::Catalog, registry: &Registry) -> Vec<Value> {
    catalog
        .iter()
        .map(|a| agent_detail(a.spec(), registry))
        .collect()
}
