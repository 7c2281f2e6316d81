//! The Postgres checkpointer.
//!
//! A checkpoint is one row in `brainops_checkpoints` plus one row per channel it changed in
//! `brainops_channel_values`, keyed by (thread, checkpoint, channel): the checkpoint id is
//! the channel's version, so only what changed is written. An `append` or `messages`
//! channel stores the items appended, not the list. Every write is a single statement, so
//! it is atomic on its own and safe through a transaction-mode pooler; the fence (lease
//! owner and head) is part of the statement, so two writers can never both advance a
//! thread from the same head.

use super::{
    ChannelDelta, CheckpointError, CheckpointRecord, CheckpointSummary, Checkpointer, JoinProgress,
    Lease, TaskWrites, ThreadInfo, admits, now_ms, refusal,
};
use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgRow, PgTypeInfo};
use sqlx::types::Json;

use crate::pg::{Migration, PgError, PgStore, migrate};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "threads, checkpoints, channel values, writes",
        sql: include_str!("../../migrations/checkpoints_0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "side-effect outbox",
        sql: include_str!("../../migrations/checkpoints_0002_side_effects.sql"),
    },
];

/// Stores threads in PostgreSQL (Supabase in production).
#[derive(Clone, Debug)]
pub struct PostgresSaver {
    store: PgStore,
}

impl PostgresSaver {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, PgError> {
        Self::new(PgStore::connect(url).await?).await
    }

    /// Uses an existing store, applying pending migrations.
    pub async fn new(store: PgStore) -> Result<Self, PgError> {
        store
            .retrying(|| async {
                migrate(&store, "checkpoints", MIGRATIONS)
                    .await
                    .map_err(|e| match e {
                        PgError::Sql(e) => e,
                        other => sqlx::Error::Protocol(other.to_string()),
                    })
            })
            .await?;
        Ok(PostgresSaver { store })
    }

    /// The connection pool underneath.
    pub fn store(&self) -> &PgStore {
        &self.store
    }
}

fn store_err(e: sqlx::Error) -> CheckpointError {
    CheckpointError::Store(format!("postgres: {}", crate::pg::describe(&e)))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored word that names no status or source, as a decoding error of its row.
fn undecodable(e: super::UnknownWord) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn read_thread(row: &PgRow) -> Result<ThreadInfo, sqlx::Error> {
    let owner: Option<String> = row.try_get("owner")?;
    let until: Option<i64> = row.try_get("lease_until_ms")?;
    let interrupt: Option<Json<super::InterruptInfo>> = row.try_get("interrupt")?;
    Ok(ThreadInfo {
        thread_id: row.try_get("thread_id")?,
        graph: row.try_get("graph")?,
        status: row
            .try_get::<&str, _>("status")?
            .parse()
            .map_err(undecodable)?,
        last_checkpoint: row.try_get::<Option<i64>, _>("head")?.map(|h| h as u64),
        interrupt: interrupt.map(|j| j.0),
        error: row.try_get("error")?,
        lease: owner.map(|owner| Lease {
            owner,
            until_ms: until.unwrap_or(0).max(0) as u64,
        }),
        created_at_ms: row.try_get::<i64, _>("created_at_ms")? as u64,
        updated_at_ms: row.try_get::<i64, _>("updated_at_ms")? as u64,
    })
}

/// A value bound as Postgres `json` (sent as text, stored as written). sqlx's `Json` binds
/// as `jsonb`, which a `json` column would receive re-encoded, with object keys reordered.
struct JsonText<T>(T);

impl<T> sqlx::Type<sqlx::Postgres> for JsonText<T> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(114)) // json
    }
}

impl<T> PgHasArrayType for JsonText<T> {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(199)) // json[]
    }
}

impl<T: serde::Serialize> sqlx::Encode<'_, sqlx::Postgres> for JsonText<T> {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        serde_json::to_writer(&mut **buf, &self.0)?;
        Ok(sqlx::encode::IsNull::No)
    }
}

