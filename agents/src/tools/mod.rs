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

use engine::{NodeContext, NodeError, Registry, ToolInfo, node_async, node_fn};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A tool: its name, what it does, its argument schema, and the function.
pub struct DomainTool {
    /// The tool's name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its arguments' JSON Schema.
    pub parameters: fn() -> Value,
    /// The tool itself.
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
            node_fn(move |input: Value, _: &NodeContext| {
                check_magnitudes(tool.name, &input, &mut String::new())?;
                run(input)
            }),
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
        "util.sleep",
        ToolInfo::new(
            "Waits `seconds` (at most 300), then returns its arguments: a pause before a follow-up.",
            json!({"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 300}}, "required": ["seconds"]}),
        ),
        node_async(|input: Value, _: NodeContext| async move {
            let seconds = input
                .get("seconds")
                .and_then(Value::as_f64)
                .filter(|s| (0.0..=300.0).contains(s))
                .ok_or_else(|| {
                    NodeError::permanent("util.sleep: `seconds` must be a number from 0 to 300")
                })?;
            tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
            Ok(input)
        }),
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

/// The largest magnitude a number given to a domain tool may have. Products of a few such
/// numbers stay finite, so no result can become infinite (which JSON would carry as `null`,
/// a quote "sent" for null dollars); epoch milliseconds (about 1.8e12) still fit.
pub const MAX_MAGNITUDE: f64 = 1e15;

/// Refuses arguments holding a number beyond [`MAX_MAGNITUDE`], naming its field.
fn check_magnitudes(tool: &str, value: &Value, path: &mut String) -> Result<(), NodeError> {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|x| x.abs() > MAX_MAGNITUDE) => Err(bad(
            tool,
            format!(
                "`{}` = {n} is out of range (at most {MAX_MAGNITUDE:e} in magnitude); check the input",
                if path.is_empty() {
                    "(arguments)"
                } else {
                    path.as_str()
                }
            ),
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_magnitudes(tool, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check_magnitudes(tool, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
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
    fn huge_numbers_are_refused_naming_the_field_before_any_tool_runs() {
        let mut registry = Registry::new();
        register(&mut registry);
        let err = check_magnitudes(
            "roofing.estimate",
            &json!({"area_sqft": 1e308, "pitch": 6}),
            &mut String::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`area_sqft` = 1e+308 is out of range"),
            "{err}"
        );
        let err = check_magnitudes(
            "t",
            &json!({"lines": [{"amount_usd": 1.0}, {"amount_usd": -2e20}]}),
            &mut String::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`lines[1].amount_usd`"), "{err}");
        assert!(
            check_magnitudes("t", &json!({"at_ms": 1.8e12, "n": -5}), &mut String::new()).is_ok()
        );
        // Without the check the estimate comes out as null dollars.
        let estimate = all()
            .into_iter()
            .find(|t| t.name == "roofing.estimate")
            .unwrap();
        let out = (estimate.run)(json!({"area_sqft": 1e308, "pitch": 6}));
        assert!(
            out.map(|v| v["total_usd"].is_null()).unwrap_or(true),
            "the tool itself cannot report infinity"
        );
    }

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
