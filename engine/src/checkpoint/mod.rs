//! Checkpoints: what a thread looks like after each super-step, stored as deltas.
//!
//! A [`CheckpointRecord`] holds only the channels a step changed: the new value of a
//! `replace` channel, the writes of a reducer channel (an `append` channel stores the items
//! appended, not the list). Reading state folds the records from the nearest snapshot.
//! Finished tasks of an unfinished step are saved as [`TaskWrites`], so a crash or a failure
//! re-runs only the tasks that did not finish.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemorySaver;
#[cfg(feature = "postgres")]
pub use postgres::PostgresSaver;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSaver;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a checkpoint came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointSource {
    /// The run's input was applied.
    Input,
    /// A super-step finished.
    Loop,
    /// State was edited by hand.
    Update,
    /// The first checkpoint of a thread forked from another one.
    Fork,
}

impl CheckpointSource {
    /// The word stored: `input`, `loop`, `update` or `fork`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointSource::Input => "input",
            CheckpointSource::Loop => "loop",
            CheckpointSource::Update => "update",
            CheckpointSource::Fork => "fork",
        }
    }
}

impl std::str::FromStr for CheckpointSource {
    type Err = UnknownWord;

    /// Reads what [`as_str`](Self::as_str) wrote; any other word is an error.
    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Ok(match s {
            "input" => CheckpointSource::Input,
            "loop" => CheckpointSource::Loop,
            "update" => CheckpointSource::Update,
            "fork" => CheckpointSource::Fork,
            _ => return Err(UnknownWord::new("checkpoint source", s)),
        })
    }
}

/// A stored word that names no value of its type (a store written by another version, or
/// edited by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{word}`")]
pub struct UnknownWord {
    /// What the word should have named.
    pub what: &'static str,
    /// The word found.
    pub word: String,
}

impl UnknownWord {
    fn new(what: &'static str, word: &str) -> Self {
        UnknownWord {
            what,
            word: word.chars().take(64).collect(),
        }
    }
}

impl From<UnknownWord> for CheckpointError {
    fn from(e: UnknownWord) -> Self {
        CheckpointError::Store(e.to_string())
    }
}

/// One channel's change in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChannelDelta {
    /// The channel's new value.
    Set {
        /// The channel.
        channel: String,
        /// Its new value.
        value: Value,
    },
    /// Writes to fold into the channel through its reducer, in order.
    Reduce {
        /// The channel.
        channel: String,
        /// The writes, in fold order.
        writes: Vec<Value>,
    },
}

/// A join's sources that have finished since it last fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinProgress {
    /// The join's index in the graph.
    pub join: u32,
    /// The sources that finished.
    pub seen: Vec<String>,
}

/// The state of a thread after a super-step, stored as what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The thread.
    pub thread_id: String,
    /// 0, 1, 2, ... within the thread.
    pub id: u64,
    /// The checkpoint it follows (none for a thread's first).
    pub parent: Option<u64>,
    /// The super-step it closes.
    pub step: u64,
    /// What made it.
    pub source: CheckpointSource,
    /// The nodes that ran in the step that produced this checkpoint.
    pub nodes: Vec<String>,
    /// What changed, by channel.
    pub deltas: Vec<ChannelDelta>,
    /// Every channel's full value, stored now and then so reads need not fold the whole
    /// history. When present, `deltas` is empty.
    pub snapshot: Option<Map<String, Value>>,
    /// The nodes that run in the next step.
    pub next: Vec<String>,
    /// Work items sent to nodes for the next step (LangGraph's `Send`), in send order.
    pub sends: Vec<SendTask>,
    /// Joins waiting on some of their sources.
    pub joins: Vec<JoinProgress>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// A work item a node sent to another for the next step (LangGraph's `Send`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendTask {
    /// The node that runs it.
    pub node: String,
    /// Its input, the task's `item`.
    pub arg: Value,
}

