//! Deterministic tools: numbers are computed, never generated.

use engine::{NodeContext, NodeError, Registry, node_fn};
use serde_json::{Value, json};

/// Registers the built-in tools.
pub fn register(registry: &mut Registry) {
    registry.register_tool("roofing.estimate", node_fn(roof_estimate));
    registry.register_tool(
        "util.echo",
        node_fn(|input: Value, _: &NodeContext| Ok(input)),
    );
    registry.register_tool(
        "util.idempotency_key",
        node_fn(|_, ctx: &NodeContext| Ok(json!(ctx.idempotency_key()))),
    );
}

fn number(input: &Value, key: &str) -> Result<f64, NodeError> {
    input.get(key).and_then(Value::as_f64).ok_or_else(|| {
        NodeError::permanent(format!(
            "`{key}` must be a number, got {}",
            input.get(key).map_or("nothing".into(), Value::to_string)
        ))
    })
}

/// A replacement estimate for an asphalt-shingle roof from its footprint and pitch.
///
/// The pitch factor is the slope length per unit of run, `sqrt(1 + (rise/12)^2)`; a
/// "square" is 100 sq ft of roof surface; 10% waste is added and three bundles cover a
/// square. Price per square defaults to $450 (materials and labour).
fn roof_estimate(input: Value, _: &NodeContext) -> Result<Value, NodeError> {
    let area = number(&input, "area_sqft")?;
    let pitch = number(&input, "pitch")?;
    if area.is_nan() || area <= 0.0 {
        return Err(NodeError::permanent("`area_sqft` must be positive"));
    }
    if !(0.0..=24.0).contains(&pitch) {
        return Err(NodeError::permanent(
            "`pitch` is the rise in inches per 12 of run, between 0 and 24",
        ));
    }
    let price_per_square = input
        .get("price_per_square")
        .and_then(Value::as_f64)
        .unwrap_or(450.0);
    let factor = (1.0 + (pitch / 12.0).powi(2)).sqrt();
    let squares = area * factor / 100.0;
    let with_waste = squares * 1.10;
    let bundles = (with_waste * 3.0).ceil();
    let total = (with_waste * price_per_square * 100.0).round() / 100.0;
    Ok(json!({
        "pitch_factor": (factor * 1000.0).round() / 1000.0,
        "squares": (squares * 100.0).round() / 100.0,
        "squares_with_waste": (with_waste * 100.0).round() / 100.0,
        "bundles": bundles,
        "total_usd": total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_of_a_2000_sqft_6_12_roof() {
        let out = roof_estimate(
            json!({"area_sqft": 2000, "pitch": 6}),
            &NodeContext::detached("t"),
        )
        .unwrap();
        // sqrt(1 + 0.25) = 1.118; 2000 * 1.118 / 100 = 22.36 squares; +10% = 24.60; 74 bundles
        assert_eq!(out["pitch_factor"], 1.118);
        assert_eq!(out["squares"], 22.36);
        assert_eq!(out["bundles"], 74.0);
    }

    #[test]
    fn rejects_a_missing_area() {
        let err = roof_estimate(json!({"pitch": 6}), &NodeContext::detached("t")).unwrap_err();
        assert!(err.to_string().contains("area_sqft"));
    }
}
