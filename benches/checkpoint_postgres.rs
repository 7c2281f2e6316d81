//! Postgres checkpoint cost and size.
//!
//!   eval "$(scripts/postgres.sh)"; cargo bench --bench checkpoint_postgres
//!
//! - `round_trip/*`: one checkpoint `put` of a typical super-step (a replaced value and an
//!   appended item, fenced by the run's lease) next to a bare single-row INSERT measured in
//!   the same run, on the same server, directly and through PgBouncer (transaction mode).
//! - `runner/chain_100_postgres`: a whole 100-node run checkpointing every step.
//! - Printed: total stored bytes of a 1,000-node chain and of a 200-turn messages thread,
//!   next to the final state's size.
//!
//! Uses (and recreates) the database `brainops_bench` on `$DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use engine::PostgresSaver;
use engine::checkpoint::{ChannelDelta, CheckpointRecord, CheckpointSource, Checkpointer, Lease};
use engine::{ChannelType, Graph, GraphBuilder, Reducer, Registry, RunRequest, Runner};
use serde_json::json;
use sqlx::Row;

#[path = "../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod db;
#[path = "shapes.rs"]
mod shapes;

use db::{admin_url, pooler_url, with_database};
use shapes::chain;

/// A chat loop: each turn appends a user and an assistant message.
fn chat(turns: usize) -> Graph {
    GraphBuilder::new("chat")
        .recursion_limit(turns as u32 + 1)
        .channel("messages", ChannelType::Messages, Reducer::Messages, json!([]))
        .channel("turn", ChannelType::Integer, Reducer::Replace, json!(0))
        .set(
            "turn",
            &[
                ("turn", "state.turn + 1"),
                (
                    "messages",
                    "[{'role': 'user', 'content': 'Turn ' + string(state.turn) + ': when can the crew re-shingle the north slope?'}, \
                      {'role': 'assistant', 'content': 'Turn ' + string(state.turn) + ': Thursday 8am, weather permitting; 24 squares of architectural shingles are in stock.'}]",
                ),
            ],
        )
        .edge("START", "turn")
        .edge_when("turn", "turn", &format!("state.turn < {turns}"))
        .edge_default("turn", "END")
        .build(&Registry::new())
        .unwrap()
}

/// Bytes the thread occupies in its tables (row sizes as Postgres stores them).
async fn stored_bytes(pool: &sqlx::PgPool, thread: &str) -> (i64, i64) {
    let row = sqlx::query(
        "SELECT
           (SELECT COALESCE(SUM(pg_column_size(c.*)), 0) FROM brainops_checkpoints c WHERE thread_id = $1)
         + (SELECT COALESCE(SUM(pg_column_size(v.*)), 0) FROM brainops_channel_values v WHERE thread_id = $1) AS bytes,
           (SELECT count(*) FROM brainops_checkpoints WHERE thread_id = $1) AS checkpoints",
    )
    .bind(thread)
    .fetch_one(pool)
    .await
    .unwrap();
    (row.get::<i64, _>("bytes"), row.get::<i64, _>("checkpoints"))
}

