//! The `brainops agents` and `brainops tools` contract, and running a business graph from
//! the command line with integrations in dry-run mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use serde_json::{Value, json};

mod common;

use common::brainops;

fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn agents_list_json_is_the_catalog() {
    let home = tempfile::tempdir().unwrap();
    let out = brainops(home.path(), &["agents", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let agents = json_out(&out);
    let agents = agents.as_array().unwrap();
    assert!(agents.len() >= 50, "{}", agents.len());
    let mut categories: Vec<&str> = agents
        .iter()
        .map(|a| a["category"].as_str().unwrap())
        .collect();
    categories.dedup();
    categories.sort_unstable();
    categories.dedup();
    assert_eq!(
        categories,
        [
            "customer",
            "financial",
            "industry",
            "marketing",
            "operations",
            "revenue",
            "security",
            "technical"
        ]
    );
    for a in agents {
        assert!(
            a["name"]
                .as_str()
                .unwrap()
                .starts_with(a["category"].as_str().unwrap()),
            "{a}"
        );
        assert!(!a["description"].as_str().unwrap().is_empty(), "{a}");
        assert!(a["tools"].is_array(), "{a}");
    }

    let out = brainops(home.path(), &["agents", "list", "--category", "security"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 5);
    assert!(text.lines().all(|l| l.starts_with("security.")), "{text}");
    let out = brainops(home.path(), &["agents", "list", "--category", "roofing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use one of revenue, operations"));
}

#[test]
fn agents_show_prints_the_spec_with_tool_schemas() {
    let home = tempfile::tempdir().unwrap();
    let out = brainops(
        home.path(),
        &["agents", "show", "industry.hail_damage_analyst"],
    );
    assert_eq!(out.status.code(), Some(0));
    let spec = json_out(&out);
    assert_eq!(spec["category"], "industry");
    assert_eq!(spec["tools"][0]["name"], "weather.damage_likelihood");
    assert_eq!(
        spec["tools"][0]["parameters"]["required"],
        json!(["material"])
    );
    assert_eq!(spec["output"]["type"], "object");
    assert!(
        spec["instructions"]
            .as_str()
            .unwrap()
            .contains("weather.damage_likelihood")
    );
    assert!(spec["example"]["output"].is_object());

    let out = brainops(
        home.path(),
        &["agents", "show", "industry.hail_damage_analist"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did you mean `industry.hail_damage_analyst`?"),
        "{err}"
    );
}

#[test]
fn tools_list_json_has_descriptions_and_schemas() {
    let home = tempfile::tempdir().unwrap();
    let out = brainops(home.path(), &["tools", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let tools = json_out(&out);
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in [
        "roofing.takeoff",
        "stripe.create_payment_intent",
        "twilio.send_sms",
        "memory.recall",
        "security.detect_bruteforce",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let stripe = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "stripe.create_payment_intent")
        .unwrap();
    assert_eq!(stripe["parameters"]["required"], json!(["amount_usd"]));
}

/// No model is needed on this path (no attack: the agents never run); the run streams and
/// the integrations would not send even with keys, because of --dry-run.
#[test]
fn a_business_graph_runs_from_the_cli() {
    let home = tempfile::tempdir().unwrap();
    let input = r#"{"events": [{"ts": "2026-11-20T10:00:00Z", "ip": "198.51.100.4", "user": "ada", "success": true}]}"#;
    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/security_incident.toml",
            "--input",
            input,
            "--dry-run",
            "--model",
            "local:smollm2-135m",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "done");
    assert_eq!(last["state"]["status"], "no attack in 1 login events");

    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/security_incident.toml",
            "--input",
            input,
            "--model",
            "gpt-4o",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--model: model `gpt-4o` is not PROVIDER:MODEL")
    );
}

#[test]
fn agent_specs_from_a_directory_join_the_catalog_and_bad_ones_point_at_the_line() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("customer")).unwrap();
    let spec = r#"name = "customer.gutter_upsell"
category = "customer"
description = "Offers gutter guards to customers whose roof job just finished."
instructions = "Write a short gutter-guard offer for {{ input.customer.name }}."
model = "local:smollm2-135m"

[output]
type = "object"
required = ["offer"]
properties.offer = { type = "string", maxLength = 300 }
"#;
    std::fs::write(dir.path().join("customer/gutter_upsell.toml"), spec).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = brainops(
        home.path(),
        &["agents", "list", "--category", "customer", "--agent-dir", d],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    let line = listed
        .lines()
        .find(|l| l.starts_with("customer.gutter_upsell "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.ends_with("Offers gutter guards to customers whose roof job just finished."),
        "{line}"
    );

    std::fs::write(
        dir.path().join("customer/gutter_upsell.toml"),
        spec.replace(
            "model = \"local:smollm2-135m\"",
            "model = \"local:smollm2-135m\"\ntools = [\"roofing.takof\"]",
        ),
    )
    .unwrap();
    let out = brainops(home.path(), &["agents", "list", "--agent-dir", d]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "customer/gutter_upsell.toml:6:10: error: unknown tool `roofing.takof` in `tools`"
        ),
        "{err}"
    );
    assert!(err.contains("did you mean `roofing.takeoff`?"), "{err}");
}
