//! The server's own records beside the checkpoints: threads (metadata, owner) and runs
//! (the queue). Rows are JSON documents keyed by id, with the columns a query filters on or
//! a worker changes (thread, status, times, the claiming worker, its attempt and lease, a
//! cancel request) kept beside them, in the same database as the threads' checkpoints:
//! SQLite by default (one process), Postgres when servers and workers on several machines
//! share the queue. Every change of a run is one statement, so it works through a
//! transaction-mode pooler. `docs/deploy.md` explains the queue.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::crons::CronRow;

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
    /// Its own time to live, counted from its last activity (swept by the cleanup job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ttl: Option<ThreadTtl>,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
}

/// A thread's time to live, as the reference API takes it: `{"ttl": MINUTES, "strategy"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ThreadTtl {
    /// Minutes of inactivity after which it expires.
    pub(crate) ttl: f64,
    pub(crate) strategy: TtlStrategy,
}

/// What expiry does to a thread.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TtlStrategy {
    /// Deletes the thread, its runs and its checkpoints.
    Delete,
    /// Keeps the thread and its latest checkpoint; older checkpoints go.
    KeepLatest,
}

impl ThreadTtl {
    /// Whether a thread last active at `updated_at_ms` has expired at `now_ms`.
    pub(crate) fn expired(&self, updated_at_ms: u64, now_ms: u64) -> bool {
        updated_at_ms as f64 + self.ttl * 60_000.0 < now_ms as f64
    }
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
    /// The process that claimed it (`HOST/PID/UUID`), while it runs and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) worker: Option<String>,
    /// Why it failed (`{"error", "message"}`), once it ended `error` or `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<Value>,
    /// When its latest attempt started executing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) started_at_ms: Option<u64>,
    /// The thread's head when the run last started (`None`: it had no checkpoint), so a
    /// rollback can put it back.
    #[serde(default)]
    pub(crate) start_checkpoint: Option<u64>,
    /// What its model calls used and cost (see `runs::RunUsage`), once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Value>,
    /// The W3C trace context (`traceparent`, `tracestate`) of the span that queued it, so
    /// whichever process executes it continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) trace: Option<std::collections::BTreeMap<String, String>>,
    /// The process (`HOST/PID/UUID`) whose v2-protocol subscribers follow the run's thread:
    /// a process executing the run elsewhere copies the run's protocol events into its
    /// stored events for it (`protocol::relay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) watched_from: Option<String>,
    /// The other processes with v2-protocol subscribers on the run's thread, as its claim
    /// found them (see [`ControlStore::watch`]); the claimant copies the run's protocol
    /// events for them. Never stored.
    #[serde(default, skip_serializing)]
    pub(crate) watchers: Vec<String>,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
}

/// A run its worker still holds, as [`ControlStore::heartbeat`] renews it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Held {
    pub(crate) run_id: String,
    /// The cancel another process asked for (`interrupt`/`rollback`).
    pub(crate) cancel: Option<String>,
    /// Whether another process has v2-protocol subscribers on the run's thread now.
    pub(crate) watched: bool,
}

/// A run of a watched thread, as [`ControlStore::runs_on`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ThreadRun {
    pub(crate) run_id: String,
    pub(crate) thread_id: String,
    pub(crate) created_at_ms: u64,
    /// Pending or running.
    pub(crate) active: bool,
    /// Pending until after the `due_ms` asked about (a `wait` node's wake-up).
    pub(crate) later: bool,
}

/// One stored stream event of a run: `(seq, event, data)`.
pub(crate) type StoredEvent = (u64, String, String);