/// A channel value as stored: one value, or the writes of a reducer channel.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Stored<'a> {
    One(&'a Value),
    Many(&'a [Value]),
}

const PUT: &str = "
WITH t AS (
    UPDATE brainops_threads
       SET head = $2, updated_at_ms = $12, lease_until_ms = COALESCE($14, lease_until_ms)
     WHERE thread_id = $1 AND head IS NOT DISTINCT FROM $3 AND owner IS NOT DISTINCT FROM $13
    RETURNING thread_id
), c AS (
    INSERT INTO brainops_checkpoints
        (thread_id, checkpoint_id, parent_id, step, source, nodes, next, joins, is_snapshot, bytes, created_at_ms)
    SELECT thread_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM t
), v AS (
    INSERT INTO brainops_channel_values (thread_id, checkpoint_id, channel, seq, op, value)
    SELECT t.thread_id, $2, u.channel, u.seq, u.op, u.value
      FROM t, UNNEST($15::text[], $16::text[], $17::json[]) WITH ORDINALITY AS u(channel, op, value, seq)
), w AS (
    DELETE FROM brainops_writes
     WHERE thread_id = $1 AND checkpoint_id = $3 AND EXISTS (SELECT 1 FROM t)
)
SELECT count(*) AS n FROM t";

// One row per (checkpoint, channel value), oldest first. The lower bound is a scalar
// subquery so it is computed once, whatever the planner thinks of the table's statistics.
const CHAIN: &str = "
SELECT c.checkpoint_id, c.parent_id, c.step, c.source, c.nodes, c.next, c.joins,
       c.is_snapshot, c.created_at_ms, v.channel, v.op, v.value
  FROM brainops_checkpoints c
  LEFT JOIN brainops_channel_values v
         ON v.thread_id = c.thread_id AND v.checkpoint_id = c.checkpoint_id
 WHERE c.thread_id = $1 AND c.checkpoint_id <= $2
   AND c.checkpoint_id >= (
       SELECT COALESCE(MAX(checkpoint_id) FILTER (WHERE is_snapshot), MIN(checkpoint_id))
         FROM brainops_checkpoints WHERE thread_id = $1 AND checkpoint_id <= $2)
 ORDER BY c.checkpoint_id, v.seq";

const LIST: &str = "
SELECT checkpoint_id, parent_id, step, source, nodes, next, bytes, created_at_ms
  FROM brainops_checkpoints WHERE thread_id = $1 ORDER BY checkpoint_id";

const PUT_WRITES: &str = "
INSERT INTO brainops_writes (thread_id, checkpoint_id, task_id, node, writes)
SELECT thread_id, $2, $3, $4, $5 FROM brainops_threads
 WHERE thread_id = $1 AND head = $2 AND owner IS NOT DISTINCT FROM $6
ON CONFLICT (thread_id, checkpoint_id, task_id)
   DO UPDATE SET node = excluded.node, writes = excluded.writes
RETURNING 1";

const WRITES: &str = "
SELECT task_id, node, writes FROM brainops_writes
 WHERE thread_id = $1 AND checkpoint_id = $2 ORDER BY task_id";

const PUT_THREAD: &str = "
INSERT INTO brainops_threads
    (thread_id, graph, status, head, interrupt, error, owner, lease_until_ms, created_at_ms, updated_at_ms)
VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, $9)
ON CONFLICT (thread_id) DO UPDATE
   SET graph = excluded.graph, status = excluded.status, interrupt = excluded.interrupt,
       error = excluded.error, owner = excluded.owner, lease_until_ms = excluded.lease_until_ms,
       updated_at_ms = excluded.updated_at_ms
 WHERE brainops_threads.owner IS NULL OR brainops_threads.owner = $10
RETURNING 1";

// `owner = $3` too: a retried claim whose first attempt committed finds itself the owner.
const CLAIM: &str = "
INSERT INTO brainops_threads
    (thread_id, graph, status, owner, lease_until_ms, created_at_ms, updated_at_ms)
