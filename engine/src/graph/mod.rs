//! The graph model: a declarative [`GraphSpec`] (what the TOML loader and the Rust
//! [`GraphBuilder`] produce) and the validated, compiled [`Graph`] the executor runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::channel::{Channel, ChannelType, Reducer, Required};
use crate::error::{Diagnostic, LoadError, Loc, to_diagnostics};
use crate::expr::Expr;
use crate::node::{Node, Registry};

mod compile;
pub(crate) use compile::compile_spec;

/// A channel's index in a graph.
pub type ChannelId = u32;
/// A node's index in a graph.
pub type NodeId = u32;
/// A join's index in a graph.
pub type JoinId = u32;

/// The name edges start from.
pub const START: &str = "START";
/// The name edges end at.
pub const END: &str = "END";
const DEFAULT_RECURSION_LIMIT: u32 = 25;

/// A value with the place it was written, when it came from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its byte range in the file, when it came from one.
    pub loc: Loc,
}

impl<T> Located<T> {
    /// A value built in code (no place in a file).
    pub fn new(value: T) -> Self {
        Located { value, loc: None }
    }

    /// A value and its place.
    pub fn at(value: T, loc: Loc) -> Self {
        Located { value, loc }
    }
}

/// `(key, CEL expression)` pairs, in declaration order.
pub type Mapping = Vec<(Located<String>, Located<String>)>;

/// A graph as declared, before validation.
#[derive(Clone, Default)]
pub struct GraphSpec {
    /// The graph's name (`[graph] name`).
    pub name: Located<String>,
    /// What it does, for people.
    pub description: Option<String>,
    /// The most super-steps a run may take.
    pub recursion_limit: Option<Located<u32>>,
    /// `[state]`: the channels.
    pub channels: Vec<ChannelSpec>,
    /// `[nodes.*]`.
    pub nodes: Vec<NodeSpec>,
    /// `[[edges]]`.
    pub edges: Vec<EdgeSpec>,
}

impl Default for Located<String> {
    fn default() -> Self {
        Located::new(String::new())
    }
}

/// A channel as declared in `[state]`.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    /// Its name.
    pub name: Located<String>,
    /// Its type.
    pub ty: Located<ChannelType>,
    /// Its reducer (else the type's default).
    pub reducer: Option<Located<Reducer>>,
    /// Its value before anything writes it (else the type's zero).
    pub default: Option<Located<Value>>,
    /// Whether a new run's input must give it (or some of its fields).
    pub required: Option<Located<Required>>,
}

/// Retry with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub max_attempts: u32,
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How much each wait grows.
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
    /// Before the node runs.
    Before,
    /// After the node ran and its writes are committed.
    After,
}

/// What a node does.
#[derive(Clone)]
pub enum NodeSpecKind {
    /// Writes CEL expressions' values to channels.
    Set(Mapping),
    /// Calls a registered tool.
    Tool {
        /// The tool.
        name: Located<String>,
        /// Its arguments, CEL by key.
        args: Mapping,
    },
    /// Calls a registered agent.
    Agent {
        /// The agent.
        name: Located<String>,
        /// Its input, CEL by key.
        input: Mapping,
    },
    /// Asks a person and waits for the answer: each question in turn, each asked again
    /// until its answer passes `check`.
    Ask {
        /// The questions; `{{ CEL }}` in one is filled in from the state.
        questions: Vec<Located<String>>,
        /// CEL over `answer`: whether an answer is accepted.
        check: Option<Located<String>>,
        /// The question asked again after a refused answer (`{{ answer }}` may be used);
        /// else the question itself.
        reask: Option<Located<String>>,
    },
    /// Sleeps, durably, for `seconds` or until `until` (CEL): the thread is parked and a
    /// later run continues it once the time has come.
    Wait {
        /// How long, in seconds (a CEL number).
        seconds: Option<Located<String>>,
        /// Until when (a CEL RFC 3339 timestamp string, or Unix seconds).
        until: Option<Located<String>>,
    },
    /// Runs another graph on its own thread.
    Subgraph {
        /// The child graph.
        graph: Arc<Graph>,
        /// The child's input, CEL by child channel; else the channels both graphs declare.
        input: Option<Mapping>,
        /// Which child channel each parent channel receives (`parent = "child"`); else the
        /// channels both graphs declare.
        outputs: Option<Mapping>,
        /// Keeps the child's thread across calls on one parent thread (LangGraph's
        /// `checkpointer=True`): each call continues the child's state.
        stateful: bool,
    },
    /// Rust code; `input` of `None` passes the whole state as a JSON object.
    Custom {
        /// The code.
        node: Arc<dyn Node>,
        /// Its input, CEL by key.
        input: Option<Mapping>,
    },
}

