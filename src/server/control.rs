//! The server's own records beside the checkpoints: threads (metadata, owner) and runs
//! (the queue). Rows are JSON documents keyed by id, with the columns a query filters on
//! (thread, status, creation time) kept beside them, in the same database as the threads'
//! checkpoints: SQLite by default, Postgres in production. See `docs/server.md` for how the
//! runs table is shared by several processes.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A thread as the API knows it; its state lives in the checkpointer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ThreadRow {
    pub(crate) thread_id: String,
    pub(crate) metadata: Map<String, Value>,
    /// The graph of its runs, once one ran (or given at creation).
    pub(crate) graph_id: Option<String>,
    /// Why its last run failed, as `{"error", "message"}`.
    pub(crate) error: Option<Value>,
    /// The authenticated user that created it, if any.
    pub(crate) owner: Option<String>,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunState {
    Pending,
    Running,
    Success,
    Error,
    Timeout,
    Interrupted,
}

impl RunState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Error => "error",
            RunState::Timeout => "timeout",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Pending or running: the run still holds its thread.
    pub(crate) fn is_active(self) -> bool {
        matches!(self, RunState::Pending | RunState::Running)
    }
}

/// A run: what was asked (`kwargs`, as the reference server echoes it) and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct RunRow {
    pub(crate) run_id: String,
    pub(crate) thread_id: String,
    pub(crate) assistant_id: String,
    pub(crate) graph_id: String,
    pub(crate) status: RunState,
    pub(crate) metadata: Map<String, Value>,
    pub(crate) kwargs: Value,
    pub(crate) multitask_strategy: String,
    /// A thread made for a thread-less run, deleted when it ends unless kept.
    pub(crate) temporary: bool,
    /// Attempts started (1 on the first).
    pub(crate) attempt: u32,
    /// Not started before this time (`after_seconds`).
    pub(crate) not_before_ms: u64,
    pub(crate) owner: Option<String>,
    /// The thread's head when the run last started (`None`: it had no checkpoint), so a
    /// rollback can put it back.
    #[serde(default)]
    pub(crate) start_checkpoint: Option<u64>,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
}

