//! Validation and compilation of a [`GraphSpec`] into a runnable [`Graph`], concern by
//! concern: graph settings, channels, node names, nodes (with their CEL expressions),
//! edges, and the graph analysis on a `petgraph` graph: every node leaves, every node is
//! reachable from START, and no loop traps a run (a warning).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Dfs;

use super::*;
use crate::channel::{Channel, ChannelType, Required};
use crate::error::{Loc, Problem};
use crate::expr::{CompileError, Expr, Scope};
use crate::node::Registry;

/// An end of a declared edge: START, END or a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Start,
    End,
    Node(NodeId),
}

impl Endpoint {
    fn node(self) -> Option<NodeId> {
        match self {
            Endpoint::Node(n) => Some(n),
            Endpoint::Start | Endpoint::End => None,
        }
    }
}

/// Validates `spec` and compiles it; every problem found goes to `problems` (the graph is
/// `None` when there is any), and what is legal but likely a mistake to `warnings`.
pub(crate) fn compile_spec(
    spec: GraphSpec,
    registry: &Registry,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<Graph> {
    let recursion_limit = settings(&spec, problems);
    let (channels, channel_index, required) = compile_channels(&spec, registry, problems);
    let node_index = index_nodes(&spec, problems);
    let mut cx = Compiler {
        problems,
        channels: &channels,
        channel_index: &channel_index,
        compiled: HashMap::new(),
    };
    let mut nodes = compile_nodes(&mut cx, &spec, registry);
    let edges = compile_edges(&mut cx, &spec, &node_index, &mut nodes);
    check_every_node_leaves(&spec, problems);
    check_reachable(&spec, &node_index, &edges, problems);
    if !problems.is_empty() {
        return None;
    }
    check_loops_leave(&spec, &edges, warnings);
    fold_ranks(&mut nodes);
    let channel_names: Vec<Arc<String>> =
        channels.iter().map(|c| Arc::new(c.name.clone())).collect();
    Some(Graph {
        name: spec.name.value,
        description: spec.description,
        recursion_limit,
        channels,
        channel_names,
        channel_index,
        nodes,
        node_index,
        start: edges.start,
        joins: edges.joins,
        edges: edges.views,
        required,
        warnings: Vec::new(),
    })
}

/// The graph's name and recursion limit.
fn settings(spec: &GraphSpec, problems: &mut Vec<Problem>) -> u32 {
    if spec.name.value.trim().is_empty() {
        problems.push(Problem::new(
            &spec.name.loc,
            "[graph] needs a `name`",
            "add `name = \"my_graph\"` under [graph]",
        ));
    }
    match &spec.recursion_limit {
        Some(limit) if limit.value == 0 => {
            problems.push(Problem::new(
                &limit.loc,
                "`recursion_limit` must be at least 1",
                "use a positive number of super-steps, e.g. 200",
            ));
            DEFAULT_RECURSION_LIMIT
        }
        Some(limit) => limit.value,
        None => DEFAULT_RECURSION_LIMIT,
    }
}

/// The `[state]` channels: each checked (one declaration, a reducer that fits its type, a
/// default of its type, required fields only on objects), indexed by name.
fn compile_channels(
    spec: &GraphSpec,
    registry: &Registry,
    problems: &mut Vec<Problem>,
) -> (Vec<Channel>, HashMap<String, ChannelId>, Vec<ChannelId>) {
    let mut channels = Vec::with_capacity(spec.channels.len());
    let mut channel_index = HashMap::new();
    let mut required: Vec<ChannelId> = Vec::new();
    for c in &spec.channels {
        let name = c.name.value.clone();
        if channel_index.contains_key(&name) {
            problems.push(Problem::new(
                &c.name.loc,
                format!("channel `{name}` is declared twice"),
                "keep one declaration",
            ));
            continue;
        }
        let mut reducer = c
            .reducer
            .as_ref()
            .map_or(c.ty.value.default_reducer(), |r| r.value.clone());
        if let (Reducer::Custom(custom), Some(r)) = (&mut reducer, &c.reducer) {
            custom.fold = registry.reducer(&custom.name).cloned();
            if custom.fold.is_none() {
                let mut known: Vec<&str> = crate::channel::Reducer::NAMES.split(", ").collect();
                known.extend(registry.reducer_names());
                problems.push(Problem::new(
                    &r.loc,
                    format!("unknown reducer `{}` for channel `{name}`", custom.name),
                    format!(
                        "{}; Rust reducers are added with `Registry::register_reducer`",
                        suggest("reducers", &custom.name, &known)
                    ),
                ));
            }
        }
        if let Some(r) = &c.reducer
            && !r.value.fits(c.ty.value)
        {
            problems.push(Problem::new(
                    &r.loc,
                    format!("reducer `{}` does not fit channel `{name}` of type `{}`", reducer_name(&r.value), type_name(c.ty.value)),
                    "append/messages need an array or messages channel, merge an object, add an integer or number",
                ));
        }
        let default = match &c.default {
            Some(d) => {
                if !c.ty.value.accepts(&d.value) {
                    problems.push(Problem::new(
                        &d.loc,
                        format!(
                            "the default of `{name}` is {}, not {}",
                            crate::channel::kind(&d.value),
                            type_name(c.ty.value)
                        ),
                        format!("give a default of type {}", type_name(c.ty.value)),
                    ));
                }
                d.value.clone()
            }
            None => c.ty.value.zero(),
        };
        if let Some(r) = &c.required
            && let Required::Fields(_) = r.value
            && !matches!(c.ty.value, ChannelType::Object | ChannelType::Any)
        {
            problems.push(Problem::new(
                &r.loc,
                format!("channel `{name}`: required fields need an object channel"),
                "use `required = true` for a value of any other type",
            ));
        }
        if c.required.is_some() {
            required.push(channels.len() as ChannelId);
        }
        channel_index.insert(name.clone(), channels.len() as ChannelId);
        channels.push(Channel {
            name,
            ty: c.ty.value,
            reducer,
            default,
            required: c.required.as_ref().map(|r| r.value.clone()),
        });
    }
    (channels, channel_index, required)
}

/// Node names, first: edges and routes may refer to any node.
fn index_nodes(spec: &GraphSpec, problems: &mut Vec<Problem>) -> HashMap<String, NodeId> {
    let mut node_index: HashMap<String, NodeId> = HashMap::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let name = &n.name.value;
        if name == START || name == END {
            problems.push(Problem::new(
                &n.name.loc,
                format!("`{name}` is reserved"),
                "rename the node",
            ));
        } else if node_index.insert(name.clone(), i as NodeId).is_some() {
            problems.push(Problem::new(
                &n.name.loc,
                format!("node `{name}` is declared twice"),
                "give each node a unique name",
            ));
        }
    }
    node_index
}

