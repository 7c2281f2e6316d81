//! The embedded default checkpointer: one SQLite file, so threads survive the process.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value};

use super::{
    CheckpointError, CheckpointRecord, CheckpointSummary, Checkpointer, Lease, TaskWrites,
    ThreadInfo, admits, now_ms, refusal,
};

/// Versioned schema; each entry runs once, tracked by `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    graph TEXT NOT NULL,
    status TEXT NOT NULL,
    last_checkpoint INTEGER,
    interrupt TEXT,
    error TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_id INTEGER NOT NULL,
    parent_id INTEGER,
    step INTEGER NOT NULL,
    source TEXT NOT NULL,
    nodes TEXT NOT NULL,
    deltas TEXT NOT NULL,
    snapshot TEXT,
    next TEXT NOT NULL,
    joins TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_id INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    node TEXT NOT NULL,
    writes TEXT NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_id, task_id)
);
"#,
    r#"
ALTER TABLE threads ADD COLUMN owner TEXT;
ALTER TABLE threads ADD COLUMN lease_until_ms INTEGER;
CREATE INDEX IF NOT EXISTS threads_updated ON threads (updated_at_ms);
"#,
    r#"
CREATE TABLE IF NOT EXISTS side_effects (
    thread_id TEXT NOT NULL,
    effect_key TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (thread_id, effect_key)
);
"#,
];

/// Stores threads in an SQLite database file.
pub struct SqliteSaver {
    conn: Mutex<Connection>,
}

impl SqliteSaver {
    /// Opens (and creates, migrating as needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            // SQLite takes "" for a temporary database that keeps nothing.
            return Err(CheckpointError::Store(
                "the SQLite path is empty (was it an unset variable?); give a file, e.g. sqlite:.brainops/threads.db".into(),
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                CheckpointError::Store(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path).map_err(|e| {
            CheckpointError::Store(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        Self::init(conn).map_err(|e| {
            CheckpointError::Store(format!(
                "SQLite database {}: {e}; is it a BrainOps thread store, and writable?",
                path.display()
            ))
        })
    }

    /// A private in-memory database (for tests and benchmarks).
    pub fn in_memory() -> Result<Self, CheckpointError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, CheckpointError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            // One transaction per migration: a crash mid-way leaves the previous version.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if current <= i as i64 {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            }
            tx.commit()?;
        }
        Ok(SqliteSaver {
            conn: Mutex::new(conn),
        })
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, CheckpointError>,
    ) -> Result<R, CheckpointError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| CheckpointError::Store("sqlite saver lock poisoned".into()))?;
        f(&mut guard)
    }
}

const RECORD_COLUMNS: &str = "thread_id, checkpoint_id, parent_id, step, source, nodes, deltas, snapshot, next, joins, created_at_ms";

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRecordRow> {
    Ok(CheckpointRecordRow {
        thread_id: row.get(0)?,
        id: row.get::<_, i64>(1)? as u64,
        parent: row.get::<_, Option<i64>>(2)?.map(|p| p as u64),
        step: row.get::<_, i64>(3)? as u64,
        source: row.get(4)?,
        nodes: row.get(5)?,
        deltas: row.get(6)?,
        snapshot: row.get(7)?,
        next: row.get(8)?,
        joins: row.get(9)?,
        created_at_ms: row.get::<_, i64>(10)? as u64,
    })
}

struct CheckpointRecordRow {
    thread_id: String,
    id: u64,
    parent: Option<u64>,
    step: u64,
    source: String,
    nodes: String,
    deltas: String,
    snapshot: Option<String>,
    next: String,
    joins: String,
    created_at_ms: u64,
}

impl CheckpointRecordRow {
    fn into_record(self) -> Result<CheckpointRecord, CheckpointError> {
        let (next, sends) = super::split_next(serde_json::from_str(&self.next)?)?;
        Ok(CheckpointRecord {
            thread_id: self.thread_id,
            id: self.id,
            parent: self.parent,
            step: self.step,
            source: self.source.parse()?,
            nodes: serde_json::from_str(&self.nodes)?,
            deltas: serde_json::from_str(&self.deltas)?,
            snapshot: self
                .snapshot
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            next,
            sends,
            joins: serde_json::from_str(&self.joins)?,
            created_at_ms: self.created_at_ms,
        })
    }
}

const THREAD_COLUMNS: &str = "thread_id, graph, status, last_checkpoint, interrupt, error, created_at_ms, updated_at_ms, owner, lease_until_ms";

fn load_thread(conn: &Connection, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE thread_id = ?1"
        ))?
        .query_row(params![thread_id], thread_row)
        .optional()?;
    row.map(ThreadRow::into_info).transpose()
}

