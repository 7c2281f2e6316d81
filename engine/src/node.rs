//! The `Node` trait that tool, agent and custom nodes implement, the context a task runs
//! with, and the registry that resolves `tool = "..."` and `agent = "..."` names.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::events::{Event, EventSink};

tokio::task_local! {
    static CURRENT: NodeContext;
}

/// Reports usage to the node call running on this task (see [`NodeContext::scope`]);
/// `false` when there is none, e.g. outside a run or on a task the call spawned.
pub fn record_usage_here(record: UsageRecord) -> bool {
    CURRENT.try_with(|ctx| ctx.record_usage(record)).is_ok()
}

/// Code a graph node runs: a tool, an agent, or any Rust function.
///
/// `input` is the node's evaluated `args`/`input` mapping. The returned value is written to
/// the node's `output` channel; a node without `output` returns an object whose keys are
/// channels to update.
#[async_trait]
pub trait Node: Send + Sync {
    /// Runs the node on `input`; `ctx` says which task this is.
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError>;
}

/// Why a node did not produce a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    /// The node failed. `retryable` failures are retried under the node's `retry` policy.
    #[error("{message}")]
    Failed {
        /// Why.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// The node asks a human (or caller) for a value: the run pauses until it is resumed.
    #[error("interrupted: {0}")]
    Interrupt(Value),
}