/// What compiling nodes and edges shares: where problems go, the channels, and each
/// distinct CEL formula compiled once per graph (a chain repeats `state.count + 1`).
struct Compiler<'a> {
    problems: &'a mut Vec<Problem>,
    channels: &'a [Channel],
    channel_index: &'a HashMap<String, ChannelId>,
    compiled: HashMap<(String, Scope), Result<Expr, CompileError>>,
}

impl Compiler<'_> {
    fn lookup(&self, name: &str) -> Option<ChannelId> {
        self.channel_index.get(name).copied()
    }

    /// Compiles a CEL expression; a problem is reported at its place in the file, inside
    /// the string when that can be told.
    fn expr(&mut self, src: &Located<String>, scope: Scope, what: &str) -> Option<Expr> {
        let key = (src.value.clone(), scope);
        let result = match self.compiled.get(&key) {
            Some(done) => done.clone(),
            None => {
                let index = self.channel_index;
                let result =
                    Expr::compile(&src.value, scope, &|name: &str| index.get(name).copied());
                self.compiled.insert(key, result.clone());
                result
            }
        };
        match result {
            Ok(e) => Some(e),
            Err(e) => {
                self.problems.push(Problem {
                    loc: inside_string(&src.loc, &src.value, e.at),
                    message: format!("{what}: {}", e.message),
                    help: Some(e.help),
                });
                None
            }
        }
    }

    /// The channel a node writes, which must be declared.
    fn channel_ref(&mut self, name: &Located<String>, node: &str) -> Option<ChannelId> {
        if let Some(id) = self.lookup(&name.value) {
            return Some(id);
        }
        let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
        let help = if names.is_empty() {
            "declare it in [state]".to_string()
        } else {
            format!("declare it in [state] (declared: {})", names.join(", "))
        };
        self.problems.push(Problem::new(
            &name.loc,
            format!(
                "node `{node}` writes `{}`, which is not a declared channel",
                name.value
            ),
            help,
        ));
        None
    }

    /// A question with `{{ CEL }}` parts; each part is compiled, a problem reported at its
    /// place in the string.
    fn template(&mut self, src: &Located<String>, scope: Scope, what: &str) -> Option<Template> {
        let text = src.value.as_str();
        let mut parts = Vec::new();
        let mut rest = 0;
        let mut ok = true;
        while let Some(open) = text[rest..].find("{{").map(|i| rest + i) {
            let Some(close) = text[open + 2..].find("}}").map(|i| open + 2 + i) else {
                self.problems.push(Problem {
                    loc: inside_string(&src.loc, text, Some(open)),
                    message: format!("{what}: `{{{{` without a closing `}}}}`"),
                    help: Some("write `{{ state.name }}`, or remove the braces".into()),
                });
                return None;
            };
            if open > rest {
                parts.push(Part::Text(text[rest..open].to_string()));
            }
            let inner = &text[open + 2..close];
            let at = |loc: &Loc| match loc {
                Some(span) if span.len() == text.len() + 2 => {
                    Some(span.start + 3 + open..span.start + 3 + close)
                }
                _ => loc.clone(),
            };
            let expr = Located::at(inner.trim().to_string(), at(&src.loc));
            match self.expr(&expr, scope, what) {
                Some(e) => parts.push(Part::Expr(e)),
                None => ok = false,
            }
            rest = close + 2;
        }
        if rest < text.len() {
            parts.push(Part::Text(text[rest..].to_string()));
        }
        ok.then_some(Template(parts))
    }

    /// A node's `args` / `input` mapping, each value a CEL expression.
    fn mapping(&mut self, m: &Mapping, scope: Scope, node: &str) -> Vec<(String, Expr)> {
        m.iter()
            .filter_map(|(k, v)| {
                self.expr(v, scope, &format!("node `{node}` key `{}`", k.value))
                    .map(|e| (k.value.clone(), e))
            })
            .collect()
    }
}

