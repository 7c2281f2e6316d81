//! `brainops cron`: create, list, change and delete the crons of a running agent server,
//! through its HTTP API (so the server's auth and every replica see the same crons).

use clap::Subcommand;
use serde_json::{Map, Value, json};

use crate::{Failure, fail};

#[derive(Subcommand)]
pub(crate) enum CronCommand {
    /// Start runs of a graph on a schedule; prints the cron.
    Create {
        /// The graph (assistant) to run.
        #[arg(long)]
        assistant: String,
        /// A cron expression: 5 fields (`*/15 * * * *`), or 6 with seconds first.
        #[arg(long)]
        schedule: String,
        /// Run every tick on this thread (default: a new thread per tick).
        #[arg(long)]
        thread: Option<String>,
        /// The input of each run (JSON object).
        #[arg(long)]
        input: Option<String>,
        /// The schedule's time zone (IANA, e.g. America/Chicago; default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// No runs after this time (RFC 3339).
        #[arg(long)]
        end_time: Option<String>,
        /// When the previous tick's run is still active: skip (default), enqueue or cancel.
        #[arg(long)]
        overlap: Option<String>,
    },
    /// List crons (optionally of one thread) as a JSON array.
    List {
        #[arg(long)]
        thread: Option<String>,
    },
    /// Pause or resume a cron; prints it.
    Enable {
        id: String,
        /// true to run it, false to pause it.
        #[arg(long, action = clap::ArgAction::Set, default_value_t = true)]
        on: bool,
    },
    /// Delete a cron.
    Delete { id: String },
}

/// Runs a cron command against the server at `url` (`BRAINOPS_API_KEY` authenticates).
pub(crate) async fn run(command: CronCommand, url: &str) -> Result<u8, Failure> {
    let url = url.trim_end_matches('/');
    let (method, path, body) = match command {
        CronCommand::Create {
            assistant,
            schedule,
            thread,
            input,
            timezone,
            end_time,
            overlap,
        } => {
            let mut body = Map::new();
            body.insert("assistant_id".into(), json!(assistant));
            body.insert("schedule".into(), json!(schedule));
            if let Some(text) = input {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    fail(format!(
                        "error: --input is not JSON: {e}\n  help: give an object, e.g. --input '{{\"n\": 1}}'"
                    ))
                })?;
                body.insert("input".into(), value);
            }
            for (key, value) in [
                ("timezone", timezone),
                ("end_time", end_time),
                ("overlap", overlap),
            ] {
                if let Some(v) = value {
                    body.insert(key.into(), json!(v));
                }
            }
            let path = match thread {
                Some(t) => format!("/threads/{t}/runs/crons"),
                None => "/runs/crons".into(),
            };
            (reqwest::Method::POST, path, Some(Value::Object(body)))
        }
        CronCommand::List { thread } => {
            let mut body = json!({"limit": 1000});
            if let Some(t) = thread {
                body["thread_id"] = json!(t);
            }
            (
                reqwest::Method::POST,
                "/runs/crons/search".into(),
                Some(body),
            )
        }
        CronCommand::Enable { id, on } => (
            reqwest::Method::PATCH,
            format!("/runs/crons/{id}"),
            Some(json!({ "enabled": on })),
        ),
        CronCommand::Delete { id } => (reqwest::Method::DELETE, format!("/runs/crons/{id}"), None),
    };
    let client = agents::llm::http_client_builder()
        .build()
        .map_err(|e| fail(format!("error: cannot make an HTTP client: {e}")))?;
    let mut request = client.request(method, format!("{url}{path}"));
    if let Ok(key) = std::env::var("BRAINOPS_API_KEY") {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        fail(format!(
            "error: cannot reach the server at {url}: {e}\n  help: start it with `brainops serve`, or give --url"
        ))
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(Value::as_str).map(String::from))
            .unwrap_or(text);
        return Err(Failure {
            message: format!("error: {status}: {detail}"),
            code: if status.is_client_error() { 2 } else { 1 },
        });
    }
    if !text.is_empty() {
        outln!("{text}");
    }
    Ok(0)
}
