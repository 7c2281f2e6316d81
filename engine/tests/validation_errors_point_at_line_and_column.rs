//! Every load error names `file:line:col` and a remedy, and all of a file's errors are
//! reported at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use engine::Registry;

fn positions(src: &str) -> Vec<(usize, usize, String)> {
    let mut registry = Registry::new();
    registry.register_tool("roofing.estimate", engine::node_fn(|v, _| Ok(v)));
    common::load_err(src, &registry)
        .diagnostics
        .into_iter()
        .map(|d| {
            assert!(d.help.is_some(), "every error has a remedy: {d}");
            assert_eq!(d.file, "test.toml");
            (d.line, d.col, d.message)
        })
        .collect()
}

fn expect(src: &str, line: usize, col: usize, contains: &str) {
    let all = positions(src);
    assert!(
        all.iter()
            .any(|(l, c, m)| *l == line && *c == col && m.contains(contains)),
        "expected {line}:{col} `{contains}` in {all:#?}"
    );
}

const OK_TAIL: &str =
    "\n[[edges]]\nfrom = \"START\"\nto = \"a\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"\n";

#[test]
fn syntax_error() {
    expect("[graph]\nname = \"x\"\n[state\n", 3, 7, "TOML syntax");
}

#[test]
fn unknown_keys_everywhere_at_once() {
    let src = format!(
        "[graph]\nname = \"x\"\nrecursion_limt = 3\n[state]\nn = {{ type = \"integer\", defualt = 1 }}\n[nodes.a]\nset = {{ n = \"1\" }}\ntimout_s = 2\n{OK_TAIL}[[edges]]\nfrom = \"a\"\nto = \"END\"\nwhen = \"true\"\nlabel = \"x\"\n"
    );
    let all = positions(&src);
    expect(&src, 3, 1, "unknown key `recursion_limt` in [graph]");
    expect(&src, 5, 25, "unknown key `defualt` in channel `n`");
    expect(&src, 8, 1, "unknown key `timout_s` in node `a`");
    expect(&src, 20, 1, "unknown key `label` in edge #3");
    assert_eq!(all.len(), 4, "{all:#?}");
}

#[test]
fn bad_channel_type_and_reducer() {
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integr\" }}\n[nodes.a]\nset = {{}}\n{OK_TAIL}"
    );
    expect(&src, 4, 14, "unknown variant `integr`");
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"boolean\", reducer = \"add\" }}\n[nodes.a]\nset = {{}}\n{OK_TAIL}"
    );
    expect(
        &src,
        4,
        35,
        "reducer `add` does not fit channel `n` of type `boolean`",
    );
}

#[test]
fn default_of_the_wrong_type() {
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\", default = \"0\" }}\n[nodes.a]\nset = {{}}\n{OK_TAIL}"
    );
    expect(&src, 4, 35, "the default of `n` is string, not integer");
}

#[test]
fn expressions() {
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\" }}\n[nodes.a]\nset = {{ n = \"state.n +\" }}\n{OK_TAIL}"
    );
    // CEL problems point inside the expression (issue #14): here at its end, where the
    // operand is missing.
    expect(&src, 6, 23, "CEL syntax error");
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\" }}\n[nodes.a]\nset = {{ n = \"state.m\" }}\n{OK_TAIL}"
    );
    expect(
        &src,
        6,
        20,
        "`state.m` in `state.m` is not a declared channel",
    );
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\ncount = {{ type = \"integer\" }}\n[nodes.a]\nset = {{ count = \"state.cout + 1\" }}\n{OK_TAIL}"
    );
    expect(
        &src,
        6,
        24,
        "`state.cout` in `state.cout + 1` is not a declared channel",
    );
    // With an escape in the string, the token's start is all that can be said.
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\" }}\n[nodes.a]\nset = {{ n = \"\\u0073tate.m\" }}\n{OK_TAIL}"
    );
    expect(&src, 6, 13, "is not a declared channel");
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\" }}\n[nodes.a]\nset = {{ n = \"item\" }}\n{OK_TAIL}"
    );
    expect(&src, 6, 14, "unknown variable `item`");
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"integer\" }}\n[nodes.a]\nset = {{ m = \"1\" }}\n{OK_TAIL}"
    );
    expect(
        &src,
        6,
        9,
        "node `a` writes `m`, which is not a declared channel",
    );
}