impl NodeError {
    /// A failure worth retrying (a timeout, a 503, a dropped connection).
    pub fn transient(message: impl Into<String>) -> Self {
        NodeError::Failed {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying will not fix (bad input, a refused request).
    pub fn permanent(message: impl Into<String>) -> Self {
        NodeError::Failed {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Where a node sends the run next (LangGraph's `Command(goto=...)` and `Send`): a node to
/// run in the next step, or a work item for a node, run as its own task with `arg` as its
/// `item`. `"END"` as a node goes nowhere. The targets a node may choose are declared in its
/// `goto` list.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Goto {
    /// Run this node in the next step.
    Node(String),
    /// Run this node on this input in the next step (LangGraph's `Send`).
    Send {
        /// The node.
        node: String,
        /// Its input: the task's `item`.
        arg: Value,
    },
}

impl Goto {
    /// The node it names.
    pub fn node(&self) -> &str {
        match self {
            Goto::Node(node) | Goto::Send { node, .. } => node,
        }
    }
}

/// What a running task knows about itself.
#[derive(Clone)]
pub struct NodeContext {
    pub(crate) thread_id: Arc<str>,
    pub(crate) node: Arc<str>,
    pub(crate) task_id: Arc<str>,
    pub(crate) step: u64,
    pub(crate) checkpoint_id: u64,
    pub(crate) attempt: u32,
    /// The answers this task was resumed with so far, oldest first.
    pub(crate) answers: Arc<[Value]>,
    /// The answer this run brought for the task, if any (a subgraph resumes its child
    /// with it; without one a waiting child asks again).
    pub(crate) fresh_answer: Option<Value>,
    /// How many times this attempt called [`NodeContext::interrupt`].
    pub(crate) asked: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) events: Option<EventSink>,
    pub(crate) usage: Option<Arc<std::sync::Mutex<UsageTotals>>>,
    pub(crate) outbox: Option<Outbox>,
    /// Where the task said to go (see [`NodeContext::goto`]); fresh for every attempt.
    pub(crate) routes: Option<Arc<std::sync::Mutex<Vec<Goto>>>>,
    /// The run's context ([`RunRequest::context`](crate::RunRequest::context)).
    pub(crate) context: Arc<Value>,
}

/// The thread's side-effect outbox (in its checkpoint store), for nodes that call outside
/// services: record a call as pending before sending it and as sent, with the reply, once
/// the vendor accepted it. A task that runs again finds it sent and reuses the reply.
#[derive(Clone)]
pub struct Outbox {
    pub(crate) saver: Arc<dyn crate::checkpoint::Checkpointer>,
    pub(crate) thread_id: Arc<str>,
}

impl Outbox {
    /// The reply recorded for `key`, when that call was sent before.
    pub async fn sent(&self, key: &str) -> Result<Option<Value>, NodeError> {
        let effect = self
            .saver
            .side_effect(&self.thread_id, key)
            .await
            .map_err(|e| NodeError::transient(format!("the side-effect outbox: {e}")))?;
        Ok(effect
            .filter(|e| e.status == crate::checkpoint::EffectStatus::Sent)
            .map(|e| e.result.unwrap_or(Value::Null)))
    }

    /// Records that call `key` is about to be sent.
    pub async fn record_pending(&self, key: &str) -> Result<(), NodeError> {
        self.put(key, crate::checkpoint::EffectStatus::Pending, None)
            .await
    }

    /// Records that call `key` was sent, with the vendor's reply.
    pub async fn record_sent(&self, key: &str, reply: &Value) -> Result<(), NodeError> {
        self.put(
            key,
            crate::checkpoint::EffectStatus::Sent,
            Some(reply.clone()),
        )
        .await
    }

    async fn put(
        &self,
        key: &str,
        status: crate::checkpoint::EffectStatus,
        result: Option<Value>,
    ) -> Result<(), NodeError> {
        let effect = crate::checkpoint::SideEffect {
            status,
            result,
            updated_at_ms: crate::checkpoint::now_ms(),
        };
        self.saver
            .put_side_effect(&self.thread_id, key, &effect)
            .await
            .map_err(|e| NodeError::transient(format!("the side-effect outbox: {e}")))
    }
}

/// Tokens (and their cost) used by one call, as a node reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageRecord {
    /// The model that answered (`provider:model`).
    pub model: String,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Reply tokens.
    pub output_tokens: u64,
    /// `None` when the model's price is unknown.
    pub cost_usd: Option<f64>,
}

/// Usage summed over calls.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageSum {
    /// Model calls.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Reply tokens.
    pub output_tokens: u64,
    /// Their cost, where the models' prices are known.
    pub cost_usd: f64,
    /// Calls whose price was unknown (their cost is not in `cost_usd`).
    pub unpriced_calls: u64,
}

impl UsageSum {
    fn add(&mut self, r: &UsageRecord) {
        self.calls += 1;
        self.input_tokens += r.input_tokens;
        self.output_tokens += r.output_tokens;
        match r.cost_usd {
            Some(c) => self.cost_usd += c,
            None => self.unpriced_calls += 1,
        }
    }
}

/// A run's usage: in all, and per node.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UsageTotals {
    /// Over the whole run.
    pub total: UsageSum,
    /// Per node.
    pub by_node: std::collections::BTreeMap<String, UsageSum>,
}

impl UsageTotals {
    /// Whether nothing was used.
    pub fn is_empty(&self) -> bool {
        self.total.calls == 0
    }
}

impl NodeContext {
    /// A context for calling a node outside a run (tests, tools composed by hand).
    pub fn detached(node: &str) -> Self {
        NodeContext {
            thread_id: Arc::from("detached"),
            node: Arc::from(node),
            task_id: Arc::from(node),
            step: 0,
            checkpoint_id: 0,
            attempt: 1,
            answers: Arc::from(Vec::new()),
            fresh_answer: None,
            asked: Arc::default(),
            events: None,
            usage: None,
            outbox: None,
            routes: None,
            context: Arc::new(Value::Object(serde_json::Map::new())),
        }
    }

    /// The run's context: what the caller passed as
    /// [`RunRequest::context`](crate::RunRequest::context) (LangGraph's runtime context or
    /// `configurable`), an empty object when nothing was.
    pub fn context(&self) -> &Value {
        &self.context
    }

    /// The thread's side-effect outbox; `None` without a checkpoint store (nothing could
    /// be resumed then anyway).
    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    /// The thread the task runs on.
    pub fn thread_id(&self) -> &str {
        &self.thread_id
    }

    /// The task's node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The super-step.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// 1 for the first attempt, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key that is the same every time this task runs — on retry, and when a crashed or
    /// interrupted run is resumed — and different for every other task. Pass it to payment,
    /// SMS and email APIs so a repeated task never repeats the side effect.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.thread_id, self.checkpoint_id, self.task_id)
    }

