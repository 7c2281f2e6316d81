//! The executor: bulk-synchronous super-steps in three visible phases.
//!
//! 1. **plan** — the frontier (nodes triggered by the previous step) becomes tasks; a
//!    `for_each` node becomes one task per element, and each work item a node sent
//!    (`Send`) one more; a deferred node waits while anything else is to run. Inputs are
//!    evaluated against the state as it was before the step, so siblings never see each
//!    other's writes.
//! 2. **execute** — expression nodes run inline; tool, agent and subgraph tasks run inline
//!    when alone and on a `JoinSet` when several. Finished side-effecting tasks have their
//!    writes saved at once, so a crash re-runs only unfinished tasks.
//! 3. **commit** — writes are folded through reducers in task order, edges and the routes
//!    tasks chose (`goto`) build the next frontier, and a checkpoint holding only what
//!    changed is stored. Interrupted tasks stop the step together (parallel questions);
//!    their answers are kept with the step's pending writes until it commits.
//!
//! Planning costs O(tasks + their edges): nothing scans every node or channel per step.
//!
//! Where each concern lives: [`Runner`] and a run's top level here; requests, statuses
//! and outcomes in `request`; starting or resuming a run in `start`; the step loop and its
//! phases in `step`; task execution with retry and timeout in `task`; subgraphs in
//! `subgraph`; the thread's lease and heartbeat in `lease`; reading, editing, pruning and
//! forking threads in `threads`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::channel::Undo;
use crate::checkpoint::{
    ByteCounter, ChannelDelta, CheckpointError, CheckpointRecord, CheckpointSource,
    CheckpointSummary, Checkpointer, InterruptInfo, InterruptKind, JoinProgress, Lease, TaskWrites,
    ThreadInfo, ThreadStatus, acquire, now_ms,
};
use crate::error::RunError;
use crate::events::{Event, EventSink, EventStream};
use crate::graph::{
    ChannelId, CompiledNode, GOTO, Graph, Input, JoinId, Kind, NodeId, RetryPolicy, Routes, Target,
};
use crate::node::{Node, NodeContext, NodeError, UsageTotals};
use crate::state::State;

/// A snapshot is stored once the deltas since the last one outweigh it (and at least this
/// much), so reads stay fast and total storage stays linear in what changed.
const SNAPSHOT_MIN_BYTES: usize = 256 * 1024;

mod lease;
mod request;
mod start;
mod step;
mod subgraph;
mod task;
mod threads;

use start::apply_input;
use subgraph::{run_subgraph, write_back};
use task::task_label;
use threads::fold_pending;

pub use request::{
    CancelToken, RunErrorView, RunOutcome, RunRequest, RunStatus, RunStream, StateSnapshot,
};

/// Runs a graph, optionally checkpointing every super-step.
#[derive(Clone)]
pub struct Runner {
    graph: Arc<Graph>,
    saver: Option<Arc<dyn Checkpointer>>,
    lease_ms: u64,
}

/// How long a run's claim on its thread lasts without renewal. A heartbeat renews it every
/// third of that while the run is alive, and every checkpoint renews it too.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Where a thread stands between steps.
struct Position {
    checkpoint_id: Option<u64>,
    step: u64,
    frontier: Vec<NodeId>,
    /// Work items sent to nodes for the next step (LangGraph's `Send`), in send order.
    sends: Vec<(NodeId, Value)>,
    joins: Vec<Vec<bool>>,
    /// Bytes of deltas stored since the last snapshot, and the size of that snapshot.
    since_snapshot: usize,
    snapshot_bytes: usize,
}

struct Task {
    node: NodeId,
    item: Option<(Value, usize)>,
    /// A work item sent by a node (its `item` is the sent input), not a `for_each` element.
    sent: bool,
}

enum TaskResult {
    Pending,
    Done(Vec<(ChannelId, Value)>),
    Interrupted(Value),
    Failed(RunError),
}

/// Work for the async phase: a call, a subgraph or nothing.
enum Job {
    Call {
        handler: Arc<dyn Node>,
        input: Value,
    },
    Subgraph {
        graph: Arc<Graph>,
        input: Value,
        stateful: bool,
    },
}

