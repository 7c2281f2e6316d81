//! The CLI on the Postgres checkpoint store: `--checkpoint postgres://...` and
//! `$BRAINOPS_CHECKPOINT`, a direct connection and PgBouncer in transaction mode, the
//! conflict exit status, `--takeover`, retention, and no password in any message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use engine::checkpoint::{Checkpointer, Lease};
use serde_json::Value;

const LEAD: &str = r#"{"lead": {"name": "Ada", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}}"#;

// The engine's per-test database helpers, shared rather than copied.
#[path = "../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod db;

use db::{admin_url, fresh_database, with_database};

mod common;

fn brainops(args: &[&str], store: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = common::command(home.path());
    cmd.args(args);
    if let Some(store) = store {
        cmd.env("BRAINOPS_CHECKPOINT", store);
    }
    cmd.output().unwrap()
}

fn last_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(last).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_resume_and_prune_on_postgres_directly_and_through_the_pooler() {
    let db = fresh_database().await;
    let direct = with_database(&admin_url(), &db);
    let pooled = with_database(&db::pooler_url(), &db);

    let run = brainops(
        &[
            "run",
            "graphs/lead_intake.toml",
            "--checkpoint",
            &direct,
            "--thread",
            "lead-pg",
            "--input",
            LEAD,
        ],
        None,
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(last_json(&run)["status"], "interrupted");

    // A second process, through PgBouncer, answers the question; `$BRAINOPS_CHECKPOINT`
    // makes Postgres the default store.
    let resumed = brainops(
        &[
            "run",
            "graphs/lead_intake.toml",
            "--thread",
            "lead-pg",
            "--resume",
            "\"approve\"",
            "--keep",
            "2",
        ],
        Some(&pooled),
    );
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let out = last_json(&resumed);
    assert_eq!(out["status"], "done");
    assert_eq!(out["state"]["proposal"]["to"], "Ada");
    assert_eq!(out["pruned_checkpoints"], 3);

    let history = brainops(&["threads", "history", "lead-pg"], Some(&direct));
    let list = last_json(&history);
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["checkpoint_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4]);
    let show = brainops(
        &[
            "threads",
            "show",
            "lead-pg",
            "--graph",
            "graphs/lead_intake.toml",
        ],
        Some(&direct),
    );
    assert_eq!(last_json(&show)["state"]["values"]["proposal"]["to"], "Ada");

    let expire = brainops(&["threads", "expire", "--older-than", "0s"], Some(&direct));
    assert_eq!(
        last_json(&expire)["expired"],
        serde_json::json!(["lead-pg"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_held_by_a_live_run_is_a_conflict_unless_taken_over() {
    let db = fresh_database().await;
    let url = with_database(&admin_url(), &db);
    let saver = engine::PostgresSaver::connect(&url).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let elsewhere = Lease {
        owner: "worker-7/4242/0123abcd".into(),
        until_ms: now + 600_000,
    };
    saver
        .claim("busy", "lead_intake", None, &elsewhere)
        .await
        .unwrap();

    let args = [
        "run",
        "graphs/lead_intake.toml",
        "--checkpoint",
        &url,
        "--thread",
        "busy",
        "--input",
        LEAD,
    ];
    let refused = brainops(&args, None);
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("being advanced by another run"), "{stderr}");
    assert!(stderr.contains("worker-7/4242"), "{stderr}");
    assert!(stderr.contains("--takeover"), "{stderr}");
    assert!(
        saver.list("busy").await.unwrap().is_empty(),
        "the refused run wrote nothing"
    );

    let mut takeover = args.to_vec();
    takeover.push("--takeover");
    let out = brainops(&takeover, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json(&out)["status"], "interrupted");
    assert_eq!(saver.thread("busy").await.unwrap().unwrap().lease, None);
}

#[test]
fn a_bad_postgres_url_is_reported_without_its_password() {
    let out = brainops(
        &[
            "run",
            "graphs/lead_intake.toml",
            "--checkpoint",
            "postgres://app:hunter2-secret@127.0.0.1:9/nowhere",
            "--input",
            "{}",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgres://app:***@127.0.0.1:9/nowhere"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/postgres.sh"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
