//! Crash safety with Postgres checkpoints: a child process runs a long graph whose rounds
//! fan out to parallel tasks with side effects; it is killed with SIGKILL at random points
//! and resumed by a fresh process each time. The result must equal an uninterrupted run,
//! no checkpoint may be lost or duplicated, and only tasks in flight at a kill may run again.
//!
//! The child is this test binary itself, started with `BRAINOPS_CRASH_CHILD` set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pg as db;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use engine::PostgresSaver;
use engine::checkpoint::{CheckpointSummary, Checkpointer};
use engine::{Node, NodeContext, NodeError, Registry, RunRequest, RunStatus, Runner, loader};
use serde_json::{Value, json};
use sqlx::Row;

const ROUNDS: u64 = 30;
const FAN_OUT: u64 = 3;

const GRAPH: &str = r#"
[graph]
name = "crash_rounds"
recursion_limit = 200

[state]
round   = { type = "integer", default = 0 }
items   = { type = "array", default = [1, 2, 3] }
results = { type = "array", reducer = "append", default = [] }
total   = { type = "integer", reducer = "add", default = 0 }

[nodes.work]
for_each = "state.items"
tool = "test.side_effect"
args = { round = "state.round", item = "item" }
output = "results"

[nodes.tally]
set = { round = "state.round + 1", total = "state.round * 10" }

[[edges]]
from = "START"
to = "work"

[[edges]]
from = "work"
to = "tally"

[[edges]]
from = "tally"
to = "work"
when = "state.round < 30"

[[edges]]
from = "tally"
to = "END"
default = true
"#;

/// A task with a side effect, recorded in Postgres: every attempt in `attempts` (with the
/// process generation that made it), the effect itself once per idempotency key in
/// `effects`, as a payment API honouring idempotency keys would.
struct SideEffect {
    pool: sqlx::PgPool,
    generation: i32,
}

#[async_trait]
impl Node for SideEffect {
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        let round = input["round"].as_u64().unwrap_or(0);
        let item = input["item"].as_u64().unwrap_or(0);
        let key = ctx.idempotency_key();
        // Uneven durations, so parallel tasks finish in changing orders.
        tokio::time::sleep(Duration::from_millis(5 + (round * 7 + item * 13) % 25)).await;
        sqlx::query("INSERT INTO attempts (key, generation) VALUES ($1, $2)")
            .bind(&key)
            .bind(self.generation)
            .execute(&self.pool)
            .await
            .map_err(|e| NodeError::transient(e.to_string()))?;
        sqlx::query("INSERT INTO effects (key) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&key)
            .execute(&self.pool)
            .await
            .map_err(|e| NodeError::transient(e.to_string()))?;
        Ok(json!({"round": round, "item": item, "square": item * item + round}))
    }
}

async fn runner(url: &str, generation: i32) -> (Runner, Arc<dyn Checkpointer>) {
    let saver: Arc<dyn Checkpointer> = Arc::new(PostgresSaver::connect(url).await.unwrap());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap();
    let mut registry = Registry::new();
    registry.register_tool(
        "test.side_effect",
        Arc::new(SideEffect { pool, generation }),
    );
    let graph = loader::load_str(GRAPH, "crash_rounds.toml", &registry).unwrap();
    (
        Runner::new(Arc::new(graph)).with_checkpointer(Arc::clone(&saver)),
        saver,
    )
}

/// Runs (or continues) the thread: with the input when it has no checkpoint yet.
async fn run_or_continue(runner: &Runner, saver: &dyn Checkpointer, thread: &str) -> Value {
    let fresh = saver.list(thread).await.unwrap().is_empty();
    let mut request = RunRequest::new().thread(thread);
    if fresh {
        request = request.input(json!({}));
    }
    let outcome = runner.invoke(request).await;
    assert_eq!(
        outcome.status,
        RunStatus::Done,
        "run failed: {:?}",
        outcome.error
    );
    outcome.state
}

/// The child process: runs until done, or until it is killed.
#[tokio::test]
async fn crash_child() {
    let (Ok(url), Ok(thread), Ok(generation)) = (
        std::env::var("BRAINOPS_CRASH_CHILD"),
        std::env::var("BRAINOPS_CRASH_THREAD"),
        std::env::var("BRAINOPS_CRASH_GENERATION"),
    ) else {
        return; // Not started as a child: nothing to do.
    };
    let (runner, saver) = runner(&url, generation.parse().unwrap()).await;
    run_or_continue(&runner, saver.as_ref(), &thread).await;
}