    /// The value the run was last resumed with, when this task was interrupted before.
    pub fn resume_value(&self) -> Option<&Value> {
        self.answers.last()
    }

    /// Pauses the run to ask for a value, as LangGraph's `interrupt()`: the n-th call in a
    /// task returns the n-th answer the task was resumed with; when there is none yet, it
    /// gives an [`NodeError::Interrupt`] to return from [`Node::call`]. A node asking several
    /// questions is run again from the top on each resume, its earlier questions answered
    /// at once from the stored answers.
    pub fn interrupt(&self, payload: Value) -> Result<Value, NodeError> {
        let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match self.answers.get(n) {
            Some(value) => Ok(value.clone()),
            None => Err(NodeError::Interrupt(payload)),
        }
    }

    /// Routes the run to `node` after this task's step (LangGraph's `Command(goto=node)`),
    /// in addition to the node's edges. `node` must be in the node's declared `goto` list
    /// (`"END"`: go nowhere). Ignored when the call fails; a retry starts with no routes.
    pub fn goto(&self, node: impl Into<String>) {
        self.route(Goto::Node(node.into()));
    }

    /// Sends a work item to `node`: in the next step it runs as its own task with `arg` as
    /// its `item` (LangGraph's `Send`). `node` must be in the declared `goto` list.
    pub fn send(&self, node: impl Into<String>, arg: Value) {
        self.route(Goto::Send {
            node: node.into(),
            arg,
        });
    }

    /// Routes the run as `goto` says.
    pub fn route(&self, goto: Goto) {
        if let Some(routes) = &self.routes
            && let Ok(mut routes) = routes.lock()
        {
            routes.push(goto);
        }
    }

    /// The routes this attempt chose so far.
    pub(crate) fn take_routes(&self) -> Vec<Goto> {
        self.routes
            .as_ref()
            .and_then(|r| r.lock().ok().map(|mut r| std::mem::take(&mut *r)))
            .unwrap_or_default()
    }

    /// Runs `work` with this context as the task's current one, so code deep inside a call
    /// that is not handed the context (an embedder under a memory store) can still report
    /// usage with [`record_usage_here`]. The executor does this for every call it runs.
    pub async fn scope<F: std::future::Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    /// Reports what a call cost (tokens of a model call): it goes into the event stream and
    /// into the run's usage totals, per node and in all.
    pub fn record_usage(&self, record: UsageRecord) {
        if let Some(totals) = &self.usage
            && let Ok(mut totals) = totals.lock()
        {
            totals.total.add(&record);
            totals
                .by_node
                .entry(self.node.to_string())
                .or_default()
                .add(&record);
        }
        if let Some(sink) = &self.events {
            sink.send(Event::Usage {
                node: self.node.to_string(),
                task: self.task_id.to_string(),
                model: record.model,
                input_tokens: record.input_tokens,
                output_tokens: record.output_tokens,
                cost_usd: record.cost_usd,
            });
        }
    }

    /// The context for a call this task makes on its own behalf (an agent calling a tool):
    /// same run and node, a task id extended by `part`, so the call's idempotency key is
    /// stable across retries and resumes and differs from the task's other calls.
    pub fn child(&self, part: &str) -> NodeContext {
        let mut ctx = self.clone();
        ctx.task_id = Arc::from(format!("{}/{part}", self.task_id));
        ctx
    }

    /// Reports what an agent or integration is doing, as a typed event in the run's stream.
    pub fn progress(&self, progress: crate::events::Progress) {
        if let Some(sink) = &self.events {
            sink.send(Event::Progress {
                node: self.node.to_string(),
                progress,
            });
        }
    }

    /// Emits a custom event into the run's stream (progress, partial results).
    pub fn emit(&self, data: Value) {
        if let Some(sink) = &self.events {
            sink.send(Event::Custom {
                node: self.node.to_string(),
                data,
            });
        }
    }
}

/// A node made from a synchronous closure.
pub struct FnNode<F>(pub F);

#[async_trait]
impl<F> Node for FnNode<F>
where
    F: Fn(Value, &NodeContext) -> Result<Value, NodeError> + Send + Sync,
{
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        (self.0)(input, ctx)
    }
}