VALUES ($1, $2, 'idle', $3, $4, $5, $5)
ON CONFLICT (thread_id) DO UPDATE
   SET owner = excluded.owner, lease_until_ms = excluded.lease_until_ms
 WHERE brainops_threads.owner IS NOT DISTINCT FROM $6 OR brainops_threads.owner = $3
RETURNING thread_id, graph, status, head, interrupt, error, owner, lease_until_ms,
          created_at_ms, updated_at_ms";

const RENEW: &str = "
UPDATE brainops_threads SET lease_until_ms = $3 WHERE thread_id = $1 AND owner = $2 RETURNING 1";

// A thread goes with its subgraph threads (`ID/task@N`).
const DELETE_THREAD: &str = "
WITH v AS (DELETE FROM brainops_channel_values WHERE thread_id = $1 OR starts_with(thread_id, $1 || '/')),
     c AS (DELETE FROM brainops_checkpoints WHERE thread_id = $1 OR starts_with(thread_id, $1 || '/')),
     w AS (DELETE FROM brainops_writes WHERE thread_id = $1 OR starts_with(thread_id, $1 || '/')),
     e AS (DELETE FROM brainops_side_effects WHERE thread_id = $1 OR starts_with(thread_id, $1 || '/'))
DELETE FROM brainops_threads WHERE thread_id = $1 OR starts_with(thread_id, $1 || '/')";

// Channels in the snapshot are upserted and the others deleted: disjoint rows, so the two
// sub-statements never touch the same row.
const PUT_SNAPSHOT: &str = "
WITH c AS (
    UPDATE brainops_checkpoints SET is_snapshot = true
     WHERE thread_id = $1 AND checkpoint_id = $2 RETURNING thread_id
), d AS (
    DELETE FROM brainops_channel_values
     WHERE thread_id = $1 AND checkpoint_id = $2 AND channel <> ALL($3::text[])
       AND EXISTS (SELECT 1 FROM c)
), i AS (
    INSERT INTO brainops_channel_values (thread_id, checkpoint_id, channel, seq, op, value)
    SELECT c.thread_id, $2, u.channel, u.seq, 'snapshot', u.value
      FROM c, UNNEST($3::text[], $4::json[]) WITH ORDINALITY AS u(channel, value, seq)
    ON CONFLICT (thread_id, checkpoint_id, channel)
       DO UPDATE SET seq = excluded.seq, op = excluded.op, value = excluded.value
)
SELECT count(*) AS n FROM c";

const PRUNE: &str = "
WITH cut AS (
    SELECT checkpoint_id FROM brainops_checkpoints WHERE thread_id = $1
     ORDER BY checkpoint_id DESC OFFSET $2 LIMIT 1
), base AS (
    SELECT MAX(c.checkpoint_id) AS id FROM brainops_checkpoints c, cut
     WHERE c.thread_id = $1 AND c.is_snapshot AND c.checkpoint_id <= cut.checkpoint_id
), v AS (
    DELETE FROM brainops_channel_values
     WHERE thread_id = $1 AND checkpoint_id < (SELECT id FROM base)
), w AS (
    DELETE FROM brainops_writes WHERE thread_id = $1 AND checkpoint_id < (SELECT id FROM base)
), c AS (
    DELETE FROM brainops_checkpoints
     WHERE thread_id = $1 AND checkpoint_id < (SELECT id FROM base) RETURNING 1
)
SELECT count(*) AS n FROM c";

const EXPIRE_CANDIDATES: &str = "
SELECT thread_id, graph, status, head, interrupt, error, owner, lease_until_ms,
       created_at_ms, updated_at_ms
  FROM brainops_threads WHERE updated_at_ms < $1 ORDER BY thread_id";

