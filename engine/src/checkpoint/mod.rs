//! Checkpoints: what a thread looks like after each super-step, stored as deltas.
//!
//! A [`CheckpointRecord`] holds only the channels a step changed: the new value of a
//! `replace` channel, the writes of a reducer channel (an `append` channel stores the items
//! appended, not the list). Reading state folds the records from the nearest snapshot.
//! Finished tasks of an unfinished step are saved as [`TaskWrites`], so a crash or a failure
//! re-runs only the tasks that did not finish.

mod memory;
mod sqlite;

pub use memory::MemorySaver;
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

/// One channel's change in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChannelDelta {
    /// The channel's new value.
    Set { channel: String, value: Value },
    /// Writes to fold into the channel through its reducer, in order.
    Reduce { channel: String, writes: Vec<Value> },
}

/// A join's sources that have finished since it last fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinProgress {
    pub join: u32,
    pub seen: Vec<String>,
}

/// The state of a thread after a super-step, stored as what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub thread_id: String,
    /// 0, 1, 2, ... within the thread.
    pub id: u64,
    pub parent: Option<u64>,
    pub step: u64,
    pub source: CheckpointSource,
    /// The nodes that ran in the step that produced this checkpoint.
    pub nodes: Vec<String>,
    pub deltas: Vec<ChannelDelta>,
    /// Every channel's full value, stored now and then so reads need not fold the whole
    /// history. When present, `deltas` is empty.
    pub snapshot: Option<Map<String, Value>>,
    /// The nodes that run in the next step.
    pub next: Vec<String>,
    /// Joins waiting on some of their sources.
    pub joins: Vec<JoinProgress>,
    pub created_at_ms: u64,
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
    pub checkpoint_id: u64,
    pub parent: Option<u64>,
    pub step: u64,
    pub source: CheckpointSource,
    pub nodes: Vec<String>,
    pub next: Vec<String>,
    pub bytes: usize,
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
            next: r.next.clone(),
            bytes: r.stored_bytes(),
            created_at_ms: r.created_at_ms,
        }
    }
}

/// The writes of a task that finished in a step that has not been checkpointed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskWrites {
    pub task_id: String,
    pub node: String,
    pub writes: Vec<(String, Value)>,
}

/// Where a thread stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    Idle,
    Running,
    Interrupted,
    Failed,
    Done,
}

impl ThreadStatus {
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

/// Why a thread is waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterruptInfo {
    /// `ask` (an ask node or an interrupt raised by node code), `before` or `after`.
    pub kind: String,
    pub node: String,
    pub task: String,
    /// What is asked: the question of an ask node, the payload of a dynamic interrupt.
    pub value: Value,
}

/// A thread's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub thread_id: String,
    pub graph: String,
    pub status: ThreadStatus,
    pub last_checkpoint: Option<u64>,
    pub interrupt: Option<InterruptInfo>,
    pub error: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A checkpoint store failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckpointError(pub String);

impl From<rusqlite::Error> for CheckpointError {
    fn from(e: rusqlite::Error) -> Self {
        CheckpointError(format!("sqlite: {e}"))
    }
}

impl From<serde_json::Error> for CheckpointError {
    fn from(e: serde_json::Error) -> Self {
        CheckpointError(format!("stored checkpoint is not valid JSON: {e}"))
    }
}

/// Durable storage of threads, checkpoints and pending writes.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Stores a checkpoint. Its pending writes (of checkpoint `record.parent`) are no longer
    /// needed once this returns.
    async fn put(&self, record: &CheckpointRecord) -> Result<(), CheckpointError>;

    /// The records needed to rebuild checkpoint `upto` (the latest when `None`): from the
    /// nearest snapshot at or before it (or the first record) to it, in order.
    async fn chain(
        &self,
        thread_id: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError>;

    /// Every checkpoint of a thread, oldest first.
    async fn list(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError>;

    /// Saves the writes of a finished task of the step that starts from `checkpoint_id`.
    async fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        writes: &TaskWrites,
    ) -> Result<(), CheckpointError>;

    /// The saved writes of the step that starts from `checkpoint_id`.
    async fn writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<TaskWrites>, CheckpointError>;

    async fn put_thread(&self, info: &ThreadInfo) -> Result<(), CheckpointError>;

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError>;

    /// All threads, most recently updated first.
    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError>;

    /// Deletes a thread with its checkpoints and writes.
    async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError>;
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
