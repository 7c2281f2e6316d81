//! Retries and fallbacks around any [`ChatModel`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Capabilities, ChatModel, ChatRequest, ChatResponse, ChatStream, LlmError};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: the provider's `Retry-After` when it gave one
    /// (capped at `max_delay`), else exponential backoff with full jitter.
    pub fn delay(&self, attempt: u32, error: &LlmError) -> Duration {
        if let Some(after) = error.retry_after {
            return after.min(self.max_delay);
        }
        let ceiling = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        ceiling.mul_f64(jitter())
    }
}

/// A number in [0.5, 1.0), different from call to call.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A multiplicative hash spreads consecutive nanosecond readings.
    let h = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    0.5 + (h as f64 / (1u64 << 53) as f64) / 2.0
}

/// Retries rate-limited and transient failures of `inner`.
pub struct Resilient {
    inner: Arc<dyn ChatModel>,
    policy: RetryPolicy,
}

impl Resilient {
    /// Retries `inner` under `policy`.
    pub fn new(inner: Arc<dyn ChatModel>, policy: RetryPolicy) -> Self {
        Resilient { inner, policy }
    }

    async fn retry<T, F, Fut>(&self, call: F) -> Result<T, LlmError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, LlmError>>,
    {
        let mut attempt = 1;
        let mut silences = 0;
        loop {
            match call().await {
                // A server that never answered is tried once more, not for every attempt:
                // four first-byte timeouts in a row kept a caller waiting four minutes.
                Err(e) if e.is_silence() && silences >= 1 => return Err(e),
                Err(e) if e.retryable() && attempt < self.policy.max_attempts => {
                    if e.is_silence() {
                        silences += 1;
                    }
                    let wait = self.policy.delay(attempt, &e);
                    tracing::warn!(model = %self.inner.name(), attempt, "retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl ChatModel for Resilient {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.retry(|| self.inner.complete(request)).await
    }

    /// Retries opening the stream; a stream that breaks midway is reported, not replayed,
    /// since its first part has already been delivered.
    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        self.retry(|| self.inner.stream(request)).await
    }
}

/// Tries each model in turn until one answers.
pub struct Fallback {
    models: Vec<Arc<dyn ChatModel>>,
}

impl Fallback {
    /// Tries each model in order until one answers.
    pub fn new(models: Vec<Arc<dyn ChatModel>>) -> Self {
        Fallback { models }
    }

    async fn each<T, F, Fut>(&self, call: F) -> Result<T, LlmError>
    where
        F: Fn(Arc<dyn ChatModel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, LlmError>>,
    {
        let mut failures = Vec::new();
        for model in &self.models {
            match call(Arc::clone(model)).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!(model = %model.name(), "falling back: {e}");
                    failures.push(e);
                }
            }
        }
        let summary = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        // The summary names each model's own failure; the error as a whole belongs to the
        // chain, not to its last vendor, and carries no status of its own (each is in the
        // summary already).
        Err(match failures.pop() {
            Some(mut last) => {
                last.provider = "fallback".into();
                last.message = format!("every model failed: {summary}");
                last.status = None;
                last
            }
            None => LlmError::new(
                super::ErrorKind::InvalidRequest,
                "fallback",
                "no models given",
            ),
        })
    }
}

#[async_trait]
impl ChatModel for Fallback {
    fn name(&self) -> String {
        self.models
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(" -> ")
    }

    fn capabilities(&self) -> Capabilities {
        self.models.first().map_or(
            Capabilities {
                tools: false,
                parallel_tool_calls: false,
                structured_output: false,
                streaming: false,
            },
            |m| m.capabilities(),
        )
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.each(|m| async move { m.complete(request).await })
            .await
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChatStream, LlmError> {
        self.each(|m| async move { m.stream(request).await }).await
    }
}