/// Every node: its kind (with its tool, agent or subgraph resolved), expressions, output,
/// retry and timeout.
fn compile_nodes(
    cx: &mut Compiler<'_>,
    spec: &GraphSpec,
    registry: &Registry,
) -> Vec<CompiledNode> {
    let mut nodes = Vec::with_capacity(spec.nodes.len());
    // A node another may route to can receive work items (`Send`), bound as `item`.
    let receives_items: HashSet<&str> = spec
        .nodes
        .iter()
        .filter_map(|n| n.goto.as_ref())
        .flat_map(|g| g.value.iter().map(|t| t.value.as_str()))
        .collect();
    for n in &spec.nodes {
        let name = n.name.value.as_str();
        let scope = if n.for_each.is_some() || receives_items.contains(name) {
            Scope::Item
        } else {
            Scope::State
        };
        let for_each = n
            .for_each
            .as_ref()
            .and_then(|f| cx.expr(f, Scope::State, &format!("node `{name}` for_each")));
        let output = n.output.as_ref().and_then(|o| cx.channel_ref(o, name));
        let kind = match &n.kind {
            NodeSpecKind::Set(assignments) => {
                if n.output.is_some() {
                    cx.problems.push(Problem::new(
                        &n.name.loc,
                        format!("node `{name}` has `set` and `output`"),
                        "a `set` node names its channels as keys of `set`; remove `output`",
                    ));
                }
                let mut out = Vec::with_capacity(assignments.len());
                for (key, value) in assignments {
                    let target = cx.channel_ref(key, name);
                    let expr =
                        cx.expr(value, scope, &format!("node `{name}` sets `{}`", key.value));
                    if let (Some(t), Some(e)) = (target, expr) {
                        out.push((t, e));
                    }
                }
                Kind::Set(out)
            }
            NodeSpecKind::Tool { name: tool, args } => {
                let handler = registry.tool(&tool.value).cloned();
                if handler.is_none() && tool.value.starts_with("memory.") {
                    cx.problems.push(Problem::new(
                        &tool.loc,
                        format!("node `{name}` uses memory (`{}`), but no memory store is attached", tool.value),
                        "run it with the `brainops` CLI (which attaches the store from --memory or $BRAINOPS_MEMORY), or call `memory::register_tools` on the registry",
                    ));
                } else if handler.is_none() {
                    cx.problems.push(Problem::new(
                        &tool.loc,
                        format!("unknown tool `{}` in node `{name}`", tool.value),
                        suggest("tools", &tool.value, &registry.tool_names()),
                    ));
                }
                let input = Input::Mapping(cx.mapping(args, scope, name));
                Kind::Call {
                    handler: handler.unwrap_or_else(unresolved),
                    input,
                    output,
                }
            }
            NodeSpecKind::Agent { name: agent, input } => {
                let handler = registry.agent(&agent.value).cloned();
                if handler.is_none() {
                    cx.problems.push(Problem::new(
                        &agent.loc,
                        format!("unknown agent `{}` in node `{name}`", agent.value),
                        suggest("agents", &agent.value, &registry.agent_names()),
                    ));
                }
                let input = Input::Mapping(cx.mapping(input, scope, name));
                Kind::Call {
                    handler: handler.unwrap_or_else(unresolved),
                    input,
                    output,
                }
            }
            NodeSpecKind::Custom { node, input } => {
                let input = match input {
                    Some(m) => Input::Mapping(cx.mapping(m, scope, name)),
                    None => Input::WholeState,
                };
                Kind::Call {
                    handler: Arc::clone(node),
                    input,
                    output,
                }
            }
            NodeSpecKind::Ask {
                questions,
                check,
                reask,
            } => {
                if let Some(f) = &n.for_each {
                    cx.problems.push(Problem::new(
                        &f.loc,
                        format!("`for_each` is not supported on the ask node `{name}`"),
                        "ask one question per node, or fan out to a subgraph of ask nodes",
                    ));
                }
                let what = format!("node `{name}` ask");
                let answer_scope = crate::expr::Scope::Answer;
                if questions.is_empty() {
                    cx.problems.push(Problem::new(
                        &n.name.loc,
                        format!("node `{name}` asks no question"),
                        "give `ask = \"...\"` or a list of questions",
                    ));
                }
                Kind::Ask {
                    questions: questions
                        .iter()
                        .filter_map(|q| cx.template(q, scope, &what))
                        .collect(),
                    check: check
                        .as_ref()
                        .and_then(|c| cx.expr(c, answer_scope, &format!("node `{name}` check"))),
                    reask: reask.as_ref().and_then(|r| {
                        cx.template(r, answer_scope, &format!("node `{name}` reask"))
                    }),
                    single: questions.len() == 1,
                    output,
                }
            }
            NodeSpecKind::Wait { seconds, until } => {
                if let Some(f) = &n.for_each {
                    cx.problems.push(Problem::new(
                        &f.loc,
                        format!("`for_each` is not supported on the wait node `{name}`"),
                        "one wait per node; compute the latest time in one expression",
                    ));
                }
                let what = format!("node `{name}` wait");
                Kind::Wait {
                    seconds: seconds
                        .as_ref()
                        .and_then(|e| cx.expr(e, scope, &format!("{what}.seconds"))),
                    until: until
                        .as_ref()
                        .and_then(|e| cx.expr(e, scope, &format!("{what}.until"))),
                    output,
                }
            }
            NodeSpecKind::Subgraph {
                graph,
                input,
                outputs,
                stateful,
            } => {
                let shared: Vec<(ChannelId, ChannelId)> = graph
                    .channels
                    .iter()
                    .enumerate()
                    .filter_map(|(child, c)| {
                        cx.lookup(&c.name)
                            .map(|parent| (parent, child as ChannelId))
                    })
                    .collect();
                let input = input.as_ref().map(|m| {
                    for (key, _) in m {
                        if graph.channel_id(&key.value).is_none() {
                            let names: Vec<&str> =
                                graph.channels.iter().map(|c| c.name.as_str()).collect();
                            cx.problems.push(Problem::new(
                                &key.loc,
                                format!(
                                    "node `{name}`: `input.{}` is not a channel of subgraph `{}`",
                                    key.value, graph.name
                                ),
                                suggest("channels", &key.value, &names),
                            ));
                        }
                    }
                    cx.mapping(m, scope, name)
                });
                let write_back = match outputs {
                    Some(m) => m
                        .iter()
                        .filter_map(|(parent, child)| {
                            let p = cx.channel_ref(parent, name);
                            let c = graph.channel_id(&child.value);
                            if c.is_none() {
                                let names: Vec<&str> =
                                    graph.channels.iter().map(|c| c.name.as_str()).collect();
                                cx.problems.push(Problem::new(
                                    &child.loc,
                                    format!(
                                        "node `{name}`: `outputs.{}` names `{}`, which is not a channel of subgraph `{}`",
                                        parent.value, child.value, graph.name
                                    ),
                                    suggest("channels", &child.value, &names),
                                ));
                            }
                            Some((p?, c?))
                        })
                        .collect(),
                    None => shared.clone(),
                };
                Kind::Subgraph {
                    graph: Arc::clone(graph),
                    input,
                    shared,
                    write_back,
                    output,
                    stateful: *stateful,
                }
            }
        };
        let retry = match &n.retry {
            Some(r) if r.value.max_attempts == 0 => {
                cx.problems.push(Problem::new(
                    &r.loc,
                    format!("node `{name}`: `retry.max_attempts` must be at least 1"),
                    "1 means no retry",
                ));
                r.value
            }
            Some(r) => r.value,
            None => RetryPolicy::default(),
        };
        let timeout = match &n.timeout {
            Some(t) if matches!(kind, Kind::Set(_) | Kind::Ask { .. }) => {
                cx.problems.push(Problem::new(
                    &t.loc,
                    format!(
                        "node `{name}`: `timeout_s` applies to tool, agent and subgraph nodes only"
                    ),
                    "remove it: a `set` node's expressions are bounded by a cost limit instead, and an `ask` node waits for its answer",
                ));
                None
            }
            Some(t) if t.value.is_zero() => {
                cx.problems.push(Problem::new(
                    &t.loc,
                    format!("node `{name}`: `timeout_s` must be positive"),
                    "give seconds, e.g. `timeout_s = 30`",
                ));
                None
            }
            Some(t) => Some(t.value),
            None => None,
        };
        let next = match &n.next {
            Some(next) if !matches!(kind, Kind::Set(_)) => {
                cx.problems.push(Problem::new(
                    &next.loc,
                    format!("node `{name}`: `next` is for `set` nodes"),
                    "a tool, agent or Rust node chooses where to go with `ctx.goto(...)` / `ctx.send(...)`; or route with [[edges]] conditions",
                ));
                None
            }
            Some(next) if n.goto.is_none() => {
                cx.problems.push(Problem::new(
                    &next.loc,
                    format!("node `{name}` has `next` but no `goto` list"),
                    "declare where it may go, e.g. goto = [\"billing\", \"support\", \"END\"]",
                ));
                None
            }
            Some(next) => cx.expr(next, scope, &format!("node `{name}` next")),
            None => None,
        };
        if n.on_empty_continue && n.for_each.is_none() {
            cx.problems.push(Problem::new(
                &n.name.loc,
                format!("node `{name}`: `on_empty` applies to `for_each` nodes only"),
                "remove it, or add `for_each`",
            ));
        }
        nodes.push(CompiledNode {
            name: Arc::from(name),
            kind,
            for_each,
            goto: Vec::new(),
            next,
            defer: n.defer,
            on_empty_continue: n.on_empty_continue,
            receives_items: receives_items.contains(name),
            agent: match &n.kind {
                NodeSpecKind::Agent { name: agent, .. } => Some(Arc::from(agent.value.as_str())),
                _ => None,
            },
            retry,
            timeout,
            interrupt_before: n
                .interrupt
                .as_ref()
                .is_some_and(|i| i.value == InterruptWhen::Before),
            interrupt_after: n
                .interrupt
                .as_ref()
                .is_some_and(|i| i.value == InterruptWhen::After),
            routes: Routes::default(),
            joins: Vec::new(),
            rank: 0,
        });
    }
    nodes
}

