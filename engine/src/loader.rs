//! The TOML graph format: parsing with spans, unknown-key detection, and conversion into a
//! [`GraphSpec`] for validation. Every problem in a file is reported at once, each as
//! `FILE:LINE:COL: error: ...` with a remedy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::channel::{ChannelType, Reducer, Required};
use crate::error::{Diagnostic, LoadError, Problem, to_diagnostics};
use crate::graph::{
    ChannelSpec, EdgeSpec, Graph, GraphSpec, InterruptWhen, Located, Mapping, NodeSpec,
    NodeSpecKind, RetryPolicy, compile_spec, edit_distance,
};
use crate::node::Registry;

const TOP_KEYS: &[&str] = &["graph", "state", "nodes", "edges"];
const GRAPH_KEYS: &[&str] = &["name", "description", "recursion_limit"];
const CHANNEL_KEYS: &[&str] = &["type", "default", "reducer", "description", "required"];
const NODE_KEYS: &[&str] = &[
    "description",
    "set",
    "for_each",
    "agent",
    "tool",
    "input",
    "args",
    "output",
    "ask",
    "wait",
    "graph",
    "retry",
    "timeout_s",
    "interrupt",
    "recall",
    "remember",
    "goto",
    "next",
    "defer",
    "on_empty",
    "check",
    "reask",
    "outputs",
    "stateful",
];
const RECALL_KEYS: &[&str] = &["namespace", "query", "limit", "kind", "filter"];
const REMEMBER_KEYS: &[&str] = &["namespace", "value", "kind", "key", "importance"];
const RETRY_KEYS: &[&str] = &["max_attempts", "initial_ms", "max_ms", "multiplier"];
const EDGE_KEYS: &[&str] = &["from", "to", "when", "default", "description"];

// Unknown keys are found by `check_keys` over the spanned document, which reports all of
// them at once; `deny_unknown_fields` would stop serde at the first.
#[derive(Deserialize)]
struct RawFile {
    graph: Option<Spanned<RawMeta>>,
    #[serde(default)]
    state: IndexMap<Spanned<String>, Spanned<RawChannel>>,
    #[serde(default)]
    nodes: IndexMap<Spanned<String>, Spanned<RawNode>>,
    #[serde(default)]
    edges: Vec<Spanned<RawEdge>>,
}

#[derive(Deserialize)]
struct RawMeta {
    name: Option<Spanned<String>>,
    description: Option<String>,
    recursion_limit: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
struct RawChannel {
    #[serde(rename = "type")]
    ty: Option<Spanned<ChannelType>>,
    default: Option<Spanned<toml::Value>>,
    reducer: Option<Spanned<String>>,
    #[allow(dead_code)]
    description: Option<String>,
    required: Option<Spanned<RawRequired>>,
}

/// `required = true` or `required = ["field", ...]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRequired {
    Flag(bool),
    Fields(Vec<String>),
}

type RawMapping = IndexMap<Spanned<String>, Spanned<String>>;

// Every key but `description` and `defer` is boxed: a node uses one or two of them, and
// inline they made the struct 1.5 KB, which serde moved several times per node and the
// node map grew by copying (a 1,000-node file loaded in 8.5 ms; boxed, 3.6 ms).
#[derive(Deserialize)]
struct RawNode {
    #[allow(dead_code)]
    description: Option<String>,
    set: Option<Box<Spanned<RawSet>>>,
    for_each: Option<Box<Spanned<String>>>,
    agent: Option<Box<Spanned<String>>>,
    tool: Option<Box<Spanned<String>>>,
    input: Option<Box<Spanned<RawMapping>>>,
    args: Option<Box<Spanned<RawMapping>>>,
    output: Option<Box<Spanned<String>>>,
    ask: Option<Box<Spanned<RawAsk>>>,
    check: Option<Box<Spanned<String>>>,
    reask: Option<Box<Spanned<String>>>,
    outputs: Option<Box<Spanned<RawMapping>>>,
    stateful: Option<Box<Spanned<bool>>>,
    wait: Option<Box<Spanned<RawMapping>>>,
    graph: Option<Box<Spanned<String>>>,
    retry: Option<Box<Spanned<RawRetry>>>,
    timeout_s: Option<Box<Spanned<f64>>>,
    interrupt: Option<Box<Spanned<InterruptWhen>>>,
    recall: Option<Box<Spanned<RawRecall>>>,
    remember: Option<Box<Spanned<RawRemember>>>,
    goto: Option<Box<Spanned<Vec<Spanned<String>>>>>,
    next: Option<Box<Spanned<String>>>,
    defer: Option<bool>,
    on_empty: Option<Box<Spanned<RawOnEmpty>>>,
}

