//! The `brainops` command line contract: exit codes, stdout JSON, stderr diagnostics, and
//! threads that survive between invocations (each invocation is a new process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use serde_json::Value;

mod common;

use common::brainops;

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(last).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

const LEAD: &str = r#"{"lead": {"name": "Ada", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}}"#;

#[test]
fn validate_accepts_the_shipped_graphs_and_rejects_bad_files() {
    let home = tempfile::tempdir().unwrap();
    let ok = brainops(home.path(), &["validate", "graphs/lead_intake.toml"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, "[graph]\nname = \"b\"\n[nodes.a]\nset = { x = \"1\" }\ntimeout = 3\n[[edges]]\nfrom = \"START\"\nto = \"a\"\n").unwrap();
    let out = brainops(home.path(), &["validate", bad.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:3:8: error: node `a` has no outgoing edge")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:4:9: error: node `a` writes `x`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:5:1: error: unknown key `timeout` in node `a`"
        )),
        "{stderr}"
    );
}

#[test]
fn run_interrupt_and_resume_from_a_new_process() {
    let home = tempfile::tempdir().unwrap();
    let first = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--thread",
            "lead-1",
            "--input",
            LEAD,
        ],
    );
    assert_eq!(first.status.code(), Some(0));
    let v = stdout_json(&first);
    assert_eq!(v["status"], "interrupted");
    assert_eq!(v["thread_id"], "lead-1");
    assert_eq!(v["interrupt"]["node"], "approve");
    assert!(
        v["interrupt"]["value"]
            .as_str()
            .unwrap()
            .contains("Approve")
    );
    assert_eq!(v["state"]["estimate"]["bundles"], 74.0);

    let second = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--thread",
            "lead-1",
            "--resume",
            "\"approve\"",
        ],
    );
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let v = stdout_json(&second);
    assert_eq!(v["status"], "done");
    assert_eq!(v["state"]["proposal"]["to"], "Ada");

    let list = stdout_json(&brainops(home.path(), &["threads", "list"]));
    assert_eq!(list[0]["thread_id"], "lead-1");
    assert_eq!(list[0]["status"], "done");

    let history = stdout_json(&brainops(home.path(), &["threads", "history", "lead-1"]));
    let checkpoints = history.as_array().unwrap();
    assert_eq!(checkpoints.len(), 5, "input + four super-steps");
    assert_eq!(checkpoints[2]["next"][0], "approve");

    let fork = brainops(
        home.path(),
        &[
            "threads",
            "fork",
            "lead-1",
            "--at",
            "2",
            "--graph",
            "graphs/lead_intake.toml",
            "--new-thread",
            "lead-1b",
        ],
    );
    assert_eq!(
        fork.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fork.stderr)
    );
    let shown = stdout_json(&brainops(
        home.path(),
        &[
            "threads",
            "show",
            "lead-1b",
            "--graph",
            "graphs/lead_intake.toml",
        ],
    ));
    assert_eq!(shown["state"]["next"][0], "approve");
}

#[test]
fn stream_prints_json_lines_with_the_final_object_last() {
    let home = tempfile::tempdir().unwrap();
    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--input",
            LEAD,
            "--stream",
            "--checkpoint",
            "memory",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "run_started");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "node_finished" && l["node"] == "estimate")
    );
    assert_eq!(lines[lines.len() - 2]["event"], "run_finished");
    assert_eq!(lines.last().unwrap()["status"], "interrupted");
}

#[test]
fn failures_exit_non_zero_with_the_error() {
    let home = tempfile::tempdir().unwrap();
    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--input",
            r#"{"lead": {"name": "No area", "pitch": 6, "roof_age_years": 3, "storm_damage": false}}"#,
        ],
    );
    // The graph declares the lead's fields required: refused before any node runs.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the input lacks `lead.area_sqft`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = brainops(
        home.path(),
        &["run", "graphs/lead_intake.toml", "--input", "{lead: 1}"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input:1:2: invalid JSON"));

    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--input",
            r#"{"leed": {}}"#,
        ],
    );
    // Bad input is bad usage: exit 2, the reason on stderr, nothing on stdout.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`leed` is not a declared channel"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let out = brainops(home.path(), &["threads", "list", "--checkpoint", "memory"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a persistent store"));

    let out = brainops(
        home.path(),
        &[
            "run",
            "graphs/lead_intake.toml",
            "--checkpoint",
            "redis://x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`redis://x` is not a store"));
}

