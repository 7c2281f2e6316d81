//! Two runs (each with its own connection pool, as two processes would have) start on the
//! same thread at the same moment: one advances it, the other is refused with a conflict,
//! and the thread's history is the single line of one run. Also: migrations re-run as a
//! no-op, even when many savers connect at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pg as db;

use std::sync::Arc;
use std::time::Duration;

use engine::PostgresSaver;
use engine::checkpoint::Checkpointer;
use engine::pg::{Migration, PgStore, migrate};
use engine::{Registry, RunError, RunRequest, RunStatus, Runner, loader, node_fn};
use serde_json::json;

const GRAPH: &str = r#"
[graph]
name = "slow"
recursion_limit = 100
[state]
i = { type = "integer", default = 0 }
[nodes.tick]
tool = "test.tick"
args = { i = "state.i" }
[[edges]]
from = "START"
to = "tick"
[[edges]]
from = "tick"
to = "tick"
when = "state.i < 15"
[[edges]]
from = "tick"
to = "END"
default = true
"#;

async fn runner(url: &str) -> Runner {
    let mut registry = Registry::new();
    registry.register_tool(
        "test.tick",
        node_fn(|input, _ctx| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(json!({"i": input["i"].as_i64().unwrap_or(0) + 1}))
        }),
    );
    let graph = loader::load_str(GRAPH, "slow.toml", &registry).unwrap();
    let saver: Arc<dyn Checkpointer> = Arc::new(PostgresSaver::connect(url).await.unwrap());
    Runner::new(Arc::new(graph)).with_checkpointer(saver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_run_on_a_busy_thread_gets_a_conflict() {
    let db = db::fresh_database().await;
    let url = db::with_database(&db::admin_url(), &db);
    let (a, b) = (runner(&url).await, runner(&url).await);
    let start = |r: Runner| {
        tokio::spawn(async move {
            r.invoke(RunRequest::new().thread("shared").input(json!({})))
                .await
        })
    };
    let (first, second) = (start(a.clone()), start(b.clone()));
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    let (won, lost) = match (first.status, second.status) {
        (RunStatus::Done, RunStatus::Failed) => (first, second),
        (RunStatus::Failed, RunStatus::Done) => (second, first),
        other => {
            panic!("expected one winner and one conflict, got {other:?}: {first:?} {second:?}")
        }
    };
    assert_eq!(won.state, json!({"i": 15}));
    let error = lost.error.unwrap();
    assert!(
        matches!(error.detail, RunError::Conflict { .. }),
        "{:?}",
        error.detail
    );
    assert!(
        error.message.contains("being advanced by another run"),
        "{}",
        error.message
    );

    // One line of checkpoints: input, then one per tick.
    let history = a.history("shared").await.unwrap();
    let ids: Vec<u64> = history.iter().map(|c| c.checkpoint_id).collect();
    assert_eq!(ids, (0..=15).collect::<Vec<u64>>());
    assert!(
        history
            .windows(2)
            .all(|w| w[1].parent == Some(w[0].checkpoint_id))
    );

    // The loser's refusal left the thread as the winner left it.
    let info = a
        .checkpointer()
        .unwrap()
        .thread("shared")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.status, engine::ThreadStatus::Done);
    assert_eq!(info.lease, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_rerun_as_a_no_op_even_when_raced() {
    let db = db::fresh_database().await;
    let url = db::with_database(&db::admin_url(), &db);
    let mut starts = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        starts.push(tokio::spawn(
            async move { PostgresSaver::connect(&url).await },
        ));
    }
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let store = PgStore::connect(&url).await.unwrap();
    const SCHEMA: &[Migration] = &[Migration {
        version: 1,
        name: "checkpoints",
        sql: "SELECT 1",
    }];
    assert_eq!(
        migrate(&store, "checkpoints", SCHEMA).await.unwrap(),
        0,
        "version 1 of `checkpoints` is applied already"
    );
    const NEW: &[Migration] = &[Migration {
        version: 1,
        name: "t",
        sql: "CREATE TABLE t (x int)",
    }];
    assert_eq!(migrate(&store, "test", NEW).await.unwrap(), 1);
    assert_eq!(migrate(&store, "test", NEW).await.unwrap(), 0);
    // A failing migration leaves nothing behind and is reported with its name.
    const BAD: &[Migration] = &[
        Migration {
            version: 2,
            name: "good half",
            sql: "CREATE TABLE u (x int)",
        },
        Migration {
            version: 3,
            name: "broken",
            sql: "CREATE TABLE (",
        },
    ];
    let err = migrate(&store, "test", BAD).await.unwrap_err().to_string();
    assert!(err.contains("migration test 3 (broken)"), "{err}");
    let u_exists: bool = sqlx::query_scalar("SELECT to_regclass('u') IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!u_exists, "the whole batch rolled back");
}
