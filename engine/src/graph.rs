//! The graph model: a declarative [`GraphSpec`] (what the TOML loader and the Rust
//! [`GraphBuilder`] produce) and the validated, compiled [`Graph`] the executor runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::channel::{Channel, ChannelType, Reducer, Required};
use crate::error::{Diagnostic, LoadError, Loc, Problem, to_diagnostics};
use crate::expr::{CompileError, Expr, Scope};
use crate::node::{Node, Registry};

pub type ChannelId = u32;
pub type NodeId = u32;
pub type JoinId = u32;

pub const START: &str = "START";
pub const END: &str = "END";
const DEFAULT_RECURSION_LIMIT: u32 = 25;

/// A value with the place it was written, when it came from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Located<T> {
    pub fn new(value: T) -> Self {
        Located { value, loc: None }
    }

    pub fn at(value: T, loc: Loc) -> Self {
        Located { value, loc }
    }
}

/// `(key, CEL expression)` pairs, in declaration order.
pub type Mapping = Vec<(Located<String>, Located<String>)>;

/// A graph as declared, before validation.
#[derive(Clone, Default)]
pub struct GraphSpec {
    pub name: Located<String>,
    pub description: Option<String>,
    pub recursion_limit: Option<Located<u32>>,
    pub channels: Vec<ChannelSpec>,
    pub nodes: Vec<NodeSpec>,
    pub edges: Vec<EdgeSpec>,
}

impl Default for Located<String> {
    fn default() -> Self {
        Located::new(String::new())
    }
}

#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub name: Located<String>,
    pub ty: Located<ChannelType>,
    pub reducer: Option<Located<Reducer>>,
    pub default: Option<Located<Value>>,
    pub required: Option<Located<Required>>,
}

/// Retry with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

/// When a node pauses the run for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptWhen {
    Before,
    After,
}

#[derive(Clone)]
pub enum NodeSpecKind {
    Set(Mapping),
    Tool {
        name: Located<String>,
        args: Mapping,
    },
    Agent {
        name: Located<String>,
        input: Mapping,
    },
    Ask {
        question: String,
    },
    Subgraph {
        graph: Arc<Graph>,
    },
    /// Rust code; `input` of `None` passes the whole state as a JSON object.
    Custom {
        node: Arc<dyn Node>,
        input: Option<Mapping>,
    },
}

#[derive(Clone)]
pub struct NodeSpec {
    pub name: Located<String>,
    pub kind: NodeSpecKind,
    pub for_each: Option<Located<String>>,
    pub output: Option<Located<String>>,
    pub retry: Option<Located<RetryPolicy>>,
    pub timeout: Option<Located<Duration>>,
    pub interrupt: Option<Located<InterruptWhen>>,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>, kind: NodeSpecKind) -> Self {
        NodeSpec {
            name: Located::new(name.into()),
            kind,
            for_each: None,
            output: None,
            retry: None,
            timeout: None,
            interrupt: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EdgeSpec {
    pub loc: Loc,
    pub from: Vec<Located<String>>,
    pub to: Located<String>,
    pub when: Option<Located<String>>,
    pub default: bool,
}

// ---------------------------------------------------------------------------------------
// The compiled graph.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Node(NodeId),
    End,
}

#[derive(Debug, Default)]
pub(crate) struct Routes {
    pub always: Vec<Target>,
    pub when: Vec<(Expr, Target)>,
    pub default: Option<Target>,
}

pub(crate) enum Input {
    Mapping(Vec<(String, Expr)>),
    WholeState,
}

pub(crate) enum Kind {
    Set(Vec<(ChannelId, Expr)>),
    Call {
        handler: Arc<dyn Node>,
        input: Input,
        output: Option<ChannelId>,
    },
    Ask {
        question: String,
        output: Option<ChannelId>,
    },
    Subgraph {
        graph: Arc<Graph>,
        shared: Vec<(ChannelId, ChannelId)>,
        output: Option<ChannelId>,
    },
}

pub(crate) struct CompiledNode {
    pub name: Arc<str>,
    pub kind: Kind,
    pub for_each: Option<Expr>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub interrupt_before: bool,
    pub interrupt_after: bool,
    pub routes: Routes,
    pub joins: Vec<JoinId>,
    /// Where this node's tasks fold their writes within a step (see [`fold_ranks`]).
    pub rank: u32,
}

pub(crate) struct JoinDef {
    pub sources: Vec<NodeId>,
    pub to: Target,
}

/// An edge as drawn by `brainops graph`.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeView {
    pub from: Vec<String>,
    pub to: String,
    pub label: Option<String>,
    pub default: bool,
}