/// A node as declared.
#[derive(Clone)]
pub struct NodeSpec {
    /// Its name.
    pub name: Located<String>,
    /// What it does.
    pub kind: NodeSpecKind,
    /// A CEL list: one task per element (LangGraph's `Send`).
    pub for_each: Option<Located<String>>,
    /// The channel its result goes to.
    pub output: Option<Located<String>>,
    /// Retries of a failed call.
    pub retry: Option<Located<RetryPolicy>>,
    /// How long one attempt may take.
    pub timeout: Option<Located<Duration>>,
    /// Whether the run pauses before or after it.
    pub interrupt: Option<Located<InterruptWhen>>,
    /// The nodes it may route to at run time (`"END"` too): LangGraph's `Command(goto)`.
    pub goto: Option<Located<Vec<Located<String>>>>,
    /// On a `set` node: CEL naming where to go next (a node name, a list of names, or
    /// `{node, arg}` work items), evaluated with the node's other expressions.
    pub next: Option<Located<String>>,
    /// Runs only once nothing else is left to run (map-reduce joins over fan-outs).
    pub defer: bool,
    /// For a `for_each` node: whether its edges still fire when the list is empty.
    pub on_empty_continue: bool,
}

impl NodeSpec {
    /// A node with no options.
    pub fn new(name: impl Into<String>, kind: NodeSpecKind) -> Self {
        NodeSpec {
            name: Located::new(name.into()),
            kind,
            for_each: None,
            output: None,
            retry: None,
            timeout: None,
            interrupt: None,
            goto: None,
            next: None,
            defer: false,
            on_empty_continue: false,
        }
    }
}

/// An edge as declared.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    /// The `[[edges]]` table's place.
    pub loc: Loc,
    /// The source, or several for a join.
    pub from: Vec<Located<String>>,
    /// The target.
    pub to: Located<String>,
    /// A CEL condition on the state.
    pub when: Option<Located<String>>,
    /// Taken when no condition of the source matched.
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
        questions: Vec<Template>,
        check: Option<Expr>,
        reask: Option<Template>,
        /// Whether the node asks one question (its output is the answer) or a list (its
        /// output is the list of answers).
        single: bool,
        output: Option<ChannelId>,
    },
    Wait {
        seconds: Option<Expr>,
        until: Option<Expr>,
        output: Option<ChannelId>,
    },
    Subgraph {
        graph: Arc<Graph>,
        /// The child's input mapping, else `shared` is read in.
        input: Option<Vec<(String, Expr)>>,
        /// (parent, child) channels both graphs declare.
        shared: Vec<(ChannelId, ChannelId)>,
        /// (parent, child) channels written back after the child finishes.
        write_back: Vec<(ChannelId, ChannelId)>,
        output: Option<ChannelId>,
        stateful: bool,
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
    /// The targets it may route to at run time (empty: none).
    pub goto: Vec<Target>,
    /// A `set` node's CEL choice of where to go.
    pub next: Option<Expr>,
    pub defer: bool,
    pub on_empty_continue: bool,
    /// Named in a `goto` list: it may receive work items, and sees `item` as null without.
    pub receives_items: bool,
    /// The agent it runs (`agent = "..."`): a route may name the agent instead of the node
    /// (an agent's handoff names the agent it hands to).
    pub agent: Option<Arc<str>>,
    pub joins: Vec<JoinId>,
    /// Where this node's tasks fold their writes within a step (see [`fold_ranks`]).
    pub rank: u32,
}

