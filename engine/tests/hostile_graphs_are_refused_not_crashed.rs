//! Graph files built to crash or stall the engine are refused with an error that names the
//! place: huge or deep expressions, runaway nested loops, `timeout_s` where it cannot apply,
//! an edge with no source, files that are not small UTF-8 text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::sync::Arc;

use engine::{Registry, RunRequest, RunStatus, Runner, loader};
use serde_json::json;

fn graph_with_set(expr: &str) -> String {
    format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\", default = 0 }}\nxs = {{ type = \"array\", default = [] }}\nok = {{ type = \"any\" }}\n[nodes.a]\nset = {{ ok = \"{expr}\" }}\n[[edges]]\nfrom = \"START\"\nto = \"a\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"\n"
    )
}

/// Loads on a thread with a 2 MiB stack, as small as a tokio worker's.
fn load_on_small_stack(source: String) -> Result<engine::Graph, engine::LoadError> {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || loader::load_str(&source, "hostile.toml", &Registry::new()))
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_long_sum_is_refused_at_load_by_depth_or_size() {
    for terms in [1_000, 4_000, 30_000] {
        let expr = vec!["1"; terms].join(" + ");
        let err = load_on_small_stack(graph_with_set(&expr)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hostile.toml:8:"), "{terms}: {text}");
        assert!(
            text.contains("nests more than 250") || text.contains("bytes long"),
            "{terms}: {text}"
        );
    }
    // A sum well inside the limits still loads and runs.
    let expr = vec!["1"; 100].join(" + ");
    assert!(load_on_small_stack(graph_with_set(&expr)).is_ok());
}

#[tokio::test]
async fn nested_loops_over_big_lists_fail_fast_with_a_cost_error() {
    let graph = common::load(&graph_with_set(
        "state.xs.all(a, state.xs.all(b, state.xs.all(c, a + b + c >= 0)))",
    ));
    let xs: Vec<i64> = (0..1_000).collect();
    let started = std::time::Instant::now();
    let out = Runner::new(Arc::new(graph))
        .invoke(RunRequest::new().input(json!({ "xs": xs })))
        .await;
    assert_eq!(out.status, RunStatus::Failed);
    let message = out.error.unwrap().message;
    assert!(message.contains("3 nested loops"), "{message}");
    assert!(message.contains("the limit is"), "{message}");
    // It was refused, not run: nowhere near the minutes the loops would take.
    assert!(started.elapsed().as_secs() < 30);

    // The same expression over a small list runs.
    let graph = common::load(&graph_with_set(
        "state.xs.all(a, state.xs.all(b, state.xs.all(c, a + b + c >= 0)))",
    ));
    let out = Runner::new(Arc::new(graph))
        .invoke(RunRequest::new().input(json!({ "xs": [1, 2, 3] })))
        .await;
    assert_eq!(out.status, RunStatus::Done, "{:?}", out.error);
    assert_eq!(out.state["ok"], true);
}

#[test]
fn four_nested_loops_are_refused_at_load() {
    let err = common::load_err(
        &graph_with_set("[1].all(a, [1].all(b, [1].all(c, [1].all(d, true))))"),
        &Registry::new(),
    );
    assert!(err.to_string().contains("nests 4 loops"), "{err}");
}

#[test]
fn timeout_on_a_set_node_is_refused() {
    let source = graph_with_set("1").replace("[nodes.a]\n", "[nodes.a]\ntimeout_s = 5\n");
    let err = common::load_err(&source, &Registry::new());
    let text = err.to_string();
    assert!(text.contains("test.toml:8:1"), "{text}");
    assert!(
        text.contains("`timeout_s` applies to tool, agent and subgraph nodes only"),
        "{text}"
    );
}

#[test]
fn an_edge_with_an_empty_from_is_an_error_not_a_panic() {
    let source = graph_with_set("1").replace(
        "[[edges]]\nfrom = \"START\"",
        "[[edges]]\nfrom = []\nto = \"a\"\n[[edges]]\nfrom = \"START\"",
    );
    let err = common::load_err(&source, &Registry::new());
    assert!(err.to_string().contains("an edge needs `from`"), "{err}");
}

#[test]
fn files_that_are_not_small_utf8_text_are_refused() {
    let err = loader::load_file("/dev/zero", &Registry::new()).unwrap_err();
    assert!(err.to_string().contains("larger than 4 MiB"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"[graph]\nname = \"caf\xe9\"\n").unwrap();
    let err = loader::load_file(&path, &Registry::new()).unwrap_err();
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.col), (2, 12), "{err}");
    assert!(d.message.contains("offset 19"), "{err}");
}

#[test]
fn a_memory_namespace_without_a_tenant_is_refused_at_load() {
    let source = graph_with_set("1").replace(
        "[nodes.a]\nset = { ok = \"1\" }\n",
        "[nodes.a]\nrecall = { namespace = [], query = \"'gate'\" }\noutput = \"ok\"\n",
    );
    let err = common::load_err(&source, &Registry::new());
    let text = err.to_string();
    assert!(
        text.contains("test.toml:8:24: error: `recall.namespace` is empty"),
        "{text}"
    );
}

#[test]
fn a_subgraph_cycle_is_named_once_without_knock_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let graph = |name: &str, sub: &str| {
        format!(
            "[graph]\nname = \"{name}\"\n[nodes.sub]\ngraph = \"{sub}\"\n[[edges]]\nfrom = \"START\"\nto = \"sub\"\n[[edges]]\nfrom = \"sub\"\nto = \"END\"\n"
        )
    };
    std::fs::write(dir.path().join("a.toml"), graph("a", "b.toml")).unwrap();
    std::fs::write(dir.path().join("b.toml"), graph("b", "a.toml")).unwrap();
    let err = loader::load_file(dir.path().join("a.toml"), &Registry::new()).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.diagnostics.len(), 2, "{text}");
    assert!(
        text.contains(
            "b.toml:4:9: error: subgraphs include each other in a cycle: a.toml -> b.toml -> a.toml"
        ),
        "{text}"
    );
    assert!(!text.contains("unknown node"), "{text}");
    assert!(!text.contains("registered"), "{text}");
}

#[test]
fn type_errors_speak_of_the_file_not_of_rust() {
    let err = common::load_err(
        "[graph]\nname = \"x\"\nrecursion_limit = -1\n",
        &Registry::new(),
    );
    let text = err.to_string();
    assert!(text.contains("expected a whole number from 0"), "{text}");
    assert!(!text.contains("u32"), "{text}");
    let err = common::load_err(
        "[graph]\nname = \"x\"\n[[edges]]\nfrom = 5\nto = \"END\"\n",
        &Registry::new(),
    );
    let text = err.to_string();
    assert!(
        text.contains("expected a node name, or a list of node names"),
        "{text}"
    );
    assert!(!text.contains("untagged"), "{text}");
}
