//! The `brainops memory` contract (scripts rely on it) on the embedded store and on
//! Postgres, and a graph whose nodes recall and remember, run twice through the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

#[path = "../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod db;

mod common;

use common::brainops;

fn json_out(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap()
}

/// Runs the contract against `store` (None: the embedded default under `home`).
fn contract(home: &Path, store: Option<&str>) {
    let with = |args: &[&str]| -> Output {
        let mut all: Vec<&str> = args.to_vec();
        if let Some(s) = store {
            all.extend(["--store", s]);
        }
        brainops(home, &all)
    };
    let facts = [
        (
            "c42",
            "roof",
            r#"{"kind": "fact", "customer_id": 42, "text": "The roof is 20-year-old asphalt shingle with a 6/12 pitch"}"#,
        ),
        (
            "c42",
            "dog",
            r#"{"kind": "fact", "customer_id": 42, "text": "A large dog lives there; keep the side gate shut"}"#,
        ),
        (
            "c7",
            "pay",
            r#"{"kind": "fact", "customer_id": 7, "text": "Pays invoices by check, usually late"}"#,
        ),
        (
            "c7",
            "call",
            r#"{"kind": "episode", "customer_id": 7, "text": "Called about a leak over the garage"}"#,
        ),
    ];
    for (customer, key, value) in facts {
        let ns = format!("tenant:acme/customers/{customer}");
        let put = json_out(&with(&[
            "memory",
            "put",
            "--namespace",
            &ns,
            "--key",
            key,
            "--value",
            value,
            "--index",
            "text",
        ]));
        assert_eq!(put["key"], key);
        assert_eq!(put["namespace"], ns);
    }
    let got = json_out(&with(&[
        "memory",
        "get",
        "--namespace",
        "tenant:acme/customers/c42",
        "--key",
        "dog",
    ]));
    assert_eq!(
        got["value"]["text"],
        "A large dog lives there; keep the side gate shut"
    );

    // Search: a JSON array of {namespace, key, value, score}, best first, under the prefix.
    let hits = json_out(&with(&[
        "memory",
        "search",
        "--namespace",
        "tenant:acme/customers",
        "--query",
        "is there an animal at the property?",
        "--limit",
        "2",
    ]));
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["key"], "dog", "{hits:?}");
    for h in hits {
        let keys: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["namespace", "key", "value", "score"]);
    }
    assert!(hits[0]["score"].as_f64().unwrap() >= hits[1]["score"].as_f64().unwrap());
    let filtered = json_out(&with(&[
        "memory",
        "search",
        "--namespace",
        "tenant:acme",
        "--filter",
        r#"{"kind": "fact", "customer_id": 7}"#,
    ]));
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["key"], "pay");
    let spaces = json_out(&with(&["memory", "namespaces", "--prefix", "tenant:acme"]));
    assert_eq!(
        spaces,
        json!(["tenant:acme/customers/c42", "tenant:acme/customers/c7"])
    );
    let top = json_out(&with(&["memory", "namespaces", "--depth", "1"]));
    assert_eq!(top, json!(["tenant:acme"]));
    let deleted = json_out(&with(&[
        "memory",
        "delete",
        "--namespace",
        "tenant:acme/customers/c7",
        "--key",
        "call",
    ]));
    assert_eq!(deleted, json!({"deleted": true}));
    let gone = with(&[
        "memory",
        "get",
        "--namespace",
        "tenant:acme/customers/c7",
        "--key",
        "call",
    ]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no item \"call\""));

    // Bad input: named, with a remedy, exit 2.
    let bad = with(&[
        "memory",
        "put",
        "--namespace",
        "tenant:acme//x",
        "--key",
        "k",
        "--value",
        "{}",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("help: segments joined by `/`"));
    let bad = with(&[
        "memory",
        "put",
        "--namespace",
        "tenant:acme/x",
        "--key",
        "k",
        "--value",
        "{\"a\": ",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--value:1:"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = with(&[
        "memory",
        "search",
        "--namespace",
        "tenant:acme",
        "--filter",
        "[1]",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn memory_commands_on_the_embedded_store() {
    let home = tempfile::tempdir().unwrap();
    contract(home.path(), None);
    assert!(
        home.path().join("memory.db").exists(),
        "the default store lives under $BRAINOPS_HOME"
    );
    let bad = brainops(home.path(), &["memory", "namespaces", "--embedder", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("use `local`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_commands_on_postgres() {
    let name = db::fresh_database().await;
    let url = db::with_database(&db::admin_url(), &name);
    let home = tempfile::tempdir().unwrap();
    contract(home.path(), Some(&url));
    assert!(
        !home.path().join("memory.db").exists(),
        "nothing written locally"
    );
}

#[test]
fn a_graph_recalls_and_remembers_and_a_repeat_merges() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    json_out(&brainops(
        h,
        &[
            "memory",
            "put",
            "--namespace",
            "tenant:acme/customer:42",
            "--key",
            "roof",
            "--value",
            r#"{"kind": "semantic", "text": "Roof: 20-year-old asphalt shingles, 6/12 pitch"}"#,
        ],
    ));
    let input = r#"{"customer_id": 42, "question": "How old is my roof?"}"#;
    let first = json_out(&brainops(
        h,
        &["run", "graphs/customer_call.toml", "--input", input],
    ));
    assert_eq!(first["status"], "done");
    assert_eq!(first["state"]["known"][0]["key"], "roof");
    assert_eq!(
        first["state"]["answer"],
        "From our notes: Roof: 20-year-old asphalt shingles, 6/12 pitch"
    );
    assert_eq!(first["state"]["saved"]["merged"], false);
    let second = json_out(&brainops(
        h,
        &["run", "graphs/customer_call.toml", "--input", input],
    ));
    assert_eq!(
        second["state"]["saved"]["merged"], true,
        "the same call is merged, not piled up"
    );
    assert_eq!(
        second["state"]["saved"]["key"],
        first["state"]["saved"]["key"]
    );
    let episodes = json_out(&brainops(
        h,
        &[
            "memory",
            "search",
            "--namespace",
            "tenant:acme/customer:42",
            "--filter",
            r#"{"kind": "episodic"}"#,
        ],
    ));
    let episodes = episodes.as_array().unwrap();
    assert_eq!(episodes.len(), 1);
    assert_eq!(episodes[0]["value"]["mentions"], 2);
    assert_eq!(episodes[0]["value"]["customer_id"], 42);
}

#[test]
fn graphs_without_memory_do_not_open_a_store() {
    let home = tempfile::tempdir().unwrap();
    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--input",
            r#"{"lead": {"name": "Ada", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!home.path().join("memory.db").exists());
}