/// Where threads and runs are kept.
#[async_trait]
pub(crate) trait ControlStore: Send + Sync {
    async fn put_thread(&self, row: &ThreadRow) -> Result<(), String>;
    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRow>, String>;
    /// Every thread, newest first.
    async fn threads(&self) -> Result<Vec<ThreadRow>, String>;
    /// Deletes the thread and its runs.
    async fn delete_thread(&self, thread_id: &str) -> Result<bool, String>;
    async fn put_run(&self, row: &RunRow) -> Result<(), String>;
    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, String>;
    async fn delete_run(&self, run_id: &str) -> Result<bool, String>;
    /// A thread's runs, newest first.
    async fn runs_of(&self, thread_id: &str) -> Result<Vec<RunRow>, String>;
    /// Pending and running runs, oldest first: the queue as a restarted server finds it.
    async fn active_runs(&self) -> Result<Vec<RunRow>, String>;
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS server_threads (
    thread_id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS server_runs (
    run_id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS server_runs_thread ON server_runs (thread_id, created_at_ms);
CREATE INDEX IF NOT EXISTS server_runs_status ON server_runs (status, created_at_ms);
";

/// Threads and runs in an SQLite file (the checkpoints' file by default).
pub(crate) struct SqliteControl {
    conn: Mutex<rusqlite::Connection>,
}

impl SqliteControl {
    pub(crate) fn open(path: Option<&std::path::Path>) -> Result<Self, String> {
        let conn = match path {
            Some(p) => rusqlite::Connection::open(p),
            None => rusqlite::Connection::open_in_memory(),
        }
        .map_err(|e| format!("cannot open the server's SQLite store: {e}"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| conn.execute_batch(SQLITE_SCHEMA))
            .map_err(|e| format!("cannot prepare the server's SQLite store: {e}"))?;
        Ok(SqliteControl {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| "the server store's lock was poisoned".to_string())?;
        f(&conn).map_err(|e| format!("server store (sqlite): {e}"))
    }
}

fn to_doc<T: Serialize>(row: &T) -> Result<String, String> {
    serde_json::to_string(row).map_err(|e| format!("cannot encode a server row: {e}"))
}

fn from_docs<T: for<'de> Deserialize<'de>>(docs: Vec<String>) -> Result<Vec<T>, String> {
    docs.iter()
        .map(|d| serde_json::from_str(d).map_err(|e| format!("a stored server row is bad: {e}")))
        .collect()
}

#[async_trait]
impl ControlStore for SqliteControl {
    async fn put_thread(&self, row: &ThreadRow) -> Result<(), String> {
        let doc = to_doc(row)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO server_threads (thread_id, created_at_ms, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (thread_id) DO UPDATE SET doc = excluded.doc",
                rusqlite::params![row.thread_id, row.created_at_ms as i64, doc],
            )
            .map(|_| ())
        })
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRow>, String> {
        let docs = self.with(|c| {
            let mut q = c.prepare_cached("SELECT doc FROM server_threads WHERE thread_id = ?1")?;
            q.query_map([thread_id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(from_docs(docs)?.pop())
    }

    async fn threads(&self) -> Result<Vec<ThreadRow>, String> {
        let docs = self.with(|c| {
            let mut q = c.prepare_cached(
                "SELECT doc FROM server_threads ORDER BY created_at_ms DESC, thread_id DESC",
            )?;
            q.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        from_docs(docs)
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<bool, String> {
        self.with(|c| {
            c.execute("DELETE FROM server_runs WHERE thread_id = ?1", [thread_id])?;
            Ok(c.execute(
                "DELETE FROM server_threads WHERE thread_id = ?1",
                [thread_id],
            )? > 0)
        })
    }

    async fn put_run(&self, row: &RunRow) -> Result<(), String> {
        let doc = to_doc(row)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO server_runs (run_id, thread_id, status, created_at_ms, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, doc = excluded.doc",
                rusqlite::params![
                    row.run_id,
                    row.thread_id,
                    row.status.as_str(),
                    row.created_at_ms as i64,
                    doc
                ],
            )
            .map(|_| ())
        })
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, String> {
        let docs = self.with(|c| {
            let mut q = c.prepare_cached("SELECT doc FROM server_runs WHERE run_id = ?1")?;
            q.query_map([run_id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(from_docs(docs)?.pop())
    }

    async fn delete_run(&self, run_id: &str) -> Result<bool, String> {
        self.with(|c| Ok(c.execute("DELETE FROM server_runs WHERE run_id = ?1", [run_id])? > 0))
    }

    async fn runs_of(&self, thread_id: &str) -> Result<Vec<RunRow>, String> {
        let docs = self.with(|c| {
            let mut q = c.prepare_cached(
                "SELECT doc FROM server_runs WHERE thread_id = ?1
                 ORDER BY created_at_ms DESC, run_id DESC",
            )?;
            q.query_map([thread_id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        from_docs(docs)
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, String> {
        let docs = self.with(|c| {
            let mut q = c.prepare_cached(
                "SELECT doc FROM server_runs WHERE status IN ('pending', 'running')
                 ORDER BY created_at_ms, run_id",
            )?;
            q.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        from_docs(docs)
    }
}

const PG_MIGRATIONS: &[engine::pg::Migration] = &[engine::pg::Migration {
    version: 1,
    name: "server threads and runs",
    sql: "
CREATE TABLE IF NOT EXISTS brainops_server_threads (
    thread_id text PRIMARY KEY,
    created_at_ms bigint NOT NULL,
    doc jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS brainops_server_runs (
    run_id text PRIMARY KEY,
    thread_id text NOT NULL,
    status text NOT NULL,
    created_at_ms bigint NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS brainops_server_runs_thread ON brainops_server_runs (thread_id, created_at_ms);
CREATE INDEX IF NOT EXISTS brainops_server_runs_status ON brainops_server_runs (status, created_at_ms);
",
}];

/// Threads and runs in Postgres, beside the checkpoints.
pub(crate) struct PgControl {
    pg: engine::pg::PgStore,
}

impl PgControl {
    pub(crate) async fn connect(url: &str) -> Result<Self, String> {
        let pg = engine::pg::PgStore::connect(url)
            .await
            .map_err(|e| format!("server store (postgres): {e}"))?;
        engine::pg::migrate(&pg, "server", PG_MIGRATIONS)
            .await
            .map_err(|e| format!("server store (postgres): {e}"))?;
        Ok(PgControl { pg })
    }

    async fn docs(
        &self,
        make: impl Fn() -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Value>, String> {
        use sqlx::Row;
        let rows = self.pg.fetch(make).await.map_err(pg_err)?;
        rows.iter()
            .map(|r| r.try_get::<Value, _>(0).map_err(pg_err))
            .collect()
    }

    async fn exec(
        &self,
        make: impl Fn() -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<usize, String> {
        Ok(self.pg.fetch(make).await.map_err(pg_err)?.len())
    }
}

fn pg_err(e: sqlx::Error) -> String {
    format!("server store (postgres): {}", engine::pg::describe(&e))
}

fn from_values<T: for<'de> Deserialize<'de>>(docs: Vec<Value>) -> Result<Vec<T>, String> {
    docs.into_iter()
        .map(|d| serde_json::from_value(d).map_err(|e| format!("a stored server row is bad: {e}")))
        .collect()
}

#[async_trait]
impl ControlStore for PgControl {
    async fn put_thread(&self, row: &ThreadRow) -> Result<(), String> {
        let doc = serde_json::to_value(row).map_err(|e| e.to_string())?;
        let id = row.thread_id.clone();
        let at = row.created_at_ms as i64;
        self.exec(|| {
            sqlx::query(
                "INSERT INTO brainops_server_threads (thread_id, created_at_ms, doc) VALUES ($1, $2, $3)
                 ON CONFLICT (thread_id) DO UPDATE SET doc = excluded.doc RETURNING 1",
            )
            .bind(id.clone())
            .bind(at)
            .bind(doc.clone())
        })
        .await
        .map(|_| ())
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRow>, String> {
        let id = thread_id.to_string();
        let docs = self
            .docs(|| {
                sqlx::query("SELECT doc FROM brainops_server_threads WHERE thread_id = $1")
                    .bind(id.clone())
            })
            .await?;
        Ok(from_values(docs)?.pop())
    }

    async fn threads(&self) -> Result<Vec<ThreadRow>, String> {
        let docs = self
            .docs(|| {
                sqlx::query(
                    "SELECT doc FROM brainops_server_threads ORDER BY created_at_ms DESC, thread_id DESC",
                )
            })
            .await?;
        from_values(docs)
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<bool, String> {
        let id = thread_id.to_string();
        self.exec(|| {
            sqlx::query("DELETE FROM brainops_server_runs WHERE thread_id = $1 RETURNING 1")
                .bind(id.clone())
        })
        .await?;
        Ok(self
            .exec(|| {
                sqlx::query("DELETE FROM brainops_server_threads WHERE thread_id = $1 RETURNING 1")
                    .bind(id.clone())
            })
            .await?
            > 0)
    }

    async fn put_run(&self, row: &RunRow) -> Result<(), String> {
        let doc = serde_json::to_value(row).map_err(|e| e.to_string())?;
        let (id, thread, status, at) = (
            row.run_id.clone(),
            row.thread_id.clone(),
            row.status.as_str(),
            row.created_at_ms as i64,
        );
        self.exec(|| {
            sqlx::query(
                "INSERT INTO brainops_server_runs (run_id, thread_id, status, created_at_ms, doc)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, doc = excluded.doc
                 RETURNING 1",
            )
            .bind(id.clone())
            .bind(thread.clone())
            .bind(status)
            .bind(at)
            .bind(doc.clone())
        })
        .await
        .map(|_| ())
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, String> {
        let id = run_id.to_string();
        let docs = self
            .docs(|| {
                sqlx::query("SELECT doc FROM brainops_server_runs WHERE run_id = $1")
                    .bind(id.clone())
            })
            .await?;
        Ok(from_values(docs)?.pop())
    }

    async fn delete_run(&self, run_id: &str) -> Result<bool, String> {
        let id = run_id.to_string();
        Ok(self
            .exec(|| {
                sqlx::query("DELETE FROM brainops_server_runs WHERE run_id = $1 RETURNING 1")
                    .bind(id.clone())
            })
            .await?
            > 0)
    }

    async fn runs_of(&self, thread_id: &str) -> Result<Vec<RunRow>, String> {
        let id = thread_id.to_string();
        let docs = self
            .docs(|| {
                sqlx::query(
                    "SELECT doc FROM brainops_server_runs WHERE thread_id = $1
                     ORDER BY created_at_ms DESC, run_id DESC",
                )
                .bind(id.clone())
            })
            .await?;
        from_values(docs)
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, String> {
        let docs = self
            .docs(|| {
                sqlx::query(
                    "SELECT doc FROM brainops_server_runs WHERE status IN ('pending', 'running')
                     ORDER BY created_at_ms, run_id",
                )
            })
            .await?;
        from_values(docs)
    }
}

/// Opens the server's store beside the checkpoints named by `url` (the same forms as
/// `--checkpoint`): the same Postgres database; for SQLite a sibling file
/// (`threads.db` → `threads.server.db`), because two connections writing one SQLite file
/// wait on each other's write lock (SQLite allows one writer) and throughput collapses;
/// for `memory`, a private in-memory database.
pub(crate) async fn open(url: &str) -> Result<Arc<dyn ControlStore>, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgControl::connect(url).await?));
    }
    if url == "memory" {
        return Ok(Arc::new(SqliteControl::open(None)?));
    }
    let path = std::path::Path::new(url.strip_prefix("sqlite:").unwrap_or(url));
    let stem = path
        .file_stem()
        .map_or_else(|| "threads".into(), |s| s.to_string_lossy().into_owned());
    let sibling = path.with_file_name(format!("{stem}.server.db"));
    Ok(Arc::new(SqliteControl::open(Some(&sibling))?))
}
