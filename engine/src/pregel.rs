//! The executor: bulk-synchronous super-steps in three visible phases.
//!
//! 1. **plan** — the frontier (nodes triggered by the previous step) becomes tasks; a
//!    `for_each` node becomes one task per element. Inputs are evaluated against the state
//!    as it was before the step, so siblings never see each other's writes.
//! 2. **execute** — expression nodes run inline; tool, agent and subgraph tasks run inline
//!    when alone and on a `JoinSet` when several. Finished side-effecting tasks have their
//!    writes saved at once, so a crash re-runs only unfinished tasks.
//! 3. **update** — writes are folded through reducers in task order, edges are evaluated to
//!    build the next frontier, and a checkpoint holding only what changed is stored.
//!
//! Planning costs O(tasks + their edges): nothing scans every node or channel per step.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::channel::Undo;
use crate::checkpoint::{
    ByteCounter, ChannelDelta, CheckpointError, CheckpointRecord, CheckpointSource,
    CheckpointSummary, Checkpointer, InterruptInfo, InterruptKind, JoinProgress, Lease, TaskWrites,
    ThreadInfo, ThreadStatus, acquire, now_ms,
};
use crate::error::RunError;
use crate::events::{Event, EventSink, EventStream};
use crate::graph::{
    ChannelId, CompiledNode, Graph, Input, JoinId, Kind, NodeId, RetryPolicy, Routes, Target,
};
use crate::node::{Node, NodeContext, NodeError, UsageTotals};
use crate::state::State;

/// A snapshot is stored once the deltas since the last one outweigh it (and at least this
/// much), so reads stay fast and total storage stays linear in what changed.
const SNAPSHOT_MIN_BYTES: usize = 256 * 1024;

/// Cancels a run from another task.
#[derive(Clone, Default, Debug)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// What to run: a new run with `input`, a resume with `resume`, or (neither) the
/// continuation of a thread whose last run did not finish.
#[derive(Clone, Default, Debug)]
pub struct RunRequest {
    pub thread_id: Option<String>,
    pub input: Option<Value>,
    pub resume: Option<Value>,
    pub cancel: Option<CancelToken>,
    /// Take the thread over even while another run's lease on it is live (use when that
    /// run's process is known to be gone).
    pub takeover: bool,
}

impl RunRequest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn thread(mut self, id: impl Into<String>) -> Self {
        self.thread_id = Some(id.into());
        self
    }

    pub fn input(mut self, input: Value) -> Self {
        self.input = Some(input);
        self
    }

    pub fn resume(mut self, value: Value) -> Self {
        self.resume = Some(value);
        self
    }

    pub fn cancel_with(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    pub fn takeover(mut self, takeover: bool) -> Self {
        self.takeover = takeover;
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Done,
    Interrupted,
    Failed,
}

impl RunStatus {
    /// The word printed for it: `done`, `interrupted` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// A status equals the word printed for it.
impl PartialEq<str> for RunStatus {
    fn eq(&self, word: &str) -> bool {
        self.as_str() == word
    }
}

/// The result of a run: its status, the thread's state, and what it waits for or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub thread_id: String,
    pub state: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<InterruptInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunErrorView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<u64>,
    /// Super-steps executed by this run.
    pub steps: u64,
    /// Tokens and cost the run's nodes reported, in all and per node.
    #[serde(skip_serializing_if = "UsageTotals::is_empty")]
    pub usage: UsageTotals,
}

/// A run error as reported in outcomes and on the CLI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunErrorView {
    pub message: String,
    pub detail: RunError,
}

impl RunOutcome {
    /// The state, or the error when the run failed.
    pub fn into_result(self) -> Result<RunOutcome, RunError> {
        match &self.error {
            Some(e) if self.status == RunStatus::Failed => Err(e.detail.clone()),
            _ => Ok(self),
        }
    }

    pub fn get(&self, channel: &str) -> Option<&Value> {
        self.state.get(channel)
    }
}

/// The state of a thread at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateSnapshot {
    pub thread_id: String,
    pub checkpoint_id: Option<u64>,
    pub step: u64,
    pub values: Value,
    pub next: Vec<String>,
    pub status: Option<ThreadStatus>,
    pub interrupt: Option<InterruptInfo>,
}

/// A run in progress on its own task: its events, as a `futures` `Stream` or with
/// [`next`](RunStream::next), then its [`outcome`](RunStream::outcome).
#[derive(Debug)]
pub struct RunStream {
    events: EventStream,
    task: tokio::task::JoinHandle<RunOutcome>,
    thread_id: Option<String>,
}

impl RunStream {
    /// The next event; `None` once the run has ended and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.next().await
    }

    /// Waits for the run to end and returns its outcome (events not read are dropped).
    pub async fn outcome(self) -> RunOutcome {
        match self.task.await {
            Ok(outcome) => outcome,
            // The run's task panicked (a bug) or the runtime is shutting down.
            Err(e) => {
                let detail = RunError::Thread {
                    message: format!("the run's task stopped: {e}"),
                };
                RunOutcome {
                    status: RunStatus::Failed,
                    thread_id: self.thread_id.unwrap_or_default(),
                    state: Value::Null,
                    interrupt: None,
                    error: Some(RunErrorView {
                        message: detail.to_string(),
                        detail,
                    }),
                    checkpoint_id: None,
                    steps: 0,
                    usage: UsageTotals::default(),
                }
            }
        }
    }
}

impl futures_core::Stream for RunStream {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        std::pin::Pin::new(&mut self.events).poll_next(cx)
    }
}

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
    joins: Vec<Vec<bool>>,
    /// Bytes of deltas stored since the last snapshot, and the size of that snapshot.
    since_snapshot: usize,
    snapshot_bytes: usize,
}

struct Task {
    node: NodeId,
    item: Option<(Value, usize)>,
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