/// A validated graph, ready to run. Cheap to share behind an `Arc`.
pub struct Graph {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) recursion_limit: u32,
    pub(crate) channels: Vec<Channel>,
    pub(crate) channel_names: Vec<Arc<String>>,
    pub(crate) channel_index: HashMap<String, ChannelId>,
    pub(crate) nodes: Vec<CompiledNode>,
    pub(crate) node_index: HashMap<String, NodeId>,
    pub(crate) start: Routes,
    pub(crate) joins: Vec<JoinDef>,
    pub(crate) edges: Vec<EdgeView>,
    /// Channels a new run's input must provide (see [`Required`]).
    pub(crate) required: Vec<ChannelId>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl Graph {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub fn recursion_limit(&self) -> u32 {
        self.recursion_limit
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    pub fn channel_id(&self, name: &str) -> Option<ChannelId> {
        self.channel_index.get(name).copied()
    }

    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| &*n.name)
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_index.get(name).copied()
    }

    pub fn edges(&self) -> &[EdgeView] {
        &self.edges
    }

    /// A short label of what a node does, for drawings.
    pub fn node_kind(&self, name: &str) -> Option<&'static str> {
        let node = &self.nodes[*self.node_index.get(name)? as usize];
        Some(match node.kind {
            Kind::Set(_) if node.for_each.is_some() => "for_each",
            Kind::Set(_) => "set",
            Kind::Call { .. } => "call",
            Kind::Ask { .. } => "ask",
            Kind::Subgraph { .. } => "graph",
        })
    }

    /// Validates and compiles a spec. `file` names the source in diagnostics; `source` is its
    /// text, used to turn byte offsets into lines and columns.
    pub fn compile(
        spec: GraphSpec,
        registry: &Registry,
        file: &str,
        source: Option<&str>,
    ) -> Result<Graph, LoadError> {
        let mut problems = Vec::new();
        let graph = compile_spec(spec, registry, &mut problems);
        if problems.is_empty()
            && let Some(graph) = graph
        {
            return Ok(graph);
        }
        let mut diagnostics: Vec<Diagnostic> = to_diagnostics(file, source, problems);
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic {
                file: file.into(),
                line: 0,
                col: 0,
                message: "the graph could not be compiled".into(),
                help: None,
            });
        }
        Err(LoadError { diagnostics })
    }
}

