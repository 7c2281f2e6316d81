//! Roof measurement, material takeoff and quotes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DomainTool, args, bad, cents, round2, to_value, usd};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![
        DomainTool {
            name: "roofing.estimate",
            description: "Quick replacement estimate for an asphalt-shingle roof from its footprint and pitch: squares with 10% waste, bundles, price at $/square.",
            parameters: || {
                json!({"type": "object", "required": ["area_sqft", "pitch"], "properties": {
                    "area_sqft": {"type": "number", "exclusiveMinimum": 0, "description": "footprint in sq ft"},
                    "pitch": {"type": "number", "minimum": 0, "maximum": 24, "description": "rise in inches per 12 of run"},
                    "price_per_square": {"type": "number", "description": "materials and labour per square, default 450"}}})
            },
            run: estimate,
        },
        DomainTool {
            name: "roofing.takeoff",
            description: "Material takeoff: pitch factor, roof area, squares, waste by roof type, shingle bundles, underlayment rolls, ridge cap, drip edge, ice-and-water shield. Edge lengths not given are derived from a 1.5:1 rectangular footprint.",
            parameters: || {
                json!({"type": "object", "required": ["footprint_sqft", "pitch"], "properties": {
                    "footprint_sqft": {"type": "number", "exclusiveMinimum": 0},
                    "pitch": {"type": "number", "minimum": 0, "maximum": 24},
                    "roof_type": {"enum": ["gable", "hip", "complex", "flat"]},
                    "eaves_ft": {"type": "number", "minimum": 0},
                    "rakes_ft": {"type": "number", "minimum": 0},
                    "ridge_ft": {"type": "number", "minimum": 0},
                    "hips_ft": {"type": "number", "minimum": 0},
                    "valleys_ft": {"type": "number", "minimum": 0}}})
            },
            run: takeoff,
        },
        DomainTool {
            name: "roofing.quote",
            description: "Price quote from costs: price = cost / (1 - margin), sales tax on materials (default), on everything, or none; all money in cents-exact USD.",
            parameters: || {
                json!({"type": "object", "required": ["materials_usd", "labor_usd", "margin_pct"], "properties": {
                    "materials_usd": {"type": "number", "minimum": 0},
                    "labor_usd": {"type": "number", "minimum": 0},
                    "other_usd": {"type": "number", "minimum": 0},
                    "margin_pct": {"type": "number", "minimum": 0, "exclusiveMaximum": 95},
                    "tax_rate_pct": {"type": "number", "minimum": 0, "maximum": 25},
                    "tax_on": {"enum": ["materials", "all", "none"]}}})
            },
            run: quote,
        },
    ]
}

fn number(input: &Value, key: &str) -> Result<f64, NodeError> {
    input.get(key).and_then(Value::as_f64).ok_or_else(|| {
        bad(
            "roofing.estimate",
            format!(
                "`{key}` must be a number, got {}",
                input.get(key).map_or("nothing".into(), Value::to_string)
            ),
        )
    })
}

/// The slope length per unit of run: `sqrt(1 + (rise/12)^2)`.
fn pitch_factor(pitch: f64) -> f64 {
    (1.0 + (pitch / 12.0).powi(2)).sqrt()
}