// Deletes only threads whose owner is still the one judged abandoned.
const EXPIRE: &str = "
WITH gone AS (
    DELETE FROM brainops_threads t USING UNNEST($1::text[], $2::text[]) AS u(id, owner)
     WHERE t.thread_id = u.id AND t.owner IS NOT DISTINCT FROM u.owner
       AND t.updated_at_ms < $3
    RETURNING t.thread_id
), v AS (DELETE FROM brainops_channel_values WHERE thread_id IN (SELECT thread_id FROM gone)),
   c AS (DELETE FROM brainops_checkpoints WHERE thread_id IN (SELECT thread_id FROM gone)),
   w AS (DELETE FROM brainops_writes WHERE thread_id IN (SELECT thread_id FROM gone)),
   e AS (DELETE FROM brainops_side_effects WHERE thread_id IN (SELECT thread_id FROM gone))
SELECT thread_id FROM gone ORDER BY thread_id";

const SIDE_EFFECT: &str = "
SELECT status, result, updated_at_ms FROM brainops_side_effects
 WHERE thread_id = $1 AND effect_key = $2";

const PUT_SIDE_EFFECT: &str = "
INSERT INTO brainops_side_effects (thread_id, effect_key, status, result, updated_at_ms)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (thread_id, effect_key)
DO UPDATE SET status = EXCLUDED.status, result = EXCLUDED.result, updated_at_ms = EXCLUDED.updated_at_ms";

fn count(rows: &[PgRow]) -> Result<i64, sqlx::Error> {
    rows.first().map_or(Ok(0), |r| r.try_get::<i64, _>("n"))
}

impl PostgresSaver {
    async fn load_thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        let sql = "SELECT thread_id, graph, status, head, interrupt, error, owner, lease_until_ms, created_at_ms, updated_at_ms FROM brainops_threads WHERE thread_id = $1";
        let rows = self
            .store
            .fetch(|| sqlx::query(sql).bind(thread_id))
            .await
            .map_err(store_err)?;
        rows.first().map(read_thread).transpose().map_err(store_err)
    }
}

