//! A loop that no edge leaves, and none of whose nodes can pause the run or end its branch,
//! can only fail or reach the recursion limit. LangGraph accepts such a graph, and so does
//! the loader, but it warns at the loop's first node with a remedy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use engine::Registry;

const HEAD: &str = "[graph]\nname = \"x\"\n[state]\nn = { type = \"integer\", default = 0 }\nitems = { type = \"array\", default = [] }\n";

fn warnings(nodes_and_edges: &str) -> Vec<(usize, usize, String)> {
    let mut registry = Registry::new();
    registry.register_tool("crm.lookup", engine::node_fn(|v, _| Ok(v)));
    common::load_with(&format!("{HEAD}{nodes_and_edges}"), &registry)
        .warnings()
        .iter()
        .map(|d| {
            assert_eq!(d.file, "test.toml");
            assert!(
                d.help
                    .as_deref()
                    .is_some_and(|h| h.contains("to = \"END\""))
            );
            (d.line, d.col, d.message.clone())
        })
        .collect()
}

#[test]
fn a_node_that_only_loops_to_itself_is_warned_at_its_name() {
    let found = warnings(
        "[nodes.spin]\nset = { n = \"state.n + 1\" }\n[[edges]]\nfrom = \"START\"\nto = \"spin\"\n[[edges]]\nfrom = \"spin\"\nto = \"spin\"\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    let (line, col, message) = &found[0];
    assert_eq!((*line, *col), (6, 8));
    assert!(
        message.contains("no edge leaves the loop through `spin`"),
        "{message}"
    );
    let shown = common::load(&format!(
        "{HEAD}[nodes.spin]\nset = {{ n = \"state.n + 1\" }}\n[[edges]]\nfrom = \"START\"\nto = \"spin\"\n[[edges]]\nfrom = \"spin\"\nto = \"spin\"\n"
    ))
    .warnings()[0]
        .as_warning()
        .to_string();
    assert!(
        shown.starts_with("test.toml:6:8: warning: no edge leaves"),
        "{shown}"
    );
}

#[test]
fn a_two_node_loop_whose_only_exit_is_a_condition_back_is_warned() {
    // `check` routes back to `work` when unfinished and has no edge for "finished": the
    // run fails on a missing route or loops until the limit.
    let found = warnings(
        "[nodes.work]\nset = { n = \"state.n + 1\" }\n[nodes.check]\nset = { n = \"state.n\" }\n[[edges]]\nfrom = \"START\"\nto = \"work\"\n[[edges]]\nfrom = \"work\"\nto = \"check\"\n[[edges]]\nfrom = \"check\"\nto = \"work\"\nwhen = \"state.n < 3\"\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (6, 8));
    assert!(
        found[0]
            .2
            .contains("no edge leaves the loop through `work`, `check`"),
        "{}",
        found[0].2
    );
}

#[test]
fn loops_with_a_way_out_are_not_warned() {
    let exits = [
        // A conditional edge to END.
        "[nodes.work]\nset = { n = \"state.n + 1\" }\n[[edges]]\nfrom = \"START\"\nto = \"work\"\n[[edges]]\nfrom = \"work\"\nto = \"work\"\nwhen = \"state.n < 3\"\n[[edges]]\nfrom = \"work\"\nto = \"END\"\ndefault = true\n",
        // An edge to a node outside the loop.
        "[nodes.work]\nset = { n = \"state.n + 1\" }\n[nodes.done]\nset = { n = \"0\" }\n[[edges]]\nfrom = \"START\"\nto = \"work\"\n[[edges]]\nfrom = \"work\"\nto = \"work\"\nwhen = \"state.n < 3\"\n[[edges]]\nfrom = \"work\"\nto = \"done\"\nwhen = \"state.n >= 3\"\n[[edges]]\nfrom = \"done\"\nto = \"END\"\n",
        // A chat loop that waits for a person every turn.
        "[nodes.reply]\nset = { n = \"state.n + 1\" }\n[nodes.listen]\nask = \"Anything else?\"\noutput = \"n\"\n[[edges]]\nfrom = \"START\"\nto = \"reply\"\n[[edges]]\nfrom = \"reply\"\nto = \"listen\"\n[[edges]]\nfrom = \"listen\"\nto = \"reply\"\n",
        // A tool may interrupt.
        "[nodes.poll]\ntool = \"crm.lookup\"\noutput = \"n\"\n[[edges]]\nfrom = \"START\"\nto = \"poll\"\n[[edges]]\nfrom = \"poll\"\nto = \"poll\"\n",
        // A fan-out over an empty list ends the branch.
        "[nodes.each]\nfor_each = \"state.items\"\nset = { n = \"item\" }\n[[edges]]\nfrom = \"START\"\nto = \"each\"\n[[edges]]\nfrom = \"each\"\nto = \"each\"\n",
        // A pause before the node.
        "[nodes.spin]\nset = { n = \"state.n + 1\" }\ninterrupt = \"before\"\n[[edges]]\nfrom = \"START\"\nto = \"spin\"\n[[edges]]\nfrom = \"spin\"\nto = \"spin\"\n",
    ];
    for graph in exits {
        assert_eq!(warnings(graph), Vec::new(), "{graph}");
    }
}
