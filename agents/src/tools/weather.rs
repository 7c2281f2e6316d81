//! Storm damage: how likely hail and wind damaged a roof, and which customers a storm hit.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DomainTool, args, bad, round2, to_value};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![
        DomainTool {
            name: "weather.damage_likelihood",
            description: "Likelihood (0-1) that hail and wind damaged a roof, from hail size, wind speed, roof age and material, with the reasons.",
            parameters: || {
                json!({"type": "object", "required": ["material"], "properties": {
                    "hail_in": {"type": "number", "minimum": 0, "description": "largest hail diameter, inches"},
                    "wind_mph": {"type": "number", "minimum": 0, "description": "peak gust"},
                    "roof_age_years": {"type": "number", "minimum": 0},
                    "material": {"enum": MATERIALS}}})
            },
            run: damage_likelihood,
        },
        DomainTool {
            name: "weather.affected_customers",
            description: "Customers within `radius_miles` of any storm report, each with the worst hail and wind near them and their roof's damage likelihood, most likely first.",
            parameters: || {
                json!({"type": "object", "required": ["reports", "customers"], "properties": {
                    "reports": {"type": "array", "items": {"type": "object", "required": ["lat", "lon"], "properties": {
                        "lat": {"type": "number"}, "lon": {"type": "number"},
                        "hail_in": {"type": "number", "minimum": 0}, "wind_mph": {"type": "number", "minimum": 0}}}},
                    "customers": {"type": "array", "items": {"type": "object", "required": ["id", "lat", "lon", "material"], "properties": {
                        "id": {}, "name": {"type": "string"}, "lat": {"type": "number"}, "lon": {"type": "number"},
                        "roof_age_years": {"type": "number"}, "material": {"enum": MATERIALS}}}},
                    "radius_miles": {"type": "number", "exclusiveMinimum": 0, "description": "default 10"},
                    "min_likelihood": {"type": "number", "minimum": 0, "maximum": 1, "description": "default 0.3"}}})
            },
            run: affected_customers,
        },
    ]
}

const MATERIALS: [&str; 6] = ["asphalt", "architectural", "wood", "tile", "metal", "flat"];

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Material {
    /// Three-tab asphalt shingles.
    Asphalt,
    /// Laminated (architectural) shingles.
    Architectural,
    Wood,
    Tile,
    Metal,
    /// Low-slope membrane.
    Flat,
}