impl Runner {
    /// A runner without checkpoints: fastest, nothing survives the process.
    pub fn new(graph: Arc<Graph>) -> Self {
        Runner {
            graph,
            saver: None,
            lease_ms: DEFAULT_LEASE.as_millis() as u64,
        }
    }

    /// How long a run's claim on its thread lasts without renewal (default 30 s): the time
    /// another process waits before it may take over a thread whose run vanished.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease_ms = (lease.as_millis() as u64).max(1);
        self
    }

    /// Stores a checkpoint after every super-step in `saver`; threads need one.
    pub fn with_checkpointer(mut self, saver: Arc<dyn Checkpointer>) -> Self {
        self.saver = Some(saver);
        self
    }

    /// The graph it runs.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// The checkpoint store, if any.
    pub fn checkpointer(&self) -> Option<&Arc<dyn Checkpointer>> {
        self.saver.as_ref()
    }

    /// Runs to completion, interruption or failure.
    pub async fn invoke(&self, request: RunRequest) -> RunOutcome {
        self.run(request, None).await
    }

    /// Runs on a spawned task: read its events from the returned [`RunStream`] (the last is
    /// `RunFinished`), then take the outcome from it with [`RunStream::outcome`].
    pub fn stream(&self, request: RunRequest) -> RunStream {
        let (sink, events) = EventSink::channel();
        let runner = self.clone();
        let thread_id = request.thread_id.clone();
        // The caller's span stays the parent of the run's, across the spawn.
        let task = tokio::spawn(
            async move { runner.run(request, Some(sink)).await }
                .instrument(tracing::Span::current()),
        );
        RunStream {
            events,
            task,
            thread_id,
        }
    }

    /// Runs, sending events into `events` when given, inside a `run` span
    /// ([`trace`](crate::trace)).
    pub async fn run(&self, request: RunRequest, events: Option<EventSink>) -> RunOutcome {
        let span = crate::trace::run(&self.graph.name);
        self.run_in(request, events, &span)
            .instrument(span.clone())
            .await
    }

    async fn run_in(
        &self,
        mut request: RunRequest,
        events: Option<EventSink>,
        span: &tracing::Span,
    ) -> RunOutcome {
        let events = events.map(|e| {
            let on = request.stream_subgraphs || e.namespace_is_set();
            e.with_subgraphs(on)
        });
        let thread_id = request
            .thread_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut exec = Execution {
            graph: &self.graph,
            saver: self.saver.clone(),
            thread_id: Arc::from(thread_id.as_str()),
            events,
            cancel: request.cancel.clone(),
            created_at_ms: now_ms(),
            writer: vec![(u64::MAX, 0); self.graph.channels.len()],
            overwritten: vec![u64::MAX; self.graph.channels.len()],
            gotos: Vec::new(),
            held: Vec::new(),
            input_deltas: Vec::new(),
            answers: HashMap::new(),
            fresh_answers: HashMap::new(),
            scheduled: vec![u64::MAX; self.graph.nodes.len()],
            current_checkpoint: None,
            lease: None,
            lease_ms: self.lease_ms,
            claimed: None,
            usage: Arc::default(),
            undo: Vec::new(),
            undo_scratch: Vec::new(),
            emit_values: request.emit_values,
            step_traced: false,
            untraced_steps: 0,
            break_before: breakpoints(&self.graph, &request.interrupt_before),
            break_after: breakpoints(&self.graph, &request.interrupt_after),
            recursion_limit: request
                .recursion_limit
                .unwrap_or(self.graph.recursion_limit),
            context: Arc::new(
                request
                    .context
                    .take()
                    .unwrap_or_else(|| Value::Object(Map::new())),
            ),
        };
        span.record("thread", thread_id.as_str());
        tracing::debug!(graph = %self.graph.name, thread = %thread_id, "run started");
        exec.emit(|| Event::RunStarted {
            thread_id: thread_id.clone(),
            graph: self.graph.name.clone(),
        });
        let mut start_error = false;
        let (status, state, interrupt, error, checkpoint_id, steps) =
            match exec.start(request).await {
                Ok((mut state, mut pos, resume)) => {
                    if exec.context.as_object().is_none_or(|m| !m.is_empty()) {
                        state.set_context(&exec.context);
                    }
                    let _heartbeat = exec.heartbeat();
                    if exec.emit_values {
                        exec.emit(|| Event::Values {
                            step: None,
                            state: state.to_json(),
                        });
                    }
                    let result = exec.steps(&mut state, &mut pos, resume).await;
                    let (status, interrupt, error, steps) = match result {
                        Ok((Some(i), steps)) => (RunStatus::Interrupted, Some(i), None, steps),
                        Ok((None, steps)) => (RunStatus::Done, None, None, steps),
                        Err((e, steps)) => (RunStatus::Failed, None, Some(e), steps),
                    };
                    (
                        status,
                        state.into_json(),
                        interrupt,
                        error,
                        pos.checkpoint_id,
                        steps,
                    )
                }
                Err(e) => {
                    start_error = true;
                    (
                        RunStatus::Failed,
                        Value::Object(Map::new()),
                        None,
                        Some(e),
                        None,
                        0,
                    )
                }
            };
        let thread_status = match status {
            RunStatus::Done => ThreadStatus::Done,
            RunStatus::Interrupted => ThreadStatus::Interrupted,
            RunStatus::Failed => ThreadStatus::Failed,
        };
        let mut error = error;
        // A run refused at the start changed nothing: the thread goes back as it was.
        let start_failed = start_error
            && matches!(
                error,
                Some(RunError::Thread { .. } | RunError::Input { .. } | RunError::Conflict { .. })
            );
        if start_failed {
            if let Err(e) = exec.release_unchanged().await {
                tracing::warn!(thread = %exec.thread_id, "could not release the thread: {e}");
            }
        } else if let Some(RunError::Conflict { .. }) = error {
            // Another run owns the thread now: its status is not ours to write.
        } else if let Err(e) = exec
            .save_thread(
                thread_status,
                checkpoint_id,
                interrupt.clone(),
                error.as_ref(),
            )
            .await
        {
            error.get_or_insert(e);
        }
        if let Some(e) = &error {
            exec.emit(|| Event::Error {
                message: e.to_string(),
            });
        }
        let status = if error.is_some() {
            RunStatus::Failed
        } else {
            status
        };
        let outcome = RunOutcome {
            status,
            thread_id,
            state,
            interrupt,
            error: error.map(|e| RunErrorView {
                message: e.to_string(),
                detail: e,
            }),
            checkpoint_id,
            steps,
            usage: exec.usage.lock().map(|u| u.clone()).unwrap_or_default(),
        };
        if !span.is_disabled() {
            span.record("status", outcome.status.as_str());
            span.record("steps", crate::trace::int(outcome.steps));
            if exec.untraced_steps > 0 {
                span.record("expression_steps", crate::trace::int(exec.untraced_steps));
            }
            if let Some(e) = &outcome.error {
                crate::trace::fail(span, &e.message);
            }
        }
        match &outcome.error {
            Some(e) => tracing::info!(
                graph = %self.graph.name, thread = %outcome.thread_id, steps = outcome.steps,
                "run failed: {}", e.message
            ),
            None => tracing::info!(
                graph = %self.graph.name, thread = %outcome.thread_id, steps = outcome.steps,
                status = ?outcome.status, "run ended"
            ),
        }
        exec.emit(|| Event::RunFinished {
            status: outcome.status,
            state: outcome.state.clone(),
        });
        outcome
    }

    /// `run` behind a type-erased future: subgraphs run runners recursively, and the
    /// explicit `Send` bound here is what lets the compiler prove the recursion `Send`.
    fn run_boxed(
        &self,
        request: RunRequest,
        events: Option<EventSink>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = RunOutcome> + Send + '_>> {
        Box::pin(self.run(request, events))
    }

    fn saver(&self) -> Result<&dyn Checkpointer, RunError> {
        self.saver.as_deref().ok_or_else(|| RunError::Thread {
            message: "this runner has no checkpointer; threads need one (memory, sqlite, postgres)"
                .into(),
        })
    }
}

