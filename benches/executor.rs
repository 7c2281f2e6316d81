//! Executor benchmarks: per-node overhead and checkpoint cost on six shapes (a chain, a loop,
//! a fan-out, a big object, a supervisor loop of run-time routes, a map over subgraphs), each without
//! checkpoints, with the in-memory saver and with the SQLite saver (a file in a temp dir).
//!
//!   cargo bench --bench executor
//!
//! Besides criterion's timings, each shape prints its checkpoint bytes per step.
//! `load_compile` times TOML text to a compiled graph (`loader::load_str`), per node count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use engine::{
    ChannelType, Checkpointer, Graph, GraphBuilder, MemorySaver, Reducer, Registry, RunRequest,
    Runner, SqliteSaver,
};
use serde_json::{Map, Value, json};

#[path = "shapes.rs"]
mod shapes;

use shapes::chain;

fn looping(n: usize) -> Graph {
    GraphBuilder::new("loop")
        .recursion_limit(n as u32 + 1)
        .channel("n", ChannelType::Integer, Reducer::Replace, json!(0))
        .set("bump", &[("n", "state.n + 1")])
        .edge("START", "bump")
        .edge_when("bump", "bump", &format!("state.n < {n}"))
        .edge_default("bump", "END")
        .build(&Registry::new())
        .unwrap()
}

fn fanout(n: usize) -> (Graph, Value) {
    let graph = GraphBuilder::new("fanout")
        .channel("items", ChannelType::Array, Reducer::Replace, json!([]))
        .channel("squares", ChannelType::Array, Reducer::Append, json!([]))
        .channel("count", ChannelType::Integer, Reducer::Replace, json!(0))
        .for_each("square", "state.items", &[("squares", "[item * item]")])
        .set("join", &[("count", "size(state.squares)")])
        .edge("START", "square")
        .edge("square", "join")
        .edge("join", "END")
        .build(&Registry::new())
        .unwrap();
    (graph, json!({ "items": (0..n as i64).collect::<Vec<_>>() }))
}

fn big_object(entries: usize, updates: usize) -> (Graph, Value) {
    let graph = GraphBuilder::new("object")
        .recursion_limit(updates as u32 + 1)
        .channel("profile", ChannelType::Object, Reducer::Merge, json!({}))
        .channel("i", ChannelType::Integer, Reducer::Replace, json!(0))
        .set(
            "touch",
            &[
                ("i", "state.i + 1"),
                ("profile", "{'k' + string(state.i): state.i}"),
            ],
        )
        .edge("START", "touch")
        .edge_when("touch", "touch", &format!("state.i < {updates}"))
        .edge_default("touch", "END")
        .build(&Registry::new())
        .unwrap();
    let profile: Map<String, Value> = (0..entries)
        .map(|i| (format!("key{i}"), json!(i)))
        .collect();
    (graph, json!({ "profile": profile }))
}

/// A supervisor loop (LangGraph's `Command(goto=...)`): the supervisor routes to the worker
/// at run time until `n` handoffs are done; the worker returns to it by an edge.
fn supervisor(n: usize) -> Graph {
    GraphBuilder::new("supervisor")
        .recursion_limit(2 * n as u32 + 2)
        .channel("n", ChannelType::Integer, Reducer::Replace, json!(0))
        .set("supervisor", &[])
        .goto(&["worker", "END"])
        .next(&format!("state.n < {n} ? 'worker' : 'END'"))
        .set("worker", &[("n", "state.n + 1")])
        .edge("START", "supervisor")
        .edge("worker", "supervisor")
        .build(&Registry::new())
        .unwrap()
}

/// A `for_each` over a subgraph: one child run (its own thread and checkpoints) per item,
/// each squaring its item; the parent collects the squares and counts them.
fn map_subgraphs(n: usize) -> (Graph, Value) {
    use engine::graph::{Located, NodeSpec, NodeSpecKind};
    let child = GraphBuilder::new("square")
        .channel("x", ChannelType::Integer, Reducer::Replace, json!(0))
        .channel("squares", ChannelType::Array, Reducer::Append, json!([]))
        .set("square", &[("squares", "[state.x * state.x]")])
        .edge("START", "square")
        .edge("square", "END")
        .build(&Registry::new())
        .unwrap();
    let pair = |k: &str, v: &str| (Located::new(k.to_string()), Located::new(v.to_string()));
    let mut map = NodeSpec::new(
        "map",
        NodeSpecKind::Subgraph {
            graph: Arc::new(child),
            input: Some(vec![pair("x", "item")]),
            outputs: Some(vec![pair("squares", "squares")]),
            stateful: false,
        },
    );
    map.for_each = Some(Located::new("state.items".to_string()));
    let graph = GraphBuilder::new("map_subgraphs")
        .channel("items", ChannelType::Array, Reducer::Replace, json!([]))
        .channel("squares", ChannelType::Array, Reducer::Append, json!([]))
        .channel("count", ChannelType::Integer, Reducer::Replace, json!(0))
        .node(map)
        .set("join", &[("count", "size(state.squares)")])
        .edge("START", "map")
        .edge("map", "join")
        .edge("join", "END")
        .build(&Registry::new())
        .unwrap();
    (graph, json!({ "items": (0..n as i64).collect::<Vec<_>>() }))
}