/// The stored `next` column: the next step's nodes (strings), then its sent work items
/// (`{node, arg}` objects), so one column keeps both and old rows still read.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn next_column(next: &[String], sends: &[SendTask]) -> Value {
    let mut list: Vec<Value> = next.iter().map(|n| Value::String(n.clone())).collect();
    list.extend(
        sends
            .iter()
            .map(|s| serde_json::json!({ "node": s.node, "arg": s.arg })),
    );
    Value::Array(list)
}

/// Splits a stored `next` column back into nodes and sent work items.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn split_next(
    column: Vec<Value>,
) -> Result<(Vec<String>, Vec<SendTask>), CheckpointError> {
    let mut next = Vec::new();
    let mut sends = Vec::new();
    for v in column {
        match v {
            Value::String(n) => next.push(n),
            other => sends.push(serde_json::from_value(other)?),
        }
    }
    Ok((next, sends))
}

/// The nodes a `next` column names, sent work items' nodes included (LangGraph lists them).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn next_names(column: Vec<Value>) -> Vec<String> {
    column
        .into_iter()
        .filter_map(|v| match v {
            Value::String(n) => Some(n),
            Value::Object(mut o) => match o.remove("node") {
                Some(Value::String(n)) => Some(n),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

impl CheckpointRecord {
    /// Serialized size, what a saver stores for it.
    pub fn stored_bytes(&self) -> usize {
        let mut counter = ByteCounter(0);
        // Serializing plain JSON values into a counter cannot fail.
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }
}

/// A `Write` that only counts bytes.
pub(crate) struct ByteCounter(pub usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A checkpoint as listed in a thread's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// Its id within the thread.
    pub checkpoint_id: u64,
    /// The checkpoint it follows.
    pub parent: Option<u64>,
    /// The super-step it closes.
    pub step: u64,
    /// What made it.
    pub source: CheckpointSource,
    /// The nodes that ran in that step.
    pub nodes: Vec<String>,
    /// The nodes that run next.
    pub next: Vec<String>,
    /// Its stored size.
    pub bytes: usize,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl From<&CheckpointRecord> for CheckpointSummary {
    fn from(r: &CheckpointRecord) -> Self {
        CheckpointSummary {
            checkpoint_id: r.id,
            parent: r.parent,
            step: r.step,
            source: r.source,
            nodes: r.nodes.clone(),
            next: r
                .next
                .iter()
                .cloned()
                .chain(r.sends.iter().map(|s| s.node.clone()))
                .collect(),
            bytes: r.stored_bytes(),
            created_at_ms: r.created_at_ms,
        }
    }
}

/// The writes of a task that finished in a step that has not been checkpointed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskWrites {
    /// The task's id (`node` or `node[i]`).
    pub task_id: String,
    /// Its node.
    pub node: String,
    /// What it wrote: channel name and value, in order.
    pub writes: Vec<(String, Value)>,
}

/// Where a thread stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    /// No run has advanced it yet, or its last run released it.
    Idle,
    /// A run is advancing it.
    Running,
    /// It waits for an answer (or at an interrupt before or after a node).
    Interrupted,
    /// Its last run failed; running it again continues from the last checkpoint.
    Failed,
    /// It reached END.
    Done,
}

impl ThreadStatus {
    /// The word stored: `idle`, `running`, `interrupted`, `failed` or `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Idle => "idle",
            ThreadStatus::Running => "running",
            ThreadStatus::Interrupted => "interrupted",
            ThreadStatus::Failed => "failed",
            ThreadStatus::Done => "done",
        }
    }
}

impl std::str::FromStr for ThreadStatus {
    type Err = UnknownWord;

    /// Reads what [`as_str`](Self::as_str) wrote; any other word is an error.
    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Ok(match s {
            "idle" => ThreadStatus::Idle,
            "running" => ThreadStatus::Running,
            "interrupted" => ThreadStatus::Interrupted,
            "failed" => ThreadStatus::Failed,
            "done" => ThreadStatus::Done,
            _ => return Err(UnknownWord::new("thread status", s)),
        })
    }
}