pub(crate) fn compile_spec(
    spec: GraphSpec,
    registry: &Registry,
    problems: &mut Vec<Problem>,
) -> Option<Graph> {
    if spec.name.value.trim().is_empty() {
        problems.push(Problem::new(
            &spec.name.loc,
            "[graph] needs a `name`",
            "add `name = \"my_graph\"` under [graph]",
        ));
    }
    let recursion_limit = match &spec.recursion_limit {
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
    };

    // Channels.
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
        let reducer = c
            .reducer
            .as_ref()
            .map_or(c.ty.value.default_reducer(), |r| r.value);
        if let Some(r) = &c.reducer
            && !r.value.fits(c.ty.value)
        {
            problems.push(Problem::new(
                    &r.loc,
                    format!("reducer `{}` does not fit channel `{name}` of type `{}`", reducer_name(r.value), type_name(c.ty.value)),
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
    let channel_names: Vec<Arc<String>> =
        channels.iter().map(|c| Arc::new(c.name.clone())).collect();
    let lookup = |name: &str| channel_index.get(name).copied();
    let channel_help = || {
        let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            "declare it in [state]".to_string()
        } else {
            format!("declare it in [state] (declared: {})", names.join(", "))
        }
    };

    // Node names first, so edges and routes can refer to any node.
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

    // Graphs repeat formulas (`state.count + 1` in every step of a chain): each distinct
    // source is parsed once per graph.
    let compiled: std::cell::RefCell<HashMap<(String, Scope), Result<Expr, CompileError>>> =
        std::cell::RefCell::default();
    let compile_expr = |problems: &mut Vec<Problem>,
                        src: &Located<String>,
                        scope: Scope,
                        what: &str|
     -> Option<Expr> {
        let key = (src.value.clone(), scope);
        let result = compiled.borrow().get(&key).cloned();
        let result = result.unwrap_or_else(|| {
            let result = Expr::compile(&src.value, scope, &lookup);
            compiled.borrow_mut().insert(key, result.clone());
            result
        });
        match result {
            Ok(e) => Some(e),
            Err(e) => {
                problems.push(Problem {
                    loc: inside_string(&src.loc, &src.value, e.at),
                    message: format!("{what}: {}", e.message),
                    help: Some(e.help),
                });
                None
            }
        }
    };
    let channel_ref =
        |problems: &mut Vec<Problem>, name: &Located<String>, node: &str| -> Option<ChannelId> {
            match lookup(&name.value) {
                Some(id) => Some(id),
                None => {
                    problems.push(Problem::new(
                        &name.loc,
                        format!(
                            "node `{node}` writes `{}`, which is not a declared channel",
                            name.value
                        ),
                        channel_help(),
                    ));
                    None
                }
            }
        };

    let mut nodes = Vec::with_capacity(spec.nodes.len());
    for n in &spec.nodes {
        let name = n.name.value.as_str();
        let scope = if n.for_each.is_some() {
            Scope::Item
        } else {
            Scope::State
        };
        let for_each = n.for_each.as_ref().and_then(|f| {
            compile_expr(
                problems,
                f,
                Scope::State,
                &format!("node `{name}` for_each"),
            )
        });
        let output = n
            .output
            .as_ref()
            .and_then(|o| channel_ref(problems, o, name));
        let mapping = |problems: &mut Vec<Problem>, m: &Mapping| -> Vec<(String, Expr)> {
            m.iter()
                .filter_map(|(k, v)| {
                    compile_expr(
                        problems,
                        v,
                        scope,
                        &format!("node `{name}` key `{}`", k.value),
                    )
                    .map(|e| (k.value.clone(), e))
                })
                .collect()
        };
        let kind = match &n.kind {
            NodeSpecKind::Set(assignments) => {
                if n.output.is_some() {
                    problems.push(Problem::new(
                        &n.name.loc,
                        format!("node `{name}` has `set` and `output`"),
                        "a `set` node names its channels as keys of `set`; remove `output`",
                    ));
                }
                let mut out = Vec::with_capacity(assignments.len());
                for (key, value) in assignments {
                    let target = channel_ref(problems, key, name);
                    let expr = compile_expr(
                        problems,
                        value,
                        scope,
                        &format!("node `{name}` sets `{}`", key.value),
                    );
                    if let (Some(t), Some(e)) = (target, expr) {
                        out.push((t, e));
                    }
                }
                Kind::Set(out)
            }
            NodeSpecKind::Tool { name: tool, args } => {
                let handler = registry.tool(&tool.value).cloned();
                if handler.is_none() && tool.value.starts_with("memory.") {
                    problems.push(Problem::new(
                        &tool.loc,
                        format!("node `{name}` uses memory (`{}`), but no memory store is attached", tool.value),
                        "run it with the `brainops` CLI (which attaches the store from --memory or $BRAINOPS_MEMORY), or call `memory::register_tools` on the registry",
                    ));
                } else if handler.is_none() {
                    problems.push(Problem::new(
                        &tool.loc,
                        format!("unknown tool `{}` in node `{name}`", tool.value),
                        suggest("tools", &tool.value, &registry.tool_names()),
                    ));
                }
                let input = Input::Mapping(mapping(problems, args));
                Kind::Call {
                    handler: handler.unwrap_or_else(unresolved),
                    input,
                    output,
                }
            }
            NodeSpecKind::Agent { name: agent, input } => {
                let handler = registry.agent(&agent.value).cloned();
                if handler.is_none() {
                    problems.push(Problem::new(
                        &agent.loc,
                        format!("unknown agent `{}` in node `{name}`", agent.value),
                        suggest("agents", &agent.value, &registry.agent_names()),
                    ));
                }
                let input = Input::Mapping(mapping(problems, input));
                Kind::Call {
                    handler: handler.unwrap_or_else(unresolved),
                    input,
                    output,
                }
            }
            NodeSpecKind::Custom { node, input } => {
                let input = match input {
                    Some(m) => Input::Mapping(mapping(problems, m)),
                    None => Input::WholeState,
                };
                Kind::Call {
                    handler: Arc::clone(node),
                    input,
                    output,
                }
            }
            NodeSpecKind::Ask { question } => {
                if let Some(f) = &n.for_each {
                    problems.push(Problem::new(
                        &f.loc,
                        format!("`for_each` is not supported on the ask node `{name}`"),
                        "ask one question per node, or fan out to a subgraph of ask nodes",
                    ));
                }
                Kind::Ask {
                    question: question.clone(),
                    output,
                }
            }
            NodeSpecKind::Subgraph { graph } => {
                if let Some(f) = &n.for_each {
                    problems.push(Problem::new(
                        &f.loc,
                        format!("`for_each` is not supported on the subgraph node `{name}`"),
                        "fan out inside the subgraph",
                    ));
                }
                let shared = graph
                    .channels
                    .iter()
                    .enumerate()
                    .filter_map(|(child, c)| {
                        lookup(&c.name).map(|parent| (parent, child as ChannelId))
                    })
                    .collect();
                Kind::Subgraph {
                    graph: Arc::clone(graph),
                    shared,
                    output,
                }
            }
        };
        let retry = match &n.retry {
            Some(r) if r.value.max_attempts == 0 => {
                problems.push(Problem::new(
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
                problems.push(Problem::new(
                    &t.loc,
                    format!(
                        "node `{name}`: `timeout_s` applies to tool, agent and subgraph nodes only"
                    ),
                    "remove it: a `set` node's expressions are bounded by a cost limit instead, and an `ask` node waits for its answer",
                ));
                None
            }
            Some(t) if t.value.is_zero() => {
                problems.push(Problem::new(
                    &t.loc,
                    format!("node `{name}`: `timeout_s` must be positive"),
                    "give seconds, e.g. `timeout_s = 30`",
                ));
                None
            }
            Some(t) => Some(t.value),
            None => None,
        };
        nodes.push(CompiledNode {
            name: Arc::from(name),
            kind,
            for_each,
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
    // Edges.
    let mut start = Routes::default();
    let mut joins: Vec<JoinDef> = Vec::new();
    let mut edges = Vec::with_capacity(spec.edges.len());
    let mut direct: Vec<(i64, i64)> = Vec::new(); // START is -1, END is -2
    let resolve = |problems: &mut Vec<Problem>, n: &Located<String>, role: &str| -> Option<i64> {
        match n.value.as_str() {
            START if role == "to" => {
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
            START => Some(-1),
            END => Some(-2),
            other => match node_index.get(other) {
                Some(&id) => Some(id as i64),
                None => {
                    let names: Vec<&str> = node_index.keys().map(String::as_str).collect();
                    problems.push(Problem::new(
                        &n.loc,
                        format!("edge {role} unknown node `{other}`"),
                        suggest("nodes", other, &names),
                    ));
                    None
                }
            },
        }
    };
    for e in &spec.edges {
        let to = resolve(problems, &e.to, "to");
        let froms: Vec<Option<i64>> = e
            .from
            .iter()
            .map(|f| resolve(problems, f, "from"))
            .collect();
        if e.from.is_empty() {
            problems.push(Problem::new(
                &e.loc,
                "an edge needs `from`",
                "add `from = \"node\"` or a list for a join",
            ));
            continue;
        }
        if e.default && e.when.is_some() {
            problems.push(Problem::new(
                &e.loc,
                "an edge cannot have both `when` and `default = true`",
                "the default edge fires when no `when` matched; drop one of them",
            ));
        }
        let when = e
            .when
            .as_ref()
            .and_then(|w| compile_expr(problems, w, Scope::State, "edge condition"));
        edges.push(EdgeView {
            from: e.from.iter().map(|f| f.value.clone()).collect(),
            to: e.to.value.clone(),
            label: e.when.as_ref().map(|w| w.value.clone()),
            default: e.default,
        });
        let (Some(to), true) = (to, froms.iter().all(Option::is_some)) else {
            continue;
        };
        let froms: Vec<i64> = froms.into_iter().flatten().collect();
        let target = if to == -2 {
            Target::End
        } else {
            Target::Node(to as NodeId)
        };
        if froms.len() > 1 {
            if e.when.is_some() || e.default {
                problems.push(Problem::new(
                    &e.loc,
                    "a join edge (a list in `from`) cannot have `when` or `default`",
                    "route after the join node instead",
                ));
            }
            if froms.contains(&-1) {
                problems.push(Problem::new(
                    &e.loc,
                    "START cannot be part of a join",
                    "join the nodes that START leads to",
                ));
                continue;
            }
            let join = joins.len() as JoinId;
            joins.push(JoinDef {
                sources: froms.iter().map(|&f| f as NodeId).collect(),
                to: target,
            });
            for &f in &froms {
                nodes[f as usize].joins.push(join);
            }
            continue;
        }
        let from = froms[0];
        direct.push((from, to));
        let routes = if from == -1 {
            &mut start
        } else {
            &mut nodes[from as usize].routes
        };
        if e.default {
            if routes.default.is_some() {
                problems.push(Problem::new(
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

    // Judged on the declared edges, so an edge whose condition failed to compile (already
    // reported) does not also count as missing.
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
        if !sources.contains(n.name.value.as_str()) {
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

    // Reachability, to a fixpoint: a join's target is reached once all its sources are.
    let mut reached = vec![false; spec.nodes.len()];
    let mut changed = true;
    while changed {
        changed = false;
        for &(from, to) in &direct {
            if to >= 0 && !reached[to as usize] && (from == -1 || reached[from as usize]) {
                reached[to as usize] = true;
                changed = true;
            }
        }
        for j in &joins {
            if let Target::Node(to) = j.to
                && !reached[to as usize]
                && j.sources.iter().all(|&s| reached[s as usize])
            {
                reached[to as usize] = true;
                changed = true;
            }
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

    if !problems.is_empty() {
        return None;
    }
    fold_ranks(&mut nodes);
    Some(Graph {
        name: spec.name.value,
        description: spec.description,
        recursion_limit,
        channels,
        channel_names,
        channel_index,
        nodes,
        node_index,
        start,
        joins,
        edges,
        required,
    })
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

/// Ranks nodes in the order their tasks' writes are folded within a step, LangGraph's order:
/// plain nodes by name, then `for_each` nodes (LangGraph's `Send` tasks) by name, each of
/// those in element order. The same in every step and on resume, whatever the edge order.
fn fold_ranks(nodes: &mut [CompiledNode]) {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&nodes[a], &nodes[b]);
        (a.for_each.is_some(), &*a.name).cmp(&(b.for_each.is_some(), &*b.name))
    });
    for (rank, i) in order.into_iter().enumerate() {
        nodes[i].rank = rank as u32;
    }
}

/// Stands in for an unknown tool or agent so validation can go on and report everything;
/// a graph with one never compiles.
fn unresolved() -> Arc<dyn Node> {
    crate::node::node_fn(|_, ctx| {
        Err(crate::node::NodeError::permanent(format!(
            "`{}` is not registered",
            ctx.node()
        )))
    })
}

pub(crate) fn type_name(t: ChannelType) -> &'static str {
    match t {
        ChannelType::String => "string",
        ChannelType::Integer => "integer",
        ChannelType::Number => "number",
        ChannelType::Boolean => "boolean",
        ChannelType::Array => "array",
        ChannelType::Object => "object",
        ChannelType::Messages => "messages",
        ChannelType::Any => "any",
    }
}

pub(crate) fn reducer_name(r: Reducer) -> &'static str {
    match r {
        Reducer::Replace => "replace",
        Reducer::Append => "append",
        Reducer::Merge => "merge",
        Reducer::Add => "add",
        Reducer::Messages => "messages",
    }
}

/// "did you mean" help from a list of known names.
pub fn suggest(what: &str, name: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min();
    match best {
        Some((_, k)) => format!("did you mean `{k}`?"),
        None if known.is_empty() => format!("no {what} are registered"),
        None => {
            let mut list: Vec<&str> = known.to_vec();
            list.sort_unstable();
            let shown: Vec<&str> = list.iter().take(12).copied().collect();
            format!(
                "known {what}: {}{}",
                shown.join(", "),
                if list.len() > 12 { ", ..." } else { "" }
            )
        }
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------
// Builder.

/// Builds a graph in Rust with the same power as the TOML format.
///
/// ```
/// use engine::{GraphBuilder, ChannelType, Reducer, Registry};
/// let graph = GraphBuilder::new("counter")
///     .channel("count", ChannelType::Integer, Reducer::Replace, serde_json::json!(0))
///     .set("bump", &[("count", "state.count + 1")])
///     .edge("START", "bump")
///     .edge_when("bump", "bump", "state.count < 3")
///     .edge_when("bump", "END", "state.count >= 3")
///     .build(&Registry::new())
///     .unwrap();
/// assert_eq!(graph.name(), "counter");
/// ```
pub struct GraphBuilder {
    spec: GraphSpec,
}

impl GraphBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            spec: GraphSpec {
                name: Located::new(name.into()),
                ..GraphSpec::default()
            },
        }
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.spec.description = Some(text.into());
        self
    }

    pub fn recursion_limit(mut self, limit: u32) -> Self {
        self.spec.recursion_limit = Some(Located::new(limit));
        self
    }

    pub fn channel(
        mut self,
        name: &str,
        ty: ChannelType,
        reducer: Reducer,
        default: Value,
    ) -> Self {
        self.spec.channels.push(ChannelSpec {
            name: Located::new(name.into()),
            ty: Located::new(ty),
            reducer: Some(Located::new(reducer)),
            default: Some(Located::new(default)),
            required: None,
        });
        self
    }

    /// Adds a fully described node.
    pub fn node(mut self, node: NodeSpec) -> Self {
        self.spec.nodes.push(node);
        self
    }

    /// A node that assigns CEL expressions to channels.
    pub fn set(self, name: &str, assignments: &[(&str, &str)]) -> Self {
        self.node(NodeSpec::new(name, NodeSpecKind::Set(mapping(assignments))))
    }

    /// A fan-out node: one task per element of `over`, each assigning with `item` bound.
    pub fn for_each(self, name: &str, over: &str, assignments: &[(&str, &str)]) -> Self {
        let mut spec = NodeSpec::new(name, NodeSpecKind::Set(mapping(assignments)));
        spec.for_each = Some(Located::new(over.into()));
        self.node(spec)
    }

    /// A node running Rust code on the whole state; it returns an object of channel updates.
    pub fn function(self, name: &str, node: Arc<dyn Node>) -> Self {
        self.node(NodeSpec::new(
            name,
            NodeSpecKind::Custom { node, input: None },
        ))
    }

    /// A registered tool called with `args`, its result written to `output`.
    pub fn tool(self, name: &str, tool: &str, args: &[(&str, &str)], output: &str) -> Self {
        let mut spec = NodeSpec::new(
            name,
            NodeSpecKind::Tool {
                name: Located::new(tool.into()),
                args: mapping(args),
            },
        );
        spec.output = Some(Located::new(output.into()));
        self.node(spec)
    }

    /// A registered agent called with `input`, its result written to `output`.
    pub fn agent(self, name: &str, agent: &str, input: &[(&str, &str)], output: &str) -> Self {
        let mut spec = NodeSpec::new(
            name,
            NodeSpecKind::Agent {
                name: Located::new(agent.into()),
                input: mapping(input),
            },
        );
        spec.output = Some(Located::new(output.into()));
        self.node(spec)
    }

    /// A human question; the resume value is written to `output`.
    pub fn ask(self, name: &str, question: &str, output: &str) -> Self {
        let mut spec = NodeSpec::new(
            name,
            NodeSpecKind::Ask {
                question: question.into(),
            },
        );
        spec.output = Some(Located::new(output.into()));
        self.node(spec)
    }

    /// A subgraph sharing the channels both graphs declare.
    pub fn subgraph(self, name: &str, graph: Arc<Graph>) -> Self {
        self.node(NodeSpec::new(name, NodeSpecKind::Subgraph { graph }))
    }

    pub fn edge(mut self, from: &str, to: &str) -> Self {
        self.spec.edges.push(EdgeSpec {
            loc: None,
            from: vec![Located::new(from.into())],
            to: Located::new(to.into()),
            when: None,
            default: false,
        });
        self
    }

    pub fn edge_when(mut self, from: &str, to: &str, when: &str) -> Self {
        self.spec.edges.push(EdgeSpec {
            loc: None,
            from: vec![Located::new(from.into())],
            to: Located::new(to.into()),
            when: Some(Located::new(when.into())),
            default: false,
        });
        self
    }

    pub fn edge_default(mut self, from: &str, to: &str) -> Self {
        self.spec.edges.push(EdgeSpec {
            loc: None,
            from: vec![Located::new(from.into())],
            to: Located::new(to.into()),
            when: None,
            default: true,
        });
        self
    }

    /// `to` runs once, after every node in `from` has finished.
    pub fn join(mut self, from: &[&str], to: &str) -> Self {
        self.spec.edges.push(EdgeSpec {
            loc: None,
            from: from
                .iter()
                .map(|f| Located::new((*f).to_string()))
                .collect(),
            to: Located::new(to.into()),
            when: None,
            default: false,
        });
        self
    }

    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }

    pub fn build(self, registry: &Registry) -> Result<Graph, LoadError> {
        let name = self.spec.name.value.clone();
        Graph::compile(self.spec, registry, &name, None)
    }
}

fn mapping(pairs: &[(&str, &str)]) -> Mapping {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                Located::new((*k).to_string()),
                Located::new((*v).to_string()),
            )
        })
        .collect()
}