/// Where threads and runs are kept.
#[async_trait]
pub(crate) trait ControlStore: Send + Sync {
    async fn put_thread(&self, row: &ThreadRow) -> Result<(), String>;
    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRow>, String>;
    /// Every thread, newest first.
    async fn threads(&self) -> Result<Vec<ThreadRow>, String>;
    /// Deletes the thread and its runs.
    async fn delete_thread(&self, thread_id: &str) -> Result<bool, String>;
    /// Stores a new run (or replaces one no worker holds).
    async fn put_run(&self, row: &RunRow) -> Result<(), String>;
    /// Stores a claimed run's progress if `row.worker` still holds it at `row.attempt`.
    /// `false`: another process took it over (its lease expired), and this one must stop.
    async fn update_claimed(&self, row: &RunRow) -> Result<bool, String>;
    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, String>;
    async fn delete_run(&self, run_id: &str) -> Result<bool, String>;
    /// A thread's runs, newest first.
    async fn runs_of(&self, thread_id: &str) -> Result<Vec<RunRow>, String>;
    /// Pending and running runs, oldest first.
    async fn active_runs(&self) -> Result<Vec<RunRow>, String>;
    /// Claims for `worker`, until `lease_until_ms`, the oldest pending run that may start at
    /// `now_ms`: its delay has passed, its thread runs nothing and has no older pending run.
    /// The claim counts an attempt.
    async fn claim(
        &self,
        worker: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Option<RunRow>, String>;
    /// When the next delayed run becomes due, if one is waiting.
    async fn next_due(&self, now_ms: u64) -> Result<Option<u64>, String>;
    /// Extends `worker`'s lease on `run_ids`; answers those it still holds, each with the
    /// cancel another process asked for (`interrupt`/`rollback`).
    async fn heartbeat(
        &self,
        worker: &str,
        run_ids: &[String],
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Vec<Held>, String>;
    /// Puts back to `pending` the running runs whose worker stopped renewing its lease (or is
    /// a process of this host that exited), except `me`'s own; answers their ids.
    async fn sweep(&self, me: &str, now_ms: u64) -> Result<Vec<String>, String>;
    /// Ends a run that has not started: `interrupted`, or deleted (`delete`, for a rollback).
    /// `false`: it was no longer pending.
    async fn cancel_pending(&self, run_id: &str, delete: bool, now_ms: u64)
    -> Result<bool, String>;
    /// Asks the worker running `run_id` to cancel it; `false`: it is not running.
    async fn request_cancel(&self, run_id: &str, action: &str) -> Result<bool, String>;
    /// Whether processes other than this one may share the queue (so events, cancels and
    /// run ends travel through the store).
    fn shared(&self) -> bool {
        false
    }
    /// Appends a run's stream events (shared stores only).
    async fn append_events(&self, _run_id: &str, _events: &[StoredEvent]) -> Result<(), String> {
        Ok(())
    }
    /// A run's stream events after `after` (shared stores only).
    async fn events_since(&self, _run_id: &str, _after: u64) -> Result<Vec<StoredEvent>, String> {
        Ok(Vec::new())
    }
    /// Drops the events of runs that ended before `before_ms`.
    async fn purge_events(&self, _before_ms: u64) -> Result<u64, String> {
        Ok(0)
    }
    /// Records that `process` has v2-protocol subscribers on `threads` until `until_ms`
    /// (shared stores only): whichever process claims a run of one of them copies the run's
    /// protocol events into its stored events for `process` (see [`RunRow::watchers`]).
    async fn watch(
        &self,
        _process: &str,
        _threads: &[String],
        _now_ms: u64,
        _until_ms: u64,
    ) -> Result<(), String> {
        Ok(())
    }
    /// The runs of `threads` that are pending or running, or were created at or after
    /// `since_ms`, oldest first (shared stores only).
    async fn runs_on(
        &self,
        _threads: &[String],
        _since_ms: u64,
        _due_ms: u64,
    ) -> Result<Vec<ThreadRun>, String> {
        Ok(Vec::new())
    }
    /// The store's clock (ms since the Unix epoch; shared stores only), which every process
    /// sharing it keeps to (see [`sync_clock`]).
    async fn clock_ms(&self) -> Result<Option<u64>, String> {
        Ok(None)
    }
    /// Wakes listening workers (`NOTIFY`; shared stores only).
    async fn notify(&self, _payload: &str) {}
    /// Claims the periodic job `name` if it is due at `now_ms` (or has never run), moving its
    /// due time to `next_ms`; `true` for the one process that wins.
    async fn claim_job(&self, name: &str, now_ms: u64, next_ms: u64) -> Result<bool, String>;
    /// Stores a cron (its due time and state with it).
    async fn put_cron(&self, row: &CronRow) -> Result<(), String>;
    async fn cron(&self, cron_id: &str) -> Result<Option<CronRow>, String>;
    /// Every cron, oldest first.
    async fn crons(&self) -> Result<Vec<CronRow>, String>;
    async fn delete_cron(&self, cron_id: &str) -> Result<bool, String>;
    /// Enabled crons due at `now_ms`.
    async fn due_crons(&self, now_ms: u64) -> Result<Vec<CronRow>, String>;
    /// Replaces a cron by `row` if it is still due at `due_ms`: the one process whose
    /// replacement lands owns that tick.
    async fn advance_cron(&self, cron_id: &str, due_ms: u64, row: &CronRow)
    -> Result<bool, String>;
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
    doc TEXT NOT NULL,
    worker TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL DEFAULT 0,
    lease_until_ms INTEGER,
    cancel TEXT
);
CREATE INDEX IF NOT EXISTS server_runs_thread ON server_runs (thread_id, created_at_ms);
CREATE INDEX IF NOT EXISTS server_runs_status ON server_runs (status, created_at_ms);
CREATE TABLE IF NOT EXISTS server_crons (
    cron_id TEXT PRIMARY KEY,
    thread_id TEXT,
    next_run_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS server_crons_due ON server_crons (next_run_ms);
CREATE TABLE IF NOT EXISTS server_jobs (
    name TEXT PRIMARY KEY,
    next_run_ms INTEGER NOT NULL
);
";

/// Adds the queue's columns to a table made before they existed.
const SQLITE_QUEUE_COLUMNS: &str = "
ALTER TABLE server_runs ADD COLUMN worker TEXT;
ALTER TABLE server_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_runs ADD COLUMN not_before_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE server_runs ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE server_runs ADD COLUMN cancel TEXT;
UPDATE server_runs SET attempt = COALESCE(json_extract(doc, '$.attempt'), 0),
    not_before_ms = COALESCE(json_extract(doc, '$.not_before_ms'), 0);
";

/// A run's document with the columns workers change laid over it.
const SQLITE_RUN_DOC: &str =
    "json_patch(doc, json_object('status', status, 'attempt', attempt, 'worker', worker))";

/// The oldest pending run that may start: due, and first in line on an idle thread.
/// Shared by both stores; `{lock}` is where Postgres skips rows other claimers hold.
const CLAIMABLE: &str = "SELECT c.run_id FROM {runs} c
    WHERE c.status = 'pending' AND c.not_before_ms <= {now}
      AND NOT EXISTS (SELECT 1 FROM {runs} o
          WHERE o.thread_id = c.thread_id AND o.run_id <> c.run_id
            AND (o.status = 'running'
                 OR (o.status = 'pending' AND (o.created_at_ms, o.run_id) < (c.created_at_ms, c.run_id))))
    ORDER BY c.created_at_ms, c.run_id LIMIT 1 {lock}";

/// Threads and runs in an SQLite file (the checkpoints' file by default).
pub(crate) struct SqliteControl {
    conn: Mutex<rusqlite::Connection>,
    claim_sql: String,
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
            .and_then(|()| {
                let has_worker = conn
                    .prepare(
                        "SELECT 1 FROM pragma_table_info('server_runs') WHERE name = 'worker'",
                    )?
                    .exists([])?;
                if has_worker {
                    Ok(())
                } else {
                    conn.execute_batch(&format!("BEGIN; {SQLITE_QUEUE_COLUMNS} COMMIT;"))
                }
            })
            .map_err(|e| format!("cannot prepare the server's SQLite store: {e}"))?;
        let claimable = CLAIMABLE
            .replace("{runs}", "server_runs")
            .replace("{now}", "?2")
            .replace("{lock}", "");
        Ok(SqliteControl {
            conn: Mutex::new(conn),
            claim_sql: format!(
                "UPDATE server_runs SET status = 'running', worker = ?1, attempt = attempt + 1,
                     lease_until_ms = ?3, cancel = NULL
                 WHERE run_id = ({claimable})
                 RETURNING {SQLITE_RUN_DOC}"
            ),
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

    /// The rows of documents `sql` selects (its first column).
    fn rows<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<T>, String> {
        let docs = self.with(|c| {
            let mut q = c.prepare_cached(sql)?;
            q.query_map(params, |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        from_docs(docs)
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

fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Whether the worker holding a lease until `until_ms` can no longer be running it.
fn abandoned(worker: &str, until_ms: Option<i64>, now_ms: u64) -> bool {
    engine::checkpoint::Lease {
        owner: worker.to_string(),
        until_ms: until_ms.map_or(0, |u| u64::try_from(u).unwrap_or(0)),
    }
    .is_abandoned(now_ms)
}

#[async_trait]
impl ControlStore for SqliteControl {
    async fn put_thread(&self, row: &ThreadRow) -> Result<(), String> {
        let doc = to_doc(row)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO server_threads (thread_id, created_at_ms, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (thread_id) DO UPDATE SET doc = excluded.doc",
                rusqlite::params![row.thread_id, sql_ms(row.created_at_ms), doc],
            )
            .map(|_| ())
        })
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadRow>, String> {
        Ok(self
            .rows(
                "SELECT doc FROM server_threads WHERE thread_id = ?1",
                [thread_id],
            )?
            .pop())
    }

    async fn threads(&self) -> Result<Vec<ThreadRow>, String> {
        self.rows(
            "SELECT doc FROM server_threads ORDER BY created_at_ms DESC, thread_id DESC",
            [],
        )
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<bool, String> {
        self.with(|c| {
            c.execute("DELETE FROM server_runs WHERE thread_id = ?1", [thread_id])?;
            c.execute("DELETE FROM server_crons WHERE thread_id = ?1", [thread_id])?;
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
                "INSERT INTO server_runs (run_id, thread_id, status, created_at_ms, doc, worker,
                     attempt, not_before_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, doc = excluded.doc,
                     worker = excluded.worker, attempt = excluded.attempt,
                     not_before_ms = excluded.not_before_ms",
                rusqlite::params![
                    row.run_id,
                    row.thread_id,
                    row.status.as_str(),
                    sql_ms(row.created_at_ms),
                    doc,
                    row.worker,
                    row.attempt,
                    sql_ms(row.not_before_ms),
                ],
            )
            .map(|_| ())
        })
    }

    async fn update_claimed(&self, row: &RunRow) -> Result<bool, String> {
        let doc = to_doc(row)?;
        self.with(|c| {
            Ok(c.execute(
                "UPDATE server_runs SET status = ?4, doc = ?5
                 WHERE run_id = ?1 AND worker IS ?2 AND attempt = ?3",
                rusqlite::params![
                    row.run_id,
                    row.worker,
                    row.attempt,
                    row.status.as_str(),
                    doc
                ],
            )? > 0)
        })
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, String> {
        Ok(self
            .rows(
                &format!("SELECT {SQLITE_RUN_DOC} FROM server_runs WHERE run_id = ?1"),
                [run_id],
            )?
            .pop())
    }

    async fn delete_run(&self, run_id: &str) -> Result<bool, String> {
        self.with(|c| Ok(c.execute("DELETE FROM server_runs WHERE run_id = ?1", [run_id])? > 0))
    }

    async fn runs_of(&self, thread_id: &str) -> Result<Vec<RunRow>, String> {
        self.rows(
            &format!(
                "SELECT {SQLITE_RUN_DOC} FROM server_runs WHERE thread_id = ?1
                 ORDER BY created_at_ms DESC, run_id DESC"
            ),
            [thread_id],
        )
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, String> {
        self.rows(
            &format!(
                "SELECT {SQLITE_RUN_DOC} FROM server_runs WHERE status IN ('pending', 'running')
                 ORDER BY created_at_ms, run_id"
            ),
            [],
        )
    }

    async fn claim(
        &self,
        worker: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Option<RunRow>, String> {
        Ok(self
            .rows(
                &self.claim_sql,
                rusqlite::params![worker, sql_ms(now_ms), sql_ms(lease_until_ms)],
            )?
            .pop())
    }

    async fn next_due(&self, now_ms: u64) -> Result<Option<u64>, String> {
        let due: Option<i64> = self.with(|c| {
            c.prepare_cached(
                "SELECT min(not_before_ms) FROM server_runs
                 WHERE status = 'pending' AND not_before_ms > ?1",
            )?
            .query_row([sql_ms(now_ms)], |r| r.get(0))
        })?;
        Ok(due.and_then(|d| u64::try_from(d).ok()))
    }

    async fn heartbeat(
        &self,
        worker: &str,
        run_ids: &[String],
        _now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Vec<Held>, String> {
        let ids = serde_json::to_string(run_ids).map_err(|e| e.to_string())?;
        self.with(|c| {
            let mut q = c.prepare_cached(
                "UPDATE server_runs SET lease_until_ms = ?3
                 WHERE worker = ?1 AND status = 'running'
                   AND run_id IN (SELECT value FROM json_each(?2))
                 RETURNING run_id, cancel",
            )?;
            q.query_map(
                rusqlite::params![worker, ids, sql_ms(lease_until_ms)],
                |r| {
                    Ok(Held {
                        run_id: r.get(0)?,
                        cancel: r.get(1)?,
                        watched: false,
                    })
                },
            )?
            .collect()
        })
    }

    async fn sweep(&self, me: &str, now_ms: u64) -> Result<Vec<String>, String> {
        self.with(|c| {
            let running: Vec<(String, Option<String>, Option<i64>)> = c
                .prepare_cached(
                    "SELECT run_id, worker, lease_until_ms FROM server_runs WHERE status = 'running'",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut swept = Vec::new();
            for (run_id, worker, until) in running {
                let worker = worker.unwrap_or_default();
                if worker != me
                    && abandoned(&worker, until, now_ms)
                    && c.execute(
                        "UPDATE server_runs SET status = 'pending', worker = NULL,
                             lease_until_ms = NULL
                         WHERE run_id = ?1 AND worker IS ?2 AND status = 'running'",
                        rusqlite::params![run_id, worker],
                    )? > 0
                {
                    swept.push(run_id);
                }
            }
            Ok(swept)
        })
    }

    async fn cancel_pending(
        &self,
        run_id: &str,
        delete: bool,
        now_ms: u64,
    ) -> Result<bool, String> {
        self.with(|c| {
            let n = if delete {
                c.execute(
                    "DELETE FROM server_runs WHERE run_id = ?1 AND status = 'pending'",
                    [run_id],
                )?
            } else {
                c.execute(
                    "UPDATE server_runs SET status = 'interrupted',
                         doc = json_set(doc, '$.updated_at_ms', ?2)
                     WHERE run_id = ?1 AND status = 'pending'",
                    rusqlite::params![run_id, sql_ms(now_ms)],
                )?
            };
            Ok(n > 0)
        })
    }

    async fn request_cancel(&self, run_id: &str, action: &str) -> Result<bool, String> {
        self.with(|c| {
            Ok(c.execute(
                "UPDATE server_runs SET cancel = ?2 WHERE run_id = ?1 AND status = 'running'",
                [run_id, action],
            )? > 0)
        })
    }

    async fn claim_job(&self, name: &str, now_ms: u64, next_ms: u64) -> Result<bool, String> {
        self.with(|c| {
            Ok(c.execute(
                "INSERT INTO server_jobs (name, next_run_ms) VALUES (?1, ?3)
                 ON CONFLICT (name) DO UPDATE SET next_run_ms = excluded.next_run_ms
                 WHERE server_jobs.next_run_ms <= ?2",
                rusqlite::params![name, sql_ms(now_ms), sql_ms(next_ms)],
            )? > 0)
        })
    }

    async fn put_cron(&self, row: &CronRow) -> Result<(), String> {
        let doc = to_doc(row)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO server_crons (cron_id, thread_id, next_run_ms, created_at_ms, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (cron_id) DO UPDATE SET next_run_ms = excluded.next_run_ms,
                     doc = excluded.doc",
                rusqlite::params![
                    row.cron_id,
                    row.thread_id,
                    row.next_run_ms.map(sql_ms),
                    sql_ms(row.created_at_ms),
                    doc
                ],
            )
            .map(|_| ())
        })
    }

    async fn cron(&self, cron_id: &str) -> Result<Option<CronRow>, String> {
        Ok(self
            .rows("SELECT doc FROM server_crons WHERE cron_id = ?1", [cron_id])?
            .pop())
    }

    async fn crons(&self) -> Result<Vec<CronRow>, String> {
        self.rows(
            "SELECT doc FROM server_crons ORDER BY created_at_ms, cron_id",
            [],
        )
    }

    async fn delete_cron(&self, cron_id: &str) -> Result<bool, String> {
        self.with(|c| Ok(c.execute("DELETE FROM server_crons WHERE cron_id = ?1", [cron_id])? > 0))
    }

    async fn due_crons(&self, now_ms: u64) -> Result<Vec<CronRow>, String> {
        self.rows(
            "SELECT doc FROM server_crons WHERE next_run_ms <= ?1 ORDER BY next_run_ms",
            [sql_ms(now_ms)],
        )
    }

    async fn advance_cron(
        &self,
        cron_id: &str,
        due_ms: u64,
        row: &CronRow,
    ) -> Result<bool, String> {
        let doc = to_doc(row)?;
        self.with(|c| {
            Ok(c.execute(
                "UPDATE server_crons SET next_run_ms = ?3, doc = ?4
                 WHERE cron_id = ?1 AND next_run_ms = ?2",
                rusqlite::params![cron_id, sql_ms(due_ms), row.next_run_ms.map(sql_ms), doc],
            )? > 0)
        })
    }
}

const PG_MIGRATIONS: &[engine::pg::Migration] = &[
    engine::pg::Migration {
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
    },
    engine::pg::Migration {
        version: 2,
        name: "a run queue shared by workers, and run events",
        sql: "
ALTER TABLE brainops_server_runs
    ADD COLUMN IF NOT EXISTS worker text,
    ADD COLUMN IF NOT EXISTS attempt integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS not_before_ms bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS lease_until_ms bigint,
    ADD COLUMN IF NOT EXISTS cancel text;
UPDATE brainops_server_runs SET attempt = COALESCE((doc->>'attempt')::integer, 0),
    not_before_ms = COALESCE((doc->>'not_before_ms')::bigint, 0);
CREATE UNIQUE INDEX IF NOT EXISTS brainops_server_runs_one_running
    ON brainops_server_runs (thread_id) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS brainops_server_run_events (
    run_id text NOT NULL,
    seq bigint NOT NULL,
    event text NOT NULL,
    data text NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS brainops_server_run_events_age ON brainops_server_run_events (created_at_ms);
",
    },
    engine::pg::Migration {
        version: 3,
        name: "crons",
        sql: "
CREATE TABLE IF NOT EXISTS brainops_server_crons (
    cron_id text PRIMARY KEY,
    thread_id text,
    next_run_ms bigint,
    created_at_ms bigint NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS brainops_server_crons_due ON brainops_server_crons (next_run_ms);
CREATE TABLE IF NOT EXISTS brainops_server_jobs (
    name text PRIMARY KEY,
    next_run_ms bigint NOT NULL
);
",
    },
    engine::pg::Migration {
        version: 4,
        name: "processes watching threads over the v2 protocol",
        sql: "
CREATE TABLE IF NOT EXISTS brainops_server_watchers (
    thread_id text NOT NULL,
    process text NOT NULL,
    until_ms bigint NOT NULL,
    PRIMARY KEY (thread_id, process)
);
",
    },
];

/// How long a lapsed watch is kept before [`ControlStore::watch`] deletes it.
const WATCH_KEEP_MS: u64 = 60_000;

/// A run's document with the columns workers change laid over it.
const PG_RUN_DOC: &str =
    "(doc || jsonb_build_object('status', status, 'attempt', attempt, 'worker', worker))";

/// The channel `NOTIFY` wakes workers on.
pub(crate) const PG_CHANNEL: &str = "brainops_server";

/// Threads and runs in Postgres, beside the checkpoints, shared by every server and worker.
pub(crate) struct PgControl {
    pg: engine::pg::PgStore,
    claim_sql: String,
}

type PgQuery = sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl PgControl {
    pub(crate) async fn connect(url: &str) -> Result<Self, String> {
        let pg = engine::pg::PgStore::connect(url)
            .await
            .map_err(|e| format!("server store (postgres): {e}"))?;
        engine::pg::migrate(&pg, "server", PG_MIGRATIONS)
            .await
            .map_err(|e| format!("server store (postgres): {e}"))?;
        let claimable = CLAIMABLE
            .replace("{runs}", "brainops_server_runs")
            .replace("{now}", "$2")
            .replace("{lock}", "FOR UPDATE SKIP LOCKED");
        Ok(PgControl {
            pg,
            claim_sql: format!(
                "UPDATE brainops_server_runs SET status = 'running', worker = $1,
                     attempt = attempt + 1, lease_until_ms = $3, cancel = NULL
                 WHERE run_id = ({claimable})
                 RETURNING {PG_RUN_DOC} || jsonb_build_object('watchers', (
                     SELECT coalesce(jsonb_agg(w.process), '[]'::jsonb)
                     FROM brainops_server_watchers w
                     WHERE w.thread_id = brainops_server_runs.thread_id
                       AND w.until_ms > $2 AND w.process <> $1))"
            ),
        })
    }

    async fn docs(&self, make: impl Fn() -> PgQuery) -> Result<Vec<Value>, String> {
        use sqlx::Row;
        let rows = self.pg.fetch(make).await.map_err(pg_err)?;
        rows.iter()
            .map(|r| r.try_get::<Value, _>(0).map_err(pg_err))
            .collect()
    }

    /// The document `sql` selects for `id`, if any.
    async fn one<T: for<'de> Deserialize<'de>>(
        &self,
        sql: &'static str,
        id: &str,
    ) -> Result<Option<T>, String> {
        let id = id.to_string();
        let docs = self.docs(|| sqlx::query(sql).bind(id.clone())).await?;
        Ok(from_values(docs)?.pop())
    }

    /// Every document `sql` selects.
    async fn all<T: for<'de> Deserialize<'de>>(&self, sql: &'static str) -> Result<Vec<T>, String> {
        from_values(self.docs(|| sqlx::query(sql)).await?)
    }

    async fn exec(&self, make: impl Fn() -> PgQuery) -> Result<usize, String> {
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

fn to_value<T: Serialize>(row: &T) -> Result<Value, String> {
    serde_json::to_value(row).map_err(|e| format!("cannot encode a server row: {e}"))
}

#[async_trait]
impl ControlStore for PgControl {
    async fn put_thread(&self, row: &ThreadRow) -> Result<(), String> {
        let doc = to_value(row)?;
        let id = row.thread_id.clone();
        let at = sql_ms(row.created_at_ms);
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
        self.one(
            "SELECT doc FROM brainops_server_threads WHERE thread_id = $1",
            thread_id,
        )
        .await
    }

    async fn threads(&self) -> Result<Vec<ThreadRow>, String> {
        self.all(
            "SELECT doc FROM brainops_server_threads ORDER BY created_at_ms DESC, thread_id DESC",
        )
        .await
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<bool, String> {
        let id = thread_id.to_string();
        self.exec(|| {
            sqlx::query("DELETE FROM brainops_server_runs WHERE thread_id = $1 RETURNING 1")
                .bind(id.clone())
        })
        .await?;
        self.exec(|| {
            sqlx::query("DELETE FROM brainops_server_crons WHERE thread_id = $1 RETURNING 1")
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
        let doc = to_value(row)?;
        let r = row.clone();
        self.exec(|| {
            sqlx::query(
                "INSERT INTO brainops_server_runs (run_id, thread_id, status, created_at_ms, doc,
                     worker, attempt, not_before_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, doc = excluded.doc,
                     worker = excluded.worker, attempt = excluded.attempt,
                     not_before_ms = excluded.not_before_ms
                 RETURNING 1",
            )
            .bind(r.run_id.clone())
            .bind(r.thread_id.clone())
            .bind(r.status.as_str())
            .bind(sql_ms(r.created_at_ms))
            .bind(doc.clone())
            .bind(r.worker.clone())
            .bind(r.attempt as i32)
            .bind(sql_ms(r.not_before_ms))
        })
        .await
        .map(|_| ())
    }

    async fn update_claimed(&self, row: &RunRow) -> Result<bool, String> {
        let doc = to_value(row)?;
        let r = row.clone();
        Ok(self
            .exec(|| {
                sqlx::query(
                    "UPDATE brainops_server_runs SET status = $4, doc = $5
                     WHERE run_id = $1 AND worker IS NOT DISTINCT FROM $2 AND attempt = $3
                     RETURNING 1",
                )
                .bind(r.run_id.clone())
                .bind(r.worker.clone())
                .bind(r.attempt as i32)
                .bind(r.status.as_str())
                .bind(doc.clone())
            })
            .await?
            > 0)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, String> {
        let id = run_id.to_string();
        let docs = self
            .docs(|| {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PG_RUN_DOC} FROM brainops_server_runs WHERE run_id = $1"
                )))
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
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PG_RUN_DOC} FROM brainops_server_runs WHERE thread_id = $1
                     ORDER BY created_at_ms DESC, run_id DESC"
                )))
                .bind(id.clone())
            })
            .await?;
        from_values(docs)
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>, String> {
        let docs = self
            .docs(|| {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PG_RUN_DOC} FROM brainops_server_runs
                     WHERE status IN ('pending', 'running') ORDER BY created_at_ms, run_id"
                )))
            })
            .await?;
        from_values(docs)
    }

    async fn claim(
        &self,
        worker: &str,
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Option<RunRow>, String> {
        let worker = worker.to_string();
        let result = self
            .docs(|| {
                sqlx::query(sqlx::AssertSqlSafe(self.claim_sql.clone()))
                    .bind(worker.clone())
                    .bind(sql_ms(now_ms))
                    .bind(sql_ms(lease_until_ms))
            })
            .await;
        match result {
            Ok(docs) => Ok(from_values(docs)?.pop()),
            // Another process claimed a run of the same thread at the same moment: the
            // one-running-run-per-thread index refused ours; the next claim finds another.
            Err(e) if e.contains("brainops_server_runs_one_running") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn next_due(&self, now_ms: u64) -> Result<Option<u64>, String> {
        use sqlx::Row;
        let rows = self
            .pg
            .fetch(|| {
                sqlx::query(
                    "SELECT min(not_before_ms) FROM brainops_server_runs
                     WHERE status = 'pending' AND not_before_ms > $1",
                )
                .bind(sql_ms(now_ms))
            })
            .await
            .map_err(pg_err)?;
        let due: Option<i64> = match rows.first() {
            Some(r) => r.try_get(0).map_err(pg_err)?,
            None => None,
        };
        Ok(due.and_then(|d| u64::try_from(d).ok()))
    }

    async fn heartbeat(
        &self,
        worker: &str,
        run_ids: &[String],
        now_ms: u64,
        lease_until_ms: u64,
    ) -> Result<Vec<Held>, String> {
        use sqlx::Row;
        let (worker, ids) = (worker.to_string(), run_ids.to_vec());
        let rows = self
            .pg
            .fetch(|| {
                sqlx::query(
                    "UPDATE brainops_server_runs r SET lease_until_ms = $3
                     WHERE worker = $1 AND status = 'running' AND run_id = ANY($2)
                     RETURNING run_id, cancel, EXISTS (
                         SELECT 1 FROM brainops_server_watchers w
                         WHERE w.thread_id = r.thread_id AND w.process <> $1
                           AND w.until_ms > $4)",
                )
                .bind(worker.clone())
                .bind(ids.clone())
                .bind(sql_ms(lease_until_ms))
                .bind(sql_ms(now_ms))
            })
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(Held {
                    run_id: r.try_get(0).map_err(pg_err)?,
                    cancel: r.try_get(1).map_err(pg_err)?,
                    watched: r.try_get(2).map_err(pg_err)?,
                })
            })
            .collect()
    }

    async fn sweep(&self, me: &str, now_ms: u64) -> Result<Vec<String>, String> {
        use sqlx::Row;
        let rows = self
            .pg
            .fetch(|| {
                sqlx::query(
                    "SELECT run_id, worker, lease_until_ms FROM brainops_server_runs
                     WHERE status = 'running'",
                )
            })
            .await
            .map_err(pg_err)?;
        let mut swept = Vec::new();
        for r in rows {
            let run_id: String = r.try_get(0).map_err(pg_err)?;
            let worker: Option<String> = r.try_get(1).map_err(pg_err)?;
            let until: Option<i64> = r.try_get(2).map_err(pg_err)?;
            let worker = worker.unwrap_or_default();
            if worker == me || !abandoned(&worker, until, now_ms) {
                continue;
            }
            let n = self
                .exec(|| {
                    sqlx::query(
                        "UPDATE brainops_server_runs SET status = 'pending', worker = NULL,
                             lease_until_ms = NULL
                         WHERE run_id = $1 AND worker = $2 AND status = 'running' RETURNING 1",
                    )
                    .bind(run_id.clone())
                    .bind(worker.clone())
                })
                .await?;
            if n > 0 {
                swept.push(run_id);
            }
        }
        Ok(swept)
    }

    async fn cancel_pending(
        &self,
        run_id: &str,
        delete: bool,
        now_ms: u64,
    ) -> Result<bool, String> {
        let id = run_id.to_string();
        let n = if delete {
            self.exec(|| {
                sqlx::query(
                    "DELETE FROM brainops_server_runs WHERE run_id = $1 AND status = 'pending'
                     RETURNING 1",
                )
                .bind(id.clone())
            })
            .await?
        } else {
            self.exec(|| {
                sqlx::query(
                    "UPDATE brainops_server_runs SET status = 'interrupted',
                         doc = doc || jsonb_build_object('updated_at_ms', $2::bigint)
                     WHERE run_id = $1 AND status = 'pending' RETURNING 1",
                )
                .bind(id.clone())
                .bind(sql_ms(now_ms))
            })
            .await?
        };
        Ok(n > 0)
    }

    async fn request_cancel(&self, run_id: &str, action: &str) -> Result<bool, String> {
        let (id, action) = (run_id.to_string(), action.to_string());
        Ok(self
            .exec(|| {
                sqlx::query(
                    "UPDATE brainops_server_runs SET cancel = $2
                     WHERE run_id = $1 AND status = 'running' RETURNING 1",
                )
                .bind(id.clone())
                .bind(action.clone())
            })
            .await?
            > 0)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn append_events(&self, run_id: &str, events: &[StoredEvent]) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let id = run_id.to_string();
        let seqs: Vec<i64> = events.iter().map(|e| sql_ms(e.0)).collect();
        let names: Vec<String> = events.iter().map(|e| e.1.clone()).collect();
        let datas: Vec<String> = events.iter().map(|e| e.2.clone()).collect();
        let at = sql_ms(super::wire::now_ms());
        self.exec(|| {
            sqlx::query(
                "INSERT INTO brainops_server_run_events (run_id, seq, event, data, created_at_ms)
                 SELECT $1, s, e, d, $5 FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS t(s, e, d)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id.clone())
            .bind(seqs.clone())
            .bind(names.clone())
            .bind(datas.clone())
            .bind(at)
        })
        .await
        .map(|_| ())
    }

    async fn events_since(&self, run_id: &str, after: u64) -> Result<Vec<StoredEvent>, String> {
        use sqlx::Row;
        let id = run_id.to_string();
        let rows = self
            .pg
            .fetch(|| {
                sqlx::query(
                    "SELECT seq, event, data FROM brainops_server_run_events
                     WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                )
                .bind(id.clone())
                .bind(sql_ms(after))
            })
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get(0).map_err(pg_err)?;
                Ok((
                    u64::try_from(seq).unwrap_or(0),
                    r.try_get(1).map_err(pg_err)?,
                    r.try_get(2).map_err(pg_err)?,
                ))
            })
            .collect()
    }

    async fn purge_events(&self, before_ms: u64) -> Result<u64, String> {
        let n = self
            .exec(|| {
                sqlx::query(
                    "DELETE FROM brainops_server_run_events e WHERE created_at_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM brainops_server_runs r
                           WHERE r.run_id = e.run_id AND r.status IN ('pending', 'running'))
                     RETURNING 1",
                )
                .bind(sql_ms(before_ms))
            })
            .await?;
        Ok(n as u64)
    }

    async fn watch(
        &self,
        process: &str,
        threads: &[String],
        now_ms: u64,
        until_ms: u64,
    ) -> Result<(), String> {
        let (process, threads) = (process.to_string(), threads.to_vec());
        self.exec(|| {
            sqlx::query(
                "WITH lapsed AS (DELETE FROM brainops_server_watchers WHERE until_ms < $4)
                 INSERT INTO brainops_server_watchers (thread_id, process, until_ms)
                 SELECT t, $2, $3 FROM unnest($1::text[]) AS t
                 ON CONFLICT (thread_id, process) DO UPDATE SET until_ms = excluded.until_ms",
            )
            .bind(threads.clone())
            .bind(process.clone())
            .bind(sql_ms(until_ms))
            .bind(sql_ms(now_ms.saturating_sub(WATCH_KEEP_MS)))
        })
        .await
        .map(|_| ())
    }

    async fn runs_on(
        &self,
        threads: &[String],
        since_ms: u64,
        due_ms: u64,
    ) -> Result<Vec<ThreadRun>, String> {
        use sqlx::Row;
        let threads = threads.to_vec();
        let rows = self
            .pg
            .fetch(|| {
                sqlx::query(
                    "SELECT run_id, thread_id, created_at_ms, status IN ('pending', 'running'),
                            status = 'pending' AND not_before_ms > $3
                     FROM brainops_server_runs
                     WHERE thread_id = ANY($1)
                       AND (status IN ('pending', 'running') OR created_at_ms >= $2)
                     ORDER BY created_at_ms, run_id",
                )
                .bind(threads.clone())
                .bind(sql_ms(since_ms))
                .bind(sql_ms(due_ms))
            })
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(ThreadRun {
                    run_id: r.try_get(0).map_err(pg_err)?,
                    thread_id: r.try_get(1).map_err(pg_err)?,
                    created_at_ms: u64::try_from(r.try_get::<i64, _>(2).map_err(pg_err)?)
                        .unwrap_or_default(),
                    active: r.try_get(3).map_err(pg_err)?,
                    later: r.try_get(4).map_err(pg_err)?,
                })
            })
            .collect()
    }

    async fn clock_ms(&self) -> Result<Option<u64>, String> {
        use sqlx::Row;
        let rows = self
            .pg
            .fetch(|| sqlx::query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"))
            .await
            .map_err(pg_err)?;
        let ms: Option<i64> = match rows.first() {
            Some(row) => row.try_get(0).map_err(pg_err)?,
            None => None,
        };
        Ok(ms.and_then(|ms| u64::try_from(ms).ok()))
    }

    async fn notify(&self, payload: &str) {
        let payload = payload.to_string();
        if let Err(e) = self
            .exec(|| {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PG_CHANNEL)
                    .bind(payload.clone())
            })
            .await
        {
            tracing::warn!("cannot notify workers: {e}");
        }
    }

    async fn claim_job(&self, name: &str, now_ms: u64, next_ms: u64) -> Result<bool, String> {
        let name = name.to_string();
        Ok(self
            .exec(|| {
                sqlx::query(
                    "INSERT INTO brainops_server_jobs (name, next_run_ms) VALUES ($1, $3)
                     ON CONFLICT (name) DO UPDATE SET next_run_ms = excluded.next_run_ms
                     WHERE brainops_server_jobs.next_run_ms <= $2
                     RETURNING 1",
                )
                .bind(name.clone())
                .bind(sql_ms(now_ms))
                .bind(sql_ms(next_ms))
            })
            .await?
            > 0)
    }

    async fn put_cron(&self, row: &CronRow) -> Result<(), String> {
        let doc = to_value(row)?;
        let r = row.clone();
        self.exec(|| {
            sqlx::query(
                "INSERT INTO brainops_server_crons (cron_id, thread_id, next_run_ms, created_at_ms, doc)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (cron_id) DO UPDATE SET next_run_ms = excluded.next_run_ms,
                     doc = excluded.doc
                 RETURNING 1",
            )
            .bind(r.cron_id.clone())
            .bind(r.thread_id.clone())
            .bind(r.next_run_ms.map(sql_ms))
            .bind(sql_ms(r.created_at_ms))
            .bind(doc.clone())
        })
        .await
        .map(|_| ())
    }

    async fn cron(&self, cron_id: &str) -> Result<Option<CronRow>, String> {
        self.one(
            "SELECT doc FROM brainops_server_crons WHERE cron_id = $1",
            cron_id,
        )
        .await
    }

    async fn crons(&self) -> Result<Vec<CronRow>, String> {
        self.all("SELECT doc FROM brainops_server_crons ORDER BY created_at_ms, cron_id")
            .await
    }

    async fn delete_cron(&self, cron_id: &str) -> Result<bool, String> {
        let id = cron_id.to_string();
        Ok(self
            .exec(|| {
                sqlx::query("DELETE FROM brainops_server_crons WHERE cron_id = $1 RETURNING 1")
                    .bind(id.clone())
            })
            .await?
            > 0)
    }

    async fn due_crons(&self, now_ms: u64) -> Result<Vec<CronRow>, String> {
        let docs = self
            .docs(|| {
                sqlx::query(
                    "SELECT doc FROM brainops_server_crons WHERE next_run_ms <= $1
                     ORDER BY next_run_ms",
                )
                .bind(sql_ms(now_ms))
            })
            .await?;
        from_values(docs)
    }

    async fn advance_cron(
        &self,
        cron_id: &str,
        due_ms: u64,
        row: &CronRow,
    ) -> Result<bool, String> {
        let doc = to_value(row)?;
        let (id, next) = (cron_id.to_string(), row.next_run_ms.map(sql_ms));
        Ok(self
            .exec(|| {
                sqlx::query(
                    "UPDATE brainops_server_crons SET next_run_ms = $3, doc = $4
                     WHERE cron_id = $1 AND next_run_ms = $2 RETURNING 1",
                )
                .bind(id.clone())
                .bind(sql_ms(due_ms))
                .bind(next)
                .bind(doc.clone())
            })
            .await?
            > 0)
    }
}

/// Opens the server's store beside the checkpoints named by `url` (the same forms as
/// `--checkpoint`): the same Postgres database; for SQLite a sibling file
/// (`threads.db` → `threads.server.db`), because two connections writing one SQLite file
/// wait on each other's write lock (SQLite allows one writer) and throughput collapses;
/// for `memory`, a private in-memory database.
pub(crate) async fn open(url: &str) -> Result<Arc<dyn ControlStore>, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgControl::connect(url).await?;
        sync_clock(&store).await;
        return Ok(Arc::new(store));
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

/// How often a process sharing a store compares its clock with the store's.
pub(crate) const CLOCK_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Keeps this process to the shared store's clock: leases, due times and watches are written
/// by one process and compared by others, so a machine whose clock is off would see live
/// leases as expired (and take runs over) or dead ones as live. Skews under 250 ms are left
/// alone; a round trip slower than a second measures nothing.
pub(crate) async fn sync_clock(store: &dyn ControlStore) {
    use engine::checkpoint::local_now_ms;
    let before = local_now_ms();
    let store_ms = match store.clock_ms().await {
        Ok(Some(ms)) => ms,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!("cannot read the store's clock: {e}");
            return;
        }
    };
    let after = local_now_ms();
    if after.saturating_sub(before) > 1_000 {
        return;
    }
    let local = before / 2 + after / 2;
    let offset = i64::try_from(store_ms).unwrap_or(i64::MAX) - i64::try_from(local).unwrap_or(0);
    if let Some(offset) = engine::checkpoint::adopt_clock_offset(offset) {
        tracing::warn!(
            "this machine's clock is {offset} ms off the database's; timing leases, due runs and crons by the database's"
        );
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