#[test]
fn edges() {
    let base = "[graph]\nname = \"x\"\n[state]\nn = { type = \"integer\" }\n[nodes.a]\nset = { n = \"1\" }\n";
    expect(
        &format!(
            "{base}[[edges]]\nfrom = \"START\"\nto = \"b\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"\n"
        ),
        9,
        6,
        "edge to unknown node `b`",
    );
    expect(
        &format!("{base}[[edges]]\nfrom = \"START\"\nto = \"a\"\n"),
        5,
        8,
        "node `a` has no outgoing edge",
    );
    expect(
        &format!("{base}[[edges]]\nfrom = \"a\"\nto = \"END\"\n"),
        2,
        8,
        "no edge leaves START",
    );
    expect(
        &format!(
            "{base}[[edges]]\nfrom = \"START\"\nto = \"a\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"\nwhen = \"state.n > 1\"\ndefault = true\n"
        ),
        10,
        1,
        "both `when` and `default = true`",
    );
    expect(
        &format!(
            "{base}[[edges]]\nfrom = \"START\"\nto = \"a\"\n[[edges]]\nfrom = \"a\"\nto = \"END\"\n[[edges]]\nfrom = \"a\"\nto = \"START\"\n"
        ),
        15,
        6,
        "cannot go to START",
    );
}

#[test]
fn unreachable_node_and_unknown_tool() {
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"any\" }}\n[nodes.a]\nset = {{ n = \"1\" }}\n[nodes.island]\ntool = \"roofing.estimat\"\noutput = \"n\"\n[[edges]]\nfrom = \"island\"\nto = \"END\"\n{OK_TAIL}"
    );
    expect(&src, 7, 8, "node `island` is unreachable from START");
    expect(&src, 8, 8, "unknown tool `roofing.estimat`");
    let all = positions(&src);
    assert!(all.iter().any(|(_, _, m)| m.contains("unknown tool")));
}

#[test]
fn node_kinds() {
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"any\" }}\n[nodes.a]\nset = {{ n = \"1\" }}\nask = \"why?\"\n{OK_TAIL}"
    );
    expect(&src, 5, 8, "several kinds: set, ask");
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"any\" }}\n[nodes.a]\noutput = \"n\"\n{OK_TAIL}"
    );
    expect(&src, 5, 8, "node `a` does nothing");
    let src = format!(
        "[graph]\nname = \"x\"\n[state]\nn = {{ type = \"any\" }}\n[nodes.a]\nask = \"ok?\"\ninterrupt = \"sometimes\"\n{OK_TAIL}"
    );
    expect(&src, 7, 13, "unknown variant `sometimes`");
}

#[test]
fn missing_graph_name_and_zero_recursion_limit() {
    let src = format!(
        "[graph]\nrecursion_limit = 0\n[state]\nn = {{ type = \"any\" }}\n[nodes.a]\nset = {{ n = \"1\" }}\n{OK_TAIL}"
    );
    expect(&src, 1, 1, "[graph] needs a `name`");
    expect(&src, 2, 19, "`recursion_limit` must be at least 1");
}

#[test]
fn display_format_is_file_line_col_error() {
    let err = common::load_err("[graph]\nname = \"x\"\nbogus = 1\n", &Registry::new());
    let text = err.to_string();
    assert!(
        text.lines()
            .any(|l| l == "test.toml:3:1: error: unknown key `bogus` in [graph]"),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|l| l.starts_with("test.toml:") || l.starts_with("  help: ")),
        "{text}"
    );
    assert!(text.contains("\n  help: "), "{text}");
}
