//! Compliance checklists: each item a requirement with its citation, checked against the
//! answers given. Unanswered items count as not compliant.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{DomainTool, args, bad};
use engine::NodeError;

pub(super) fn tools() -> Vec<DomainTool> {
    vec![DomainTool {
        name: "compliance.checklist",
        description: "Checks answers against a compliance checklist (osha_fall_protection, ladder_safety, payment_data): each item passes, fails or is missing, with its citation; compliant only when every item passes.",
        parameters: || {
            json!({"type": "object", "required": ["checklist"], "properties": {
                "checklist": {"enum": CHECKLISTS.iter().map(|(name, _)| *name).collect::<Vec<_>>()},
                "answers": {"type": "object", "additionalProperties": {"type": "boolean"}, "description": "item id -> whether it holds"},
                "work_height_ft": {"type": "number", "minimum": 0, "description": "osha_fall_protection: below 6 ft it does not apply"}}})
        },
        run: checklist,
    }]
}

type Item = (&'static str, &'static str, &'static str);

const CHECKLISTS: &[(&str, &[Item])] = &[
    (
        "osha_fall_protection",
        &[
            (
                "fall_protection_6ft",
                "Workers 6 ft or more above a lower level are protected by guardrails, safety nets or personal fall arrest systems",
                "29 CFR 1926.501(b)(13)",
            ),
            (
                "anchors_5000lb",
                "Fall-arrest anchorages hold 5,000 lb per worker, or are designed by a qualified person with a safety factor of two",
                "29 CFR 1926.502(d)(15)",
            ),
            (
                "harness_inspected",
                "Harnesses and lanyards are inspected before each use and damaged ones removed",
                "29 CFR 1926.502(d)(21)",
            ),
            (
                "rescue_plan",
                "A fallen worker can be rescued promptly",
                "29 CFR 1926.502(d)(20)",
            ),
            (
                "holes_covered",
                "Skylights and roof openings are covered or guarded",
                "29 CFR 1926.501(b)(4)",
            ),
            (
                "training_certified",
                "Each worker was trained by a competent person to recognise fall hazards, with a written certification",
                "29 CFR 1926.503(a), (b)",
            ),
        ],
    ),
    (
        "ladder_safety",
        &[
            (
                "extends_3ft",
                "Ladder side rails extend at least 3 ft above the landing",
                "29 CFR 1926.1053(b)(1)",
            ),
            (
                "angle_4_to_1",
                "Non-self-supporting ladders are set at a 4:1 angle",
                "29 CFR 1926.1053(b)(5)(i)",
            ),
            (
                "secured",
                "The ladder is secured against slipping",
                "29 CFR 1926.1053(b)(6)",
            ),
            (
                "inspected",
                "A competent person inspected the ladder for defects",
                "29 CFR 1926.1053(b)(15)",
            ),
            (
                "no_loads_carried",
                "Workers keep three points of contact and carry no load that could make them lose balance",
                "29 CFR 1926.1053(b)(22)",
            ),
        ],
    ),
    (
        "payment_data",
        &[
            (
                "no_card_storage",
                "Card numbers are never stored; payments go through the processor",
                "PCI DSS 4.0 3.2",
            ),
            (
                "mfa_admin",
                "Every administrative account uses multi-factor authentication",
                "PCI DSS 4.0 8.4",
            ),
            (
                "access_review",
                "User accounts and access are reviewed at least every six months",
                "PCI DSS 4.0 7.2.4",
            ),
            (
                "logs_retained",
                "Audit logs are kept for 12 months, the last 3 at hand",
                "PCI DSS 4.0 10.5.1",
            ),
        ],
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecklistArgs {
    checklist: String,
    #[serde(default)]
    answers: Map<String, Value>,
    work_height_ft: Option<f64>,
}

fn checklist(input: Value) -> Result<Value, NodeError> {
    const TOOL: &str = "compliance.checklist";
    let a: ChecklistArgs = args(TOOL, input)?;
    let Some((_, items)) = CHECKLISTS.iter().find(|(name, _)| *name == a.checklist) else {
        let names: Vec<&str> = CHECKLISTS.iter().map(|(n, _)| *n).collect();
        return Err(bad(
            TOOL,
            format!(
                "unknown checklist `{}`; use one of {}",
                a.checklist,
                names.join(", ")
            ),
        ));
    };
    if let Some(unknown) = a
        .answers
        .keys()
        .find(|k| !items.iter().any(|(id, _, _)| id == k))
    {
        return Err(bad(
            TOOL,
            format!("`{unknown}` is not an item of {}", a.checklist),
        ));
    }
    if a.checklist == "osha_fall_protection" && a.work_height_ft.is_some_and(|h| h < 6.0) {
        return Ok(
            json!({"checklist": a.checklist, "applies": false, "compliant": true, "items": [], "next_steps": [],
                         "note": "under 6 ft the construction fall-protection rule does not apply"}),
        );
    }
    let mut next_steps = Vec::new();
    let results: Vec<Value> = items
        .iter()
        .map(|(id, requirement, citation)| {
            let status = match a.answers.get(*id).and_then(Value::as_bool) {
                Some(true) => "pass",
                Some(false) => "fail",
                None => "missing",
            };
            if status != "pass" {
                next_steps.push(format!("{requirement} ({citation})"));
            }
            json!({"id": id, "requirement": requirement, "citation": citation, "status": status})
        })
        .collect();
    Ok(json!({
        "checklist": a.checklist,
        "applies": true,
        "compliant": next_steps.is_empty(),
        "items": results,
        "next_steps": next_steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_answer_is_not_compliant() {
        let out = checklist(json!({"checklist": "ladder_safety", "answers": {
            "extends_3ft": true, "angle_4_to_1": true, "secured": false, "inspected": true
        }}))
        .unwrap();
        assert_eq!(out["compliant"], false);
        let statuses: Vec<&str> = out["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["pass", "pass", "fail", "pass", "missing"]);
        assert_eq!(out["next_steps"].as_array().unwrap().len(), 2);
        assert!(
            out["next_steps"][0]
                .as_str()
                .unwrap()
                .contains("1926.1053(b)(6)")
        );
    }

    #[test]
    fn all_fall_protection_items_pass() {
        let answers: Map<String, Value> = CHECKLISTS[0]
            .1
            .iter()
            .map(|(id, _, _)| (id.to_string(), json!(true)))
            .collect();
        let out = checklist(
            json!({"checklist": "osha_fall_protection", "answers": answers, "work_height_ft": 14}),
        )
        .unwrap();
        assert_eq!(out["compliant"], true);
    }

    #[test]
    fn low_work_is_outside_the_fall_rule_and_typos_are_refused() {
        let out =
            checklist(json!({"checklist": "osha_fall_protection", "work_height_ft": 4})).unwrap();
        assert_eq!(out["applies"], false);
        let err = checklist(json!({"checklist": "ladder_safety", "answers": {"secure": true}}))
            .unwrap_err();
        assert!(err.to_string().contains("`secure` is not an item"), "{err}");
    }
}