/// What kind of stop an interrupt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptKind {
    /// An `ask` node, or an interrupt raised by node code: the task waits for an answer.
    Ask,
    /// `interrupt_before`: the node has not run yet.
    Before,
    /// `interrupt_after`: the node ran and its writes are committed.
    After,
    /// A `wait` node: the thread sleeps until a time (`value.until_ms`); continuing it
    /// before then parks it again.
    Wait,
}

impl InterruptKind {
    /// The word stored and printed: `ask`, `before` or `after`.
    pub fn as_str(self) -> &'static str {
        match self {
            InterruptKind::Ask => "ask",
            InterruptKind::Before => "before",
            InterruptKind::After => "after",
            InterruptKind::Wait => "wait",
        }
    }
}

/// Why a thread is waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterruptInfo {
    /// An ask (the task waits for an answer), or a stop before or after a node.
    pub kind: InterruptKind,
    /// The node waiting.
    pub node: String,
    /// The task waiting (`node` or `node[i]`).
    pub task: String,
    /// What is asked: the question of an ask node, the payload of a dynamic interrupt.
    pub value: Value,
    /// Other tasks of the same step waiting too (LangGraph's parallel interrupts), in task
    /// order; answer them together with a map of task → value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<InterruptInfo>,
}

impl InterruptInfo {
    /// This interrupt and its siblings, in task order.
    pub fn all(&self) -> impl Iterator<Item = &InterruptInfo> {
        std::iter::once(self).chain(self.siblings.iter())
    }
}

/// The right of one run to advance a thread, until `until_ms` unless renewed.
///
/// Only the owner may write checkpoints, pending writes or status. A crashed owner's lease
/// is taken over once it expires, or at once when the owner was a process on this host that
/// no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `HOST/PID/UUID` of the run.
    pub owner: String,
    /// When the lease runs out unless renewed, in milliseconds since the Unix epoch.
    pub until_ms: u64,
}

impl Lease {
    /// A new owner token for a run in this process, valid for `duration_ms`.
    pub fn new(duration_ms: u64) -> Self {
        Lease {
            owner: format!(
                "{}/{}/{}",
                host_name(),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            until_ms: now_ms().saturating_add(duration_ms),
        }
    }

    /// Whether the owner can no longer be advancing the thread: the lease ran out, or the
    /// owner is a process on this host that has exited.
    pub fn is_abandoned(&self, now_ms: u64) -> bool {
        if self.until_ms <= now_ms {
            return true;
        }
        let mut parts = self.owner.splitn(3, '/');
        let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
            return false;
        };
        let proc_fs = std::path::Path::new("/proc/self").exists();
        proc_fs
            && host == host_name()
            && pid != std::process::id().to_string()
            && !std::path::Path::new("/proc").join(pid).exists()
    }
}

fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().replace('/', "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// A thread's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// The thread's id.
    pub thread_id: String,
    /// The graph it runs.
    pub graph: String,
    /// Where it stands.
    pub status: ThreadStatus,
    /// The latest checkpoint (the head). Moved by [`Checkpointer::put`] only.
    pub last_checkpoint: Option<u64>,
    /// What it waits for, when interrupted.
    pub interrupt: Option<InterruptInfo>,
    /// Why its last run failed.
    pub error: Option<String>,
    /// The run advancing the thread, if any.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it last changed.
    pub updated_at_ms: u64,
}

/// A checkpoint store failed, or refused a write.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store could not be reached or answered with an error.
    #[error("{0}")]
    Store(String),
    /// Another run owns the thread, or its head moved: this writer lost the race.
    #[error("{message}")]
    Conflict {
        /// The thread.
        thread_id: String,
        /// What happened.
        message: String,
    },
}