/// Declares `enum $name { One(String), Many(Vec<String>) }` read from a string or a list of
/// strings. serde's `untagged` would buffer every value and copy it once more before
/// trying each variant; this reads it once, and says what it expected in the file's terms.
macro_rules! one_or_many {
    ($(#[$doc:meta])* $name:ident, $expected:literal) => {
        $(#[$doc])*
        enum $name {
            One(String),
            Many(Vec<String>),
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl<'de> serde::de::Visitor<'de> for Visit {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expected)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::One(v.to_owned()))
                    }
                    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$name, E> {
                        Ok($name::One(v))
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<$name, A::Error> {
                        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                        while let Some(item) = seq.next_element::<String>()? {
                            items.push(item);
                        }
                        Ok($name::Many(items))
                    }
                }
                d.deserialize_any(Visit)
            }
        }
    };
}

one_or_many!(
    /// `ask = "question"`, or a list of questions asked in turn.
    RawAsk,
    "a question, or a list of questions"
);

/// `set = { key = "CEL" }`, or a list of expressions for several writes in order.
type RawSet = IndexMap<Spanned<String>, Spanned<RawWrites>>;

one_or_many!(
    /// One CEL expression for a key, or a list of them for several writes in order.
    RawWrites,
    "a CEL expression, or a list of them"
);

/// What a `for_each` node does after an empty list.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawOnEmpty {
    /// Nothing runs after it (LangGraph's zero `Send`s).
    Skip,
    /// Its edges fire as after any step.
    Continue,
}

/// `recall = { namespace = [CEL, ...], query = CEL, limit = N, kind = "...", filter = CEL }`:
/// the tool `memory.recall`, its result written to the node's `output`.
#[derive(Deserialize)]
struct RawRecall {
    namespace: Spanned<Vec<Spanned<String>>>,
    query: Option<Spanned<String>>,
    limit: Option<Spanned<u32>>,
    kind: Option<Spanned<String>>,
    filter: Option<Spanned<String>>,
}

/// `remember = { namespace = [CEL, ...], value = CEL, kind = "...", key = CEL,
/// importance = CEL }`: the tool `memory.remember`.
#[derive(Deserialize)]
struct RawRemember {
    namespace: Spanned<Vec<Spanned<String>>>,
    value: Spanned<String>,
    kind: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    importance: Option<Spanned<String>>,
}

/// A CEL string literal.
fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The namespace segments, each a CEL expression, as one CEL list.
fn cel_list(parts: &Spanned<Vec<Spanned<String>>>) -> Located<String> {
    let items: Vec<&str> = parts
        .get_ref()
        .iter()
        .map(|p| p.get_ref().as_str())
        .collect();
    Located::at(format!("[{}]", items.join(", ")), loc(parts))
}

fn recall_args(r: &RawRecall) -> Mapping {
    let mut args = vec![(
        Located::new("namespace".to_string()),
        cel_list(&r.namespace),
    )];
    if let Some(q) = &r.query {
        args.push((Located::new("query".to_string()), located(q)));
    }
    if let Some(l) = &r.limit {
        args.push((
            Located::new("limit".to_string()),
            Located::at(l.get_ref().to_string(), loc(l)),
        ));
    }
    if let Some(k) = &r.kind {
        args.push((
            Located::new("kind".to_string()),
            Located::at(cel_string(k.get_ref()), loc(k)),
        ));
    }
    if let Some(f) = &r.filter {
        args.push((Located::new("filter".to_string()), located(f)));
    }
    args
}

fn remember_args(r: &RawRemember) -> Mapping {
    let mut args = vec![
        (
            Located::new("namespace".to_string()),
            cel_list(&r.namespace),
        ),
        (Located::new("value".to_string()), located(&r.value)),
    ];
    if let Some(k) = &r.kind {
        args.push((
            Located::new("kind".to_string()),
            Located::at(cel_string(k.get_ref()), loc(k)),
        ));
    }
    if let Some(k) = &r.key {
        args.push((Located::new("key".to_string()), located(k)));
    }
    if let Some(i) = &r.importance {
        args.push((Located::new("importance".to_string()), located(i)));
    }
    args
}