impl Material {
    /// Hail diameter (inches) at which a new roof of this material is as likely damaged as
    /// not, and the gust (mph) it is rated for.
    fn limits(self) -> (f64, f64) {
        match self {
            Material::Asphalt => (1.0, 60.0),
            Material::Architectural => (1.25, 90.0),
            Material::Wood => (1.25, 70.0),
            Material::Tile => (1.5, 100.0),
            Material::Metal => (1.75, 110.0),
            Material::Flat => (1.5, 80.0),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DamageArgs {
    #[serde(default)]
    hail_in: f64,
    #[serde(default)]
    wind_mph: f64,
    #[serde(default)]
    roof_age_years: f64,
    material: Material,
}

#[derive(Serialize)]
struct Damage {
    likelihood: f64,
    level: &'static str,
    hail_likelihood: f64,
    wind_likelihood: f64,
    reasons: Vec<String>,
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Roofs older than ten years are weaker: the hail threshold drops 0.02" and the wind
/// rating 1 mph per year beyond ten (floors 0.75" and 40 mph). Each hazard's likelihood is
/// a logistic curve around the roof's limit; the two combine as independent causes.
fn assess(a: &DamageArgs) -> Damage {
    let (hail_limit, wind_limit) = a.material.limits();
    let aging = (a.roof_age_years - 10.0).max(0.0);
    let hail_limit = (hail_limit - 0.02 * aging).max(0.75);
    let wind_limit = (wind_limit - aging).max(40.0);
    let p_hail = if a.hail_in > 0.0 {
        logistic((a.hail_in - hail_limit) / 0.25)
    } else {
        0.0
    };
    let p_wind = if a.wind_mph > 0.0 {
        logistic((a.wind_mph - wind_limit) / 8.0)
    } else {
        0.0
    };
    let p = 1.0 - (1.0 - p_hail) * (1.0 - p_wind);
    let mut reasons = Vec::new();
    if a.hail_in >= hail_limit {
        reasons.push(format!(
            "{:.2}\" hail is at or above the {:.2}\" a {:?} roof this age withstands",
            a.hail_in, hail_limit, a.material
        ));
    }
    if a.wind_mph >= wind_limit {
        reasons.push(format!(
            "{:.0} mph gusts reach its {:.0} mph rating",
            a.wind_mph, wind_limit
        ));
    }
    if aging > 0.0 {
        reasons.push(format!("the roof is {:.0} years old", a.roof_age_years));
    }
    if reasons.is_empty() {
        reasons.push("hail and wind were below what the roof withstands".into());
    }
    Damage {
        likelihood: round2(p),
        level: if p >= 0.6 {
            "high"
        } else if p >= 0.3 {
            "moderate"
        } else {
            "low"
        },
        hail_likelihood: round2(p_hail),
        wind_likelihood: round2(p_wind),
        reasons,
    }
}

fn check(tool: &str, a: &DamageArgs) -> Result<(), NodeError> {
    for (name, v) in [
        ("hail_in", a.hail_in),
        ("wind_mph", a.wind_mph),
        ("roof_age_years", a.roof_age_years),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(bad(tool, format!("`{name}` must be zero or more")));
        }
    }
    Ok(())
}

fn damage_likelihood(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "weather.damage_likelihood";
    let a: DamageArgs = args(TOOL, input)?;
    check(TOOL, &a)?;
    to_value(TOOL, &assess(&a))
}

/// A storm report; other fields (place, time, source) are ignored.
#[derive(Deserialize)]
struct Report {
    lat: f64,
    lon: f64,
    #[serde(default)]
    hail_in: f64,
    #[serde(default)]
    wind_mph: f64,
}

/// The fields the assessment reads; a customer's other fields (name, phone, ...) are
/// carried through to the result unchanged.
#[derive(Deserialize)]
struct Customer {
    lat: f64,
    lon: f64,
    #[serde(default)]
    roof_age_years: f64,
    material: Material,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AffectedArgs {
    reports: Vec<Report>,
    customers: Vec<serde_json::Map<String, Value>>,
    radius_miles: Option<f64>,
    min_likelihood: Option<f64>,
}

/// Great-circle distance in miles.
pub(crate) fn miles(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_MILES: f64 = 3958.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_MILES * h.sqrt().min(1.0).asin()
}

fn affected_customers(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "weather.affected_customers";
    let a: AffectedArgs = args(TOOL, input)?;
    let radius = a.radius_miles.unwrap_or(10.0);
    let floor = a.min_likelihood.unwrap_or(0.3);
    if !(radius.is_finite() && radius > 0.0) {
        return Err(bad(TOOL, "`radius_miles` must be positive"));
    }
    let mut hits = Vec::new();
    for (i, original) in a.customers.iter().enumerate() {
        let c: Customer = serde_json::from_value(Value::Object(original.clone()))
            .map_err(|e| bad(TOOL, format!("customers[{i}]: {e}")))?;
        if !original.contains_key("id") {
            return Err(bad(TOOL, format!("customers[{i}] has no `id`")));
        }
        let near: Vec<(&Report, f64)> = a
            .reports
            .iter()
            .map(|r| (r, miles(c.lat, c.lon, r.lat, r.lon)))
            .filter(|(_, d)| *d <= radius)
            .collect();
        let Some(closest) = near.iter().map(|(_, d)| *d).reduce(f64::min) else {
            continue;
        };
        let storm = DamageArgs {
            hail_in: near.iter().map(|(r, _)| r.hail_in).fold(0.0, f64::max),
            wind_mph: near.iter().map(|(r, _)| r.wind_mph).fold(0.0, f64::max),
            roof_age_years: c.roof_age_years,
            material: c.material,
        };
        check(TOOL, &storm)?;
        let damage = assess(&storm);
        if damage.likelihood < floor {
            continue;
        }
        let mut hit = original.clone();
        hit.insert("distance_miles".into(), json!(round2(closest)));
        hit.insert("hail_in".into(), json!(storm.hail_in));
        hit.insert("wind_mph".into(), json!(storm.wind_mph));
        hit.insert("likelihood".into(), json!(damage.likelihood));
        hit.insert("level".into(), json!(damage.level));
        hit.insert("reasons".into(), json!(damage.reasons));
        hits.push((damage.likelihood, closest, Value::Object(hit)));
    }
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)));
    let affected: Vec<Value> = hits.into_iter().map(|(_, _, v)| v).collect();
    Ok(json!({"count": affected.len(), "customers": affected}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golf_ball_hail_on_a_20_year_old_three_tab_roof_is_high() {
        let out = damage_likelihood(json!({
            "hail_in": 1.75, "wind_mph": 40, "roof_age_years": 20, "material": "asphalt"
        }))
        .unwrap();
        // hail limit 1.0 - 0.02 * 10 = 0.80": logistic(3.8) = 0.978
        // wind limit 60 - 10 = 50 mph: logistic(-1.25) = 0.223; combined 1 - 0.022 * 0.777
        assert_eq!(out["hail_likelihood"], 0.98);
        assert_eq!(out["wind_likelihood"], 0.22);
        assert_eq!(out["likelihood"], 0.98);
        assert_eq!(out["level"], "high");
    }

    #[test]
    fn inch_hail_on_a_new_metal_roof_is_low() {
        let out = damage_likelihood(json!({
            "hail_in": 1.0, "wind_mph": 30, "roof_age_years": 5, "material": "metal"
        }))
        .unwrap();
        // logistic((1.0 - 1.75) / 0.25) = logistic(-3) = 0.047
        assert_eq!(out["likelihood"], 0.05);
        assert_eq!(out["level"], "low");
    }

    #[test]
    fn an_unknown_material_is_refused() {
        let err = damage_likelihood(json!({"hail_in": 1, "material": "straw"})).unwrap_err();
        assert!(err.to_string().contains("unknown variant `straw`"), "{err}");
    }

    #[test]
    fn distance_between_denver_and_boulder() {
        let d = miles(39.7392, -104.9903, 40.0150, -105.2705);
        assert!((d - 24.3).abs() < 0.3, "{d}");
    }

    #[test]
    fn affected_customers_are_near_a_report_and_ranked() {
        let out = affected_customers(json!({
            "reports": [{"lat": 39.74, "lon": -104.99, "hail_in": 1.75, "wind_mph": 55}],
            "customers": [
                {"id": 1, "name": "Near old", "lat": 39.75, "lon": -104.98, "roof_age_years": 22, "material": "asphalt"},
                {"id": 2, "name": "Near metal", "lat": 39.73, "lon": -105.00, "roof_age_years": 3, "material": "metal"},
                {"id": 3, "name": "Far", "lat": 40.02, "lon": -105.27, "roof_age_years": 25, "material": "asphalt"},
                {"id": 4, "name": "Near new", "lat": 39.74, "lon": -104.97, "roof_age_years": 2, "material": "architectural"}
            ]
        }))
        .unwrap();
        let ids: Vec<i64> = out["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        // 1.75" hail beats the 1.25" architectural limit too; metal (1.75") is at 50%.
        assert_eq!(ids, vec![1, 4, 2]);
        assert_eq!(out["count"], 3);
    }
}
