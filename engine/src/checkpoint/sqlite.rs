//! The embedded default checkpointer: one SQLite file, so threads survive the process.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    CheckpointError, CheckpointRecord, CheckpointSource, CheckpointSummary, Checkpointer,
    TaskWrites, ThreadInfo, ThreadStatus,
};

/// Versioned schema; each entry runs once, tracked by `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// Stores threads in an SQLite database file.
pub struct SqliteSaver {
    conn: Mutex<Connection>,
}

impl SqliteSaver {
    /// Opens (and creates, migrating as needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| CheckpointError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| {
            CheckpointError(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        Self::init(conn)
    }

    /// A private in-memory database (for tests and benchmarks).
    pub fn in_memory() -> Result<Self, CheckpointError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, CheckpointError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
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
            .map_err(|_| CheckpointError("sqlite saver lock poisoned".into()))?;
        f(&mut guard)
    }
}

fn source_str(s: CheckpointSource) -> &'static str {
    match s {
        CheckpointSource::Input => "input",
        CheckpointSource::Loop => "loop",
        CheckpointSource::Update => "update",
        CheckpointSource::Fork => "fork",
    }
}

fn parse_source(s: &str) -> CheckpointSource {
    match s {
        "input" => CheckpointSource::Input,
        "update" => CheckpointSource::Update,
        "fork" => CheckpointSource::Fork,
        _ => CheckpointSource::Loop,
    }
}

fn parse_status(s: &str) -> ThreadStatus {
    match s {
        "running" => ThreadStatus::Running,
        "interrupted" => ThreadStatus::Interrupted,
        "failed" => ThreadStatus::Failed,
        "done" => ThreadStatus::Done,
        _ => ThreadStatus::Idle,
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
        Ok(CheckpointRecord {
            thread_id: self.thread_id,
            id: self.id,
            parent: self.parent,
            step: self.step,
            source: parse_source(&self.source),
            nodes: serde_json::from_str(&self.nodes)?,
            deltas: serde_json::from_str(&self.deltas)?,
            snapshot: self
                .snapshot
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            next: serde_json::from_str(&self.next)?,
            joins: serde_json::from_str(&self.joins)?,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[async_trait]
impl Checkpointer for SqliteSaver {
    async fn put(&self, r: &CheckpointRecord) -> Result<(), CheckpointError> {
        let nodes = serde_json::to_string(&r.nodes)?;
        let deltas = serde_json::to_string(&r.deltas)?;
        let snapshot = r.snapshot.as_ref().map(serde_json::to_string).transpose()?;
        let next = serde_json::to_string(&r.next)?;
        let joins = serde_json::to_string(&r.joins)?;
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_id, parent_id, step, source, nodes, deltas, snapshot, next, joins, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                r.thread_id,
                r.id as i64,
                r.parent.map(|p| p as i64),
                r.step as i64,
                source_str(r.source),
                nodes,
                deltas,
                snapshot,
                next,
                joins,
                r.created_at_ms as i64
            ])?;
            if let Some(parent) = r.parent {
                tx.prepare_cached("DELETE FROM writes WHERE thread_id = ?1 AND checkpoint_id = ?2")?
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
    ) -> Result<(), CheckpointError> {
        let writes = serde_json::to_string(&w.writes)?;
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO writes (thread_id, checkpoint_id, task_id, node, writes) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![thread_id, checkpoint_id as i64, w.task_id, w.node, writes])?;
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

    async fn put_thread(&self, t: &ThreadInfo) -> Result<(), CheckpointError> {
        let interrupt = t
            .interrupt
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO threads (thread_id, graph, status, last_checkpoint, interrupt, error, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(thread_id) DO UPDATE SET graph = excluded.graph, status = excluded.status,
                   last_checkpoint = excluded.last_checkpoint, interrupt = excluded.interrupt,
                   error = excluded.error, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                t.thread_id,
                t.graph,
                t.status.as_str(),
                t.last_checkpoint.map(|c| c as i64),
                interrupt,
                t.error,
                t.created_at_ms as i64,
                t.updated_at_ms as i64
            ])?;
            Ok(())
        })
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        self.with(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT thread_id, graph, status, last_checkpoint, interrupt, error, created_at_ms, updated_at_ms FROM threads WHERE thread_id = ?1",
                )?
                .query_row(params![thread_id], thread_row)
                .optional()?;
            row.map(ThreadRow::into_info).transpose()
        })
    }

    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT thread_id, graph, status, last_checkpoint, interrupt, error, created_at_ms, updated_at_ms FROM threads ORDER BY updated_at_ms DESC, thread_id",
            )?;
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
            let tx = conn.transaction()?;
            for table in ["writes", "checkpoints", "threads"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE thread_id = ?1"),
                    params![thread_id],
                )?;
            }
            tx.commit()?;
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
    })
}

impl ThreadRow {
    fn into_info(self) -> Result<ThreadInfo, CheckpointError> {
        Ok(ThreadInfo {
            thread_id: self.thread_id,
            graph: self.graph,
            status: parse_status(&self.status),
            last_checkpoint: self.last_checkpoint.map(|c| c as u64),
            interrupt: self
                .interrupt
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
            error: self.error,
            created_at_ms: self.created_at_ms as u64,
            updated_at_ms: self.updated_at_ms as u64,
        })
    }
}
