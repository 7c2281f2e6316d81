//! Lead scoring: a points table a sales manager can read and argue with.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{DomainTool, args};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![DomainTool {
        name: "leads.score",
        description: "Scores a roofing lead 0-100 with a points breakdown and a grade (A hot, B warm, C nurture, D unlikely) from damage, insurance claim, recent hail, roof age, source, timeline, ownership and property type.",
        parameters: || {
            json!({"type": "object", "properties": {
                "source": {"enum": ["referral", "phone", "website", "storm_canvass", "google_ads", "facebook", "other"]},
                "roof_age_years": {"type": "number", "minimum": 0},
                "damage_reported": {"type": "boolean"},
                "insurance_claim": {"type": "boolean"},
                "storm_hail_in": {"type": "number", "minimum": 0, "description": "largest recent hail at the address"},
                "timeline_days": {"type": "integer", "minimum": 0, "description": "when the customer wants the work done"},
                "homeowner": {"type": "boolean", "description": "default true"},
                "property_type": {"enum": ["residential", "commercial"]}}})
        },
        run: score,
    }]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lead {
    source: Option<String>,
    #[serde(default)]
    roof_age_years: f64,
    #[serde(default)]
    damage_reported: bool,
    #[serde(default)]
    insurance_claim: bool,
    #[serde(default)]
    storm_hail_in: f64,
    timeline_days: Option<u64>,
    #[serde(default = "yes")]
    homeowner: bool,
    property_type: Option<String>,
}

fn yes() -> bool {
    true
}

fn score(input: Value) -> Result<Value, NodeError> {
    let lead: Lead = args("leads.score", input)?;
    let mut parts: Vec<(&str, i64)> = Vec::new();
    if lead.damage_reported {
        parts.push(("damage reported", 25));
    }
    if lead.insurance_claim {
        parts.push(("insurance claim filed", 15));
    }
    if lead.storm_hail_in >= 1.0 {
        parts.push(("hail of 1\" or more at the address", 15));
    } else if lead.storm_hail_in >= 0.75 {
        parts.push(("hail of 0.75\" or more at the address", 8));
    }
    match lead.roof_age_years {
        a if a >= 20.0 => parts.push(("roof 20+ years old", 20)),
        a if a >= 15.0 => parts.push(("roof 15-19 years old", 12)),
        a if a >= 10.0 => parts.push(("roof 10-14 years old", 5)),
        _ => {}
    }
    let source = match lead.source.as_deref() {
        Some("referral") => Some(("referral", 15)),
        Some("phone") => Some(("called in", 10)),
        Some("website") => Some(("website form", 8)),
        Some("storm_canvass") => Some(("storm canvass", 6)),
        Some("google_ads" | "facebook") => Some(("paid ad", 5)),
        _ => None,
    };
    parts.extend(source);
    match lead.timeline_days {
        Some(d) if d <= 30 => parts.push(("wants it within 30 days", 10)),
        Some(d) if d <= 90 => parts.push(("wants it within 90 days", 5)),
        _ => {}
    }
    if !lead.homeowner {
        parts.push(("not the owner: cannot sign", -30));
    }
    if lead.property_type.as_deref() == Some("commercial") {
        parts.push(("commercial property", 5));
    }
    let total: i64 = parts.iter().map(|(_, p)| p).sum::<i64>().clamp(0, 100);
    let grade = match total {
        70.. => "A",
        50..=69 => "B",
        30..=49 => "C",
        _ => "D",
    };
    let breakdown: Vec<Value> = parts
        .iter()
        .map(|(factor, points)| json!({"factor": factor, "points": points}))
        .collect();
    Ok(json!({"score": total, "grade": grade, "breakdown": breakdown}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_damaged_old_roof_referral_is_an_a() {
        let out = score(json!({
            "source": "referral", "roof_age_years": 22, "damage_reported": true,
            "insurance_claim": true, "storm_hail_in": 1.5, "timeline_days": 14
        }))
        .unwrap();
        // 25 + 15 + 15 + 20 + 15 + 10 = 100
        assert_eq!(out["score"], 100);
        assert_eq!(out["grade"], "A");
        assert_eq!(out["breakdown"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn a_renter_with_a_newish_roof_is_a_d() {
        let out =
            score(json!({"source": "facebook", "roof_age_years": 8, "homeowner": false})).unwrap();
        // 5 - 30 -> clamped to 0
        assert_eq!(out["score"], 0);
        assert_eq!(out["grade"], "D");
    }

    #[test]
    fn a_website_lead_with_an_aging_roof_is_a_c() {
        let out = score(json!({"source": "website", "roof_age_years": 16, "timeline_days": 60, "storm_hail_in": 0.8})).unwrap();
        // 8 + 12 + 5 + 8 = 33
        assert_eq!(out["score"], 33);
        assert_eq!(out["grade"], "C");
    }
}