/// Opens a write transaction that takes the database's write lock at once, so a check and
/// the write that depends on it cannot interleave with another process.
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, CheckpointError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn insert_record(tx: &Transaction<'_>, r: &CheckpointRecord) -> Result<(), CheckpointError> {
    let nodes = serde_json::to_string(&r.nodes)?;
    let deltas = serde_json::to_string(&r.deltas)?;
    let snapshot = r.snapshot.as_ref().map(serde_json::to_string).transpose()?;
    let next = serde_json::to_string(&super::next_column(&r.next, &r.sends))?;
    let joins = serde_json::to_string(&r.joins)?;
    tx.prepare_cached(
        "INSERT INTO checkpoints (thread_id, checkpoint_id, parent_id, step, source, nodes, deltas, snapshot, next, joins, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        r.thread_id,
        r.id as i64,
        r.parent.map(|p| p as i64),
        r.step as i64,
        r.source.as_str(),
        nodes,
        deltas,
        snapshot,
        next,
        joins,
        r.created_at_ms as i64
    ])?;
    Ok(())
}

/// Deletes a thread with its subgraph threads (`ID/task@N`, see `Runner`). The children
/// are the ids between `ID/` and `ID0` (`0` follows `/` in byte order), an index range.
fn delete_rows(tx: &Transaction<'_>, thread_id: &str) -> Result<(), CheckpointError> {
    for table in ["side_effects", "writes", "checkpoints", "threads"] {
        tx.execute(
            &format!(
                "DELETE FROM {table} WHERE thread_id = ?1 OR (thread_id > ?1 || '/' AND thread_id < ?1 || '0')"
            ),
            params![thread_id],
        )?;
    }
    Ok(())
}

#[async_trait]
impl Checkpointer for SqliteSaver {
    async fn put(
        &self,
        r: &CheckpointRecord,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        self.with(|conn| {
            let tx = write_tx(conn)?;
            // The fence and the head move in one UPDATE; only a refusal reads the row.
            let moved = tx
                .prepare_cached(
                    "UPDATE threads SET last_checkpoint = ?2, updated_at_ms = ?3,
                       lease_until_ms = COALESCE(?4, lease_until_ms)
                     WHERE thread_id = ?1 AND last_checkpoint IS ?5 AND owner IS ?6",
                )?
                .execute(params![
                    r.thread_id,
                    r.id as i64,
                    now_ms() as i64,
                    lease.map(|l| l.until_ms as i64),
                    r.parent.map(|p| p as i64),
                    lease.map(|l| l.owner.as_str())
                ])?;
            if moved == 0 {
                let info = load_thread(&tx, &r.thread_id)?;
                return match &info {
                    Some(i)
                        if lease.is_some()
                            && admits(i.lease.as_ref(), lease)
                            && i.last_checkpoint == Some(r.id) =>
                    {
                        // The owner replaying the write that made the head: already stored.
                        Ok(())
                    }
                    other => Err(refusal(&r.thread_id, other.as_ref(), lease, r.parent)),
                };
            }
            insert_record(&tx, r)?;
            if let Some(parent) = r.parent {
                tx.prepare_cached(
                    "DELETE FROM writes WHERE thread_id = ?1 AND checkpoint_id = ?2",
                )?
                .execute(params![r.thread_id, parent as i64])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    async fn chain(
        &self,
        thread_id: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        self.with(|conn| {
            let upto = upto.map_or(i64::MAX, |u| u as i64);
            let from: Option<i64> = conn
                .prepare_cached(
                    "SELECT MAX(checkpoint_id) FROM checkpoints WHERE thread_id = ?1 AND checkpoint_id <= ?2 AND snapshot IS NOT NULL",
                )?
                .query_row(params![thread_id, upto], |r| r.get(0))
                .optional()?
                .flatten();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM checkpoints WHERE thread_id = ?1 AND checkpoint_id >= ?2 AND checkpoint_id <= ?3 ORDER BY checkpoint_id"
            ))?;
            let rows = stmt.query_map(params![thread_id, from.unwrap_or(0), upto], read_record)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.into_record()?);
            }
            Ok(out)
        })
    }

