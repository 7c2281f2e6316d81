//! Graph shapes shared by the benchmarks.
// Each bench uses some of the shapes (and cargo also builds this file as a bench of its own).
#![allow(dead_code)]

use engine::{ChannelType, Graph, GraphBuilder, Reducer, Registry};
use serde_json::json;

/// `n` `set` nodes in a line, each adding one to `n`.
pub(crate) fn chain(n: usize) -> Graph {
    let mut b = GraphBuilder::new("chain")
        .recursion_limit(n as u32 + 1)
        .channel("n", ChannelType::Integer, Reducer::Replace, json!(0));
    for i in 0..n {
        b = b.set(&format!("n{i}"), &[("n", "state.n + 1")]);
    }
    b = b.edge("START", "n0");
    for i in 1..n {
        b = b.edge(&format!("n{}", i - 1), &format!("n{i}"));
    }
    match b
        .edge(&format!("n{}", n - 1), "END")
        .build(&Registry::new())
    {
        Ok(graph) => graph,
        Err(e) => panic!("the chain graph should build: {e}"),
    }
}
