//! Postgres restarts while a run is checkpointing: the run retries its connection and
//! finishes with the same state and the same line of checkpoints as an undisturbed run.
//!
//! This restarts the shared test server, so it lives in its own test binary (cargo runs
//! test binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pg as db;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use engine::PostgresSaver;
use engine::checkpoint::Checkpointer;
use engine::{Registry, RunRequest, RunStatus, Runner, loader, node_fn};
use serde_json::json;

const GRAPH: &str = r#"
[graph]
name = "slow_loop"
recursion_limit = 400

[state]
i   = { type = "integer", default = 0 }
log = { type = "array", reducer = "append", default = [] }

[nodes.step]
tool = "test.slow"
args = { i = "state.i" }

[[edges]]
from = "START"
to = "step"

[[edges]]
from = "step"
to = "step"
when = "state.i < 60"

[[edges]]
from = "step"
to = "END"
default = true
"#;

fn runner(saver: Arc<dyn Checkpointer>) -> Runner {
    let mut registry = Registry::new();
    registry.register_tool(
        "test.slow",
        node_fn(|input, _ctx| {
            // Blocking on purpose: the step takes a while, so the restart lands mid-run.
            std::thread::sleep(Duration::from_millis(25));
            let i = input["i"].as_i64().unwrap_or(0);
            Ok(json!({"i": i + 1, "log": [i]}))
        }),
    );
    let graph = loader::load_str(GRAPH, "slow_loop.toml", &registry).unwrap();
    Runner::new(Arc::new(graph)).with_checkpointer(saver)
}

/// Restarts the server `scripts/postgres.sh` started (as the `postgres` user when root).
fn restart_postgres() {
    let root =
        std::env::var("BRAINOPS_PG_ROOT").unwrap_or_else(|_| "/var/tmp/brainops-postgres".into());
    let pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl";
    let data = format!("{root}/data");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", pg_ctl]);
        c
    } else {
        Command::new(pg_ctl)
    };
    // `-l`: the restarted server must not inherit this process's stdout, or whoever reads
    // the test's output would wait for the server to exit.
    let log = format!("{root}/postgres.log");
    let status = cmd
        .args(["-D", &data, "-l", &log, "-m", "fast", "-w", "-s", "restart"])
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl restart failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_rides_out_a_server_restart() {
    let db = db::fresh_database().await;
    let url = db::with_database(&db::admin_url(), &db);
    let saver: Arc<dyn Checkpointer> = Arc::new(PostgresSaver::connect(&url).await.unwrap());

    let reference = runner(Arc::clone(&saver))
        .invoke(RunRequest::new().thread("reference").input(json!({})))
        .await;
    assert_eq!(reference.status, RunStatus::Done);

    let run = {
        let runner = runner(Arc::clone(&saver));
        tokio::spawn(async move {
            runner
                .invoke(RunRequest::new().thread("restarted").input(json!({})))
                .await
        })
    };
    // Let it get going, then restart the server under it.
    let mut waited = 0;
    while saver.list("restarted").await.unwrap().len() < 10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 500, "the run never started checkpointing");
    }
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    let after_restart = saver.list("restarted").await.unwrap().len();
    let total = saver.list("reference").await.unwrap().len();
    assert!(
        after_restart < total,
        "the restart should land mid-run ({after_restart} of {total} checkpoints were written)"
    );
    let done = run.await.unwrap();
    assert_eq!(done.status, RunStatus::Done, "{:?}", done.error);
    assert_eq!(done.state, reference.state);

    let shape = |list: Vec<engine::checkpoint::CheckpointSummary>| {
        list.into_iter()
            .map(|c| (c.checkpoint_id, c.parent, c.step, c.nodes))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(saver.list("restarted").await.unwrap()),
        shape(saver.list("reference").await.unwrap())
    );
    let info = saver.thread("restarted").await.unwrap().unwrap();
    assert_eq!(info.status, engine::ThreadStatus::Done);
}