impl CheckpointError {
    /// A conflict on `thread_id`.
    pub fn conflict(thread_id: &str, message: impl Into<String>) -> Self {
        CheckpointError::Conflict {
            thread_id: thread_id.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for CheckpointError {
    fn from(e: rusqlite::Error) -> Self {
        CheckpointError::Store(format!("sqlite: {e}"))
    }
}

impl From<serde_json::Error> for CheckpointError {
    fn from(e: serde_json::Error) -> Self {
        CheckpointError::Store(format!("stored checkpoint is not valid JSON: {e}"))
    }
}

/// Whether a write fenced by `lease` may go ahead on a thread held by `held`: the lease
/// owns the thread, or neither does anyone else.
pub fn admits(held: Option<&Lease>, lease: Option<&Lease>) -> bool {
    match (held, lease) {
        (Some(held), Some(mine)) => held.owner == mine.owner,
        (None, None) => true,
        (Some(_), None) | (None, Some(_)) => false,
    }
}

/// Why a fenced write was refused, in words a user can act on.
pub fn refusal(
    thread_id: &str,
    stored: Option<&ThreadInfo>,
    lease: Option<&Lease>,
    expected_head: Option<u64>,
) -> CheckpointError {
    let Some(info) = stored else {
        return CheckpointError::conflict(
            thread_id,
            format!("thread `{thread_id}` does not exist (deleted or expired while running?)"),
        );
    };
    match (&info.lease, lease) {
        (Some(held), Some(mine)) if held.owner != mine.owner => {
            return CheckpointError::conflict(
                thread_id,
                format!(
                    "thread `{thread_id}` was taken over by another run ({}); this run stopped so history does not fork",
                    held.owner
                ),
            );
        }
        (None, Some(_)) => {
            return CheckpointError::conflict(
                thread_id,
                format!("thread `{thread_id}` is no longer owned by this run"),
            );
        }
        (Some(held), None) => {
            return CheckpointError::conflict(
                thread_id,
                format!(
                    "thread `{thread_id}` is being advanced by another run ({}); wait for it to \
                     finish, or take over with `--takeover` if that process is gone",
                    held.owner
                ),
            );
        }
        _ => {}
    }
    CheckpointError::conflict(
        thread_id,
        format!(
            "thread `{thread_id}` moved on: its latest checkpoint is {} but this write follows {}",
            info.last_checkpoint
                .map_or_else(|| "none".into(), |c| c.to_string()),
            expected_head.map_or_else(|| "none".into(), |c| c.to_string())
        ),
    )
}

/// Durable storage of threads, checkpoints and pending writes.
///
/// Writes are fenced: a write that carries a [`Lease`] succeeds only while that lease owns
/// the thread, and a write without one only while no run owns it. [`put`](Self::put) also
/// requires the record's parent to be the thread's head, so history stays a single line.
/// Refused writes return [`CheckpointError::Conflict`].
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Appends a checkpoint: its parent must be the head, and the thread must exist. Moves
    /// the head, renews the lease to `lease.until_ms`, and drops the pending writes of the
    /// parent.
    async fn put(
        &self,
        record: &CheckpointRecord,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError>;

    /// The records needed to rebuild checkpoint `upto` (the latest when `None`): from the
    /// nearest snapshot at or before it (or the first record) to it, in order.
    async fn chain(
        &self,
        thread_id: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError>;

    /// Every checkpoint of a thread, oldest first.
    async fn list(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError>;

    /// Saves the writes of a finished task of the step that starts from `checkpoint_id`
    /// (which must be the head).
    async fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        writes: &TaskWrites,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError>;

    /// The saved writes of the step that starts from `checkpoint_id`.
    async fn writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<TaskWrites>, CheckpointError>;

    /// Creates or updates a thread's graph, status, interrupt, error and lease (`info.lease`;
    /// `None` releases it). Never moves the head. `lease` is the caller's fence.
    async fn put_thread(
        &self,
        info: &ThreadInfo,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError>;

    /// Makes `lease` the thread's owner if the current owner is `expected` (`None`: no
    /// owner), creating an idle thread when there is none. Returns the thread as stored.
    async fn claim(
        &self,
        thread_id: &str,
        graph: &str,
        expected: Option<&str>,
        lease: &Lease,
    ) -> Result<ThreadInfo, CheckpointError>;

    /// Extends the lease; a conflict when the thread is no longer this lease's.
    async fn renew(&self, thread_id: &str, lease: &Lease) -> Result<(), CheckpointError>;

    /// The thread's metadata, if it exists.
    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError>;

    /// All threads, most recently updated first.
    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError>;

    /// Deletes a thread with its checkpoints and writes.
    async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError>;

    /// Replaces the stored form of checkpoint `checkpoint_id` with a full snapshot of its
    /// state, so older checkpoints can be pruned.
    async fn put_snapshot(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        snapshot: &Map<String, Value>,
    ) -> Result<(), CheckpointError>;

    /// Deletes the thread's checkpoints older than its latest `keep`, except those a kept
    /// checkpoint needs to be rebuilt (back to the nearest snapshot). Returns how many went.
    async fn prune(&self, thread_id: &str, keep: usize) -> Result<u64, CheckpointError>;

    /// Deletes every thread last updated before `before_ms` that no live run owns. Returns
    /// their ids.
    async fn expire(&self, before_ms: u64) -> Result<Vec<String>, CheckpointError>;

    /// The outbox entry `key` of a thread (see [`SideEffect`]).
    async fn side_effect(
        &self,
        thread_id: &str,
        key: &str,
    ) -> Result<Option<SideEffect>, CheckpointError>;

    /// Records (or updates) the outbox entry `key`; it goes when its thread is deleted.
    async fn put_side_effect(
        &self,
        thread_id: &str,
        key: &str,
        effect: &SideEffect,
    ) -> Result<(), CheckpointError>;
}

/// An outside call a task makes (an email, a text, a charge), recorded in the thread's
/// outbox as `Pending` before it is sent and as `Sent`, with its result, once the vendor
/// accepted it. A task that runs again (a retry, a resume after a crash) finds `Sent` and
/// returns the recorded result instead of sending again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideEffect {
    /// Pending or sent.
    pub status: EffectStatus,
    /// The vendor's reply, once sent.
    pub result: Option<Value>,
    /// When it was last recorded, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Where an outside call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectStatus {
    /// About to be sent: a crash after this and before `Sent` leaves it unknown whether the
    /// vendor received it.
    Pending,
    /// The vendor accepted it; its reply is recorded.
    Sent,
}

impl EffectStatus {
    /// The word stored: `pending` or `sent`.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectStatus::Pending => "pending",
            EffectStatus::Sent => "sent",
        }
    }

    /// Reads a stored word; `None` for any other.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(EffectStatus::Pending),
            "sent" => Some(EffectStatus::Sent),
            _ => None,
        }
    }

    /// The status stored for outbox entry `key`; an unknown word is a store error.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn stored(text: &str, key: &str) -> Result<Self, CheckpointError> {
        Self::parse(text).ok_or_else(|| {
            CheckpointError::Store(format!(
                "side effect `{key}` has an unknown status `{text}`"
            ))
        })
    }
}

