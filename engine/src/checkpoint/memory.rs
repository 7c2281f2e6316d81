//! An in-memory checkpointer: threads live as long as the process.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    CheckpointError, CheckpointRecord, CheckpointSummary, Checkpointer, Lease, TaskWrites,
    ThreadInfo, now_ms, refusal,
};

struct Thread {
    info: ThreadInfo,
    checkpoints: Vec<CheckpointRecord>,
    writes: HashMap<u64, Vec<TaskWrites>>,
    effects: HashMap<String, super::SideEffect>,
}

impl Thread {
    fn admits(&self, lease: Option<&Lease>) -> bool {
        super::admits(self.info.lease.as_ref(), lease)
    }
}

/// Keeps checkpoints in memory. Useful for tests and short-lived runs.
#[derive(Default)]
pub struct MemorySaver {
    threads: Mutex<HashMap<String, Thread>>,
}

impl MemorySaver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Thread>) -> Result<R, CheckpointError>,
    ) -> Result<R, CheckpointError> {
        let mut guard = self
            .threads
            .lock()
            .map_err(|_| CheckpointError::Store("memory saver lock poisoned".into()))?;
        f(&mut guard)
    }
}

#[async_trait]
impl Checkpointer for MemorySaver {
    async fn put(
        &self,
        record: &CheckpointRecord,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        self.with(|threads| {
            let id = &record.thread_id;
            let Some(thread) = threads.get_mut(id) else {
                return Err(refusal(id, None, lease, record.parent));
            };
            if lease.is_some()
                && thread.admits(lease)
                && thread.info.last_checkpoint == Some(record.id)
            {
                // The owner replaying the write that made the head: already stored.
                return Ok(());
            }
            if !thread.admits(lease) || thread.info.last_checkpoint != record.parent {
                return Err(refusal(id, Some(&thread.info), lease, record.parent));
            }
            if let Some(parent) = record.parent {
                thread.writes.remove(&parent);
            }
            thread.checkpoints.push(record.clone());
            thread.info.last_checkpoint = Some(record.id);
            thread.info.updated_at_ms = now_ms();
            if let (Some(held), Some(mine)) = (&mut thread.info.lease, lease) {
                held.until_ms = mine.until_ms;
            }
            Ok(())
        })
    }

    async fn chain(
        &self,
        thread_id: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        self.with(|threads| {
            let Some(thread) = threads.get(thread_id) else {
                return Ok(Vec::new());
            };
            let upto = upto.unwrap_or(u64::MAX);
            let eligible: Vec<&CheckpointRecord> =
                thread.checkpoints.iter().filter(|c| c.id <= upto).collect();
            let from = eligible
                .iter()
                .rposition(|c| c.snapshot.is_some())
                .unwrap_or(0);
            Ok(eligible[from..].iter().map(|c| (*c).clone()).collect())
        })
    }

    async fn list(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        self.with(|threads| {
            Ok(threads.get(thread_id).map_or_else(Vec::new, |t| {
                t.checkpoints.iter().map(CheckpointSummary::from).collect()
            }))
        })
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        writes: &TaskWrites,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        self.with(|threads| {
            let Some(thread) = threads.get_mut(thread_id) else {
                return Err(refusal(thread_id, None, lease, Some(checkpoint_id)));
            };
            if !thread.admits(lease) || thread.info.last_checkpoint != Some(checkpoint_id) {
                return Err(refusal(
                    thread_id,
                    Some(&thread.info),
                    lease,
                    Some(checkpoint_id),
                ));
            }
            let list = thread.writes.entry(checkpoint_id).or_default();
            list.retain(|w| w.task_id != writes.task_id);
            list.push(writes.clone());
            Ok(())
        })
    }

    async fn writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<TaskWrites>, CheckpointError> {
        self.with(|threads| {
            let mut list = threads
                .get(thread_id)
                .and_then(|t| t.writes.get(&checkpoint_id))
                .cloned()
                .unwrap_or_default();
            list.sort_by(|a, b| a.task_id.cmp(&b.task_id));
            Ok(list)
        })
    }

    async fn put_thread(
        &self,
        info: &ThreadInfo,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        self.with(|threads| match threads.get_mut(&info.thread_id) {
            Some(thread) => {
                if thread.info.lease.is_some() && !thread.admits(lease) {
                    return Err(refusal(&info.thread_id, Some(&thread.info), lease, None));
                }
                let head = thread.info.last_checkpoint;
                let created = thread.info.created_at_ms;
                thread.info = ThreadInfo {
                    last_checkpoint: head,
                    created_at_ms: created,
                    ..info.clone()
                };
                Ok(())
            }
            None => {
                threads.insert(
                    info.thread_id.clone(),
                    Thread {
                        info: ThreadInfo {
                            last_checkpoint: None,
                            ..info.clone()
                        },
                        checkpoints: Vec::new(),
                        writes: HashMap::new(),
                        effects: HashMap::new(),
                    },
                );
                Ok(())
            }
        })
    }