fn step_record(thread: &str, id: u64) -> CheckpointRecord {
    CheckpointRecord {
        thread_id: thread.into(),
        id,
        parent: id.checked_sub(1),
        step: id,
        source: CheckpointSource::Loop,
        nodes: vec!["qualify".into()],
        deltas: vec![
            ChannelDelta::Set {
                channel: "score".into(),
                value: json!(id),
            },
            ChannelDelta::Reduce {
                channel: "log".into(),
                writes: vec![json!({"node": "qualify", "note": "lead scored"})],
            },
        ],
        snapshot: None,
        next: vec!["estimate".into()],
        sends: Vec::new(),
        joins: vec![],
        created_at_ms: 0,
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let admin = admin_url();
    let (direct, pooled) = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL ({e}); start it with `eval \"$(scripts/postgres.sh)\"`")
        });
        // Two statements: neither may run inside a (multi-statement) transaction.
        for sql in [
            "DROP DATABASE IF EXISTS brainops_bench WITH (FORCE)",
            "CREATE DATABASE brainops_bench",
        ] {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        (
            with_database(&admin, "brainops_bench"),
            with_database(&pooler_url(), "brainops_bench"),
        )
    });

    let (saver, pooled_saver, pool, pooled_pool) = rt.block_on(async {
        let saver = PostgresSaver::connect(&direct).await.unwrap();
        let pooled_saver = PostgresSaver::connect(&pooled).await.unwrap();
        let pool = sqlx::PgPool::connect(&direct).await.unwrap();
        sqlx::raw_sql("CREATE TABLE bench_rows (id bigint PRIMARY KEY, step bigint, v json)")
            .execute(&pool)
            .await
            .unwrap();
        let pooled_pool = sqlx::postgres::PgPoolOptions::new()
            .connect_with(
                direct
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .unwrap()
                    .port(56432)
                    .statement_cache_capacity(0),
            )
            .await
            .unwrap();
        (saver, pooled_saver, pool, pooled_pool)
    });

    let mut group = c.benchmark_group("round_trip");
    let row_id = AtomicU64::new(0);
    group.bench_function("insert_one_row_direct", |b| {
        b.to_async(&rt).iter(|| async {
            let id = row_id.fetch_add(1, Ordering::Relaxed) as i64;
            sqlx::query("INSERT INTO bench_rows (id, step, v) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(id)
                .bind(sqlx::types::Json(json!({"note": "lead scored"})))
                .execute(&pool)
                .await
                .unwrap();
        })
    });
    for (name, store) in [("direct", &saver), ("pooler", &pooled_saver)] {
        let thread = format!("put-{name}");
        let lease = Lease::new(60_000);
        rt.block_on(store.claim(&thread, "bench", None, &lease))
            .unwrap();
        let next = AtomicU64::new(0);
        group.bench_function(format!("checkpoint_put_{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let id = next.fetch_add(1, Ordering::Relaxed);
                store
                    .put(&step_record(&thread, id), Some(&lease))
                    .await
                    .unwrap();
            })
        });
    }
    group.bench_function("insert_one_row_pooler", |b| {
        b.to_async(&rt).iter(|| async {
            let id = row_id.fetch_add(1, Ordering::Relaxed) as i64;
            let mut tx = pooled_pool.begin().await.unwrap();
            sqlx::query("INSERT INTO bench_rows (id, step, v) VALUES ($1, $2, $3)")
                .persistent(false)
                .bind(id)
                .bind(id)
                .bind(sqlx::types::Json(json!({"note": "lead scored"})))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    });
    group.finish();

    let saver: Arc<dyn Checkpointer> = Arc::new(saver);
    let graph = Arc::new(chain(100));
    let mut group = c.benchmark_group("runner");
    group.sample_size(10);
    group.bench_function("chain_100_postgres", |b| {
        let runner = Runner::new(Arc::clone(&graph)).with_checkpointer(Arc::clone(&saver));
        b.to_async(&rt).iter(|| async {
            let out = runner.invoke(RunRequest::new().input(json!({}))).await;
            assert_eq!(out.get("n"), Some(&json!(100)));
        })
    });
    group.finish();

    rt.block_on(async {
        for (label, graph, thread) in [
            ("1,000-node chain", chain(1000), "size-chain"),
            ("200-turn messages thread", chat(200), "size-chat"),
        ] {
            let runner = Runner::new(Arc::new(graph)).with_checkpointer(Arc::clone(&saver));
            let out = runner
                .invoke(RunRequest::new().thread(thread).input(json!({})))
                .await;
            let state_bytes = serde_json::to_vec(&out.state).unwrap().len();
            let (bytes, checkpoints) = stored_bytes(&pool, thread).await;
            println!(
                "stored: {label}: {checkpoints} checkpoints, {bytes} bytes in Postgres rows \
                 ({:.0} per checkpoint); final state {state_bytes} bytes",
                bytes as f64 / checkpoints.max(1) as f64
            );
        }
    });

    // Reading a thread back: the latest state of the 200-turn thread, rebuilt from the
    // nearest snapshot and the deltas after it.
    let reader = Runner::new(Arc::new(chat(200))).with_checkpointer(Arc::clone(&saver));
    let mut group = c.benchmark_group("read");
    group.bench_function("state_of_200_turn_thread", |b| {
        b.to_async(&rt).iter(|| async {
            let snapshot = reader.state("size-chat", None).await.unwrap();
            assert_eq!(snapshot.values["turn"], json!(200));
        })
    });
    group.finish();
}

criterion_group!(postgres, benches);
criterion_main!(postgres);