/// Takes ownership of a thread for a run: refused while another live run holds it, unless
/// `takeover`. Returns the thread as stored (its status is the one before this run).
pub async fn acquire(
    saver: &dyn Checkpointer,
    thread_id: &str,
    graph: &str,
    lease: &Lease,
    takeover: bool,
) -> Result<ThreadInfo, CheckpointError> {
    let current = saver.thread(thread_id).await?;
    let held = current.as_ref().and_then(|i| i.lease.as_ref());
    if let Some(held) = held
        && held.owner != lease.owner
        && !takeover
        && !held.is_abandoned(now_ms())
    {
        let left = held.until_ms.saturating_sub(now_ms()).div_ceil(1000);
        return Err(CheckpointError::conflict(
            thread_id,
            format!(
                "thread `{thread_id}` is being advanced by another run ({}); its lease ends in {left} s. \
                 Wait for it, or take over with `--takeover` if that process is gone",
                held.owner
            ),
        ));
    }
    saver
        .claim(thread_id, graph, held.map(|h| h.owner.as_str()), lease)
        .await
}

/// Whether `thread_id` names a subgraph's thread (`PARENT/TASK@CHECKPOINT`), which the
/// runner creates and owns: users run and resume the parent instead.
pub fn is_subgraph_thread(thread_id: &str) -> bool {
    thread_id.split_once('/').is_some_and(|(parent, rest)| {
        !parent.is_empty()
            && rest.rsplit_once('@').is_some_and(|(task, cp)| {
                !task.is_empty() && !cp.is_empty() && cp.bytes().all(|b| b.is_ascii_digit())
            })
    })
}