    async fn claim(
        &self,
        thread_id: &str,
        graph: &str,
        expected: Option<&str>,
        lease: &Lease,
    ) -> Result<ThreadInfo, CheckpointError> {
        self.with(|threads| {
            let now = now_ms();
            let thread = threads
                .entry(thread_id.to_string())
                .or_insert_with(|| Thread {
                    info: ThreadInfo {
                        thread_id: thread_id.to_string(),
                        graph: graph.to_string(),
                        status: super::ThreadStatus::Idle,
                        last_checkpoint: None,
                        interrupt: None,
                        error: None,
                        lease: None,
                        created_at_ms: now,
                        updated_at_ms: now,
                    },
                    checkpoints: Vec::new(),
                    writes: HashMap::new(),
                    effects: HashMap::new(),
                });
            if thread.info.lease.as_ref().map(|l| l.owner.as_str()) != expected {
                return Err(refusal(thread_id, Some(&thread.info), None, None));
            }
            thread.info.lease = Some(lease.clone());
            Ok(thread.info.clone())
        })
    }

    async fn renew(&self, thread_id: &str, lease: &Lease) -> Result<(), CheckpointError> {
        self.with(|threads| {
            let thread = threads.get_mut(thread_id);
            match thread {
                Some(t) if t.admits(Some(lease)) => {
                    t.info.lease = Some(lease.clone());
                    Ok(())
                }
                other => Err(refusal(
                    thread_id,
                    other.map(|t| &t.info),
                    Some(lease),
                    None,
                )),
            }
        })
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        self.with(|threads| Ok(threads.get(thread_id).map(|t| t.info.clone())))
    }

    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError> {
        self.with(|threads| {
            let mut all: Vec<ThreadInfo> = threads.values().map(|t| t.info.clone()).collect();
            all.sort_by(|a, b| {
                b.updated_at_ms
                    .cmp(&a.updated_at_ms)
                    .then_with(|| a.thread_id.cmp(&b.thread_id))
            });
            Ok(all)
        })
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError> {
        self.with(|threads| {
            // With its subgraph threads (`ID/task@N`).
            threads.retain(|id, _| {
                id != thread_id
                    && !id
                        .strip_prefix(thread_id)
                        .is_some_and(|rest| rest.starts_with('/'))
            });
            Ok(())
        })
    }

    async fn put_snapshot(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        snapshot: &Map<String, Value>,
    ) -> Result<(), CheckpointError> {
        self.with(|threads| {
            let record = threads
                .get_mut(thread_id)
                .and_then(|t| t.checkpoints.iter_mut().find(|c| c.id == checkpoint_id))
                .ok_or_else(|| {
                    CheckpointError::Store(format!(
                        "thread `{thread_id}` has no checkpoint {checkpoint_id}"
                    ))
                })?;
            record.deltas.clear();
            record.snapshot = Some(snapshot.clone());
            Ok(())
        })
    }

    async fn prune(&self, thread_id: &str, keep: usize) -> Result<u64, CheckpointError> {
        self.with(|threads| {
            let Some(thread) = threads.get_mut(thread_id) else {
                return Ok(0);
            };
            let Some(base) = super::prune_base(
                thread
                    .checkpoints
                    .iter()
                    .map(|c| (c.id, c.snapshot.is_some())),
                keep,
            ) else {
                return Ok(0);
            };
            let before = thread.checkpoints.len();
            thread.checkpoints.retain(|c| c.id >= base);
            thread.writes.retain(|&cp, _| cp >= base);
            Ok((before - thread.checkpoints.len()) as u64)
        })
    }

    async fn expire(&self, before_ms: u64) -> Result<Vec<String>, CheckpointError> {
        self.with(|threads| {
            let now = now_ms();
            let mut gone: Vec<String> = threads
                .values()
                .filter(|t| {
                    t.info.updated_at_ms < before_ms
                        && t.info.lease.as_ref().is_none_or(|l| l.is_abandoned(now))
                })
                .map(|t| t.info.thread_id.clone())
                .collect();
            gone.sort();
            for id in &gone {
                threads.remove(id);
            }
            Ok(gone)
        })
    }

    async fn side_effect(
        &self,
        thread_id: &str,
        key: &str,
    ) -> Result<Option<super::SideEffect>, CheckpointError> {
        self.with(|threads| {
            Ok(threads
                .get(thread_id)
                .and_then(|t| t.effects.get(key).cloned()))
        })
    }

    async fn put_side_effect(
        &self,
        thread_id: &str,
        key: &str,
        effect: &super::SideEffect,
    ) -> Result<(), CheckpointError> {
        self.with(|threads| match threads.get_mut(thread_id) {
            Some(thread) => {
                thread.effects.insert(key.to_string(), effect.clone());
                Ok(())
            }
            None => Err(CheckpointError::Store(format!(
                "thread `{thread_id}` does not exist; its side effect `{key}` cannot be recorded"
            ))),
        })
    }
}