pub(crate) struct JoinDef {
    pub sources: Vec<NodeId>,
    pub to: Target,
}

/// A node as a drawing or a console shows it ([`Graph::node_view`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// What it does: `set`, `for_each`, `call`, `ask`, `wait` or `graph`.
    pub kind: &'static str,
    /// Its `for_each` expression, as written.
    pub for_each: Option<String>,
    /// The agent it runs.
    pub agent: Option<String>,
    /// The graph it runs as a subgraph.
    pub subgraph: Option<String>,
    /// Whether it waits for every other branch (`defer = true`).
    pub deferred: bool,
    /// Whether runs stop before it.
    pub interrupt_before: bool,
    /// Whether runs stop after it.
    pub interrupt_after: bool,
}

/// An edge as drawn by `brainops graph`.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeView {
    /// The sources (several for a join).
    pub from: Vec<String>,
    /// The target.
    pub to: String,
    /// The condition, as written.
    pub label: Option<String>,
    /// Whether it is the default edge.
    pub default: bool,
    /// Whether it is a route the node may choose at run time (its `goto` list), drawn
    /// dashed, rather than a declared edge.
    pub goto: bool,
}

/// A question with `{{ CEL }}` parts filled in from the state when it is asked.
#[derive(Clone)]
pub(crate) enum Part {
    Text(String),
    Expr(Expr),
}

/// Text with `{{ CEL }}` parts.
#[derive(Clone)]
pub(crate) struct Template(pub Vec<Part>);

impl Template {
    /// Fills the template in. A template that is one `{{ CEL }}` alone gives the value as it
    /// is (an object, a list), so a question can carry options; otherwise a string.
    pub(crate) fn render(
        &self,
        state: &crate::state::State,
        item: Option<(&Value, usize)>,
        answer: Option<&Value>,
    ) -> Result<Value, crate::expr::EvalError> {
        if let [Part::Expr(e)] = self.0.as_slice() {
            return e.eval_answer(state, item, answer);
        }
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => match e.eval_answer(state, item, answer)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

/// The pseudo-channel that carries a task's routes ([`crate::node::Goto`]) among its writes,
/// so they are saved and resumed with them.
pub(crate) const GOTO: ChannelId = ChannelId::MAX;
/// Its name in stored writes.
pub(crate) const GOTO_NAME: &str = "__goto__";

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
    /// What is legal but likely a mistake, found while compiling.
    pub(crate) warnings: Vec<Diagnostic>,
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
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What is legal but likely a mistake (a loop that no edge leaves), in file order.
    /// `brainops validate` prints them; running the graph is not affected.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// What it does, for people.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The most super-steps a run may take.
    pub fn recursion_limit(&self) -> u32 {
        self.recursion_limit
    }

    /// The channels, in declaration order.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// A channel's index by name.
    pub fn channel_id(&self, name: &str) -> Option<ChannelId> {
        self.channel_index.get(name).copied()
    }

    /// A stored write's channel: a declared one, or [`GOTO`].
    pub(crate) fn write_channel(&self, name: &str) -> Option<ChannelId> {
        if name == GOTO_NAME {
            return Some(GOTO);
        }
        self.channel_id(name)
    }

    /// A write's channel name, as stored.
    pub(crate) fn write_name(&self, ch: ChannelId) -> &str {
        match self.channels.get(ch as usize) {
            Some(c) => &c.name,
            None => GOTO_NAME,
        }
    }

    /// The nodes' names, in declaration order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| &*n.name)
    }