/// The declared edges: routes out of START and out of each node, joins, and the edges as
/// drawn.
struct Edges {
    start: Routes,
    joins: Vec<JoinDef>,
    views: Vec<EdgeView>,
    /// Single-source edges, for the analysis.
    direct: Vec<(Endpoint, Endpoint)>,
}

fn compile_edges(
    cx: &mut Compiler<'_>,
    spec: &GraphSpec,
    node_index: &HashMap<String, NodeId>,
    nodes: &mut [CompiledNode],
) -> Edges {
    let mut start = Routes::default();
    let mut joins: Vec<JoinDef> = Vec::new();
    let mut views = Vec::with_capacity(spec.edges.len());
    let mut direct: Vec<(Endpoint, Endpoint)> = Vec::new();
    let resolve =
        |problems: &mut Vec<Problem>, n: &Located<String>, role: &str| -> Option<Endpoint> {
            match n.value.as_str() {
                START if role != "from" => {
                    problems.push(Problem::new(
                        &n.loc,
                        "an edge cannot go to START",
                        "START only has outgoing edges",
                    ));
                    None
                }
                END if role == "from" => {
                    problems.push(Problem::new(
                        &n.loc,
                        "an edge cannot leave END",
                        "END only has incoming edges",
                    ));
                    None
                }
                START => Some(Endpoint::Start),
                END => Some(Endpoint::End),
                other => match node_index.get(other) {
                    Some(&id) => Some(Endpoint::Node(id)),
                    None => {
                        let names: Vec<&str> = node_index.keys().map(String::as_str).collect();
                        problems.push(Problem::new(
                            &n.loc,
                            if role == "goto" {
                                format!("`goto` names unknown node `{other}`")
                            } else {
                                format!("edge {role} unknown node `{other}`")
                            },
                            suggest("nodes", other, &names),
                        ));
                        None
                    }
                },
            }
        };
    for e in &spec.edges {
        let to = resolve(cx.problems, &e.to, "to");
        let froms: Vec<Option<Endpoint>> = e
            .from
            .iter()
            .map(|f| resolve(cx.problems, f, "from"))
            .collect();
        if e.from.is_empty() {
            cx.problems.push(Problem::new(
                &e.loc,
                "an edge needs `from`",
                "add `from = \"node\"` or a list for a join",
            ));
            continue;
        }
        if e.default && e.when.is_some() {
            cx.problems.push(Problem::new(
                &e.loc,
                "an edge cannot have both `when` and `default = true`",
                "the default edge fires when no `when` matched; drop one of them",
            ));
        }
        let when = e
            .when
            .as_ref()
            .and_then(|w| cx.expr(w, Scope::State, "edge condition"));
        views.push(EdgeView {
            from: e.from.iter().map(|f| f.value.clone()).collect(),
            to: e.to.value.clone(),
            label: e.when.as_ref().map(|w| w.value.clone()),
            default: e.default,
            goto: false,
        });
        let (Some(to), true) = (to, froms.iter().all(Option::is_some)) else {
            continue;
        };
        let froms: Vec<Endpoint> = froms.into_iter().flatten().collect();
        let target = match to {
            Endpoint::Node(n) => Target::Node(n),
            // START was refused as a target above.
            Endpoint::End | Endpoint::Start => Target::End,
        };
        if froms.len() > 1 {
            if e.when.is_some() || e.default {
                cx.problems.push(Problem::new(
                    &e.loc,
                    "a join edge (a list in `from`) cannot have `when` or `default`",
                    "route after the join node instead",
                ));
            }
            if froms.contains(&Endpoint::Start) {
                cx.problems.push(Problem::new(
                    &e.loc,
                    "START cannot be part of a join",
                    "join the nodes that START leads to",
                ));
                continue;
            }
            let join = joins.len() as JoinId;
            let sources: Vec<NodeId> = froms.iter().filter_map(|f| f.node()).collect();
            for &f in &sources {
                nodes[f as usize].joins.push(join);
            }
            joins.push(JoinDef {
                sources,
                to: target,
            });
            continue;
        }
        let from = froms[0];
        direct.push((from, to));
        let routes = match from {
            Endpoint::Node(n) => &mut nodes[n as usize].routes,
            // END was refused as a source above.
            Endpoint::Start | Endpoint::End => &mut start,
        };
        if e.default {
            if routes.default.is_some() {
                cx.problems.push(Problem::new(
                    &e.loc,
                    format!("`{}` has two `default = true` edges", e.from[0].value),
                    "keep one default edge per node",
                ));
            }
            routes.default = Some(target);
        } else if let Some(w) = when {
            routes.when.push((w, target));
        } else if e.when.is_none() {
            routes.always.push(target);
        }
    }
    // Routes a node may choose at run time: drawn (dashed) and counted for reachability.
    for (i, n) in spec.nodes.iter().enumerate() {
        let Some(goto) = &n.goto else { continue };
        if goto.value.is_empty() {
            cx.problems.push(Problem::new(
                &goto.loc,
                format!("node `{}` has an empty `goto` list", n.name.value),
                "name the nodes it may go to, e.g. goto = [\"billing\", \"END\"], or remove it",
            ));
        }
        let from = Endpoint::Node(i as NodeId);
        for t in &goto.value {
            let Some(to) = resolve(cx.problems, t, "goto") else {
                continue;
            };
            let target = match to {
                Endpoint::Node(n) => Target::Node(n),
                Endpoint::End | Endpoint::Start => Target::End,
            };
            if let Some(node) = nodes.get_mut(i)
                && !node.goto.contains(&target)
            {
                node.goto.push(target);
            }
            direct.push((from, to));
            views.push(EdgeView {
                from: vec![n.name.value.clone()],
                to: t.value.clone(),
                label: None,
                default: false,
                goto: true,
            });
        }
    }
    Edges {
        start,
        joins,
        views,
        direct,
    }
}