#[async_trait]
impl Checkpointer for PostgresSaver {
    async fn put(
        &self,
        r: &CheckpointRecord,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        let mut channels: Vec<&str> = Vec::new();
        let mut ops: Vec<&str> = Vec::new();
        let mut values: Vec<JsonText<Stored<'_>>> = Vec::new();
        match &r.snapshot {
            Some(snapshot) => {
                for (channel, value) in snapshot {
                    channels.push(channel);
                    ops.push("snapshot");
                    values.push(JsonText(Stored::One(value)));
                }
            }
            None => {
                for delta in &r.deltas {
                    let (channel, op, value) = match delta {
                        ChannelDelta::Set { channel, value } => {
                            (channel, "set", Stored::One(value))
                        }
                        ChannelDelta::Reduce { channel, writes } => {
                            (channel, "reduce", Stored::Many(writes))
                        }
                    };
                    channels.push(channel);
                    ops.push(op);
                    values.push(JsonText(value));
                }
            }
        }
        let bytes = i32::try_from(r.stored_bytes()).unwrap_or(i32::MAX);
        let now = to_i64(now_ms());
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(PUT)
                    .bind(&r.thread_id)
                    .bind(to_i64(r.id))
                    .bind(r.parent.map(to_i64))
                    .bind(to_i64(r.step))
                    .bind(r.source.as_str())
                    .bind(JsonText(&r.nodes))
                    .bind(JsonText(&super::next_column(&r.next, &r.sends)))
                    .bind(JsonText(&r.joins))
                    .bind(r.snapshot.is_some())
                    .bind(bytes)
                    .bind(to_i64(r.created_at_ms))
                    .bind(now)
                    .bind(lease.map(|l| l.owner.as_str()))
                    .bind(lease.map(|l| to_i64(l.until_ms)))
                    .bind(&channels)
                    .bind(&ops)
                    .bind(&values)
            })
            .await
            .map_err(store_err)?;
        if count(&rows).map_err(store_err)? == 1 {
            return Ok(());
        }
        let stored = self.load_thread(&r.thread_id).await?;
        match &stored {
            // The owner's earlier attempt of this very write committed before its reply
            // was lost (a retry after a dropped connection).
            Some(info)
                if lease.is_some()
                    && info.last_checkpoint == Some(r.id)
                    && admits(info.lease.as_ref(), lease) =>
            {
                Ok(())
            }
            other => Err(refusal(&r.thread_id, other.as_ref(), lease, r.parent)),
        }
    }

    async fn chain(
        &self,
        thread_id: &str,
        upto: Option<u64>,
    ) -> Result<Vec<CheckpointRecord>, CheckpointError> {
        let upto = upto.map_or(i64::MAX, to_i64);
        let rows = self
            .store
            .fetch(|| sqlx::query(CHAIN).bind(thread_id).bind(upto))
            .await
            .map_err(store_err)?;
        let mut out: Vec<CheckpointRecord> = Vec::new();
        for row in &rows {
            let id = row.try_get::<i64, _>("checkpoint_id").map_err(store_err)? as u64;
            if out.last().is_none_or(|r| r.id != id) {
                out.push(read_record(thread_id, row).map_err(store_err)?);
            }
            if let Some(record) = out.last_mut() {
                add_value(record, row).map_err(store_err)?;
            }
        }
        Ok(out)
    }

    async fn list(&self, thread_id: &str) -> Result<Vec<CheckpointSummary>, CheckpointError> {
        let rows = self
            .store
            .fetch(|| sqlx::query(LIST).bind(thread_id))
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| -> Result<CheckpointSummary, sqlx::Error> {
                Ok(CheckpointSummary {
                    checkpoint_id: row.try_get::<i64, _>("checkpoint_id")? as u64,
                    parent: row
                        .try_get::<Option<i64>, _>("parent_id")?
                        .map(|p| p as u64),
                    step: row.try_get::<i64, _>("step")? as u64,
                    source: row
                        .try_get::<&str, _>("source")?
                        .parse()
                        .map_err(undecodable)?,
                    nodes: row.try_get::<Json<Vec<String>>, _>("nodes")?.0,
                    next: super::next_names(row.try_get::<Json<Vec<Value>>, _>("next")?.0),
                    bytes: row.try_get::<i32, _>("bytes")?.max(0) as usize,
                    created_at_ms: row.try_get::<i64, _>("created_at_ms")? as u64,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(store_err)
    }

    async fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        w: &TaskWrites,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(PUT_WRITES)
                    .bind(thread_id)
                    .bind(to_i64(checkpoint_id))
                    .bind(&w.task_id)
                    .bind(&w.node)
                    .bind(JsonText(&w.writes))
                    .bind(lease.map(|l| l.owner.as_str()))
            })
            .await
            .map_err(store_err)?;
        if rows.is_empty() {
            let stored = self.load_thread(thread_id).await?;
            return Err(refusal(
                thread_id,
                stored.as_ref(),
                lease,
                Some(checkpoint_id),
            ));
        }
        Ok(())
    }

    async fn writes(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
    ) -> Result<Vec<TaskWrites>, CheckpointError> {
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(WRITES)
                    .bind(thread_id)
                    .bind(to_i64(checkpoint_id))
            })
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| -> Result<TaskWrites, sqlx::Error> {
                Ok(TaskWrites {
                    task_id: row.try_get("task_id")?,
                    node: row.try_get("node")?,
                    writes: row.try_get::<Json<Vec<(String, Value)>>, _>("writes")?.0,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(store_err)
    }

    async fn put_thread(
        &self,
        t: &ThreadInfo,
        lease: Option<&Lease>,
    ) -> Result<(), CheckpointError> {
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(PUT_THREAD)
                    .bind(&t.thread_id)
                    .bind(&t.graph)
                    .bind(t.status.as_str())
                    .bind(t.interrupt.as_ref().map(JsonText))
                    .bind(t.error.as_deref())
                    .bind(t.lease.as_ref().map(|l| l.owner.as_str()))
                    .bind(t.lease.as_ref().map(|l| to_i64(l.until_ms)))
                    .bind(to_i64(t.created_at_ms))
                    .bind(to_i64(t.updated_at_ms))
                    .bind(lease.map(|l| l.owner.as_str()))
            })
            .await
            .map_err(store_err)?;
        if rows.is_empty() {
            let stored = self.load_thread(&t.thread_id).await?;
            return Err(refusal(&t.thread_id, stored.as_ref(), lease, None));
        }
        Ok(())
    }

    async fn claim(
        &self,
        thread_id: &str,
        graph: &str,
        expected: Option<&str>,
        lease: &Lease,
    ) -> Result<ThreadInfo, CheckpointError> {
        let now = to_i64(now_ms());
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(CLAIM)
                    .bind(thread_id)
                    .bind(graph)
                    .bind(&lease.owner)
                    .bind(to_i64(lease.until_ms))
                    .bind(now)
                    .bind(expected)
            })
            .await
            .map_err(store_err)?;
        match rows.first() {
            Some(row) => read_thread(row).map_err(store_err),
            None => {
                let stored = self.load_thread(thread_id).await?;
                Err(refusal(thread_id, stored.as_ref(), None, None))
            }
        }
    }

    async fn renew(&self, thread_id: &str, lease: &Lease) -> Result<(), CheckpointError> {
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(RENEW)
                    .bind(thread_id)
                    .bind(&lease.owner)
                    .bind(to_i64(lease.until_ms))
            })
            .await
            .map_err(store_err)?;
        if rows.is_empty() {
            let stored = self.load_thread(thread_id).await?;
            return Err(refusal(thread_id, stored.as_ref(), Some(lease), None));
        }
        Ok(())
    }

    async fn thread(&self, thread_id: &str) -> Result<Option<ThreadInfo>, CheckpointError> {
        self.load_thread(thread_id).await
    }

    async fn threads(&self) -> Result<Vec<ThreadInfo>, CheckpointError> {
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(
                    "SELECT thread_id, graph, status, head, interrupt, error, owner, lease_until_ms, created_at_ms, updated_at_ms
                       FROM brainops_threads ORDER BY updated_at_ms DESC, thread_id",
                )
            })
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(read_thread)
            .collect::<Result<_, _>>()
            .map_err(store_err)
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<(), CheckpointError> {
        self.store
            .fetch(|| sqlx::query(DELETE_THREAD).bind(thread_id))
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn put_snapshot(
        &self,
        thread_id: &str,
        checkpoint_id: u64,
        snapshot: &Map<String, Value>,
    ) -> Result<(), CheckpointError> {
        let channels: Vec<&str> = snapshot.keys().map(String::as_str).collect();
        let values: Vec<JsonText<&Value>> = snapshot.values().map(JsonText).collect();
        let rows = self
            .store
            .fetch(|| {
                sqlx::query(PUT_SNAPSHOT)
                    .bind(thread_id)
                    .bind(to_i64(checkpoint_id))
                    .bind(&channels)
                    .bind(&values)
            })
            .await
            .map_err(store_err)?;
        if count(&rows).map_err(store_err)? == 0 {
            return Err(CheckpointError::Store(format!(
                "thread `{thread_id}` has no checkpoint {checkpoint_id}"
            )));
        }
        Ok(())
    }

    async fn prune(&self, thread_id: &str, keep: usize) -> Result<u64, CheckpointError> {
        let offset = i64::try_from(keep.max(1) - 1).unwrap_or(i64::MAX);
        let rows = self
            .store
            .fetch(|| sqlx::query(PRUNE).bind(thread_id).bind(offset))
            .await
            .map_err(store_err)?;
        Ok(count(&rows).map_err(store_err)?.max(0) as u64)
    }

    async fn expire(&self, before_ms: u64) -> Result<Vec<String>, CheckpointError> {
        let before = to_i64(before_ms);
        let rows = self
            .store
            .fetch(|| sqlx::query(EXPIRE_CANDIDATES).bind(before))
            .await
            .map_err(store_err)?;
        let now = now_ms();
        let mut ids = Vec::new();
        let mut owners: Vec<Option<String>> = Vec::new();
        for row in &rows {
            let info = read_thread(row).map_err(store_err)?;
            if info.lease.as_ref().is_none_or(|l| l.is_abandoned(now)) {
                ids.push(info.thread_id);
                owners.push(info.lease.map(|l| l.owner));
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .fetch(|| sqlx::query(EXPIRE).bind(&ids).bind(&owners).bind(before))
            .await
            .map_err(store_err)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>("thread_id"))
            .collect::<Result<_, _>>()
            .map_err(store_err)
    }

    async fn side_effect(
        &self,
        thread_id: &str,
        key: &str,
    ) -> Result<Option<super::SideEffect>, CheckpointError> {
        let rows = self
            .store
            .fetch(|| sqlx::query(SIDE_EFFECT).bind(thread_id).bind(key))
            .await
            .map_err(store_err)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let status: String = row.try_get("status").map_err(store_err)?;
        let status = super::EffectStatus::stored(&status, key)?;
        let result: Option<Json<Value>> = row.try_get("result").map_err(store_err)?;
        let at: i64 = row.try_get("updated_at_ms").map_err(store_err)?;
        Ok(Some(super::SideEffect {
            status,
            result: result.map(|r| r.0),
            updated_at_ms: at.max(0) as u64,
        }))
    }

    async fn put_side_effect(
        &self,
        thread_id: &str,
        key: &str,
        effect: &super::SideEffect,
    ) -> Result<(), CheckpointError> {
        self.store
            .fetch(|| {
                sqlx::query(PUT_SIDE_EFFECT)
                    .bind(thread_id)
                    .bind(key)
                    .bind(effect.status.as_str())
                    .bind(effect.result.as_ref().map(JsonText))
                    .bind(to_i64(effect.updated_at_ms))
            })
            .await
            .map_err(store_err)?;
        Ok(())
    }
}

/// The checkpoint columns of a chain row, without its channel values.
fn read_record(thread_id: &str, row: &PgRow) -> Result<CheckpointRecord, sqlx::Error> {
    let is_snapshot: bool = row.try_get("is_snapshot")?;
    let (next, sends) = super::split_next(row.try_get::<Json<Vec<Value>>, _>("next")?.0)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(CheckpointRecord {
        thread_id: thread_id.to_string(),
        id: row.try_get::<i64, _>("checkpoint_id")? as u64,
        parent: row
            .try_get::<Option<i64>, _>("parent_id")?
            .map(|p| p as u64),
        step: row.try_get::<i64, _>("step")? as u64,
        source: row
            .try_get::<&str, _>("source")?
            .parse()
            .map_err(undecodable)?,
        nodes: row.try_get::<Json<Vec<String>>, _>("nodes")?.0,
        deltas: Vec::new(),
        snapshot: is_snapshot.then(Map::new),
        next,
        sends,
        joins: row.try_get::<Json<Vec<JoinProgress>>, _>("joins")?.0,
        created_at_ms: row.try_get::<i64, _>("created_at_ms")? as u64,
    })
}

/// Adds a chain row's channel value (if any) to its checkpoint.
fn add_value(record: &mut CheckpointRecord, row: &PgRow) -> Result<(), sqlx::Error> {
    let Some(channel) = row.try_get::<Option<String>, _>("channel")? else {
        return Ok(()); // A checkpoint that changed no channel.
    };
    let op: String = row.try_get("op")?;
    let Json(value): Json<Value> = row.try_get("value")?;
    match (&mut record.snapshot, op.as_str(), value) {
        (Some(map), _, value) => {
            map.insert(channel, value);
        }
        (None, "reduce", Value::Array(writes)) => {
            record.deltas.push(ChannelDelta::Reduce { channel, writes })
        }
        (None, "set", value) => record.deltas.push(ChannelDelta::Set { channel, value }),
        (None, op, _) => {
            return Err(sqlx::Error::Decode(
                format!("channel `{channel}` has an unknown stored op `{op}`").into(),
            ));
        }
    }
    Ok(())
}