#[derive(Deserialize)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
    multiplier: Option<f32>,
}

#[derive(Deserialize)]
struct RawEdge {
    from: Option<Spanned<OneOrMany>>,
    to: Option<Spanned<String>>,
    when: Option<Spanned<String>>,
    #[serde(default)]
    default: bool,
    #[allow(dead_code)]
    description: Option<String>,
}

one_or_many!(
    /// An edge's `from`: one node, or a list of nodes that all finish first (a join).
    OneOrMany,
    "a node name, or a list of node names"
);

/// Loads and validates a graph file. Subgraph paths are relative to it.
pub fn load_file(path: impl AsRef<Path>, registry: &Registry) -> Result<Graph, LoadError> {
    let path = path.as_ref();
    // The file itself heads the include chain, so a subgraph that includes it back is a
    // cycle found at its first repetition.
    let mut stack = vec![path.canonicalize().unwrap_or_else(|_| path.to_path_buf())];
    load_path(path, registry, &mut stack)
}

/// Loads and validates graph TOML held in memory; `file` names it in diagnostics and
/// subgraph paths are relative to its directory.
pub fn load_str(source: &str, file: &str, registry: &Registry) -> Result<Graph, LoadError> {
    let mut stack = Vec::new();
    load_source(source, Path::new(file), registry, &mut stack)
}

fn load_path(
    path: &Path,
    registry: &Registry,
    stack: &mut Vec<PathBuf>,
) -> Result<Graph, LoadError> {
    let source = read_graph_file(path).map_err(|d| LoadError {
        diagnostics: vec![d],
    })?;
    load_source(&source, path, registry, stack)
}

/// Graph files larger than this are refused before they are read whole.
pub const MAX_GRAPH_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a graph file of at most [`MAX_GRAPH_FILE_BYTES`] that must be UTF-8.
fn read_graph_file(path: &Path) -> Result<String, Diagnostic> {
    read_text_file(path, MAX_GRAPH_FILE_BYTES)
}