/// Every node has an edge out. Judged on the declared edges, so an edge whose condition
/// failed to compile (already reported) does not also count as missing.
fn check_every_node_leaves(spec: &GraphSpec, problems: &mut Vec<Problem>) {
    let sources: HashSet<&str> = spec
        .edges
        .iter()
        .flat_map(|e| e.from.iter().map(|f| f.value.as_str()))
        .collect();
    if !sources.contains(START) {
        problems.push(Problem::new(
            &spec.name.loc,
            "no edge leaves START",
            "add [[edges]] from = \"START\", to = \"first_node\"",
        ));
    }
    for n in &spec.nodes {
        if !sources.contains(n.name.value.as_str()) && n.goto.is_none() {
            problems.push(Problem::new(
                &n.name.loc,
                format!("node `{}` has no outgoing edge", n.name.value),
                format!(
                    "add [[edges]] from = \"{}\", to = \"END\" (or to the next node)",
                    n.name.value
                ),
            ));
        }
    }
}

/// Every node is reachable from START. A join's target is reached once all its sources
/// are: the search over direct edges resumes from each join target as it is released.
fn check_reachable(
    spec: &GraphSpec,
    node_index: &HashMap<String, NodeId>,
    edges: &Edges,
    problems: &mut Vec<Problem>,
) {
    let count = spec.nodes.len();
    // Vertex i is node i; START is the last vertex. END is not drawn: nothing leaves it.
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(count + 1, edges.direct.len());
    for _ in 0..=count {
        graph.add_node(());
    }
    let start = NodeIndex::new(count);
    let vertex = |e: Endpoint| match e {
        Endpoint::Start => Some(start),
        Endpoint::Node(n) => Some(NodeIndex::new(n as usize)),
        Endpoint::End => None,
    };
    for &(from, to) in &edges.direct {
        if let (Some(from), Some(to)) = (vertex(from), vertex(to)) {
            graph.add_edge(from, to, ());
        }
    }
    let mut reached = vec![false; count];
    let mut released = vec![false; edges.joins.len()];
    let mut dfs = Dfs::new(&graph, start);
    loop {
        while let Some(v) = dfs.next(&graph) {
            if v != start {
                reached[v.index()] = true;
            }
        }
        let mut more = false;
        for (j, join) in edges.joins.iter().enumerate() {
            if !released[j] && join.sources.iter().all(|&s| reached[s as usize]) {
                released[j] = true;
                if let Target::Node(to) = join.to {
                    dfs.move_to(NodeIndex::new(to as usize));
                    more = true;
                    break;
                }
            }
        }
        if !more {
            break;
        }
    }
    for (i, n) in spec.nodes.iter().enumerate() {
        if !reached[i] && node_index.get(&n.name.value) == Some(&(i as NodeId)) {
            problems.push(Problem::new(
                &n.name.loc,
                format!("node `{}` is unreachable from START", n.name.value),
                "add an edge that leads to it, or remove it",
            ));
        }
    }
}

