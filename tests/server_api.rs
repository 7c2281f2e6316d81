//! The agent server in-process (`brainops::server::serve_until`): its runs table on SQLite
//! and on Postgres across a restart, and error answers that name the field. The black-box
//! suite with LangGraph's own clients is tests/server/*.py (scripts/server-tests.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::net::SocketAddr;
use std::path::Path;

use brainops::Engine;
use brainops::server::{ServeOptions, serve_until};
use serde_json::{Value, json};
use tokio::sync::oneshot;

struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}

async fn start(checkpoint: &str) -> Running {
    let graphs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server/graphs");
    let engine = Engine::builder()
        .graph_file(graphs.join("simple.toml"))
        .graph_file(graphs.join("hitl.toml"))
        .checkpointer(checkpoint)
        .build()
        .await
        .unwrap();
    let options = ServeOptions {
        port: 0,
        checkpoint: checkpoint.into(),
        ..Default::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<SocketAddr>();
    let task = tokio::spawn(async move {
        serve_until(
            engine,
            options,
            move |addr| {
                let _ = ready_tx.send(addr);
            },
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
    let addr = ready_rx.await.unwrap();
    Running {
        url: format!("http://{addr}"),
        stop: Some(stop),
        task,
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = brainops::agents::llm::http_client_builder()
        .build()
        .unwrap()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(text.trim()).unwrap_or(Value::Null),
    )
}

async fn get(url: &str) -> (u16, Value) {
    let r = brainops::agents::llm::http_client_builder()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Runs, threads and a delayed pending run, stopped and picked up by the next server on
/// the same store.
async fn runs_survive_a_restart(checkpoint: &str) {
    let server = start(checkpoint).await;
    let (_, thread) = post(
        &format!("{}/threads", server.url),
        json!({"metadata": {"k": 1}}),
    )
    .await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let (status, done) = post(
        &format!("{}/threads/{tid}/runs/wait", server.url),
        json!({"assistant_id": "simple", "input": {"n": 0}}),
    )
    .await;
    assert_eq!((status, done), (200, json!({"log": ["a", "b"], "n": 1})));
    // A run that starts in a second: still pending when this server stops.
    let (status, pending) = post(
        &format!("{}/threads/{tid}/runs", server.url),
        json!({"assistant_id": "simple", "input": {"n": 10}, "after_seconds": 1}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(pending["status"], "pending");
    let rid = pending["run_id"].as_str().unwrap().to_string();
    server.stop().await;

    let again = start(checkpoint).await;
    let (status, joined) = get(&format!("{}/threads/{tid}/runs/{rid}/join", again.url)).await;
    assert_eq!(status, 200);
    assert_eq!(joined, json!({"log": ["a", "b", "a", "b"], "n": 11}));
    let (_, runs) = get(&format!("{}/threads/{tid}/runs", again.url)).await;
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["success", "success"]);
    assert_eq!(runs[0]["run_id"], json!(rid), "newest first");
    let (_, thread) = get(&format!("{}/threads/{tid}", again.url)).await;
    assert_eq!(thread["status"], "idle");
    assert_eq!(thread["metadata"]["k"], 1);
    assert_eq!(thread["metadata"]["graph_id"], "simple");
    assert_eq!(thread["values"]["n"], 11);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_table_survives_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("threads.db").display());
    runs_survive_a_restart(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_table_survives_a_restart_on_postgres_through_the_pooler() {
    let db = pg::fresh_database().await;
    let url = pg::with_database(&pg::pooler_url(), &db);
    runs_survive_a_restart(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_reference_status_and_name_the_field() {
    let server = start("memory").await;
    let u = &server.url;
    let cases = [
        (
            format!("{u}/runs/wait"),
            json!({"input": {}}),
            422,
            "assistant_id: required",
        ),
        (
            format!("{u}/runs/wait"),
            json!({"assistant_id": 7}),
            422,
            "assistant_id: expected a string",
        ),
        (
            format!("{u}/runs/wait"),
            json!({"assistant_id": "simple", "multitask_strategy": "later"}),
            422,
            "multitask_strategy: `later` is not one of",
        ),
        (
            format!("{u}/runs/wait"),
            json!({"assistant_id": "simple", "after_seconds": -1}),
            422,
            "after_seconds",
        ),
        (
            format!("{u}/runs/wait"),
            json!({"assistant_id": "hitl", "command": {"resume": 1}}),
            400,
            "You must provide a thread_id when resuming.",
        ),
        (
            format!("{u}/runs/wait"),
            json!({"assistant_id": "simple", "command": {"goto": 5}}),
            422,
            "command.goto: expected a node name or a Send",
        ),
        (
            format!("{u}/threads/{}/runs/wait", uuid::Uuid::new_v4()),
            json!({"assistant_id": "simple"}),
            404,
            "not found",
        ),
        (
            format!("{u}/threads"),
            json!({"thread_id": "abc"}),
            422,
            "Invalid thread ID: must be a UUID",
        ),
        (
            format!("{u}/threads"),
            json!({"metadata": []}),
            422,
            "metadata: expected an object",
        ),
        (
            format!("{u}/store/items/search"),
            json!({"namespace_prefix": ["a.b"]}),
            422,
            "namespace_prefix",
        ),
    ];
    for (url, body, status, detail) in cases {
        let (got, answer) = post(&url, body.clone()).await;
        assert_eq!(got, status, "{url} {body}: {answer}");
        let text = answer["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{url} {body}: {text}");
    }
    // Nothing was half-written: no thread appeared from the refused requests.
    let (_, threads) = post(&format!("{u}/threads/search"), json!({})).await;
    assert_eq!(threads, json!([]));
    let (status, missing) = get(&format!("{u}/nowhere")).await;
    assert_eq!((status, missing), (404, json!({"detail": "Not Found"})));
    server.stop().await;
}
