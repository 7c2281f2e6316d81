//! Deterministic domain tools: numbers are computed, never generated.
//!
//! Agents write the language; these tools do the arithmetic a roofing business cannot get
//! wrong (material takeoffs, quotes, invoice totals), and the judgements that must be
//! repeatable (storm damage likelihood, lead scores, brute-force detection, compliance
//! checklists). Each takes a JSON object, checked against its argument schema, and returns
//! a JSON object; each is registered with a description and that schema, so agents can call
//! it and `brainops tools list` can show it.

mod compliance;
mod finance;
mod leads;
mod roofing;
mod schedule;
mod security;
mod weather;

use engine::{NodeContext, NodeError, Registry, ToolInfo, node_fn};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A tool: its name, what it does, its argument schema, and the function.
pub struct DomainTool {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: fn() -> Value,
    pub run: fn(Value) -> Result<Value, NodeError>,
}

/// Every domain tool.
pub fn all() -> Vec<DomainTool> {
    let mut tools = Vec::new();
    tools.extend(roofing::tools());
    tools.extend(weather::tools());
    tools.extend(schedule::tools());
    tools.extend(finance::tools());
    tools.extend(leads::tools());
    tools.extend(security::tools());
    tools.extend(compliance::tools());
    tools
}

/// Registers the domain tools and the small utilities graphs use.
pub fn register(registry: &mut Registry) {
    for tool in all() {
        let run = tool.run;
        registry.register_described_tool(
            tool.name,
            ToolInfo::new(tool.description, (tool.parameters)()),
            node_fn(move |input: Value, _: &NodeContext| run(input)),
        );
    }
    registry.register_described_tool(
        "util.echo",
        ToolInfo::new(
            "Returns its arguments unchanged.",
            json!({"type": "object"}),
        ),
        node_fn(|input: Value, _: &NodeContext| Ok(input)),
    );
    registry.register_described_tool(
        "util.idempotency_key",
        ToolInfo::new(
            "The task's idempotency key: the same on retry and resume, different for every other task.",
            json!({"type": "object"}),
        ),
        node_fn(|_, ctx: &NodeContext| Ok(json!(ctx.idempotency_key()))),
    );
}

/// Reads a tool's arguments; a wrong or missing field is a permanent error naming it.
pub(crate) fn args<T: DeserializeOwned>(tool: &str, input: Value) -> Result<T, NodeError> {
    serde_json::from_value(input).map_err(|e| {
        NodeError::permanent(format!(
            "{tool}: bad arguments: {e} (`brainops tools list` shows what it takes)"
        ))
    })
}

pub(crate) fn bad(tool: &str, message: impl std::fmt::Display) -> NodeError {
    NodeError::permanent(format!("{tool}: {message}"))
}

/// Money is computed in integer cents, so sums never drift.
pub(crate) fn cents(usd: f64) -> i64 {
    (usd * 100.0).round() as i64
}

pub(crate) fn usd(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// Money and measures are shown to two decimals.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn to_value<T: serde::Serialize>(tool: &str, out: &T) -> Result<Value, NodeError> {
    serde_json::to_value(out).map_err(|e| bad(tool, format!("cannot encode the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_description_and_an_object_schema() {
        let tools = all();
        assert!(tools.len() >= 10, "{}", tools.len());
        for tool in tools {
            assert!(!tool.description.is_empty(), "{}", tool.name);
            let schema = (tool.parameters)();
            assert_eq!(schema["type"], "object", "{}", tool.name);
            assert!(jsonschema::validator_for(&schema).is_ok(), "{}", tool.name);
        }
    }
}
