//! An in-memory checkpointer: threads live as long as the process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    CheckpointError, CheckpointRecord, CheckpointSummary, Checkpointer, TaskWrites, ThreadInfo,
};

#[derive(Default)]
struct Thread {
    info: Option<ThreadInfo>,
    checkpoints: Vec<CheckpointRecord>,
    writes: HashMap<u64, Vec<TaskWrites>>,
}

/// Keeps checkpoints in memory. Useful for tests and short-lived runs.
#[derive(Default)]
pub struct MemorySaver {
    threads: Mutex<HashMap<String, Thread>>,
}

impl MemorySaver {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Thread>) -> R,
    ) -> Result<R, CheckpointError> {
        let mut guard = self
            .threads
            .lock()
            .map_err(|_| CheckpointError("memory saver lock poisoned".into()))?;
        Ok(f(&mut guard))
    }
}

#[async_trait]
impl Checkpointer for MemorySaver {
    async fn put(&self, record: &CheckpointRecord) -> Result<(), CheckpointError> {
        self.with(|threads| {
            let thread = threads.entry(record.thread_id.clone()).or_default();
            if let Some(parent) = record.parent {
                thread.writes.remove(&parent);
            }
            thread.checkpoints.retain(|c| c.id != record.id);
            thread.checkpoints.push(record.clone());
        })
    }

    async fn chain(
        &self,
        thread_id: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        self.with(|threads| {
            let Some(thread) = threads.get(thread_id) else {
                return Vec::new();
            };
            let upto = upto.unwrap_or(u64::MAX);
            let eligible: Vec<&CheckpointRecord> =
                thread.checkpoints.iter().filter(|c| c.id <= upto).collect();
            let from = eligible
                .iter()
                .rposition(|c| c.snapshot.is_some())
                .unwrap_or(0);
            eligible[from..].iter().map(|c| (*c).clone()).collect()
        })
    }

    async fn list(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        self.with(|threads| {
            threads.get(thread_id).map_or_else(Vec::new, |t| {
                t.checkpoints.iter().map(CheckpointSummary::from).collect()
            })
        })
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        writes: &TaskWrites,
    ) -> Result<(), CheckpointError> {
        self.with(|threads| {
            let list = threads
                .entry(thread_id.to_string())
                .or_default()
                .writes
                .entry(checkpoint_id)
                .or_default();
            list.retain(|w| w.task_id != writes.task_id);
            list.push(writes.clone());
        })
    }

    async fn writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<TaskWrites>, CheckpointError> {
        self.with(|threads| {
            threads
                .get(thread_id)
                .and_then(|t| t.writes.get(&checkpoint_id))
                .cloned()
                .unwrap_or_default()
        })
    }

    async fn put_thread(&self, info: &ThreadInfo) -> Result<(), CheckpointError> {
        self.with(|threads| {
            threads.entry(info.thread_id.clone()).or_default().info = Some(info.clone())
        })
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        self.with(|threads| threads.get(thread_id).and_then(|t| t.info.clone()))
    }

    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError> {
        self.with(|threads| {
            let mut all: Vec<ThreadInfo> =
                threads.values().filter_map(|t| t.info.clone()).collect();
            all.sort_by(|a, b| {
                b.updated_at_ms
                    .cmp(&a.updated_at_ms)
                    .then_with(|| a.thread_id.cmp(&b.thread_id))
            });
            all
        })
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError> {
        self.with(|threads| {
            threads.remove(thread_id);
        })
    }
}