/// Wraps a synchronous closure as a shareable node.
pub fn node_fn<F>(f: F) -> Arc<dyn Node>
where
    F: Fn(Value, &NodeContext) -> Result<Value, NodeError> + Send + Sync + 'static,
{
    Arc::new(FnNode(f))
}

/// A node made from an async closure; it gets its own copy of the task's context, so the
/// future it returns may keep it across awaits.
pub struct AsyncFnNode<F>(pub F);

#[async_trait]
impl<F, Fut> Node for AsyncFnNode<F>
where
    F: Fn(Value, NodeContext) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<Value, NodeError>> + Send,
{
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        (self.0)(input, ctx.clone()).await
    }
}

/// Wraps an async closure as a shareable node:
/// `node_async(|input, _ctx| async move { Ok(input) })`.
pub fn node_async<F, Fut>(f: F) -> Arc<dyn Node>
where
    F: Fn(Value, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, NodeError>> + Send + 'static,
{
    Arc::new(AsyncFnNode(f))
}

/// What a tool does and what arguments it takes, for people (`brainops tools list`) and for
/// models that call tools.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolInfo {
    /// What it does, for people and models.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

impl ToolInfo {
    /// A tool's description and its arguments' JSON Schema.
    pub fn new(description: impl Into<String>, parameters: Value) -> Self {
        ToolInfo {
            description: description.into(),
            parameters,
        }
    }
}

/// Tools and agents by name, filled by the agents crate and by embedding code.
#[derive(Clone, Default)]
pub struct Registry {
    tools: HashMap<String, Arc<dyn Node>>,
    tool_info: HashMap<String, Arc<ToolInfo>>,
    agents: HashMap<String, Arc<dyn Node>>,
    reducers: HashMap<String, Arc<crate::channel::ReduceFn>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a reducer written in Rust, named in `[state]` as
    /// `reducer = "NAME"`. It folds one write into the value and must be deterministic:
    /// checkpoints store the writes and replay them through it.
    pub fn register_reducer<F>(&mut self, name: impl Into<String>, fold: F) -> &mut Self
    where
        F: Fn(&mut Value, Value) -> Result<(), String> + Send + Sync + 'static,
    {
        self.reducers.insert(name.into(), Arc::new(fold));
        self
    }

    /// A registered reducer.
    pub(crate) fn reducer(&self, name: &str) -> Option<&Arc<crate::channel::ReduceFn>> {
        self.reducers.get(name)
    }

    /// Every registered reducer's name, sorted.
    pub fn reducer_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.reducers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Adds (or replaces) a tool.
    pub fn register_tool(&mut self, name: impl Into<String>, tool: Arc<dyn Node>) -> &mut Self {
        self.tools.insert(name.into(), tool);
        self
    }

    /// Registers a tool with its description and argument schema.
    pub fn register_described_tool(
        &mut self,
        name: impl Into<String>,
        info: ToolInfo,
        tool: Arc<dyn Node>,
    ) -> &mut Self {
        let name = name.into();
        self.tool_info.insert(name.clone(), Arc::new(info));
        self.tools.insert(name, tool);
        self
    }

    /// The description and argument schema of a tool registered with one.
    pub fn tool_info(&self, name: &str) -> Option<&ToolInfo> {
        self.tool_info.get(name).map(Arc::as_ref)
    }

    /// Adds (or replaces) an agent.
    pub fn register_agent(&mut self, name: impl Into<String>, agent: Arc<dyn Node>) -> &mut Self {
        self.agents.insert(name.into(), agent);
        self
    }

    /// Adds everything `other` holds; where both have a name, `other`'s entry wins.
    pub fn merge(&mut self, other: Registry) -> &mut Self {
        self.tools.extend(other.tools);
        self.tool_info.extend(other.tool_info);
        self.agents.extend(other.agents);
        self
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.tools.get(name)
    }

    /// An agent by name.
    pub fn agent(&self, name: &str) -> Option<&Arc<dyn Node>> {
        self.agents.get(name)
    }

    /// Every tool's name, sorted.
    pub fn tool_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tools.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Every agent's name, sorted.
    pub fn agent_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.agents.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