/// The oldest checkpoint to keep when keeping the latest `keep` of `checkpoints` (id and
/// whether it is a snapshot, oldest first): the nearest snapshot at or before the cut, so
/// every kept checkpoint can still be rebuilt. `None` when nothing can go.
pub fn prune_base(
    checkpoints: impl DoubleEndedIterator<Item = (u64, bool)>,
    keep: usize,
) -> Option<u64> {
    checkpoints
        .rev()
        .skip(keep.max(1) - 1)
        .find(|&(_, snapshot)| snapshot)
        .map(|(id, _)| id)
}

/// How far this machine's clock is behind the shared store's (ms; see
/// [`adopt_clock_offset`]).
static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Skews under this are left alone: a round trip's noise would otherwise move the clock
/// back and forth by a few ms, and a lease lasts seconds.
const CLOCK_TOLERANCE_MS: i64 = 250;

/// Milliseconds since the Unix epoch, by the shared store's clock once
/// [`adopt_clock_offset`] was told it: thread leases and the server's run leases, due times
/// and watches are written by one process and compared by others.
pub fn now_ms() -> u64 {
    local_now_ms().saturating_add_signed(CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// This machine's clock, uncorrected (ms since the Unix epoch).
pub fn local_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Corrects [`now_ms`] by `measured_ms` (the shared store's clock minus this machine's)
/// when it differs from the correction in use by 250 ms or more; skews under 250 ms count
/// as none. Answers the new correction when it changed.
pub fn adopt_clock_offset(measured_ms: i64) -> Option<i64> {
    let offset = if measured_ms.abs() < CLOCK_TOLERANCE_MS {
        0
    } else {
        measured_ms
    };
    let current = CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed);
    if (offset - current).abs() < CLOCK_TOLERANCE_MS {
        return None;
    }
    CLOCK_OFFSET_MS.store(offset, std::sync::atomic::Ordering::Relaxed);
    Some(offset)
}

#[cfg(test)]
mod words {
    use super::*;

    #[test]
    fn stored_words_read_back_and_unknown_words_are_errors() {
        for status in [
            ThreadStatus::Idle,
            ThreadStatus::Running,
            ThreadStatus::Interrupted,
            ThreadStatus::Failed,
            ThreadStatus::Done,
        ] {
            assert_eq!(status.as_str().parse::<ThreadStatus>(), Ok(status));
        }
        for source in [
            CheckpointSource::Input,
            CheckpointSource::Loop,
            CheckpointSource::Update,
            CheckpointSource::Fork,
        ] {
            assert_eq!(source.as_str().parse::<CheckpointSource>(), Ok(source));
        }
        assert_eq!(
            "paused".parse::<ThreadStatus>().map_err(|e| e.to_string()),
            Err("unknown thread status `paused`".to_string())
        );
        assert_eq!(
            "replay"
                .parse::<CheckpointSource>()
                .map_err(|e| e.to_string()),
            Err("unknown checkpoint source `replay`".to_string())
        );
        assert_eq!(InterruptKind::Before.as_str(), "before");
    }
}