/// Reads a UTF-8 text file of at most `max_bytes` (graphs, and the CLI's `@FILE` inputs),
/// refusing a larger one before reading it whole; an invalid byte is reported at its line,
/// column and offset.
pub fn read_text_file(path: &Path, max_bytes: u64) -> Result<String, Diagnostic> {
    use std::io::Read;
    let file = path.display().to_string();
    let problem = |line, col, message: String, help: &str| Diagnostic {
        file: file.clone(),
        line,
        col,
        message,
        help: Some(help.into()),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
        .map_err(|e| problem(0, 0, format!("cannot read the file: {e}"), "check the path"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(problem(
            0,
            0,
            format!(
                "the file is larger than {} MiB",
                max_bytes.div_ceil(1024 * 1024)
            ),
            "check that the path names the file you mean",
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let valid = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
        let (line, col) = crate::error::LineIndex::new(&valid).line_col(at);
        problem(
            line,
            col,
            format!("not UTF-8 text (invalid byte at offset {at})"),
            "save the file as UTF-8",
        )
    })
}

fn load_source(
    source: &str,
    path: &Path,
    registry: &Registry,
    stack: &mut Vec<PathBuf>,
) -> Result<Graph, LoadError> {
    let file = path.display().to_string();
    let mut problems = Vec::new();
    let mut nested: Vec<Diagnostic> = Vec::new();
    let fail = |problems: Vec<Problem>, nested: Vec<Diagnostic>| {
        let mut diagnostics = to_diagnostics(&file, Some(source), problems);
        diagnostics.extend(nested);
        LoadError { diagnostics }
    };

    // Syntax, then unknown keys, over the spanned document.
    let (doc, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        for e in syntax {
            problems.push(Problem {
                loc: e.span(),
                message: format!("TOML syntax: {}", e.message().trim()),
                help: Some("see docs/graph-format.md for the format".into()),
            });
        }
        return Err(fail(problems, nested));
    }
    check_keys(doc.get_ref(), &mut problems);
    let found_unknown = !problems.is_empty();

    // Deserialized from the table already parsed: parsing the text again cost as much.
    let raw: RawFile = match serde::Deserialize::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(raw) => raw,
        Err(e) => {
            if !(found_unknown && e.message().contains("unknown field")) {
                problems.push(Problem {
                    loc: e.span(),
                    message: plain_serde_message(e.message().trim()),
                    help: Some(help_for(e.message())),
                });
            }
            return Err(fail(problems, nested));
        }
    };
    let spec = to_spec(raw, path, registry, stack, &mut problems, &mut nested);
    let mut warnings = Vec::new();
    let graph = compile_spec(spec, registry, &mut problems, &mut warnings);
    match graph {
        Some(mut graph) if problems.is_empty() && nested.is_empty() => {
            graph.warnings = to_diagnostics(&file, Some(source), warnings);
            Ok(graph)
        }
        _ => Err(fail(problems, nested)),
    }
}

/// serde's messages name Rust types and internal helpers; say what the file must hold.
fn plain_serde_message(message: &str) -> String {
    const PLAIN: &[(&str, &str)] = &[
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        (
            "data did not match any variant of untagged enum RawRequired",
            "`required` takes true, false, or a list of field names",
        ),
    ];
    let mut out = message.to_string();
    for (from, to) in PLAIN {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out
}

fn help_for(message: &str) -> String {
    if message.contains("unknown variant") {
        "use one of the values listed".into()
    } else if message.contains("invalid type") {
        "check the value's type against docs/graph-format.md".into()
    } else if message.contains("missing field") {
        "add the missing key".into()
    } else {
        "see docs/graph-format.md for the format".into()
    }
}

fn loc<T>(s: &Spanned<T>) -> crate::error::Loc {
    Some(s.span())
}

fn located<T: Clone>(s: &Spanned<T>) -> Located<T> {
    Located::at(s.get_ref().clone(), loc(s))
}

/// A `set` table's writes, in order; a list gives several writes to one channel.
fn set_writes(raw: &Spanned<RawSet>) -> Mapping {
    let mut out = Vec::new();
    for (key, value) in raw.get_ref() {
        match value.get_ref() {
            RawWrites::One(text) => out.push((located(key), Located::at(text.clone(), loc(value)))),
            // Spans do not survive an untagged enum: each expression points at the list.
            RawWrites::Many(list) => {
                out.extend(
                    list.iter()
                        .map(|v| (located(key), Located::at(v.clone(), loc(value)))),
                );
            }
        }
    }
    out
}

fn mapping(raw: &Spanned<RawMapping>) -> Mapping {
    raw.get_ref()
        .iter()
        .map(|(k, v)| (located(k), located(v)))
        .collect()
}

fn to_spec(
    raw: RawFile,
    path: &Path,
    registry: &Registry,
    stack: &mut Vec<PathBuf>,
    problems: &mut Vec<Problem>,
    nested: &mut Vec<Diagnostic>,
) -> GraphSpec {
    let mut spec = GraphSpec::default();
    match &raw.graph {
        Some(meta) => {
            let m = meta.get_ref();
            spec.name = m
                .name
                .as_ref()
                .map_or_else(|| Located::at(String::new(), loc(meta)), located);
            spec.description = m.description.clone();
            spec.recursion_limit = m.recursion_limit.as_ref().map(located);
        }
        None => problems.push(Problem::new(
            &Some(0..0),
            "the file has no [graph] table",
            "start the file with [graph] and name = \"my_graph\"",
        )),
    }
    for (name, channel) in &raw.state {
        let c = channel.get_ref();
        let Some(ty) = &c.ty else {
            problems.push(Problem::new(
                &loc(channel),
                format!("channel `{}` has no `type`", name.get_ref()),
                format!("add type = \"...\" (one of {})", ChannelType::NAMES),
            ));
            continue;
        };
        spec.channels.push(ChannelSpec {
            name: located(name),
            ty: located(ty),
            reducer: c.reducer.as_ref().map(|r| {
                let reducer = match r.get_ref().as_str() {
                    "replace" => Reducer::Replace,
                    "append" => Reducer::Append,
                    "merge" => Reducer::Merge,
                    "add" => Reducer::Add,
                    "messages" => Reducer::Messages,
                    other => Reducer::Custom(crate::channel::CustomReducer::named(other)),
                };
                Located::at(reducer, loc(r))
            }),
            default: c
                .default
                .as_ref()
                .map(|d| Located::at(toml_to_json(d.get_ref()), loc(d))),
            required: c.required.as_ref().and_then(|r| {
                let required = match r.get_ref() {
                    RawRequired::Flag(false) => return None,
                    RawRequired::Flag(true) => Required::Value,
                    RawRequired::Fields(fields) => Required::Fields(fields.clone()),
                };
                Some(Located::at(required, loc(r)))
            }),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    for (name, node) in &raw.nodes {
        let n = node.get_ref();
        let node_name = name.get_ref();
        let mut kinds: Vec<(&str, NodeSpecKind)> = Vec::new();
        if let Some(set) = &n.set {
            kinds.push(("set", NodeSpecKind::Set(set_writes(set))));
        }
        if let Some(tool) = &n.tool {
            kinds.push((
                "tool",
                NodeSpecKind::Tool {
                    name: located(tool),
                    args: n.args.as_deref().map(mapping).unwrap_or_default(),
                },
            ));
        }
        if let Some(agent) = &n.agent {
            kinds.push((
                "agent",
                NodeSpecKind::Agent {
                    name: located(agent),
                    input: n.input.as_deref().map(mapping).unwrap_or_default(),
                },
            ));
        }
        for (key, ns) in [
            (
                "recall",
                n.recall.as_deref().map(|r| &r.get_ref().namespace),
            ),
            (
                "remember",
                n.remember.as_deref().map(|r| &r.get_ref().namespace),
            ),
        ] {
            if let Some(ns) = ns.filter(|ns| ns.get_ref().is_empty()) {
                problems.push(Problem::new(
                    &loc(ns),
                    format!("`{key}.namespace` is empty: it would reach every tenant's memories"),
                    "start it with the tenant, e.g. namespace = [\"'tenant:' + state.tenant\", \"'customers'\"]",
                ));
            }
        }
        if let Some(recall) = &n.recall {
            kinds.push((
                "recall",
                NodeSpecKind::Tool {
                    name: Located::at("memory.recall".to_string(), loc(recall)),
                    args: recall_args(recall.get_ref()),
                },
            ));
        }
        if let Some(remember) = &n.remember {
            kinds.push((
                "remember",
                NodeSpecKind::Tool {
                    name: Located::at("memory.remember".to_string(), loc(remember)),
                    args: remember_args(remember.get_ref()),
                },
            ));
        }
        if let Some(ask) = &n.ask {
            let questions = match ask.get_ref() {
                RawAsk::One(q) => vec![Located::at(q.clone(), loc(ask))],
                // Spans do not survive an untagged enum: each question points at the list.
                RawAsk::Many(list) => list
                    .iter()
                    .map(|q| Located::at(q.clone(), loc(ask)))
                    .collect(),
            };
            kinds.push((
                "ask",
                NodeSpecKind::Ask {
                    questions,
                    check: n.check.as_deref().map(located),
                    reask: n.reask.as_deref().map(located),
                },
            ));
        }
        for (key, value) in [("check", &n.check), ("reask", &n.reask)] {
            if let (Some(v), None) = (value, &n.ask) {
                problems.push(Problem::new(
                    &loc(v),
                    format!("node `{node_name}` has `{key}` but no `ask`"),
                    "`check` and `reask` belong to ask nodes",
                ));
            }
        }
        if let Some(wait) = &n.wait {
            let (mut seconds, mut until) = (None, None);
            for (key, value) in wait.get_ref() {
                match key.get_ref().as_str() {
                    "seconds" => seconds = Some(located(value)),
                    "until" => until = Some(located(value)),
                    other => problems.push(Problem::new(
                        &loc(key),
                        format!("node `{node_name}`: `wait.{other}` is not a wait setting"),
                        "give `seconds = CEL` (a duration) or `until = CEL` (an RFC 3339 time or Unix seconds)",
                    )),
                }
            }
            if seconds.is_some() == until.is_some() {
                problems.push(Problem::new(
                    &loc(wait),
                    format!(
                        "node `{node_name}`: `wait` needs exactly one of `seconds` and `until`"
                    ),
                    "e.g. wait = { seconds = \"state.delay_s\" } or wait = { until = \"state.visit_at\" }",
                ));
            }
            kinds.push(("wait", NodeSpecKind::Wait { seconds, until }));
        }
        if let Some(sub) = &n.graph {
            match load_subgraph(base, sub, registry, stack, problems, nested) {
                Some(graph) => kinds.push((
                    "graph",
                    NodeSpecKind::Subgraph {
                        graph,
                        input: n.input.as_deref().map(mapping),
                        outputs: n.outputs.as_deref().map(mapping),
                        stateful: n.stateful.as_deref().is_some_and(|s| *s.get_ref()),
                    },
                )),
                // Reported already; the node stays, so its edges are not reported as unknown.
                None => kinds.push(("graph", NodeSpecKind::Set(Vec::new()))),
            }
        }
        if n.args.is_some() && n.tool.is_none() {
            problems.push(Problem::new(
                &n.args.as_deref().and_then(loc),
                format!("node `{node_name}` has `args` but no `tool`"),
                "`args` belong to tool nodes; agent nodes take `input`",
            ));
        }
        if n.input.is_some() && n.agent.is_none() && n.graph.is_none() {
            problems.push(Problem::new(
                &n.input.as_deref().and_then(loc),
                format!("node `{node_name}` has `input` but no `agent` or `graph`"),
                "`input` belongs to agent and subgraph nodes; tool nodes take `args`",
            ));
        }
        for (key, given) in [
            ("outputs", n.outputs.as_deref().and_then(loc)),
            ("stateful", n.stateful.as_deref().and_then(loc)),
        ] {
            if given.is_some() && n.graph.is_none() {
                problems.push(Problem::new(
                    &given,
                    format!("node `{node_name}` has `{key}` but no `graph`"),
                    "`outputs` and `stateful` belong to subgraph nodes",
                ));
            }
        }
        let kind = match kinds.len() {
            0 => {
                problems.push(Problem::new(
                    &loc(name),
                    format!("node `{node_name}` does nothing"),
                    "give it one of `set`, `tool`, `agent`, `ask`, `wait`, `graph`, `recall` or `remember`",
                ));
                continue;
            }
            1 => kinds.remove(0).1,
            _ => {
                let names: Vec<&str> = kinds.iter().map(|k| k.0).collect();
                problems.push(Problem::new(
                    &loc(name),
                    format!("node `{node_name}` has several kinds: {}", names.join(", ")),
                    "a node does one thing; split it into several nodes joined by edges",
                ));
                continue;
            }
        };
        let mut spec_node = NodeSpec::new(node_name.clone(), kind);
        spec_node.name = located(name);
        spec_node.for_each = n.for_each.as_deref().map(located);
        spec_node.output = n.output.as_deref().map(located);
        spec_node.interrupt = n.interrupt.as_deref().map(located);
        spec_node.goto = n
            .goto
            .as_ref()
            .map(|g| Located::at(g.get_ref().iter().map(located).collect(), loc(g)));
        spec_node.next = n.next.as_deref().map(located);
        spec_node.defer = n.defer.unwrap_or(false);
        spec_node.on_empty_continue = n
            .on_empty
            .as_ref()
            .is_some_and(|o| *o.get_ref() == RawOnEmpty::Continue);
        spec_node.timeout = n.timeout_s.as_deref().map(|t| {
            let secs = *t.get_ref();
            let d = if secs.is_finite() && secs > 0.0 {
                Duration::from_secs_f64(secs)
            } else {
                Duration::ZERO
            };
            Located::at(d, loc(t))
        });
        spec_node.retry = n.retry.as_deref().map(|r| {
            let raw = r.get_ref();
            let default = RetryPolicy::default();
            Located::at(
                RetryPolicy {
                    max_attempts: raw.max_attempts.unwrap_or(3),
                    initial: raw
                        .initial_ms
                        .map_or(default.initial, Duration::from_millis),
                    max: raw.max_ms.map_or(default.max, Duration::from_millis),
                    multiplier: raw.multiplier.unwrap_or(default.multiplier),
                },
                loc(r),
            )
        });
        spec.nodes.push(spec_node);
    }
    for edge in &raw.edges {
        let e = edge.get_ref();
        let Some(to) = &e.to else {
            problems.push(Problem::new(
                &loc(edge),
                "edge has no `to`",
                "add to = \"node\" or \"END\"",
            ));
            continue;
        };
        let from = match &e.from {
            Some(f) => match f.get_ref() {
                OneOrMany::One(name) => vec![Located::at(name.clone(), loc(f))],
                OneOrMany::Many(names) => names
                    .iter()
                    .map(|n| Located::at(n.clone(), loc(f)))
                    .collect(),
            },
            None => {
                problems.push(Problem::new(
                    &loc(edge),
                    "edge has no `from`",
                    "add from = \"START\" or a node name (a list makes a join)",
                ));
                continue;
            }
        };
        spec.edges.push(EdgeSpec {
            loc: loc(edge),
            from,
            to: located(to),
            when: e.when.as_ref().map(located),
            default: e.default,
        });
    }
    spec
}

fn load_subgraph(
    base: &Path,
    sub: &Spanned<String>,
    registry: &Registry,
    stack: &mut Vec<PathBuf>,
    problems: &mut Vec<Problem>,
    nested: &mut Vec<Diagnostic>,
) -> Option<Arc<Graph>> {
    let path = base.join(sub.get_ref());
    let key = path.canonicalize().unwrap_or_else(|_| path.clone());
    if let Some(start) = stack.iter().position(|p| *p == key) {
        let name = |p: &PathBuf| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            )
        };
        let mut chain: Vec<String> = stack[start..].iter().map(name).collect();
        chain.push(name(&key));
        problems.push(Problem::new(
            &loc(sub),
            format!(
                "subgraphs include each other in a cycle: {}",
                chain.join(" -> ")
            ),
            "a graph cannot contain itself; loop with edges instead",
        ));
        return None;
    }
    if !path.exists() {
        problems.push(Problem::new(
            &loc(sub),
            format!("subgraph file `{}` not found", path.display()),
            "the path is relative to this file",
        ));
        return None;
    }
    stack.push(key);
    let result = load_path(&path, registry, stack);
    stack.pop();
    match result {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            problems.push(Problem::new(
                &loc(sub),
                format!(
                    "subgraph `{}` has errors (listed with its file name)",
                    sub.get_ref()
                ),
                "fix the subgraph file",
            ));
            nested.extend(e.diagnostics);
            None
        }
    }
}

/// Reports every key the format does not know, with a "did you mean".
fn check_keys(doc: &DeTable<'_>, problems: &mut Vec<Problem>) {
    check_table(doc, TOP_KEYS, "at the top level", problems);
    if let Some(graph) = doc.get("graph").and_then(|v| v.get_ref().as_table()) {
        check_table(graph, GRAPH_KEYS, "in [graph]", problems);
    }
    if let Some(state) = doc.get("state").and_then(|v| v.get_ref().as_table()) {
        for (name, channel) in state {
            if let Some(t) = channel.get_ref().as_table() {
                check_table(
                    t,
                    CHANNEL_KEYS,
                    &format!("in channel `{}`", name.get_ref()),
                    problems,
                );
            }
        }
    }
    if let Some(nodes) = doc.get("nodes").and_then(|v| v.get_ref().as_table()) {
        for (name, node) in nodes {
            if let Some(t) = node.get_ref().as_table() {
                let what = format!("in node `{}`", name.get_ref());
                check_table(t, NODE_KEYS, &what, problems);
                for (key, allowed) in [("recall", RECALL_KEYS), ("remember", REMEMBER_KEYS)] {
                    if let Some(table) = t.get(key).and_then(|v| v.get_ref().as_table()) {
                        check_table(
                            table,
                            allowed,
                            &format!("in `{key}` of node `{}`", name.get_ref()),
                            problems,
                        );
                    }
                }
                if let Some(retry) = t.get("retry").and_then(|v| v.get_ref().as_table()) {
                    check_table(
                        retry,
                        RETRY_KEYS,
                        &format!("in `retry` of node `{}`", name.get_ref()),
                        problems,
                    );
                }
            }
        }
    }
    if let Some(edges) = doc.get("edges").and_then(|v| v.get_ref().as_array()) {
        for (i, edge) in edges.iter().enumerate() {
            if let DeValue::Table(t) = edge.get_ref() {
                check_table(t, EDGE_KEYS, &format!("in edge #{}", i + 1), problems);
            }
        }
    }
}

fn check_table(table: &DeTable<'_>, allowed: &[&str], what: &str, problems: &mut Vec<Problem>) {
    for (key, _) in table {
        let name = key.get_ref();
        if allowed.contains(&name.as_ref()) {
            continue;
        }
        let best = allowed.iter().map(|a| (edit_distance(name, a), *a)).min();
        let help = match best {
            Some((d, a)) if d <= 2 => {
                format!("did you mean `{a}`? allowed keys: {}", allowed.join(", "))
            }
            _ => format!("allowed keys: {}", allowed.join(", ")),
        };
        problems.push(Problem {
            loc: Some(key.span()),
            message: format!("unknown key `{name}` {what}"),
            help: Some(help),
        });
    }
}

/// Converts a TOML value to JSON (datetimes become strings).
pub fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