/// Warns of a loop that no edge leaves and no node of which can stop the run: a run that
/// enters it can only fail or reach the recursion limit. LangGraph accepts such graphs (a
/// test of the limit builds one on purpose), so this is a warning, not an error. A loop is
/// a strongly connected set of nodes; a node can stop a run when it can pause it (anything
/// but a plain `set`: a tool, agent or Rust node may interrupt; `ask`, `wait`, a subgraph,
/// `interrupt`) or end its branch (`for_each` over an empty list, a `next` that names
/// nothing).
fn check_loops_leave(spec: &GraphSpec, edges: &Edges, warnings: &mut Vec<Problem>) {
    let count = spec.nodes.len();
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(count, edges.direct.len());
    for _ in 0..count {
        graph.add_node(());
    }
    // Nodes with an edge to END or into a join (which may fire outside the loop).
    let mut exits = vec![false; count];
    for &(from, to) in &edges.direct {
        match (from.node(), to) {
            (Some(from), Endpoint::Node(to)) => {
                graph.add_edge(
                    NodeIndex::new(from as usize),
                    NodeIndex::new(to as usize),
                    (),
                );
            }
            (Some(from), Endpoint::End) => exits[from as usize] = true,
            _ => {}
        }
    }
    for join in &edges.joins {
        for &s in &join.sources {
            exits[s as usize] = true;
        }
    }
    for component in tarjan_scc(&graph) {
        let looped = component.len() > 1
            || component
                .first()
                .is_some_and(|&v| graph.contains_edge(v, v));
        if !looped {
            continue;
        }
        let inside = |v: NodeIndex| component.contains(&v);
        let leaves = component.iter().any(|&v| {
            exits[v.index()]
                || can_stop_a_run(&spec.nodes[v.index()])
                || graph.neighbors(v).any(|w| !inside(w))
        });
        if leaves {
            continue;
        }
        let mut members: Vec<usize> = component.iter().map(|v| v.index()).collect();
        members.sort_unstable();
        let names: Vec<String> = members
            .iter()
            .map(|&i| format!("`{}`", spec.nodes[i].name.value))
            .collect();
        let first = &spec.nodes[members[0]].name;
        warnings.push(Problem::new(
            &first.loc,
            format!(
                "no edge leaves the loop through {}: a run that enters it can only fail or reach the recursion limit",
                names.join(", ")
            ),
            format!(
                "give the loop a way out, e.g. [[edges]] from = \"{}\", to = \"END\", when = \"<done>\"",
                first.value
            ),
        ));
    }
}

/// Whether a node can pause a run or end its branch (see [`check_loops_leave`]).
fn can_stop_a_run(node: &NodeSpec) -> bool {
    !matches!(node.kind, NodeSpecKind::Set(_))
        || node.interrupt.is_some()
        || node.next.is_some()
        || (node.for_each.is_some() && !node.on_empty_continue)
}

/// Where byte `at` of a string value is in the file, when its TOML token is the value in
/// plain quotes (no escapes, one line): then the token is exactly two bytes longer than
/// the value. Otherwise, the token's start.
fn inside_string(loc: &Loc, value: &str, at: Option<usize>) -> Loc {
    match (loc, at) {
        (Some(span), Some(at)) if span.len() == value.len() + 2 && at <= value.len() => {
            Some(span.start + 1 + at..span.end)
        }
        _ => loc.clone(),
    }
}