    /// A node's index by name.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_index.get(name).copied()
    }

    /// The edges as declared, for drawing.
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
            Kind::Wait { .. } => "wait",
            Kind::Subgraph { .. } => "graph",
        })
    }

    /// The graph a subgraph node runs (for drawings that show its inside).
    pub fn subgraph(&self, name: &str) -> Option<&Arc<Graph>> {
        match &self.nodes[*self.node_index.get(name)? as usize].kind {
            Kind::Subgraph { graph, .. } => Some(graph),
            _ => None,
        }
    }

    /// What a drawing shows of a node beyond its kind: its map expression, agent, subgraph,
    /// the places it may route to, and whether it pauses for a person.
    pub fn node_view(&self, name: &str) -> Option<NodeView> {
        let node = &self.nodes[*self.node_index.get(name)? as usize];
        Some(NodeView {
            kind: self.node_kind(name)?,
            for_each: node.for_each.as_ref().map(|e| e.source().to_string()),
            agent: node.agent.as_deref().map(String::from),
            subgraph: match &node.kind {
                Kind::Subgraph { graph, .. } => Some(graph.name().to_string()),
                _ => None,
            },
            deferred: node.defer,
            interrupt_before: node.interrupt_before,
            interrupt_after: node.interrupt_after,
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
        let mut warnings = Vec::new();
        let graph = compile_spec(spec, registry, &mut problems, &mut warnings);
        if problems.is_empty()
            && let Some(mut graph) = graph
        {
            graph.warnings = to_diagnostics(file, source, warnings);
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

pub(crate) fn reducer_name(r: &Reducer) -> &str {
    match r {
        Reducer::Custom(c) => &c.name,
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
///
/// // Routes chosen at run time: `goto`, `next` and `defer` apply to the node added last.
/// let triage = GraphBuilder::new("triage")
///     .channel("category", ChannelType::String, Reducer::Replace, serde_json::json!(""))
///     .set("triage", &[])
///     .goto(&["billing", "support"])
///     .next("state.category == 'billing' ? 'billing' : 'support'")
///     .set("billing", &[])
///     .set("support", &[])
///     .edge("START", "triage")
///     .edge("billing", "END")
///     .edge("support", "END")
///     .build(&Registry::new())
///     .unwrap();
/// assert_eq!(triage.edges().iter().filter(|e| e.goto).count(), 2);
/// ```
pub struct GraphBuilder {
    spec: GraphSpec,
}

impl GraphBuilder {
    /// A builder for a graph named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            spec: GraphSpec {
                name: Located::new(name.into()),
                ..GraphSpec::default()
            },
        }
    }

    /// What the graph does, for people.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.spec.description = Some(text.into());
        self
    }

    /// The most super-steps a run may take.
    pub fn recursion_limit(mut self, limit: u32) -> Self {
        self.spec.recursion_limit = Some(Located::new(limit));
        self
    }

    /// Declares a channel.
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
                questions: vec![Located::new(question.into())],
                check: None,
                reask: None,
            },
        );
        spec.output = Some(Located::new(output.into()));
        self.node(spec)
    }

    /// A subgraph sharing the channels both graphs declare.
    pub fn subgraph(self, name: &str, graph: Arc<Graph>) -> Self {
        self.node(NodeSpec::new(
            name,
            NodeSpecKind::Subgraph {
                graph,
                input: None,
                outputs: None,
                stateful: false,
            },
        ))
    }

    /// Lets the node added last route at run time to `targets` (its `goto` list; `"END"`
    /// too): with [`GraphBuilder::next`] on a `set` node, or `ctx.goto` in Rust.
    pub fn goto(mut self, targets: &[&str]) -> Self {
        if let Some(node) = self.spec.nodes.last_mut() {
            node.goto = Some(Located::new(
                targets
                    .iter()
                    .map(|t| Located::new((*t).to_string()))
                    .collect(),
            ));
        }
        self
    }

    /// The CEL choice of where the `set` node added last goes: a name, a list of names, or
    /// `{node, arg}` work items (LangGraph's `Command(goto)` and `Send`).
    pub fn next(mut self, choice: &str) -> Self {
        if let Some(node) = self.spec.nodes.last_mut() {
            node.next = Some(Located::new(choice.into()));
        }
        self
    }

    /// Defers the node added last: it runs once nothing else is left to run.
    pub fn defer(mut self) -> Self {
        if let Some(node) = self.spec.nodes.last_mut() {
            node.defer = true;
        }
        self
    }

    /// An edge that always fires.
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

    /// An edge that fires when the CEL condition `when` holds.
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

    /// The edge taken when no other edge out of `from` matched.
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

    /// The graph as declared so far.
    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }

    /// Validates and compiles the graph against `registry`.
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