    async fn list(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM checkpoints WHERE thread_id = ?1 ORDER BY checkpoint_id"
            ))?;
            let rows = stmt.query_map(params![thread_id], read_record)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(CheckpointSummary::from(&row?.into_record()?));
            }
            Ok(out)
        })
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        w: &TaskWrites,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        let writes = serde_json::to_string(&w.writes)?;
        self.with(|conn| {
            let tx = write_tx(conn)?;
            let info = load_thread(&tx, thread_id)?;
            match &info {
                Some(i)
                    if admits(i.lease.as_ref(), lease)
                        && i.last_checkpoint == Some(checkpoint_id) => {}
                other => {
                    return Err(refusal(thread_id, other.as_ref(), lease, Some(checkpoint_id)));
                }
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO writes (thread_id, checkpoint_id, task_id, node, writes) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![thread_id, checkpoint_id as i64, w.task_id, w.node, writes])?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<TaskWrites>, CheckpointError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT task_id, node, writes FROM writes WHERE thread_id = ?1 AND checkpoint_id = ?2 ORDER BY task_id",
            )?;
            let rows = stmt.query_map(params![thread_id, checkpoint_id as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (task_id, node, writes) = row?;
                out.push(TaskWrites { task_id, node, writes: serde_json::from_str(&writes)? });
            }
            Ok(out)
        })
    }

    async fn put_thread(
        &self,
        t: &ThreadInfo,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        let interrupt = t
            .interrupt
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.with(|conn| {
            let tx = write_tx(conn)?;
            if let Some(stored) = load_thread(&tx, &t.thread_id)?
                && stored.lease.is_some()
                && !admits(stored.lease.as_ref(), lease)
            {
                return Err(refusal(&t.thread_id, Some(&stored), lease, None));
            }
            tx.prepare_cached(
                "INSERT INTO threads (thread_id, graph, status, last_checkpoint, interrupt, error, created_at_ms, updated_at_ms, owner, lease_until_ms)
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(thread_id) DO UPDATE SET graph = excluded.graph, status = excluded.status,
                   interrupt = excluded.interrupt, error = excluded.error,
                   updated_at_ms = excluded.updated_at_ms, owner = excluded.owner,
                   lease_until_ms = excluded.lease_until_ms",
            )?
            .execute(params![
                t.thread_id,
                t.graph,
                t.status.as_str(),
                interrupt,
                t.error,
                t.created_at_ms as i64,
                t.updated_at_ms as i64,
                t.lease.as_ref().map(|l| l.owner.as_str()),
                t.lease.as_ref().map(|l| l.until_ms as i64)
            ])?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn claim(
        &self,
        thread_id: &str,
        graph: &str,
        expected: Option<&str>,
        lease: &Lease,
    ) -> Result<ThreadInfo, CheckpointError> {
        self.with(|conn| {
            let tx = write_tx(conn)?;
            let now = now_ms() as i64;
            tx.prepare_cached(
                "INSERT INTO threads (thread_id, graph, status, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, 'idle', ?3, ?3) ON CONFLICT(thread_id) DO NOTHING",
            )?
            .execute(params![thread_id, graph, now])?;
            let changed = tx
                .prepare_cached(
                    "UPDATE threads SET owner = ?2, lease_until_ms = ?3 WHERE thread_id = ?1 AND (owner IS ?4 OR owner = ?2)",
                )?
                .execute(params![thread_id, lease.owner, lease.until_ms as i64, expected])?;
            let info = load_thread(&tx, thread_id)?;
            if changed == 0 {
                return Err(refusal(thread_id, info.as_ref(), None, None));
            }
            tx.commit()?;
            info.ok_or_else(|| CheckpointError::Store(format!("thread `{thread_id}` vanished")))
        })
    }

    async fn renew(&self, thread_id: &str, lease: &Lease) -> Result<(), CheckpointError> {
        self.with(|conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE threads SET lease_until_ms = ?3 WHERE thread_id = ?1 AND owner = ?2",
                )?
                .execute(params![thread_id, lease.owner, lease.until_ms as i64])?;
            if changed == 0 {
                let info = load_thread(conn, thread_id)?;
                return Err(refusal(thread_id, info.as_ref(), Some(lease), None));
            }
            Ok(())
        })
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        self.with(|conn| load_thread(conn, thread_id))
    }

    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {THREAD_COLUMNS} FROM threads ORDER BY updated_at_ms DESC, thread_id"
            ))?;
            let rows = stmt.query_map([], thread_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.into_info()?);
            }
            Ok(out)
        })
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError> {
        self.with(|conn| {
            let tx = write_tx(conn)?;
            delete_rows(&tx, thread_id)?;
            tx.commit()?;
            Ok(())
        })
    }

    async fn put_snapshot(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        snapshot: &Map<String, Value>,
    ) -> Result<(), CheckpointError> {
        let snapshot = serde_json::to_string(snapshot)?;
        self.with(|conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE checkpoints SET deltas = '[]', snapshot = ?3 WHERE thread_id = ?1 AND checkpoint_id = ?2",
                )?
                .execute(params![thread_id, checkpoint_id as i64, snapshot])?;
            if changed == 0 {
                return Err(CheckpointError::Store(format!(
                    "thread `{thread_id}` has no checkpoint {checkpoint_id}"
                )));
            }
            Ok(())
        })
    }

    async fn prune(&self, thread_id: &str, keep: usize) -> Result<u64, CheckpointError> {
        self.with(|conn| {
            let tx = write_tx(conn)?;
            let marks: Vec<(u64, bool)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT checkpoint_id, snapshot IS NOT NULL FROM checkpoints WHERE thread_id = ?1 ORDER BY checkpoint_id",
                )?;
                let rows = stmt.query_map(params![thread_id], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, bool>(1)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let Some(base) = super::prune_base(marks.into_iter(), keep) else {
                return Ok(0);
            };
            let gone = tx
                .prepare_cached("DELETE FROM checkpoints WHERE thread_id = ?1 AND checkpoint_id < ?2")?
                .execute(params![thread_id, base as i64])?;
            tx.prepare_cached("DELETE FROM writes WHERE thread_id = ?1 AND checkpoint_id < ?2")?
                .execute(params![thread_id, base as i64])?;
            tx.commit()?;
            Ok(gone as u64)
        })
    }

    async fn expire(&self, before_ms: u64) -> Result<Vec<String>, CheckpointError> {
        self.with(|conn| {
            let tx = write_tx(conn)?;
            let now = now_ms();
            let candidates: Vec<ThreadInfo> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {THREAD_COLUMNS} FROM threads WHERE updated_at_ms < ?1 ORDER BY thread_id"
                ))?;
                let rows = stmt.query_map(params![before_ms as i64], thread_row)?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row?.into_info()?);
                }
                out
            };
            let mut gone = Vec::new();
            for info in candidates {
                if info.lease.as_ref().is_none_or(|l| l.is_abandoned(now)) {
                    delete_rows(&tx, &info.thread_id)?;
                    gone.push(info.thread_id);
                }
            }
            tx.commit()?;
            Ok(gone)
        })
    }

    async fn side_effect(
        &self,
        thread_id: &str,
        key: &str,
    ) -> Result<Option<super::SideEffect>, CheckpointError> {
        let row: Option<(String, Option<String>, i64)> = self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT status, result, updated_at_ms FROM side_effects WHERE thread_id = ?1 AND effect_key = ?2",
                )?
                .query_row(params![thread_id, key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?)
        })?;
        let Some((status, result, at)) = row else {
            return Ok(None);
        };
        let status = super::EffectStatus::stored(&status, key)?;
        Ok(Some(super::SideEffect {
            status,
            result: result.map(|r| serde_json::from_str(&r)).transpose()?,
            updated_at_ms: at.max(0) as u64,
        }))
    }

    async fn put_side_effect(
        &self,
        thread_id: &str,
        key: &str,
        effect: &super::SideEffect,
    ) -> Result<(), CheckpointError> {
        let result = effect
            .result
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO side_effects (thread_id, effect_key, status, result, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (thread_id, effect_key) DO UPDATE SET status = excluded.status, result = excluded.result, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                thread_id,
                key,
                effect.status.as_str(),
                result,
                effect.updated_at_ms as i64
            ])?;
            Ok(())
        })
    }
}

struct ThreadRow {
    thread_id: String,
    graph: String,
    status: String,
    last_checkpoint: Option<i64>,
    interrupt: Option<String>,
    error: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    owner: Option<String>,
    lease_until_ms: Option<i64>,
}

fn thread_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ThreadRow> {
    Ok(ThreadRow {
        thread_id: r.get(0)?,
        graph: r.get(1)?,
        status: r.get(2)?,
        last_checkpoint: r.get(3)?,
        interrupt: r.get(4)?,
        error: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
        owner: r.get(8)?,
        lease_until_ms: r.get(9)?,
    })
}

impl ThreadRow {
    fn into_info(self) -> Result<ThreadInfo, CheckpointError> {
        Ok(ThreadInfo {
            thread_id: self.thread_id,
            graph: self.graph,
            status: self.status.parse()?,
            last_checkpoint: self.last_checkpoint.map(|c| c as u64),
            interrupt: self
                .interrupt
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            error: self.error,
            lease: self.owner.map(|owner| Lease {
                owner,
                until_ms: self.lease_until_ms.unwrap_or(0) as u64,
            }),
            created_at_ms: self.created_at_ms as u64,
            updated_at_ms: self.updated_at_ms as u64,
        })
    }
}