    pub fn with_checkpointer(mut self, saver: Arc<dyn Checkpointer>) -> Self {
        self.saver = Some(saver);
        self
    }

    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

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
        let task = tokio::spawn(async move { runner.run(request, Some(sink)).await });
        RunStream {
            events,
            task,
            thread_id,
        }
    }

    /// Runs, sending events into `events` when given.
    pub async fn run(&self, request: RunRequest, events: Option<EventSink>) -> RunOutcome {
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
            scheduled: vec![u64::MAX; self.graph.nodes.len()],
            current_checkpoint: None,
            lease: None,
            lease_ms: self.lease_ms,
            claimed: None,
            usage: Arc::default(),
            undo: Vec::new(),
            undo_scratch: Vec::new(),
        };
        exec.emit(|| Event::RunStarted {
            thread_id: thread_id.clone(),
            graph: self.graph.name.clone(),
        });
        let mut start_error = false;
        let (status, state, interrupt, error, checkpoint_id, steps) =
            match exec.start(request).await {
                Ok((mut state, mut pos, resume)) => {
                    let _heartbeat = exec.heartbeat();
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
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = RunOutcome> + Send + '_>> {
        Box::pin(self.run(request, None))
    }

    fn saver(&self) -> Result<&dyn Checkpointer, RunError> {
        self.saver.as_deref().ok_or_else(|| RunError::Thread {
            message: "this runner has no checkpointer; threads need one (memory, sqlite, postgres)"
                .into(),
        })
    }

    /// The thread's state at `checkpoint` (the latest when `None`).
    pub async fn state(
        &self,
        thread_id: &str,
        checkpoint: Option<u64>,
    ) -> Result<StateSnapshot, RunError> {
        let saver = self.saver()?;
        let info = saver.thread(thread_id).await.map_err(cp_err)?;
        let chain = saver.chain(thread_id, checkpoint).await.map_err(cp_err)?;
        let Some(last) = chain.last() else {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, checkpoint),
            });
        };
        if let Some(c) = checkpoint
            && last.id != c
        {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, checkpoint),
            });
        }
        let mut state = State::rebuild(&self.graph, &chain)
            .map_err(|message| RunError::Checkpoint { message })?;
        if checkpoint.is_none()
            && info
                .as_ref()
                .is_some_and(|i| i.status == ThreadStatus::Interrupted)
        {
            let pending = saver.writes(thread_id, last.id).await.map_err(cp_err)?;
            fold_pending(&self.graph, &mut state, pending);
        }
        Ok(StateSnapshot {
            thread_id: thread_id.into(),
            checkpoint_id: Some(last.id),
            step: last.step,
            values: state.to_json(),
            next: last.next.clone(),
            status: info.as_ref().map(|i| i.status),
            interrupt: info.and_then(|i| i.interrupt),
        })
    }

    /// Every checkpoint of a thread, oldest first.
    pub async fn history(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, RunError> {
        self.saver()?.list(thread_id).await.map_err(cp_err)
    }

    /// Applies `values` (channel → write, through reducers) as a new checkpoint on the thread.
    pub async fn update_state(&self, thread_id: &str, values: &Value) -> Result<u64, RunError> {
        let saver = self.saver()?;
        if saver.thread(thread_id).await.map_err(cp_err)?.is_none() {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, None),
            });
        }
        let lease = Lease::new(self.lease_ms);
        let info = acquire(saver, thread_id, &self.graph.name, &lease, false)
            .await
            .map_err(cp_err)?;
        let result = self.update_owned(saver, thread_id, values, &lease).await;
        let release = ThreadInfo {
            lease: None,
            updated_at_ms: now_ms(),
            ..info
        };
        saver
            .put_thread(&release, Some(&lease))
            .await
            .map_err(cp_err)?;
        result
    }

    async fn update_owned(
        &self,
        saver: &dyn Checkpointer,
        thread_id: &str,
        values: &Value,
        lease: &Lease,
    ) -> Result<u64, RunError> {
        let chain = saver.chain(thread_id, None).await.map_err(cp_err)?;
        let Some(last) = chain.last() else {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, None),
            });
        };
        let mut state = State::rebuild(&self.graph, &chain)
            .map_err(|message| RunError::Checkpoint { message })?;
        let deltas = apply_input(&self.graph, &mut state, values.clone(), "update", true)?;
        let record = CheckpointRecord {
            thread_id: thread_id.into(),
            id: last.id + 1,
            parent: Some(last.id),
            step: last.step,
            source: CheckpointSource::Update,
            nodes: Vec::new(),
            deltas,
            snapshot: None,
            next: last.next.clone(),
            joins: last.joins.clone(),
            created_at_ms: now_ms(),
        };
        saver.put(&record, Some(lease)).await.map_err(cp_err)?;
        Ok(record.id)
    }

    /// Keeps the thread's latest `keep` checkpoints and deletes the older ones, first storing
    /// the oldest kept one as a full snapshot so it can still be rebuilt. Returns how many
    /// checkpoints were deleted.
    pub async fn prune(&self, thread_id: &str, keep: usize) -> Result<u64, RunError> {
        let saver = self.saver()?;
        let list = saver.list(thread_id).await.map_err(cp_err)?;
        let keep = keep.max(1);
        if list.len() <= keep {
            return Ok(0);
        }
        let cut = list[list.len() - keep].checkpoint_id;
        let chain = saver.chain(thread_id, Some(cut)).await.map_err(cp_err)?;
        let cut_is_snapshot = chain
            .first()
            .is_some_and(|c| c.id == cut && c.snapshot.is_some());
        if !cut_is_snapshot {
            let state = State::rebuild(&self.graph, &chain)
                .map_err(|message| RunError::Checkpoint { message })?;
            saver
                .put_snapshot(thread_id, cut, &state.to_map())
                .await
                .map_err(cp_err)?;
        }
        saver.prune(thread_id, keep).await.map_err(cp_err)
    }

    /// Starts a new thread from a past checkpoint of another; returns the new thread's id.
    /// Running the new thread (without input) continues from that checkpoint.
    pub async fn fork(
        &self,
        thread_id: &str,
        checkpoint: u64,
        new_thread: Option<String>,
    ) -> Result<String, RunError> {
        let saver = self.saver()?;
        let chain = saver
            .chain(thread_id, Some(checkpoint))
            .await
            .map_err(cp_err)?;
        let Some(last) = chain.last().filter(|c| c.id == checkpoint) else {
            return Err(RunError::Thread {
                message: missing_thread(thread_id, Some(checkpoint)),
            });
        };
        let state = State::rebuild(&self.graph, &chain)
            .map_err(|message| RunError::Checkpoint { message })?;
        let new_id = new_thread.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if saver.thread(&new_id).await.map_err(cp_err)?.is_some() {
            return Err(RunError::Thread {
                message: format!("thread `{new_id}` already exists; pick another id"),
            });
        }
        let now = now_ms();
        let record = CheckpointRecord {
            thread_id: new_id.clone(),
            id: 0,
            parent: None,
            step: last.step,
            source: CheckpointSource::Fork,
            nodes: Vec::new(),
            deltas: Vec::new(),
            snapshot: Some(state.to_map()),
            next: last.next.clone(),
            joins: last.joins.clone(),
            created_at_ms: now,
        };
        saver
            .put_thread(
                &ThreadInfo {
                    thread_id: new_id.clone(),
                    graph: self.graph.name.clone(),
                    status: ThreadStatus::Idle,
                    last_checkpoint: None,
                    interrupt: None,
                    error: None,
                    lease: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                },
                None,
            )
            .await
            .map_err(cp_err)?;
        saver.put(&record, None).await.map_err(cp_err)?;
        Ok(new_id)
    }
}

/// Folds the writes of tasks that finished in an interrupted step into `state`, in the
/// step's fold order, as LangGraph reports an interrupted thread's state. Writes that
/// would not fold leave the state as committed.
fn fold_pending(graph: &Graph, state: &mut State, mut pending: Vec<TaskWrites>) {
    let order = |t: &TaskWrites| {
        let rank = graph
            .node_id(&t.node)
            .map_or(u32::MAX, |n| graph.nodes[n as usize].rank);
        let item = t
            .task_id
            .strip_suffix(']')
            .and_then(|s| s.rsplit_once('['))
            .and_then(|(_, i)| i.parse::<usize>().ok())
            .unwrap_or(0);
        (rank, item)
    };
    pending.sort_by_key(order);
    let mut undo = Vec::new();
    let mut scratch = Vec::new();
    for task in pending {
        for (name, value) in task.writes {
            let Some(ch) = graph.channel_id(&name) else {
                continue;
            };
            if state
                .fold_logged(graph, ch, value, &mut undo, &mut scratch)
                .is_err()
            {
                state.undo(&mut undo);
                return;
            }
        }
    }
}