/// A "square" is 100 sq ft of roof surface; 10% waste is added and three bundles cover a
/// square. Price per square defaults to $450 (materials and labour).
fn estimate(input: Value) -> Result<Value, NodeError> {
    let area = number(&input, "area_sqft")?;
    let pitch = number(&input, "pitch")?;
    if area.is_nan() || area <= 0.0 {
        return Err(bad("roofing.estimate", "`area_sqft` must be positive"));
    }
    if !(0.0..=24.0).contains(&pitch) {
        return Err(bad(
            "roofing.estimate",
            "`pitch` is the rise in inches per 12 of run, between 0 and 24",
        ));
    }
    let price_per_square = input
        .get("price_per_square")
        .and_then(Value::as_f64)
        .unwrap_or(450.0);
    let factor = pitch_factor(pitch);
    let squares = area * factor / 100.0;
    let with_waste = squares * 1.10;
    let bundles = (with_waste * 3.0).ceil();
    Ok(json!({
        "pitch_factor": (factor * 1000.0).round() / 1000.0,
        "squares": round2(squares),
        "squares_with_waste": round2(with_waste),
        "bundles": bundles,
        "total_usd": round2(with_waste * price_per_square),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeoffArgs {
    footprint_sqft: f64,
    pitch: f64,
    #[serde(default)]
    roof_type: RoofType,
    eaves_ft: Option<f64>,
    rakes_ft: Option<f64>,
    ridge_ft: Option<f64>,
    hips_ft: Option<f64>,
    valleys_ft: Option<f64>,
}

#[derive(Deserialize, Serialize, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "snake_case")]
enum RoofType {
    #[default]
    Gable,
    Hip,
    Complex,
    Flat,
}

impl RoofType {
    /// Cut-off waste: hips and valleys cut more shingles than a plain gable.
    fn waste(self) -> f64 {
        match self {
            RoofType::Flat => 0.05,
            RoofType::Gable => 0.10,
            RoofType::Hip => 0.15,
            RoofType::Complex => 0.20,
        }
    }
}

#[derive(Serialize)]
struct Takeoff {
    roof_type: RoofType,
    pitch_factor: f64,
    roof_area_sqft: f64,
    squares: f64,
    waste_pct: f64,
    squares_with_waste: f64,
    shingle_bundles: u64,
    underlayment_rolls: u64,
    ridge_cap_bundles: u64,
    drip_edge_pieces: u64,
    ice_water_rolls: u64,
    eaves_ft: f64,
    rakes_ft: f64,
    ridge_ft: f64,
    hips_ft: f64,
    valleys_ft: f64,
    /// Edge lengths derived from the footprint rather than measured.
    assumed_edges: Vec<&'static str>,
}

const BUNDLES_PER_SQUARE: f64 = 3.0;
const SQUARES_PER_UNDERLAYMENT_ROLL: f64 = 10.0;
const RIDGE_CAP_FT_PER_BUNDLE: f64 = 25.0;
const DRIP_EDGE_FT_PER_PIECE: f64 = 10.0;
const ICE_WATER_FT_PER_ROLL: f64 = 66.0;

fn takeoff(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "roofing.takeoff";
    let a: TakeoffArgs = args(TOOL, input)?;
    if !(a.footprint_sqft.is_finite() && a.footprint_sqft > 0.0) {
        return Err(bad(TOOL, "`footprint_sqft` must be positive"));
    }
    if !(0.0..=24.0).contains(&a.pitch) {
        return Err(bad(TOOL, "`pitch` is the rise per 12 of run, 0 to 24"));
    }
    let roof_type = if a.pitch < 2.0 {
        RoofType::Flat
    } else {
        a.roof_type
    };
    let pf = pitch_factor(a.pitch);
    let area = a.footprint_sqft * pf;
    let squares = area / 100.0;
    let waste = roof_type.waste();
    let with_waste = squares * (1.0 + waste);

    // Without measured edges, the footprint is taken as a 1.5:1 rectangle.
    let length = (a.footprint_sqft * 1.5).sqrt();
    let width = a.footprint_sqft / length;
    let half = width / 2.0;
    let hipped = matches!(roof_type, RoofType::Hip | RoofType::Complex);
    let mut assumed = Vec::new();
    let mut edge = |given: Option<f64>, name: &'static str, derived: f64| {
        given.unwrap_or_else(|| {
            assumed.push(name);
            derived
        })
    };
    let eaves = edge(
        a.eaves_ft,
        "eaves_ft",
        if hipped || roof_type == RoofType::Flat {
            2.0 * (length + width)
        } else {
            2.0 * length
        },
    );
    let rakes = edge(
        a.rakes_ft,
        "rakes_ft",
        if hipped || roof_type == RoofType::Flat {
            0.0
        } else {
            2.0 * width * pf
        },
    );
    let ridge = edge(
        a.ridge_ft,
        "ridge_ft",
        match roof_type {
            RoofType::Flat => 0.0,
            RoofType::Gable => length,
            _ => length - width,
        },
    );
    let hip_length = (2.0 * half * half + (half * a.pitch / 12.0).powi(2)).sqrt();
    let hips = edge(
        a.hips_ft,
        "hips_ft",
        if hipped { 4.0 * hip_length } else { 0.0 },
    );
    let valleys = a.valleys_ft.unwrap_or(0.0);

    let shingles = if roof_type == RoofType::Flat {
        0
    } else {
        (with_waste * BUNDLES_PER_SQUARE).ceil() as u64
    };
    let out = Takeoff {
        roof_type,
        pitch_factor: (pf * 1000.0).round() / 1000.0,
        roof_area_sqft: round2(area),
        squares: round2(squares),
        waste_pct: waste * 100.0,
        squares_with_waste: round2(with_waste),
        shingle_bundles: shingles,
        underlayment_rolls: (with_waste / SQUARES_PER_UNDERLAYMENT_ROLL).ceil() as u64,
        ridge_cap_bundles: ((ridge + hips) / RIDGE_CAP_FT_PER_BUNDLE).ceil() as u64,
        drip_edge_pieces: ((eaves + rakes) * 1.05 / DRIP_EDGE_FT_PER_PIECE).ceil() as u64,
        ice_water_rolls: ((eaves + valleys) / ICE_WATER_FT_PER_ROLL).ceil() as u64,
        eaves_ft: round2(eaves),
        rakes_ft: round2(rakes),
        ridge_ft: round2(ridge),
        hips_ft: round2(hips),
        valleys_ft: round2(valleys),
        assumed_edges: assumed,
    };
    to_value(TOOL, &out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteArgs {
    materials_usd: f64,
    labor_usd: f64,
    #[serde(default)]
    other_usd: f64,
    margin_pct: f64,
    #[serde(default)]
    tax_rate_pct: f64,
    #[serde(default)]
    tax_on: TaxOn,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
enum TaxOn {
    #[default]
    Materials,
    All,
    None,
}

fn quote(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "roofing.quote";
    let a: QuoteArgs = args(TOOL, input)?;
    for (name, v) in [
        ("materials_usd", a.materials_usd),
        ("labor_usd", a.labor_usd),
        ("other_usd", a.other_usd),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(bad(TOOL, format!("`{name}` must be zero or more")));
        }
    }
    if !(0.0..95.0).contains(&a.margin_pct) {
        return Err(bad(
            TOOL,
            "`margin_pct` is the share of the price kept as gross profit, 0 to under 95",
        ));
    }
    if !(0.0..=25.0).contains(&a.tax_rate_pct) {
        return Err(bad(TOOL, "`tax_rate_pct` must be 0 to 25"));
    }
    let cost = cents(a.materials_usd) + cents(a.labor_usd) + cents(a.other_usd);
    if cost == 0 {
        return Err(bad(
            TOOL,
            "the costs add up to zero; there is nothing to price",
        ));
    }
    let price = (cost as f64 / (1.0 - a.margin_pct / 100.0)).round() as i64;
    let taxable = match a.tax_on {
        TaxOn::Materials => {
            (price as f64 * cents(a.materials_usd) as f64 / cost as f64).round() as i64
        }
        TaxOn::All => price,
        TaxOn::None => 0,
    };
    let tax = (taxable as f64 * a.tax_rate_pct / 100.0).round() as i64;
    Ok(json!({
        "cost_usd": usd(cost),
        "price_usd": usd(price),
        "gross_profit_usd": usd(price - cost),
        "margin_pct": round2((price - cost) as f64 * 100.0 / price as f64),
        "markup_pct": round2((price - cost) as f64 * 100.0 / cost as f64),
        "taxable_usd": usd(taxable),
        "tax_usd": usd(tax),
        "total_usd": usd(price + tax),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_of_a_2000_sqft_6_12_roof() {
        let out = estimate(json!({"area_sqft": 2000, "pitch": 6})).unwrap();
        // sqrt(1 + 0.25) = 1.118; 2000 * 1.118 / 100 = 22.36 squares; +10% = 24.60; 74 bundles
        assert_eq!(out["pitch_factor"], 1.118);
        assert_eq!(out["squares"], 22.36);
        assert_eq!(out["bundles"], 74.0);
    }

    #[test]
    fn estimate_rejects_a_missing_area() {
        let err = estimate(json!({"pitch": 6})).unwrap_err();
        assert!(err.to_string().contains("area_sqft"));
    }

    #[test]
    fn takeoff_of_a_2000_sqft_6_12_gable() {
        let out = takeoff(json!({"footprint_sqft": 2000, "pitch": 6})).unwrap();
        // 2000 * 1.118 = 2236.07 sq ft = 22.36 squares; +10% = 24.60 -> 73.8 -> 74 bundles
        assert_eq!(out["roof_area_sqft"], 2236.07);
        assert_eq!(out["squares_with_waste"], 24.6);
        assert_eq!(out["shingle_bundles"], 74);
        assert_eq!(out["underlayment_rolls"], 3);
        // 1.5:1 rectangle: 54.77 x 36.51 ft; ridge 54.77 ft -> 3 bundles of ridge cap
        assert_eq!(out["ridge_ft"], 54.77);
        assert_eq!(out["ridge_cap_bundles"], 3);
        // eaves 109.54 + rakes 2 * 36.51 * 1.118 = 81.65; * 1.05 / 10 -> 21 pieces
        assert_eq!(out["rakes_ft"], 81.65);
        assert_eq!(out["drip_edge_pieces"], 21);
        assert_eq!(out["ice_water_rolls"], 2);
        assert_eq!(
            out["assumed_edges"],
            json!(["eaves_ft", "rakes_ft", "ridge_ft", "hips_ft"])
        );
    }

    #[test]
    fn takeoff_of_a_measured_hip_roof_uses_15_percent_waste() {
        let out = takeoff(json!({
            "footprint_sqft": 3000, "pitch": 8, "roof_type": "hip",
            "eaves_ft": 240, "rakes_ft": 0, "ridge_ft": 30, "hips_ft": 120, "valleys_ft": 20
        }))
        .unwrap();
        // sqrt(1 + (8/12)^2) = 1.2019; 3000 * 1.2019 = 3605.55 sq ft; * 1.15 = 41.46 sq
        assert_eq!(out["pitch_factor"], 1.202);
        assert_eq!(out["waste_pct"], 15.0);
        assert_eq!(out["squares_with_waste"], 41.46);
        assert_eq!(out["shingle_bundles"], 125);
        // (30 + 120) / 25 = 6 ridge-cap bundles; (240 + 20) / 66 -> 4 rolls
        assert_eq!(out["ridge_cap_bundles"], 6);
        assert_eq!(out["ice_water_rolls"], 4);
        assert_eq!(out["assumed_edges"], json!([]));
    }

    #[test]
    fn a_low_slope_roof_needs_no_shingles() {
        let out =
            takeoff(json!({"footprint_sqft": 1000, "pitch": 1, "roof_type": "gable"})).unwrap();
        assert_eq!(out["roof_type"], "flat");
        assert_eq!(out["shingle_bundles"], 0);
    }

    #[test]
    fn takeoff_names_an_unknown_field() {
        let err = takeoff(json!({"footprint_sqft": 1000, "pitch": 6, "pich": 6})).unwrap_err();
        assert!(err.to_string().contains("unknown field `pich`"), "{err}");
    }

    #[test]
    fn quote_with_30_percent_margin_and_tax_on_materials() {
        let out = quote(json!({
            "materials_usd": 6000, "labor_usd": 4000, "margin_pct": 30, "tax_rate_pct": 8.25
        }))
        .unwrap();
        // 10000 / 0.7 = 14285.71; materials are 60% of it = 8571.43; tax 8.25% = 707.14
        assert_eq!(out["price_usd"], 14285.71);
        assert_eq!(out["taxable_usd"], 8571.43);
        assert_eq!(out["tax_usd"], 707.14);
        assert_eq!(out["total_usd"], 14992.85);
        assert_eq!(out["gross_profit_usd"], 4285.71);
        assert_eq!(out["margin_pct"], 30.0);
        assert_eq!(out["markup_pct"], 42.86);
    }

    #[test]
    fn quote_refuses_a_margin_of_100_percent() {
        let err =
            quote(json!({"materials_usd": 1, "labor_usd": 1, "margin_pct": 100})).unwrap_err();
        assert!(err.to_string().contains("margin_pct"), "{err}");
    }
}
