//! Webhooks: when a run with `webhook` ends, its row, status, times, values and error are
//! POSTed to the URL, retried with backoff on failure.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::{Value, json};

use super::App;
use super::api::run_json;
use super::control::{RunRow, RunState};
use super::wire::{iso, now_ms};

/// Attempts per webhook (the first and the retries).
const ATTEMPTS: usize = 4;

/// Sends the webhook in the background; failures are logged, never raised.
pub(crate) fn send(
    app: &Arc<App>,
    url: &str,
    row: &RunRow,
    status: RunState,
    started_ms: u64,
    values: Option<Value>,
    error: Option<Value>,
) {
    // A path is a call to this server itself, as the reference server does.
    let url = match (url.starts_with('/'), app.addr.get()) {
        (true, Some(addr)) => format!("http://{addr}{url}"),
        _ => url.to_string(),
    };
    let mut body = run_json(row);
    if let Some(map) = body.as_object_mut() {
        map.insert("status".into(), json!(status.as_str()));
        map.insert("run_started_at".into(), json!(iso(started_ms)));
        map.insert("run_ended_at".into(), json!(iso(now_ms())));
        map.insert("webhook_sent_at".into(), json!(iso(now_ms())));
        map.insert("values".into(), values.unwrap_or(Value::Null));
        map.insert("error".into(), error.unwrap_or(Value::Null));
    }
    let run_id = row.run_id.clone();
    tokio::spawn(async move {
        let client = match agents::llm::http_client_builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(run = %run_id, "webhook: no HTTP client: {e}");
                return;
            }
        };
        let post = || async {
            client
                .post(&url)
                .json(&body)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(ATTEMPTS - 1)
            .with_jitter();
        if let Err(e) = post.retry(backoff).await {
            // The URL may carry a token: log only the host.
            let host = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(String::from))
                .unwrap_or_default();
            tracing::warn!(run = %run_id, "webhook to {host} failed after {ATTEMPTS} attempts: {}", e.without_url());
        }
    });
}