/// Per node, whether `names` holds it (`*`: every node); empty when `names` is.
fn breakpoints(graph: &Graph, names: &[String]) -> Vec<bool> {
    if names.is_empty() {
        return Vec::new();
    }
    let all = names.iter().any(|n| n == "*");
    graph
        .nodes
        .iter()
        .map(|node| all || names.iter().any(|n| **n == *node.name))
        .collect()
}

fn cp_err(e: CheckpointError) -> RunError {
    match e {
        CheckpointError::Store(message) => RunError::Checkpoint { message },
        CheckpointError::Conflict { thread_id, message } => {
            RunError::Conflict { thread_id, message }
        }
    }
}

struct Execution<'g> {
    graph: &'g Graph,
    saver: Option<Arc<dyn Checkpointer>>,
    thread_id: Arc<str>,
    events: Option<EventSink>,
    cancel: Option<CancelToken>,
    created_at_ms: u64,
    /// Per channel: (step, task) that last wrote a `replace` channel.
    writer: Vec<(u64, usize)>,
    /// Per channel: the step that last overwrote it (LangGraph's `Overwrite`).
    overwritten: Vec<u64>,
    /// The current step's routes chosen at run time, in fold order: the node that chose,
    /// where it goes, and a work item's input (LangGraph's `Send`).
    gotos: Vec<(NodeId, Target, Option<Value>)>,
    /// Deferred nodes held back while other work remains.
    held: Vec<NodeId>,
    /// Channel deltas of a resume's `update`, stored with the step it resumes.
    input_deltas: Vec<ChannelDelta>,
    /// The answers of the resumed step's waiting tasks, by task, oldest first (a parked
    /// wait's stored due time too).
    answers: HashMap<String, Vec<Value>>,
    /// The answers this run brought, by task.
    fresh_answers: HashMap<String, Value>,
    /// Per node: the step it was last scheduled for.
    scheduled: Vec<u64>,
    /// The checkpoint the current step starts from; pending writes are saved against it.
    current_checkpoint: Option<u64>,
    /// This run's claim on the thread (with a checkpointer), renewed as it goes.
    lease: Option<Lease>,
    lease_ms: u64,
    /// The thread as it was when this run claimed it.
    claimed: Option<ThreadInfo>,
    /// What the run's nodes reported using (tokens, cost).
    usage: Arc<std::sync::Mutex<UsageTotals>>,
    /// How to take back the current step's folds if the step fails before it commits, so
    /// a failed run reports the last committed state.
    undo: Vec<(ChannelId, Undo)>,
    undo_scratch: Vec<Undo>,
    /// Send the whole state after every step.
    emit_values: bool,
    /// Whether the current step has a span (see [`crate::trace`]), and how many did not.
    step_traced: bool,
    untraced_steps: u64,
    /// This run's own breakpoints, by node (empty: none).
    break_before: Vec<bool>,
    break_after: Vec<bool>,
    /// The run's limit on super-steps.
    recursion_limit: u32,
    /// The run's context (an empty object when none was given).
    context: Arc<Value>,
}

/// Stops the lease heartbeat when the run ends.
struct Heartbeat(Option<tokio::task::JoinHandle<()>>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// What `start` found to resume: the interrupted task's id and its value, or "skip the
/// interrupt-before check once".
enum Resume {
    None,
    /// The interrupted step runs again with its tasks' answers in `Execution::answers`.
    Answers,
    PassBefore,
    /// The thread waits at this interrupt and no answer came: raise it again.
    Again(InterruptInfo),
}

type StepsResult = Result<(Option<InterruptInfo>, u64), (RunError, u64)>;

impl<'g> Execution<'g> {
    fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(sink) = &self.events {
            sink.send(event());
        }
    }
}

enum StepEnd {
    Committed(Vec<ChannelDelta>),
    Interrupted(InterruptInfo),
}

/// Why a call or subgraph task did not finish.
enum JobError {
    Failed {
        message: String,
        attempts: u32,
        retryable: bool,
    },
    Timeout {
        seconds: f64,
        attempts: u32,
    },
    Interrupt(Value),
}

enum JobOutput {
    /// A call's result and where it said to go.
    Value(Value, Vec<crate::node::Goto>),
    /// The subgraph's final state and the input it started from.
    Subgraph(Value, Value),
}
