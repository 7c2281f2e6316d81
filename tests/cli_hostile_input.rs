//! What a hostile tester found in the CLI, each pinned: a closed stdout, empty store paths,
//! subgraph threads, a thread run with another graph, bad input's exit status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;

mod common;

use common::brainops;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}; stderr: {}", stderr(out)))
}

const COUNTER: &str = r#"
[graph]
name = "counter"
[state]
count = { type = "integer", default = 0 }
[nodes.bump]
set = { count = "state.count + 1" }
[[edges]]
from = "START"
to = "bump"
[[edges]]
from = "bump"
to = "END"
"#;

const ASK: &str = r#"
[graph]
name = "askg"
[state]
answer = { type = "string" }
[nodes.approve]
ask = "Go?"
output = "answer"
[[edges]]
from = "START"
to = "approve"
[[edges]]
from = "approve"
to = "END"
"#;

const OTHER_ASK: &str = r#"
[graph]
name = "other"
[state]
answer = { type = "string" }
[nodes.approve]
ask = "Something else?"
output = "answer"
[[edges]]
from = "START"
to = "approve"
[[edges]]
from = "approve"
to = "END"
"#;

const PARENT: &str = r#"
[graph]
name = "parent"
[state]
count = { type = "integer", default = 0 }
[nodes.sub]
graph = "counter.toml"
[[edges]]
from = "START"
to = "sub"
[[edges]]
from = "sub"
to = "END"
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A stream far larger than a pipe's buffer, so writing must hit the closed pipe.
    let spin = write(
        dir.path(),
        "spin.toml",
        &COUNTER
            .replace("name = \"counter\"", "name = \"spin\"\nrecursion_limit = 5000")
            .replace(
                "from = \"bump\"\nto = \"END\"",
                "from = \"bump\"\nto = \"bump\"\nwhen = \"state.count < 3000\"\n[[edges]]\nfrom = \"bump\"\nto = \"END\"\nwhen = \"state.count >= 3000\"",
            ),
    );
    let mut child = common::command(home.path())
        .args(["run", &spin, "--stream", "--checkpoint", "memory"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe, as `| head -c1` would.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn empty_store_paths_are_refused_instead_of_keeping_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let graph = write(dir.path(), "counter.toml", COUNTER);
    let out = brainops(home.path(), &["run", &graph, "--checkpoint", "sqlite:"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("path is empty"), "{}", stderr(&out));

    let out = common::command(home.path())
        .env("BRAINOPS_CHECKPOINT", "sqlite:")
        .args(["run", &graph])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = brainops(
        home.path(),
        &[
            "memory",
            "put",
            "--store",
            "",
            "--namespace",
            "tenant:a",
            "--key",
            "k",
            "--value",
            r#"{"text": "x"}"#,
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("path is empty"), "{}", stderr(&out));

    // A file that is not a thread store is named in the error.
    let not_db = write(dir.path(), "notes.txt", &"not a database\n".repeat(100));
    let out = brainops(
        home.path(),
        &["run", &graph, "--checkpoint", &format!("sqlite:{not_db}")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&not_db), "{}", stderr(&out));
}

#[test]
fn deleting_a_thread_deletes_its_subgraph_threads_which_users_cannot_run() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "counter.toml", COUNTER);
    let parent = write(dir.path(), "parent.toml", PARENT);
    let run = |home: &Path| brainops(home, &["run", &parent, "--thread", "p1"]);
    let out = run(home.path());
    assert_eq!(stdout_json(&out)["state"]["count"], 1, "{}", stderr(&out));

    let list = stdout_json(&brainops(home.path(), &["threads", "list"]));
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thread_id"].as_str().unwrap())
        .collect();
    let child = ids
        .iter()
        .find(|id| id.starts_with("p1/"))
        .unwrap_or_else(|| panic!("no subgraph thread in {ids:?}"))
        .to_string();

    // The internal thread cannot be run, resumed or deleted on its own.
    let out = brainops(home.path(), &["run", &parent, "--thread", &child]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("internal thread of a subgraph"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("`p1`"), "{}", stderr(&out));

    let out = brainops(home.path(), &["threads", "delete", "p1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let list = stdout_json(&brainops(home.path(), &["threads", "list"]));
    assert_eq!(list, serde_json::json!([]), "the subgraph thread went too");

    // A new run on the same id starts over: 1, not 2.
    let out = run(home.path());
    assert_eq!(stdout_json(&out)["state"]["count"], 1);

    let out = brainops(home.path(), &["threads", "delete", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no thread `nosuch`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_thread_is_run_only_with_its_own_graph() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ask = write(dir.path(), "ask.toml", ASK);
    let other = write(dir.path(), "other.toml", OTHER_ASK);
    let out = brainops(home.path(), &["run", &ask, "--thread", "r1"]);
    assert_eq!(stdout_json(&out)["status"], "interrupted");

    let out = brainops(
        home.path(),
        &["run", &other, "--thread", "r1", "--resume", "\"yes\""],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to graph `askg`, not `other`"),
        "{}",
        stderr(&out)
    );
    // Nothing changed: the thread still waits, labelled with its graph.
    let list = stdout_json(&brainops(home.path(), &["threads", "list"]));
    assert_eq!(list[0]["graph"], "askg");
    assert_eq!(list[0]["status"], "interrupted");

    // Running it again without an answer asks the same question: exit 0.
    let out = brainops(home.path(), &["run", &ask, "--thread", "r1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = stdout_json(&out);
    assert_eq!(v["status"], "interrupted");
    assert_eq!(v["interrupt"]["value"], "Go?");
}

#[test]
fn bad_input_to_run_is_bad_usage() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ask = write(dir.path(), "ask.toml", ASK);
    let cases: &[(&[&str], &str)] = &[
        (&["--input", "[1,2]"], "must be a JSON object"),
        (&["--input", "{}", "--resume", "1"], "cannot be used with"),
        (
            &["--thread", "", "--input", "{}"],
            "--thread must not be empty",
        ),
        (
            &["--thread", "missing", "--resume", "1"],
            "thread `missing` does not exist",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["run", ask.as_str()];
        all.extend_from_slice(args);
        let out = brainops(home.path(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Resuming a finished thread.
    let out = brainops(home.path(), &["run", &ask, "--thread", "d1"]);
    assert_eq!(stdout_json(&out)["status"], "interrupted");
    let out = brainops(
        home.path(),
        &["run", &ask, "--thread", "d1", "--resume", "\"ok\""],
    );
    assert_eq!(stdout_json(&out)["status"], "done");
    let out = brainops(
        home.path(),
        &["run", &ask, "--thread", "d1", "--resume", "\"again\""],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("status: done"), "{}", stderr(&out));
}

#[test]
fn chat_checks_its_schema_and_temperature_before_any_model_runs() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad_type = write(
        dir.path(),
        "bad.schema.json",
        r#"{"type": "object", "properties": {"a": {"type": "strnig"}}}"#,
    );
    let out = brainops(home.path(), &["chat", "--schema", &bad_type, "hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a valid JSON Schema"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("/properties/a/type"),
        "{}",
        stderr(&out)
    );

    let not_json = write(dir.path(), "broken.json", "{\"type\": ");
    let out = brainops(home.path(), &["chat", "--schema", &not_json, "hi"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.json:"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("takes a file holding a JSON Schema"),
        "{}",
        stderr(&out)
    );

    for t in ["NaN", "inf", "-5", "2.5"] {
        let flag = format!("--temperature={t}");
        let out = brainops(home.path(), &["chat", &flag, "hi"]);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(
            stderr(&out).contains("out of range"),
            "{t}: {}",
            stderr(&out)
        );
    }

    let out = brainops(
        home.path(),
        &["--agent-dir", "/nonexistent/agents", "agents", "list"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn postgres_errors_say_what_the_server_said_not_its_source_line() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let graph = write(dir.path(), "counter.toml", COUNTER);
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into());
    let (base, _) = admin.rsplit_once('/').unwrap();
    let missing = format!("{base}/brainops_no_such_db?password=hunter22");
    let out = brainops(home.path(), &["run", &graph, "--checkpoint", &missing]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("database \"brainops_no_such_db\" does not exist"),
        "{err}"
    );
    assert!(err.contains("SQLSTATE 3D000"), "{err}");
    assert!(!err.contains(" at line "), "{err}");
    assert!(!err.contains("hunter22"), "{err}");
}

#[test]
fn an_input_file_that_is_not_utf8_is_named_at_its_byte() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let graph = write(dir.path(), "counter.toml", COUNTER);
    let input = dir.path().join("input.json");
    std::fs::write(&input, b"{\n  \"count\": \"caf\xe9\"\n}\n").unwrap();
    let at = format!("@{}", input.display());
    let out = brainops(home.path(), &["run", &graph, "--input", &at]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("input.json:2:16: not UTF-8 text (invalid byte at offset 17)"),
        "{err}"
    );
}