/// A small xorshift generator: random kill times, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn shape(list: &[CheckpointSummary]) -> Vec<(u64, Option<u64>, u64, Vec<String>, Vec<String>)> {
    list.iter()
        .map(|c| {
            (
                c.checkpoint_id,
                c.parent,
                c.step,
                c.nodes.clone(),
                c.next.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_repeats_nothing() {
    let db = db::fresh_database().await;
    let url = db::with_database(&db::admin_url(), &db);
    let setup = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE attempts (key text NOT NULL, generation int NOT NULL, at timestamptz DEFAULT clock_timestamp());
         CREATE TABLE effects (key text PRIMARY KEY);",
    )
    .execute(&setup)
    .await
    .unwrap();

    // The reference: the same graph, uninterrupted, on another thread.
    let (reference_runner, saver) = runner(&url, -1).await;
    let expected = run_or_continue(&reference_runner, saver.as_ref(), "reference").await;
    let expected_history = shape(&saver.list("reference").await.unwrap());
    assert_eq!(expected["round"], json!(ROUNDS));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed: {seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let spawn = |generation: u32| {
        Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("BRAINOPS_CRASH_CHILD", &url)
            .env("BRAINOPS_CRASH_THREAD", "crashy")
            .env("BRAINOPS_CRASH_GENERATION", generation.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut kills = 0u32;
    let mut generation = 0u32;
    let mut progress = Vec::new();
    loop {
        let mut child = spawn(generation);
        // Most kills land while a round's three tasks are running in parallel.
        let wait = Duration::from_millis(30 + rng.below(170));
        let started = Instant::now();
        let mut exited = None;
        while started.elapsed() < wait {
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match exited {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        progress.push(saver.list("crashy").await.unwrap().len());
        generation += 1;
        assert!(
            generation < 400,
            "no progress: checkpoints after each kill: {progress:?}"
        );
    }
    eprintln!("{kills} kills; checkpoints after each: {progress:?}");
    assert!(
        kills >= 5,
        "the run should have been killed several times, got {kills}"
    );

    // The final state equals the uninterrupted run's.
    let snapshot = reference_runner.state("crashy", None).await.unwrap();
    assert_eq!(snapshot.values, expected);
    // No checkpoint lost or duplicated: the same line of checkpoints as the reference.
    let history = saver.list("crashy").await.unwrap();
    assert_eq!(shape(&history), expected_history);
    let info = saver.thread("crashy").await.unwrap().unwrap();
    assert_eq!(info.status, engine::ThreadStatus::Done);
    assert_eq!(info.lease, None);

    // Every task's side effect happened exactly once.
    let effects: i64 = sqlx::query("SELECT count(*) FROM effects WHERE key LIKE 'crashy:%'")
        .fetch_one(&setup)
        .await
        .unwrap()
        .get(0);
    assert_eq!(effects as u64, ROUNDS * FAN_OUT);
    // A task ran again only if a kill caught it in flight: no key runs twice in one
    // process, and each killed process leaves at most FAN_OUT tasks to re-run.
    let rows = sqlx::query(
        "SELECT key, array_agg(generation ORDER BY at) AS gens FROM attempts
          WHERE key LIKE 'crashy:%' GROUP BY key",
    )
    .fetch_all(&setup)
    .await
    .unwrap();
    let mut rerun_per_generation = std::collections::HashMap::<i32, u64>::new();
    for row in &rows {
        let key: String = row.get("key");
        let gens: Vec<i32> = row.get("gens");
        for pair in gens.windows(2) {
            assert!(
                pair[0] < pair[1],
                "task {key} ran twice in process {} (generations {gens:?})",
                pair[0]
            );
            *rerun_per_generation.entry(pair[0]).or_default() += 1;
        }
    }
    for (generation, reruns) in &rerun_per_generation {
        assert!(
            *reruns <= FAN_OUT,
            "process {generation} left {reruns} tasks to re-run; at most {FAN_OUT} were in flight"
        );
    }
    let reruns: u64 = rerun_per_generation.values().sum();
    eprintln!(
        "{} tasks, {} re-run after a kill, {} side effects",
        ROUNDS * FAN_OUT,
        reruns,
        effects
    );
}
