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

/// Input a hostile tester tried: each refused with a message naming the flag, the same on
/// both stores, or clamped where a limit is only too large.
fn hostile(home: &Path, store: Option<&str>) {
    let with = |args: &[&str]| -> Output {
        let mut all: Vec<&str> = args.to_vec();
        if let Some(s) = store {
            all.extend(["--store", s]);
        }
        brainops(home, &all)
    };
    let refused = |args: &[&str], expected: &str| {
        let out = with(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?} was accepted");
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    let put = |ns: &str, key: &str, extra: &[&str]| {
        let mut args = vec![
            "memory",
            "put",
            "--namespace",
            ns,
            "--key",
            key,
            "--value",
            r#"{"text": "x"}"#,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let refused_put = |ns: &str, key: &str, extra: &[&str], expected: &str| {
        let args = put(ns, key, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, expected);
    };
    refused_put(
        "tenant:h",
        "k",
        &["--ttl", "18446744073709551615s"],
        "longer than 100 years",
    );
    refused_put(
        "tenant:h",
        "k",
        &["--ttl", "garbage"],
        "--ttl `garbage` is not an age",
    );
    refused_put("notenant", "k", &[], "should be `tenant:NAME`");
    refused_put("tenant:/x", "k", &[], "should be `tenant:NAME`");
    refused_put("tenant:h", "", &[], "non-empty key");
    refused(
        &["memory", "namespaces", "--depth", "0"],
        "--depth 0 would cut every namespace",
    );
    refused(
        &[
            "memory",
            "search",
            "--namespace",
            "notenant",
            "--query",
            "x",
        ],
        "should be `tenant:NAME`",
    );
    // An item too large for Postgres's keyword index is refused by both stores alike.
    let words: Vec<String> = (0..40_000).map(|i| format!("w{i}")).collect();
    let big = home.join("big.json");
    std::fs::write(
        &big,
        serde_json::json!({ "text": words.join(" ") }).to_string(),
    )
    .unwrap();
    let big = format!("@{}", big.display());
    refused(
        &[
            "memory",
            "put",
            "--namespace",
            "tenant:h",
            "--key",
            "big",
            "--value",
            &big,
            "--index",
            "none",
        ],
        "the limit is 262144",
    );
    // Limits and offsets past any real page are clamped, not wrapped.
    for flag in ["--limit", "--offset"] {
        let out = with(&[
            "memory",
            "search",
            "--namespace",
            "tenant:h",
            flag,
            "4611686018427387903",
        ]);
        assert_eq!(
            json_out(&out),
            serde_json::json!([]),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn memory_commands_on_the_embedded_store() {
    let home = tempfile::tempdir().unwrap();
    contract(home.path(), None);
    hostile(home.path(), None);
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
    hostile(home.path(), Some(&url));
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