#[derive(Clone, Copy)]
enum Store {
    None,
    Memory,
    Sqlite,
}

fn runner(graph: &Arc<Graph>, store: Store, dir: &std::path::Path) -> Runner {
    let runner = Runner::new(graph.clone());
    match store {
        Store::None => runner,
        Store::Memory => runner.with_checkpointer(Arc::new(MemorySaver::new())),
        Store::Sqlite => {
            let path = dir.join(format!("{}.db", uuid_like()));
            runner.with_checkpointer(Arc::new(SqliteSaver::open(path).unwrap()))
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("b{}", N.fetch_add(1, Ordering::Relaxed))
}

fn bench_shape(c: &mut Criterion, name: &str, graph: Graph, input: Value) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let graph = Arc::new(graph);
    let dir = tempfile::tempdir().unwrap();
    // Checkpoint bytes per step, measured once.
    let saver = Arc::new(MemorySaver::new());
    let r = Runner::new(graph.clone()).with_checkpointer(saver.clone());
    let out = rt.block_on(r.invoke(RunRequest::new().thread("size").input(input.clone())));
    assert!(out.error.is_none(), "{:?}", out.error);
    let history = rt.block_on(saver.list("size")).unwrap();
    let loop_bytes: Vec<usize> = history.iter().skip(1).map(|h| h.bytes).collect();
    let state_bytes = serde_json::to_vec(&out.state).unwrap().len();
    eprintln!(
        "{name}: {} steps, checkpoint bytes per step: mean {:.0}, max {}, input checkpoint {}; final state {} bytes",
        loop_bytes.len(),
        loop_bytes.iter().sum::<usize>() as f64 / loop_bytes.len().max(1) as f64,
        loop_bytes.iter().max().unwrap_or(&0),
        history[0].bytes,
        state_bytes
    );
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for (label, store) in [
        ("no_checkpoint", Store::None),
        ("memory", Store::Memory),
        ("sqlite", Store::Sqlite),
    ] {
        group.bench_function(label, |b| {
            b.to_async(&rt).iter_batched(
                || (runner(&graph, store, dir.path()), input.clone()),
                |(runner, input)| async move {
                    let out = runner.invoke(RunRequest::new().input(input)).await;
                    assert!(out.error.is_none());
                    out
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The TOML of a chain of `n` `count + 1` nodes, as a user would write it.
fn chain_toml(n: usize) -> String {
    let mut s = format!(
        "[graph]\nname = \"chain\"\nrecursion_limit = {}\n[state]\ncount = {{ type = \"integer\", default = 0 }}\n",
        n + 1
    );
    for i in 0..n {
        s.push_str(&format!(
            "[nodes.n{i}]\nset = {{ count = \"state.count + 1\" }}\n"
        ));
    }
    s.push_str("[[edges]]\nfrom = \"START\"\nto = \"n0\"\n");
    for i in 1..n {
        s.push_str(&format!(
            "[[edges]]\nfrom = \"n{}\"\nto = \"n{i}\"\n",
            i - 1
        ));
    }
    s.push_str(&format!("[[edges]]\nfrom = \"n{}\"\nto = \"END\"\n", n - 1));
    s
}

fn load_compile(c: &mut Criterion) {
    let registry = Registry::new();
    let mut group = c.benchmark_group("load_compile");
    for n in [1usize, 100, 1000] {
        let toml = chain_toml(n);
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(format!("chain_{n}_nodes"), |b| {
            b.iter(|| engine::loader::load_str(&toml, "chain.toml", &registry).unwrap());
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    load_compile(c);
    bench_shape(c, "chain_1000_nodes", chain(1000), json!({}));
    bench_shape(c, "loop_1000_iterations", looping(1000), json!({}));
    let (g, input) = fanout(1000);
    bench_shape(c, "fanout_1000_and_join", g, input);
    let (g, input) = big_object(10_000, 100);
    bench_shape(c, "object_10000_entries_100_updates", g, input);
    bench_shape(c, "supervisor_1000_handoffs", supervisor(1000), json!({}));
    let (g, input) = map_subgraphs(1000);
    bench_shape(c, "map_1000_subgraphs", g, input);
}

criterion_group!(executor, benches);
criterion_main!(executor);
