//! `brainops chat` against a real OpenAI-compatible server that no one here wrote:
//! llama.cpp's own `llama-server` (built by `scripts/llama-server.sh`) serving the same
//! SmolLM2 GGUF as the local model. Plain, streamed and schema-constrained replies.
//!
//! Needs `BRAINOPS_LLAMA_SERVER` (the binary; `scripts/test.sh` sets it) and the local
//! model (`BRAINOPS_LOCAL_MODEL`, as `scripts/local-model.sh` prints).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// The server process, stopped when the test ends however it ends.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn required_path(var: &str, default: Option<PathBuf>, how: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .or(default)
        .unwrap_or_else(|| panic!("{var} is not set: {how}"));
    assert!(
        path.exists(),
        "{var}={} does not exist: {how}",
        path.display()
    );
    path
}

fn start_server() -> Server {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let bin = required_path(
        "BRAINOPS_LLAMA_SERVER",
        home.as_ref()
            .map(|h| h.join(".cache/brainops/llama-server/build/bin/llama-server")),
        "run `eval \"$(scripts/llama-server.sh)\"`",
    );
    let model = required_path(
        "BRAINOPS_LOCAL_MODEL",
        None,
        "run `eval \"$(scripts/local-model.sh)\"`",
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-m".as_ref(), model.as_os_str()])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-c", "2048", "-t", "2", "--alias", "smollm2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}/v1"),
    };
    // Ready when /health answers 200 (it loads the model first).
    let started = Instant::now();
    loop {
        if healthy(port) {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "llama-server did not become ready"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `GET /health` answers 200.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.ends_with(b" 200")
}

fn chat(server: &Server, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let model = format!("openai-compat:{}#smollm2", server.base);
    let mut all = vec!["chat", "--model", model.as_str(), "--max-tokens", "60"];
    all.extend_from_slice(args);
    common::brainops(home.path(), &all)
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plain_streamed_and_schema_replies_from_llama_server() {
    let server = start_server();

    let plain = stdout(&chat(&server, &["Say hello to a roofing customer."]));
    assert!(!plain.trim().is_empty());

    let streamed = stdout(&chat(
        &server,
        &["--stream", "Say hello to a roofing customer."],
    ));
    assert!(!streamed.trim().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("triage.schema.json");
    let schema = serde_json::json!({
        "type": "object",
        "required": ["priority", "callback"],
        "additionalProperties": false,
        "properties": {
            "priority": {"type": "string", "enum": ["low", "normal", "urgent"]},
            "callback": {"type": "boolean"}
        }
    });
    std::fs::write(&schema_path, schema.to_string()).unwrap();
    let answer = stdout(&chat(
        &server,
        &[
            "--schema",
            schema_path.to_str().unwrap(),
            "A customer reports water coming through the ceiling during a storm. Triage it.",
        ],
    ));
    let value: Value =
        serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&value), "{value} breaks the schema");
}