/// Refuses a new run whose state lacks what `[state]` declares required, naming every
/// missing value at once, before any node runs (and before any model is called).
fn check_required(graph: &Graph, state: &State) -> Result<(), RunError> {
    let mut missing: Vec<String> = Vec::new();
    for &id in &graph.required {
        let channel = &graph.channels[id as usize];
        let value = &state.values[id as usize];
        match &channel.required {
            Some(crate::channel::Required::Value) if value.is_null() => {
                missing.push(format!("`{}`", channel.name));
            }
            Some(crate::channel::Required::Fields(fields)) => {
                for field in fields {
                    if value.get(field).is_none_or(Value::is_null) {
                        missing.push(format!("`{}.{field}`", channel.name));
                    }
                }
            }
            _ => {}
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(RunError::Input {
        message: format!(
            "the input lacks {} (required in [state] of graph `{}`); give {} in the input",
            missing.join(", "),
            graph.name,
            if missing.len() == 1 { "it" } else { "them" }
        ),
    })
}

fn missing_thread(thread_id: &str, checkpoint: Option<u64>) -> String {
    match checkpoint {
        Some(c) => format!(
            "thread `{thread_id}` has no checkpoint {c}; list them with `brainops threads history {thread_id}`"
        ),
        None => format!(
            "thread `{thread_id}` has no checkpoints; list threads with `brainops threads list`"
        ),
    }
}

fn cp_err(e: CheckpointError) -> RunError {
    match e {
        CheckpointError::Store(message) => RunError::Checkpoint { message },
        CheckpointError::Conflict { thread_id, message } => {
            RunError::Conflict { thread_id, message }
        }
    }
}

/// Applies a JSON object of channel writes through reducers; returns the deltas to store,
/// none when `store` is false (no checkpointer: the input is then moved into the state,
/// never copied). On an error `state` is left part-updated: callers discard it.
fn apply_input(
    graph: &Graph,
    state: &mut State,
    input: Value,
    what: &str,
    store: bool,
) -> Result<Vec<ChannelDelta>, RunError> {
    let Value::Object(map) = input else {
        return Err(RunError::Input {
            message: format!(
                "the {what} must be a JSON object of channel values, got {}",
                crate::channel::kind(&input)
            ),
        });
    };
    let mut deltas = Vec::with_capacity(if store { map.len() } else { 0 });
    for (key, value) in map {
        let Some(id) = graph.channel_id(&key) else {
            let names: Vec<&str> = graph.channels.iter().map(|c| c.name.as_str()).collect();
            return Err(RunError::Input {
                message: format!(
                    "`{key}` is not a declared channel of graph `{}` (declared: {}); declare it in [state]",
                    graph.name,
                    names.join(", ")
                ),
            });
        };
        let channel = &graph.channels[id as usize];
        let given = crate::channel::kind(&value);
        if store {
            deltas.push(if channel.reducer.stores_delta() {
                ChannelDelta::Reduce {
                    channel: key.clone(),
                    writes: vec![value.clone()],
                }
            } else {
                ChannelDelta::Set {
                    channel: key.clone(),
                    value: value.clone(),
                }
            });
        }
        // Folded in place: on an error the caller discards the whole state.
        let slot = &mut state.values[id as usize];
        channel
            .reducer
            .apply(slot, value)
            .map_err(|e| RunError::Input {
                message: format!("`{key}`: {e}"),
            })?;
        if !channel.ty.accepts(slot) {
            return Err(RunError::Input {
                message: format!(
                    "`{key}` must be of type {}, got {given}",
                    crate::graph::type_name(channel.ty),
                ),
            });
        }
        state.invalidate(id);
    }
    Ok(deltas)
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
    Task(String, Value),
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

    async fn save_thread(
        &self,
        status: ThreadStatus,
        checkpoint: Option<u64>,
        interrupt: Option<InterruptInfo>,
        error: Option<&RunError>,
    ) -> Result<(), RunError> {
        let Some(saver) = self.saver.clone() else {
            return Ok(());
        };
        let created = self
            .claimed
            .as_ref()
            .map_or(self.created_at_ms, |i| i.created_at_ms);
        // A running thread keeps this run's lease; any other status releases it.
        let keep = (status == ThreadStatus::Running)
            .then(|| self.renewed_lease())
            .flatten();
        saver
            .put_thread(
                &ThreadInfo {
                    thread_id: self.thread_id.to_string(),
                    graph: self.graph.name.clone(),
                    status,
                    last_checkpoint: checkpoint,
                    interrupt,
                    error: error.map(ToString::to_string),
                    lease: keep,
                    created_at_ms: created,
                    updated_at_ms: now_ms(),
                },
                self.lease.as_ref(),
            )
            .await
            .map_err(cp_err)
    }

    /// This run's lease, extended to `lease_ms` from now.
    fn renewed_lease(&self) -> Option<Lease> {
        self.lease.as_ref().map(|l| Lease {
            owner: l.owner.clone(),
            until_ms: now_ms().saturating_add(self.lease_ms),
        })
    }

    /// Renews the lease every third of its length while the run goes on, so a long node
    /// call does not let another process take the thread over.
    fn heartbeat(&self) -> Heartbeat {
        let (Some(saver), Some(lease)) = (self.saver.clone(), self.lease.clone()) else {
            return Heartbeat(None);
        };
        let (thread_id, lease_ms) = (self.thread_id.clone(), self.lease_ms);
        Heartbeat(Some(tokio::spawn(async move {
            let period = Duration::from_millis((lease_ms / 3).max(1));
            loop {
                tokio::time::sleep(period).await;
                let renewed = Lease {
                    owner: lease.owner.clone(),
                    until_ms: now_ms().saturating_add(lease_ms),
                };
                match saver.renew(&thread_id, &renewed).await {
                    Ok(()) => {}
                    Err(CheckpointError::Conflict { .. }) => return,
                    Err(e) => tracing::warn!(thread = %thread_id, "lease renewal failed: {e}"),
                }
            }
        })))
    }

    /// Gives the thread back as it was when a run that changed nothing claimed it.
    async fn release_unchanged(&self) -> Result<(), CheckpointError> {
        let (Some(saver), Some(lease), Some(info)) = (&self.saver, &self.lease, &self.claimed)
        else {
            return Ok(());
        };
        if info.last_checkpoint.is_none() && info.status == ThreadStatus::Idle {
            // The claim created the thread; nothing of it is worth keeping.
            if saver
                .thread(&self.thread_id)
                .await?
                .is_some_and(|t| t.last_checkpoint.is_none())
            {
                return saver.delete_thread(&self.thread_id).await;
            }
        }
        let restored = ThreadInfo {
            lease: None,
            ..info.clone()
        };
        saver.put_thread(&restored, Some(lease)).await
    }

    /// Loads the thread and decides where this run starts.
    async fn start(&mut self, request: RunRequest) -> Result<(State, Position, Resume), RunError> {
        let graph = self.graph;
        let empty_pos = || Position {
            checkpoint_id: None,
            step: 0,
            frontier: Vec::new(),
            joins: graph
                .joins
                .iter()
                .map(|j| vec![false; j.sources.len()])
                .collect(),
            since_snapshot: 0,
            snapshot_bytes: 0,
        };
        let (mut state, mut pos, info) = match self.saver.clone() {
            Some(saver) => {
                let lease = Lease::new(self.lease_ms);
                let claimed = acquire(
                    saver.as_ref(),
                    &self.thread_id,
                    &graph.name,
                    &lease,
                    request.takeover,
                )
                .await
                .map_err(cp_err)?;
                self.lease = Some(lease);
                self.claimed = Some(claimed.clone());
                let chain = saver.chain(&self.thread_id, None).await.map_err(cp_err)?;
                if !chain.is_empty() && claimed.graph != graph.name {
                    return Err(RunError::Thread {
                        message: format!(
                            "thread `{}` belongs to graph `{}`, not `{}`; run it with that graph's file, or use another thread id",
                            self.thread_id, claimed.graph, graph.name
                        ),
                    });
                }
                let info = Some(claimed);
                match chain.last() {
                    Some(last) => {
                        let state = State::rebuild(graph, &chain)
                            .map_err(|message| RunError::Checkpoint { message })?;
                        let mut pos = empty_pos();
                        pos.checkpoint_id = Some(last.id);
                        pos.step = last.step;
                        pos.frontier = self.node_ids(&last.next)?;
                        pos.frontier
                            .sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
                        for progress in &last.joins {
                            if let Some(seen) = pos.joins.get_mut(progress.join as usize) {
                                for (i, &src) in graph.joins[progress.join as usize]
                                    .sources
                                    .iter()
                                    .enumerate()
                                {
                                    seen[i] = progress
                                        .seen
                                        .iter()
                                        .any(|s| *graph.nodes[src as usize].name == *s);
                                }
                            }
                        }
                        (state, pos, info)
                    }
                    None => (State::new(graph), empty_pos(), info),
                }
            }
            None => (State::new(graph), empty_pos(), None),
        };
        if let Some(info) = &info
            && info.status == ThreadStatus::Running
        {
            // A crashed process leaves `running` behind; continuing is what the caller asked.
            tracing::info!(thread = %self.thread_id, "continuing a thread whose last run did not finish");
        }
        let interrupted = info
            .as_ref()
            .filter(|i| i.status == ThreadStatus::Interrupted)
            .and_then(|i| i.interrupt.clone());
        let resume = match (&request.resume, &request.input) {
            (Some(_), Some(_)) => {
                return Err(RunError::Input {
                    message: "give either an input (a new run) or a resume value, not both".into(),
                });
            }
            (Some(value), None) => match &interrupted {
                Some(i) if i.kind == InterruptKind::Ask => {
                    Resume::Task(i.task.clone(), value.clone())
                }
                Some(_) => Resume::PassBefore,
                None if pos.checkpoint_id.is_none() => {
                    return Err(RunError::Thread {
                        message: format!(
                            "thread `{}` does not exist, so it is not interrupted; there is nothing to resume (see `brainops threads list`)",
                            self.thread_id
                        ),
                    });
                }
                None => {
                    let status = info.as_ref().map_or("unknown", |i| i.status.as_str());
                    return Err(RunError::Thread {
                        message: format!(
                            "thread `{}` is not interrupted (status: {status}); there is nothing to resume",
                            self.thread_id
                        ),
                    });
                }
            },
            (None, _) => Resume::None,
        };
        if let Resume::Task(..) | Resume::PassBefore = resume {
            self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
                .await?;
            return Ok((state, pos, resume));
        }
        let unfinished = !pos.frontier.is_empty()
            && info
                .as_ref()
                .is_some_and(|i| i.status != ThreadStatus::Done);
        if let Some(i) = &interrupted {
            if request.input.is_some() {
                return Err(RunError::Thread {
                    message: format!(
                        "thread `{}` is waiting at node `{}`; answer it with a resume value (`--resume JSON`) instead of new input",
                        self.thread_id, i.node
                    ),
                });
            }
            // Neither input nor resume: ask the same question again, as LangGraph does.
            if let (Some(saver), Some(cp)) = (&self.saver, pos.checkpoint_id) {
                let pending = saver.writes(&self.thread_id, cp).await.map_err(cp_err)?;
                fold_pending(graph, &mut state, pending);
            }
            return Ok((state, pos, Resume::Again(i.clone())));
        }
        if request.input.is_none() && unfinished {
            self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
                .await?;
            return Ok((state, pos, Resume::None));
        }
        if request.input.is_none() && pos.checkpoint_id.is_some() {
            // A finished thread and no new input: nothing to do. Starting over here would
            // repeat a whole run (and its side effects) because a caller retried a
            // "continue" that had already completed.
            pos.frontier.clear();
            return Ok((state, pos, Resume::None));
        }
        // A new run: apply the input, then route from START.
        let input = request.input.unwrap_or_else(|| Value::Object(Map::new()));
        let deltas = apply_input(graph, &mut state, input, "input", self.saver.is_some())?;
        check_required(graph, &state)?;
        for seen in &mut pos.joins {
            seen.iter_mut().for_each(|s| *s = false);
        }
        pos.frontier.clear();
        let mut next = Vec::new();
        self.route(&graph.start, "START", &state, pos.step, &mut next)?;
        next.sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
        pos.frontier = next;
        self.save_thread(ThreadStatus::Running, pos.checkpoint_id, None, None)
            .await?;
        self.checkpoint(
            &state,
            &mut pos,
            CheckpointSource::Input,
            Vec::new(),
            deltas,
        )
        .await?;
        Ok((state, pos, Resume::None))
    }

    fn node_ids(&self, names: &[String]) -> Result<Vec<NodeId>, RunError> {
        names
            .iter()
            .map(|n| {
                self.graph.node_id(n).ok_or_else(|| RunError::Thread {
                    message: format!(
                        "the thread's next node `{n}` is not in graph `{}`; was the graph edited?",
                        self.graph.name
                    ),
                })
            })
            .collect()
    }

    async fn steps(
        &mut self,
        state: &mut State,
        pos: &mut Position,
        mut resume: Resume,
    ) -> StepsResult {
        let graph = self.graph;
        let mut steps_run: u64 = 0;
        let mut next_frontier: Vec<NodeId> = Vec::new();
        let mut ran: Vec<NodeId> = Vec::new();
        if let Resume::Again(info) = resume {
            self.emit(|| Event::Interrupt {
                node: info.node.clone(),
                task: info.task.clone(),
                value: info.value.clone(),
            });
            return Ok((Some(info), 0));
        }
        loop {
            // Checked before "nothing left to run", as LangGraph does: a run that needs all
            // of its `recursion_limit` steps fails (a 100-node chain needs a limit of 101,
            // because LangGraph counts the step that reads the input).
            if steps_run >= u64::from(graph.recursion_limit) {
                return Err((
                    RunError::RecursionLimit {
                        limit: graph.recursion_limit,
                    },
                    steps_run,
                ));
            }
            if pos.frontier.is_empty() {
                return Ok((None, steps_run));
            }
            if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                return Err((RunError::Cancelled, steps_run));
            }
            // Interrupt before: pause ahead of the step, unless this run resumes from it.
            let pass_before = matches!(resume, Resume::PassBefore);
            if !pass_before
                && let Some(&n) = pos
                    .frontier
                    .iter()
                    .find(|&&n| graph.nodes[n as usize].interrupt_before)
            {
                let node = graph.nodes[n as usize].name.to_string();
                let info = InterruptInfo {
                    kind: InterruptKind::Before,
                    task: node.clone(),
                    node,
                    value: Value::Null,
                };
                self.emit(|| Event::Interrupt {
                    node: info.node.clone(),
                    task: info.task.clone(),
                    value: Value::Null,
                });
                return Ok((Some(info), steps_run));
            }
            let step = pos.step + 1;
            let resume_task = match std::mem::replace(&mut resume, Resume::None) {
                Resume::Task(task, value) => Some((task, value)),
                _ => None,
            };
            let result = self
                .step(state, pos, step, resume_task, steps_run == 0, &mut ran)
                .await;
            steps_run += 1;
            // A step that fails before its checkpoint is stored leaves the state as it was
            // last committed: that is what the run reports, as `threads show` would.
            let deltas = match result {
                Ok(StepEnd::Committed(deltas)) => deltas,
                Ok(StepEnd::Interrupted(interrupt)) => return Ok((Some(interrupt), steps_run - 1)),
                Err(e) => {
                    state.undo(&mut self.undo);
                    return Err((e, steps_run));
                }
            };
            // Update: route from every node that ran, then checkpoint.
            next_frontier.clear();
            for &n in &ran {
                let node = &graph.nodes[n as usize];
                if let Err(e) =
                    self.route(&node.routes, &node.name, state, step, &mut next_frontier)
                {
                    state.undo(&mut self.undo);
                    return Err((e, steps_run));
                }
                for &j in &node.joins {
                    self.mark_join(pos, j, n, step, &mut next_frontier);
                }
            }
            next_frontier.sort_unstable_by_key(|&n| graph.nodes[n as usize].rank);
            std::mem::swap(&mut pos.frontier, &mut next_frontier);
            pos.step = step;
            let names: Vec<String> = if self.saver.is_some() {
                ran.iter()
                    .map(|&n| graph.nodes[n as usize].name.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            if let Err(e) = self
                .checkpoint(state, pos, CheckpointSource::Loop, names, deltas)
                .await
            {
                state.undo(&mut self.undo);
                return Err((e, steps_run));
            }
            self.emit(|| Event::StepFinished { step });
            if let Some(&n) = ran
                .iter()
                .find(|&&n| graph.nodes[n as usize].interrupt_after)
            {
                let node = graph.nodes[n as usize].name.to_string();
                let info = InterruptInfo {
                    kind: InterruptKind::After,
                    task: node.clone(),
                    node,
                    value: Value::Null,
                };
                self.emit(|| Event::Interrupt {
                    node: info.node.clone(),
                    task: info.task.clone(),
                    value: Value::Null,
                });
                return Ok((Some(info), steps_run));
            }
        }
    }

    fn mark_join(
        &mut self,
        pos: &mut Position,
        j: JoinId,
        n: NodeId,
        step: u64,
        next: &mut Vec<NodeId>,
    ) {
        let join = &self.graph.joins[j as usize];
        let seen = &mut pos.joins[j as usize];
        for (i, &s) in join.sources.iter().enumerate() {
            if s == n {
                seen[i] = true;
            }
        }
        if seen.iter().all(|&s| s) {
            seen.iter_mut().for_each(|s| *s = false);
            self.schedule(join.to, step, next);
        }
    }

    fn schedule(&mut self, target: Target, step: u64, next: &mut Vec<NodeId>) {
        if let Target::Node(n) = target
            && self.scheduled[n as usize] != step
        {
            self.scheduled[n as usize] = step;
            next.push(n);
        }
    }

    /// Evaluates a node's outgoing edges against the updated state.
    fn route(
        &mut self,
        routes: &Routes,
        from: &str,
        state: &State,
        step: u64,
        next: &mut Vec<NodeId>,
    ) -> Result<(), RunError> {
        for &t in &routes.always {
            self.schedule(t, step, next);
        }
        let mut matched = false;
        for (cond, t) in &routes.when {
            let ok = cond.eval_bool(state).map_err(|e| RunError::Expression {
                node: from.into(),
                message: e.to_string(),
            })?;
            if ok {
                matched = true;
                self.schedule(*t, step, next);
            }
        }
        if !matched {
            if let Some(t) = routes.default {
                self.schedule(t, step, next);
            } else if !routes.when.is_empty() && routes.always.is_empty() {
                let mut seen = Map::new();
                for (cond, _) in &routes.when {
                    match cond.reads() {
                        Some(ids) => {
                            for &id in ids {
                                seen.insert(
                                    self.graph.channels[id as usize].name.clone(),
                                    state.values[id as usize].clone(),
                                );
                            }
                        }
                        None => seen = state.to_map(),
                    }
                }
                let conditions: Vec<&str> = routes.when.iter().map(|(c, _)| c.source()).collect();
                let mut detail = Map::new();
                detail.insert("conditions".into(), Value::from(conditions));
                detail.insert("state".into(), Value::Object(seen));
                return Err(RunError::NoRoute {
                    node: from.into(),
                    seen: Value::Object(detail),
                });
            }
        }
        Ok(())
    }

    async fn checkpoint(
        &mut self,
        state: &State,
        pos: &mut Position,
        source: CheckpointSource,
        nodes: Vec<String>,
        deltas: Vec<ChannelDelta>,
    ) -> Result<(), RunError> {
        let Some(saver) = self.saver.clone() else {
            return Ok(());
        };
        let graph = self.graph;
        let id = pos.checkpoint_id.map_or(0, |c| c + 1);
        let mut counter = ByteCounter(0);
        let _ = serde_json::to_writer(&mut counter, &deltas);
        pos.since_snapshot += counter.0;
        let snapshot = if pos.since_snapshot > SNAPSHOT_MIN_BYTES.max(pos.snapshot_bytes) {
            let map = state.to_map();
            let mut size = ByteCounter(0);
            let _ = serde_json::to_writer(&mut size, &map);
            pos.snapshot_bytes = size.0;
            pos.since_snapshot = 0;
            Some(map)
        } else {
            None
        };
        let joins = pos
            .joins
            .iter()
            .enumerate()
            .filter(|(_, seen)| seen.iter().any(|&s| s))
            .map(|(j, seen)| JoinProgress {
                join: j as u32,
                seen: graph.joins[j]
                    .sources
                    .iter()
                    .zip(seen)
                    .filter(|(_, s)| **s)
                    .map(|(&n, _)| graph.nodes[n as usize].name.to_string())
                    .collect(),
            })
            .collect();
        let record = CheckpointRecord {
            thread_id: self.thread_id.to_string(),
            id,
            parent: pos.checkpoint_id,
            step: pos.step,
            source,
            nodes,
            deltas: if snapshot.is_some() {
                Vec::new()
            } else {
                deltas
            },
            snapshot,
            next: pos
                .frontier
                .iter()
                .map(|&n| graph.nodes[n as usize].name.to_string())
                .collect(),
            joins,
            created_at_ms: now_ms(),
        };
        let lease = self.renewed_lease();
        saver.put(&record, lease.as_ref()).await.map_err(cp_err)?;
        pos.checkpoint_id = Some(id);
        if self.events.is_some() {
            let bytes = record.stored_bytes();
            self.emit(|| Event::Checkpoint {
                checkpoint_id: id,
                step: pos.step,
                bytes,
            });
        }
        Ok(())
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

fn task_label(node: &CompiledNode, task: &Task) -> String {
    match &task.item {
        Some((_, i)) => format!("{}[{i}]", node.name),
        None => node.name.to_string(),
    }
}

impl<'g> Execution<'g> {
    /// Plan and execute one super-step, then fold its writes into `state`.
    async fn step(
        &mut self,
        state: &mut State,
        pos: &Position,
        step: u64,
        resume: Option<(String, Value)>,
        first: bool,
        ran: &mut Vec<NodeId>,
    ) -> Result<StepEnd, RunError> {
        let graph = self.graph;
        self.current_checkpoint = pos.checkpoint_id;
        self.undo.clear();
        // Plan.
        ran.clear();
        let mut tasks: Vec<Task> = Vec::with_capacity(pos.frontier.len());
        for &n in &pos.frontier {
            let node = &graph.nodes[n as usize];
            ran.push(n);
            match &node.for_each {
                Some(expr) => {
                    let list = expr.eval(state, None).map_err(|e| RunError::Expression {
                        node: node.name.to_string(),
                        message: e.to_string(),
                    })?;
                    let Value::Array(items) = list else {
                        return Err(RunError::Expression {
                            node: node.name.to_string(),
                            message: format!(
                                "`for_each = \"{}\"` must give a list, got {}",
                                expr.source(),
                                crate::channel::kind(&list)
                            ),
                        });
                    };
                    tasks.extend(items.into_iter().enumerate().map(|(i, item)| Task {
                        node: n,
                        item: Some((item, i)),
                    }));
                }
                None => tasks.push(Task {
                    node: n,
                    item: None,
                }),
            }
        }
        self.emit(|| Event::StepStarted {
            step,
            nodes: ran
                .iter()
                .map(|&n| graph.nodes[n as usize].name.to_string())
                .collect(),
        });

        // Writes saved by an earlier attempt at this step (a crash, a failure, an interrupt).
        let mut saved: HashMap<String, Vec<(String, Value)>> = HashMap::new();
        if let (true, Some(saver), Some(cp)) = (first, &self.saver, pos.checkpoint_id) {
            for w in saver.writes(&self.thread_id, cp).await.map_err(cp_err)? {
                saved.insert(w.task_id, w.writes);
            }
        }
        let need_ids = self.saver.is_some() || self.events.is_some() || resume.is_some();
        let checkpoint_id = pos.checkpoint_id.unwrap_or(step);

        // Execute: expression nodes inline, calls collected for the async phase.
        let mut results: Vec<TaskResult> = Vec::with_capacity(tasks.len());
        let mut saved_flags: Vec<bool> = vec![false; tasks.len()];
        let mut jobs: Vec<(usize, Job, NodeContext)> = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let node = &graph.nodes[task.node as usize];
            let id = if need_ids || !matches!(node.kind, Kind::Set(_)) {
                task_label(node, task)
            } else {
                String::new()
            };
            if let Some(writes) = saved.remove(&id) {
                let mut out = Vec::with_capacity(writes.len());
                for (name, value) in writes {
                    if let Some(ch) = graph.channel_id(&name) {
                        out.push((ch, value));
                    }
                }
                saved_flags[i] = true;
                results.push(TaskResult::Done(out));
                continue;
            }
            if self.events.is_some() {
                self.emit(|| Event::NodeStarted {
                    step,
                    node: node.name.to_string(),
                    task: id.clone(),
                });
            }
            let item = task.item.as_ref().map(|(v, i)| (v, *i));
            let node_err = |e: crate::expr::EvalError| RunError::Expression {
                node: node.name.to_string(),
                message: e.to_string(),
            };
            let result = match &node.kind {
                Kind::Set(assignments) => {
                    let mut writes = Vec::with_capacity(assignments.len());
                    let mut failure = None;
                    for (ch, expr) in assignments {
                        match expr.eval(state, item) {
                            Ok(v) => writes.push((*ch, v)),
                            Err(e) => {
                                failure = Some(node_err(e));
                                break;
                            }
                        }
                    }
                    match failure {
                        Some(e) => TaskResult::Failed(e),
                        None => TaskResult::Done(writes),
                    }
                }
                Kind::Ask { question, output } => match &resume {
                    Some((task_id, value)) if *task_id == id => TaskResult::Done(
                        output
                            .map(|ch| vec![(ch, value.clone())])
                            .unwrap_or_default(),
                    ),
                    _ => TaskResult::Interrupted(Value::String(question.clone())),
                },
                Kind::Call { handler, input, .. } => {
                    let input = match input {
                        Input::Mapping(mapping) => {
                            let mut object = Map::new();
                            let mut failure = None;
                            for (key, expr) in mapping {
                                match expr.eval(state, item) {
                                    Ok(v) => {
                                        object.insert(key.clone(), v);
                                    }
                                    Err(e) => {
                                        failure = Some(node_err(e));
                                        break;
                                    }
                                }
                            }
                            if let Some(e) = failure {
                                results.push(TaskResult::Failed(e));
                                continue;
                            }
                            Value::Object(object)
                        }
                        Input::WholeState => state.to_json(),
                    };
                    let ctx = self.context(node, &id, step, checkpoint_id, &resume);
                    jobs.push((
                        i,
                        Job::Call {
                            handler: Arc::clone(handler),
                            input,
                        },
                        ctx,
                    ));
                    TaskResult::Pending
                }
                Kind::Subgraph {
                    graph: child,
                    shared,
                    ..
                } => {
                    let mut input = Map::new();
                    for &(parent, c) in shared {
                        input.insert(
                            child.channels[c as usize].name.clone(),
                            state.values[parent as usize].clone(),
                        );
                    }
                    let ctx = self.context(node, &id, step, checkpoint_id, &resume);
                    jobs.push((
                        i,
                        Job::Subgraph {
                            graph: Arc::clone(child),
                            input: Value::Object(input),
                        },
                        ctx,
                    ));
                    TaskResult::Pending
                }
            };
            results.push(result);
        }

        // Execute the async jobs: inline when alone, in parallel otherwise.
        if !jobs.is_empty() {
            self.run_jobs(jobs, &tasks, &mut results, &mut saved_flags)
                .await?;
        }

        // A failed or interrupted task stops the step; save what finished so resuming
        // re-runs only the rest.
        let failed = results
            .iter()
            .position(|r| matches!(r, TaskResult::Failed(_)));
        let interrupted = results
            .iter()
            .position(|r| matches!(r, TaskResult::Interrupted(_)));
        if failed.is_some() || interrupted.is_some() {
            if let (Some(saver), Some(cp)) = (&self.saver, pos.checkpoint_id) {
                for (i, r) in results.iter().enumerate() {
                    if let (TaskResult::Done(writes), false) = (r, saved_flags[i]) {
                        let node = &graph.nodes[tasks[i].node as usize];
                        let record = TaskWrites {
                            task_id: task_label(node, &tasks[i]),
                            node: node.name.to_string(),
                            writes: writes
                                .iter()
                                .map(|(ch, v)| {
                                    (graph.channels[*ch as usize].name.clone(), v.clone())
                                })
                                .collect(),
                        };
                        saver
                            .put_writes(&self.thread_id, cp, &record, self.lease.as_ref())
                            .await
                            .map_err(cp_err)?;
                    }
                }
            }
            if let Some(i) = failed
                && let TaskResult::Failed(e) =
                    std::mem::replace(&mut results[i], TaskResult::Pending)
            {
                return Err(e);
            }
            if let Some(i) = interrupted
                && let TaskResult::Interrupted(value) =
                    std::mem::replace(&mut results[i], TaskResult::Pending)
            {
                let node = &graph.nodes[tasks[i].node as usize];
                let info = InterruptInfo {
                    kind: InterruptKind::Ask,
                    node: node.name.to_string(),
                    task: task_label(node, &tasks[i]),
                    value,
                };
                self.emit(|| Event::Interrupt {
                    node: info.node.clone(),
                    task: info.task.clone(),
                    value: info.value.clone(),
                });
                // As in LangGraph, the state at an interrupt includes what the step's
                // finished tasks wrote (saved above as pending writes, committed on resume).
                if self.fold(state, &tasks, results, step, false).is_err() {
                    state.undo(&mut self.undo);
                }
                return Ok(StepEnd::Interrupted(info));
            }
        }

        // Update: fold the writes in task order.
        let deltas = self.fold(state, &tasks, results, step, self.saver.is_some())?;
        Ok(StepEnd::Committed(deltas))
    }

    /// Folds finished tasks' writes into `state` in task order, noting in `self.undo` how
    /// to take them back; returns the deltas to store when `keep_deltas`.
    fn fold(
        &mut self,
        state: &mut State,
        tasks: &[Task],
        results: Vec<TaskResult>,
        step: u64,
        keep_deltas: bool,
    ) -> Result<Vec<ChannelDelta>, RunError> {
        let graph = self.graph;
        let mut deltas: Vec<ChannelDelta> = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            let TaskResult::Done(writes) = result else {
                continue;
            };
            let node = &graph.nodes[tasks[i].node as usize];
            let update = if self.events.is_some() {
                Some(Value::Object(
                    writes
                        .iter()
                        .map(|(ch, v)| (graph.channels[*ch as usize].name.clone(), v.clone()))
                        .collect(),
                ))
            } else {
                None
            };
            for (ch, value) in writes {
                let channel = &graph.channels[ch as usize];
                let bad_write = |message: String| RunError::BadWrite {
                    node: task_label(node, &tasks[i]),
                    channel: channel.name.clone(),
                    message,
                };
                if channel.reducer == crate::channel::Reducer::Replace {
                    let (last_step, last_task) = self.writer[ch as usize];
                    if last_step == step {
                        let other = &tasks[last_task];
                        return Err(RunError::ReplaceConflict {
                            channel: channel.name.clone(),
                            first: task_label(&graph.nodes[other.node as usize], other),
                            second: task_label(node, &tasks[i]),
                            step,
                        });
                    }
                    self.writer[ch as usize] = (step, i);
                    if !channel.ty.accepts(&value) {
                        return Err(bad_write(format!(
                            "expected {}, got {}",
                            crate::graph::type_name(channel.ty),
                            crate::channel::kind(&value)
                        )));
                    }
                    if keep_deltas {
                        deltas.retain(|d| !matches!(d, ChannelDelta::Set { channel: c, .. } if *c == channel.name));
                        deltas.push(ChannelDelta::Set {
                            channel: channel.name.clone(),
                            value: value.clone(),
                        });
                    }
                    let old = std::mem::replace(&mut state.values[ch as usize], value);
                    state.invalidate(ch);
                    self.undo.push((ch, Undo::Restore(old)));
                } else {
                    if keep_deltas {
                        let existing = deltas.iter_mut().find_map(|d| match d {
                            ChannelDelta::Reduce { channel: c, writes } if *c == channel.name => {
                                Some(writes)
                            }
                            _ => None,
                        });
                        match existing {
                            Some(list) => list.push(value.clone()),
                            None => deltas.push(ChannelDelta::Reduce {
                                channel: channel.name.clone(),
                                writes: vec![value.clone()],
                            }),
                        }
                    }
                    state
                        .fold_logged(graph, ch, value, &mut self.undo, &mut self.undo_scratch)
                        .map_err(bad_write)?;
                }
            }
            if let Some(update) = update {
                self.emit(|| Event::NodeFinished {
                    step,
                    node: node.name.to_string(),
                    task: task_label(node, &tasks[i]),
                    update,
                });
            }
        }
        Ok(deltas)
    }

    fn context(
        &self,
        node: &CompiledNode,
        task_id: &str,
        step: u64,
        checkpoint_id: u64,
        resume: &Option<(String, Value)>,
    ) -> NodeContext {
        NodeContext {
            thread_id: Arc::clone(&self.thread_id),
            node: Arc::clone(&node.name),
            task_id: Arc::from(task_id),
            step,
            checkpoint_id,
            attempt: 1,
            resume: resume
                .as_ref()
                .filter(|(t, _)| t == task_id)
                .map(|(_, v)| v.clone()),
            events: self.events.clone(),
            usage: Some(Arc::clone(&self.usage)),
            outbox: self.saver.as_ref().map(|saver| crate::node::Outbox {
                saver: Arc::clone(saver),
                thread_id: Arc::clone(&self.thread_id),
            }),
        }
    }

    async fn run_jobs(
        &mut self,
        mut jobs: Vec<(usize, Job, NodeContext)>,
        tasks: &[Task],
        results: &mut [TaskResult],
        saved_flags: &mut [bool],
    ) -> Result<(), RunError> {
        let graph = self.graph;
        let cancel = self.cancel.clone();
        let cancelled = || async {
            match &cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending::<()>().await,
            }
        };
        if jobs.len() == 1 {
            if let Some((i, job, ctx)) = jobs.pop() {
                let node = &graph.nodes[tasks[i].node as usize];
                let saver = self.saver.clone();
                let outcome = tokio::select! {
                    r = run_job(job, ctx, node.retry, node.timeout, saver) => r,
                    _ = cancelled() => return Err(RunError::Cancelled),
                };
                results[i] = self.job_result(i, tasks, outcome);
                self.save_task(i, tasks, results, saved_flags).await?;
            }
            return Ok(());
        }
        let mut set = JoinSet::new();
        // Which task each spawned job is, so a panic is reported against its node.
        let mut spawned: HashMap<tokio::task::Id, usize> = HashMap::with_capacity(jobs.len());
        for (i, job, ctx) in jobs {
            let node = &graph.nodes[tasks[i].node as usize];
            let (retry, timeout, saver) = (node.retry, node.timeout, self.saver.clone());
            let handle =
                set.spawn(async move { (i, run_job(job, ctx, retry, timeout, saver).await) });
            spawned.insert(handle.id(), i);
        }
        loop {
            let joined = tokio::select! {
                j = set.join_next() => j,
                _ = cancelled() => {
                    set.abort_all();
                    return Err(RunError::Cancelled);
                }
            };
            let Some(joined) = joined else { break };
            match joined {
                Ok((i, outcome)) => {
                    results[i] = self.job_result(i, tasks, outcome);
                    self.save_task(i, tasks, results, saved_flags).await?;
                }
                Err(e) => {
                    let node = spawned
                        .get(&e.id())
                        .map(|&i| graph.nodes[tasks[i].node as usize].name.to_string())
                        .unwrap_or_default();
                    return Err(RunError::NodeFailed {
                        node,
                        attempts: 1,
                        message: format!("task panicked or was aborted: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Saves a finished call's writes at once: it may have had side effects.
    async fn save_task(
        &self,
        i: usize,
        tasks: &[Task],
        results: &[TaskResult],
        saved_flags: &mut [bool],
    ) -> Result<(), RunError> {
        let (Some(saver), TaskResult::Done(writes)) = (&self.saver, &results[i]) else {
            return Ok(());
        };
        let Some(cp) = self.current_checkpoint else {
            return Ok(());
        };
        let graph = self.graph;
        let node = &graph.nodes[tasks[i].node as usize];
        let record = TaskWrites {
            task_id: task_label(node, &tasks[i]),
            node: node.name.to_string(),
            writes: writes
                .iter()
                .map(|(ch, v)| (graph.channels[*ch as usize].name.clone(), v.clone()))
                .collect(),
        };
        saver
            .put_writes(&self.thread_id, cp, &record, self.lease.as_ref())
            .await
            .map_err(cp_err)?;
        saved_flags[i] = true;
        Ok(())
    }

    fn job_result(
        &self,
        i: usize,
        tasks: &[Task],
        outcome: Result<JobOutput, JobError>,
    ) -> TaskResult {
        let graph = self.graph;
        let node = &graph.nodes[tasks[i].node as usize];
        let name = task_label(node, &tasks[i]);
        match outcome {
            Err(JobError::Interrupt(value)) => TaskResult::Interrupted(value),
            Err(JobError::Timeout { seconds, attempts }) => TaskResult::Failed(RunError::Timeout {
                node: name,
                seconds,
                attempts,
            }),
            Err(JobError::Failed {
                message, attempts, ..
            }) => TaskResult::Failed(RunError::NodeFailed {
                node: name,
                attempts,
                message,
            }),
            Ok(JobOutput::Value(value)) => {
                let output = match &node.kind {
                    Kind::Call { output, .. } => *output,
                    _ => None,
                };
                match output {
                    Some(ch) => TaskResult::Done(vec![(ch, value)]),
                    None => match value {
                        Value::Null => TaskResult::Done(Vec::new()),
                        Value::Object(map) => {
                            let mut writes = Vec::with_capacity(map.len());
                            for (key, v) in map {
                                match graph.channel_id(&key) {
                                    Some(ch) => writes.push((ch, v)),
                                    None => {
                                        return TaskResult::Failed(RunError::BadWrite {
                                            node: name,
                                            channel: key,
                                            message: "not a declared channel; declare it in [state] or give the node an `output`".into(),
                                        });
                                    }
                                }
                            }
                            TaskResult::Done(writes)
                        }
                        other => TaskResult::Failed(RunError::BadWrite {
                            node: name,
                            channel: "(none)".into(),
                            message: format!(
                                "a node without `output` must return an object of channel updates, got {}; add `output = \"channel\"`",
                                crate::channel::kind(&other)
                            ),
                        }),
                    },
                }
            }
            Ok(JobOutput::Subgraph(child_state, initial)) => {
                let Kind::Subgraph {
                    graph: child,
                    shared,
                    output,
                } = &node.kind
                else {
                    return TaskResult::Done(Vec::new());
                };
                let mut writes = Vec::new();
                for &(parent, c) in shared {
                    let key = &child.channels[c as usize].name;
                    let (Some(after), Some(before)) = (child_state.get(key), initial.get(key))
                    else {
                        continue;
                    };
                    if after == before {
                        continue;
                    }
                    if let Some(w) =
                        write_back(graph.channels[parent as usize].reducer, before, after)
                    {
                        writes.push((parent, w));
                    }
                }
                if let Some(ch) = output {
                    writes.push((*ch, child_state.clone()));
                }
                TaskResult::Done(writes)
            }
        }
    }
}

/// What the parent receives for a shared channel the subgraph changed: the change, expressed
/// so the parent's reducer folds it once (the appended tail, the added amount).
fn write_back(reducer: crate::channel::Reducer, before: &Value, after: &Value) -> Option<Value> {
    use crate::channel::Reducer;
    match reducer {
        Reducer::Replace | Reducer::Merge => Some(after.clone()),
        Reducer::Append | Reducer::Messages => match (before, after) {
            (Value::Array(b), Value::Array(a)) if a.len() >= b.len() && a[..b.len()] == b[..] => {
                let tail = &a[b.len()..];
                if tail.is_empty() {
                    None
                } else {
                    Some(Value::Array(tail.to_vec()))
                }
            }
            _ => Some(after.clone()),
        },
        Reducer::Add => match (before.as_i64(), after.as_i64()) {
            (Some(b), Some(a)) => Some(Value::from(a - b)),
            _ => serde_json::Number::from_f64(
                after.as_f64().unwrap_or(0.0) - before.as_f64().unwrap_or(0.0),
            )
            .map(Value::Number),
        },
    }
}

enum JobOutput {
    Value(Value),
    /// The subgraph's final state and the input it started from.
    Subgraph(Value, Value),
}

/// Runs a call or subgraph with retry (exponential backoff with jitter) and a per-attempt
/// timeout.
async fn run_job(
    job: Job,
    ctx: NodeContext,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    saver: Option<Arc<dyn Checkpointer>>,
) -> Result<JobOutput, JobError> {
    let attempts = AtomicU32::new(0);
    let job = &job;
    let ctx = &ctx;
    let attempt = || async {
        let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let mut ctx = ctx.clone();
        ctx.attempt = n;
        let work = async {
            match job {
                Job::Call { handler, input } => handler
                    .call(input.clone(), &ctx)
                    .await
                    .map(JobOutput::Value)
                    .map_err(|e| match e {
                        NodeError::Interrupt(v) => JobError::Interrupt(v),
                        NodeError::Failed { message, retryable } => JobError::Failed {
                            message,
                            attempts: n,
                            retryable,
                        },
                    }),
                Job::Subgraph { graph, input } => {
                    run_subgraph(graph, input, &ctx, saver.clone()).await
                }
            }
        };
        let work = ctx.scope(work);
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(JobError::Timeout {
                    seconds: limit.as_secs_f64(),
                    attempts: n,
                }),
            },
            None => work.await,
        }
    };
    if retry.max_attempts <= 1 {
        return attempt().await;
    }
    let backoff = ExponentialBuilder::default()
        .with_min_delay(retry.initial)
        .with_max_delay(retry.max)
        .with_factor(retry.multiplier)
        .with_max_times(retry.max_attempts.saturating_sub(1) as usize)
        .with_jitter();
    attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| {
            matches!(
                e,
                JobError::Timeout { .. }
                    | JobError::Failed {
                        retryable: true,
                        ..
                    }
            )
        })
        .await
}

async fn run_subgraph(
    graph: &Arc<Graph>,
    input: &Value,
    ctx: &NodeContext,
    saver: Option<Arc<dyn Checkpointer>>,
) -> Result<JobOutput, JobError> {
    // The child thread is named after the parent task, so a resumed parent finds it again.
    let child_thread = format!("{}/{}@{}", ctx.thread_id, ctx.task_id, ctx.checkpoint_id);
    let mut runner = Runner::new(Arc::clone(graph));
    // The parent's lease covers its child threads: a claim left on one is a stale attempt's.
    let mut request = RunRequest::new()
        .thread(child_thread.clone())
        .takeover(true);
    match &saver {
        Some(saver) => {
            runner = runner.with_checkpointer(Arc::clone(saver));
            let existing = saver.thread(&child_thread).await.ok().flatten();
            match (&ctx.resume, existing.map(|t| t.status)) {
                (Some(value), Some(ThreadStatus::Interrupted)) => {
                    request = request.resume(value.clone())
                }
                (_, Some(ThreadStatus::Running | ThreadStatus::Failed)) => {}
                _ => request = request.input(input.clone()),
            }
        }
        None => request = request.input(input.clone()),
    }
    let outcome = runner.run_boxed(request).await;
    match outcome.status {
        RunStatus::Done => Ok(JobOutput::Subgraph(outcome.state, input.clone())),
        RunStatus::Interrupted => Err(JobError::Interrupt(
            outcome.interrupt.map_or(Value::Null, |i| i.value),
        )),
        RunStatus::Failed => Err(JobError::Failed {
            message: format!(
                "subgraph `{}`: {}",
                graph.name,
                outcome.error.map_or_else(String::new, |e| e.message)
            ),
            attempts: ctx.attempt,
            retryable: false,
        }),
    }
}