/// `--context` is the run's read-only `context`; `--recursion-limit` replaces the graph's.
#[test]
fn a_run_takes_its_context_and_recursion_limit_from_flags() {
    let home = tempfile::tempdir().unwrap();
    let graph = "tests/server/graphs/greet.toml";
    let out = brainops(
        home.path(),
        &[
            "run",
            graph,
            "--checkpoint",
            "memory",
            "--context",
            r#"{"user_name": "Ada"}"#,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["state"]["greeting"], "Hello Ada");

    let out = brainops(
        home.path(),
        &[
            "run",
            graph,
            "--checkpoint",
            "memory",
            "--recursion-limit",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let result = stdout_json(&out);
    assert_eq!(result["status"], "failed");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recursion limit of 3"),
        "{result}"
    );

    for (flag, value, says) in [
        (
            "--context",
            "[1]",
            "--context: expected a JSON object, got array",
        ),
        ("--recursion-limit", "0", "--recursion-limit"),
    ] {
        let out = brainops(
            home.path(),
            &["run", graph, "--checkpoint", "memory", flag, value],
        );
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn graph_draws_mermaid_and_dot() {
    let home = tempfile::tempdir().unwrap();
    let mermaid = brainops(
        home.path(),
        &["graph", "graphs/lead_intake.toml", "--format", "mermaid"],
    );
    let text = String::from_utf8_lossy(&mermaid.stdout);
    assert!(text.starts_with("flowchart TD"));
    assert!(
        text.contains("approve -->|\"state.approval == 'approve'\"| send_proposal"),
        "{text}"
    );
    let dot = brainops(
        home.path(),
        &["graph", "graphs/lead_intake.toml", "--format", "dot"],
    );
    let text = String::from_utf8_lossy(&dot.stdout);
    assert!(text.starts_with("digraph \"lead_intake\""));
    assert!(
        text.contains("\"score_age\" -> \"estimate\" [style=dashed]"),
        "{text}"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["run", "--help"],
        &["threads", "--help"],
        &["graph", "--help"],
    ] {
        let out = brainops(home.path(), args);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}

#[test]
fn parallel_questions_are_answered_together_with_resume_each() {
    let home = tempfile::tempdir().unwrap();
    let graph = home.path().join("two.toml");
    std::fs::write(
        &graph,
        "[graph]\nname = \"two\"\n[state]\na = { type = \"any\" }\nb = { type = \"any\" }\n[nodes.ask_a]\nask = \"A?\"\noutput = \"a\"\n[nodes.ask_b]\nask = \"B?\"\noutput = \"b\"\n[[edges]]\nfrom = \"START\"\nto = \"ask_a\"\n[[edges]]\nfrom = \"START\"\nto = \"ask_b\"\n[[edges]]\nfrom = \"ask_a\"\nto = \"END\"\n[[edges]]\nfrom = \"ask_b\"\nto = \"END\"\n",
    )
    .unwrap();
    let g = graph.to_str().unwrap();
    let first = brainops(home.path(), &["run", g, "--thread", "t2", "--input", "{}"]);
    let v = stdout_json(&first);
    assert_eq!(v["status"], "interrupted");
    assert_eq!(v["interrupt"]["task"], "ask_a");
    assert_eq!(v["interrupt"]["siblings"][0]["task"], "ask_b");
    // One value for two questions is refused with the remedy.
    let one = brainops(
        home.path(),
        &["run", g, "--thread", "t2", "--resume", "\"x\""],
    );
    assert_eq!(one.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&one.stderr).contains("--resume-each"),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let bad = brainops(
        home.path(),
        &["run", g, "--thread", "t2", "--resume-each", "[1]"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected a JSON object of task"));
    let both = brainops(
        home.path(),
        &[
            "run",
            g,
            "--thread",
            "t2",
            "--resume-each",
            r#"{"ask_a": "yes", "ask_b": "no"}"#,
        ],
    );
    let v = stdout_json(&both);
    assert_eq!(v["status"], "done", "{v}");
    assert_eq!(
        (v["state"]["a"].clone(), v["state"]["b"].clone()),
        ("yes".into(), "no".into())
    );
}

#[test]
fn logs_go_to_stderr_as_text_or_json_lines_and_stdout_stays_json() {
    let home = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], thread: &str| {
        let mut cmd = common::command(home.path());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.args([
            "run",
            "graphs/lead_intake.toml",
            "--thread",
            thread,
            "--input",
            LEAD,
        ])
        .output()
        .unwrap()
    };
    // JSON lines on stderr, filtered by RUST_LOG; stdout holds only the result.
    let out = run(
        &[
            ("RUST_LOG", "engine=debug"),
            ("BRAINOPS_LOG_FORMAT", "json"),
        ],
        "logs-1",
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(stdout_json(&out)["status"], "interrupted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run started")
        .unwrap_or_else(|| panic!("no `run started`: {stderr}"));
    assert_eq!(started["level"], "DEBUG");
    assert_eq!(started["fields"]["graph"], "lead_intake");
    assert_eq!(started["fields"]["thread"], "logs-1");
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "run ended" && l["level"] == "INFO"),
        "{stderr}"
    );
    // Text by default; RUST_LOG=info shows the end, not the debug start.
    let out = run(&[("RUST_LOG", "info")], "logs-2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run ended") && stderr.contains("graph=lead_intake"),
        "{stderr}"
    );
    assert!(!stderr.contains("run started"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colours only on a terminal: {stderr}"
    );
    // Without a filter, only warnings and errors: a clean run prints nothing.
    let out = run(&[], "logs-3");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // BRAINOPS_LOG still works when RUST_LOG is not set.
    let out = run(&[("BRAINOPS_LOG", "info")], "logs-4");
    assert!(String::from_utf8_lossy(&out.stderr).contains("run ended"));
    // Bad settings are named, with the remedy, before anything runs.
    let out = run(&[("BRAINOPS_LOG_FORMAT", "xml")], "logs-5");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BRAINOPS_LOG_FORMAT: `xml` is not a log format"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`text` (the default) or `json`"),
        "{stderr}"
    );
    let out = run(&[("RUST_LOG", "engine=[")], "logs-6");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: RUST_LOG:"));
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

/// Runs `brainops ARGS` on a pseudo-terminal (util-linux `script`), as a person at a
/// terminal would; answers what the terminal showed (stdout and stderr together).
fn on_a_terminal(home: &std::path::Path, args: &str) -> String {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_brainops"));
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("BRAINOPS_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("BRAINOPS_LOG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run `script` (util-linux): {e}"));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_run_on_a_terminal_shows_a_live_progress_line_and_erases_it() {
    let home = tempfile::tempdir().unwrap();
    let run = "run tests/server/graphs/slow.toml --checkpoint memory --input '{\"seconds\": 0.6}'";
    let shown = on_a_terminal(home.path(), run);
    // Redrawn in place while the node sleeps, with the time so far.
    assert!(
        shown.contains("\r\x1b[2Kstep 1 · running wait · 0."),
        "{shown:?}"
    );
    // Erased before the result, which stays the one JSON line.
    assert!(shown.contains("\r\x1b[2K{\"status\":\"done\""), "{shown:?}");
    // With --stream (JSON events for a program), no line.
    let streamed = on_a_terminal(home.path(), &format!("{run} --stream"));
    assert!(!streamed.contains("running wait"), "{streamed:?}");
    assert!(streamed.contains("\"status\":\"done\""), "{streamed:?}");
}

#[test]
fn validate_warns_of_a_loop_no_edge_leaves_and_still_passes() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("spin.toml");
    std::fs::write(&file, "[graph]\nname = \"spin\"\n[state]\nn = { type = \"integer\", default = 0 }\n[nodes.spin]\nset = { n = \"state.n + 1\" }\n[[edges]]\nfrom = \"START\"\nto = \"spin\"\n[[edges]]\nfrom = \"spin\"\nto = \"spin\"\n").unwrap();
    let out = brainops(home.path(), &["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:5:8: warning: no edge leaves the loop through `spin`",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("help: give the loop a way out"), "{stderr}");
    // The shipped graphs have none.
    let shipped = brainops(home.path(), &["validate", "graphs/lead_intake.toml"]);
    assert!(!String::from_utf8_lossy(&shipped.stderr).contains("warning"));
}
