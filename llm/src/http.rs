//! HTTP for the adapters: timeouts, response size limits, error classification and
//! server-sent events.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;

use super::secret::scrub;
use super::{ApiKey, ErrorKind, LlmError, ProviderConfig};

const BODY_KEPT: usize = 64 << 10;

#[derive(Clone, Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    first_byte: Duration,
    total: Duration,
    max_bytes: usize,
}

/// One server-sent event: its `event:` name (empty when absent) and `data:`.
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

pub(crate) type SseStream =
    std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<SseEvent, LlmError>> + Send>>;

/// A `reqwest` client builder with TLS ready. reqwest is built without its bundled crypto
/// provider (aws-lc, a long C build on two cores); rustls runs on ring, which the Postgres
/// driver already brings, and this installs it before the first client is built.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is already installed, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

impl Http {
    pub(crate) fn new(config: &ProviderConfig) -> Result<Self, LlmError> {
        let client = client_builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                LlmError::new(
                    ErrorKind::Permanent,
                    "http",
                    format!("cannot build a client: {e}"),
                )
            })?;
        Ok(Http {
            client,
            first_byte: config.first_byte_timeout,
            total: config.total_timeout,
            max_bytes: config.max_response_bytes,
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request and waits for the response headers; errors are classified.
    async fn send(
        &self,
        provider: &str,
        request: reqwest::RequestBuilder,
        key: Option<&ApiKey>,
    ) -> Result<reqwest::Response, LlmError> {
        let request = request
            .build()
            .map_err(|e| transport_error(provider, &e, key))?;
        self.execute(provider, request, key).await
    }

    /// Sends a built request and waits for the response headers. A failed status becomes a
    /// classified error keeping the status, `Retry-After` and the (scrubbed) body.
    pub(crate) async fn execute(
        &self,
        provider: &str,
        mut request: reqwest::Request,
        key: Option<&ApiKey>,
    ) -> Result<reqwest::Response, LlmError> {
        crate::trace::outgoing(request.headers_mut());
        // Without the query, which may hold a key.
        let mut url = request.url().clone();
        url.set_query(None);
        let response = tokio::time::timeout(self.first_byte, self.client.execute(request))
            .await
            .map_err(|_| {
                LlmError::new(
                    ErrorKind::Transient,
                    provider,
                    format!("{SILENCE} {:?}", self.first_byte),
                )
            })?
            .map_err(|e| transport_error(provider, &e, key))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = self
            .read_body(provider, response, key)
            .await
            .unwrap_or_default();
        let mut error = classify(provider, status.as_u16(), &body, retry_after, key);
        if status.as_u16() == 404 {
            error.message = format!(
                "{}: nothing at {url}; check the model name and the provider's base URL variable",
                error.message
            );
        }
        Err(error)
    }

    async fn read_body(
        &self,
        provider: &str,
        response: reqwest::Response,
        key: Option<&ApiKey>,
    ) -> Result<String, LlmError> {
        let mut bytes = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| transport_error(provider, &e, key))?;
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(LlmError::new(
                    ErrorKind::Permanent,
                    provider,
                    format!("response larger than {} bytes", self.max_bytes),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(scrub(&String::from_utf8_lossy(&bytes), key))
    }

    /// The same response with its body read under the size limit and the key scrubbed
    /// from it, for a reader (like `async-openai`'s client) that reads a body whole and
    /// may log it when it does not parse.
    pub(crate) async fn buffered(
        &self,
        provider: &str,
        response: reqwest::Response,
        key: Option<&ApiKey>,
    ) -> Result<reqwest::Response, LlmError> {
        let (status, version) = (response.status(), response.version());
        let headers = response.headers().clone();
        let body = self.read_body(provider, response, key).await?;
        let mut buffered = http::Response::new(body);
        *buffered.status_mut() = status;
        *buffered.version_mut() = version;
        *buffered.headers_mut() = headers;
        Ok(reqwest::Response::from(buffered))
    }

    /// The same response, with every occurrence of `key` in its body replaced by `***` as
    /// the bytes stream by (an occurrence split across chunks included), for a reader that
    /// takes the body as it comes (`async-openai`'s event streams, which log an event that
    /// does not parse).
    pub(crate) fn scrubbed(response: reqwest::Response, key: &ApiKey) -> reqwest::Response {
        let (status, version) = (response.status(), response.version());
        let headers = response.headers().clone();
        let scrubber = Scrubber {
            key: key.expose().as_bytes().to_vec(),
            carry: Vec::new(),
        };
        let body = futures_util::stream::unfold(
            (response.bytes_stream(), Some(scrubber)),
            |(mut chunks, scrubber)| async move {
                let mut scrubber = scrubber?;
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let out = scrubber.push(&chunk);
                        Some((Ok(out), (chunks, Some(scrubber))))
                    }
                    Some(Err(e)) => Some((Err(e), (chunks, None))),
                    None => Some((Ok(scrubber.finish()), (chunks, None))),
                }
            },
        );
        let mut scrubbed = http::Response::new(reqwest::Body::wrap_stream(body));
        *scrubbed.status_mut() = status;
        *scrubbed.version_mut() = version;
        *scrubbed.headers_mut() = headers;
        reqwest::Response::from(scrubbed)
    }

    /// POSTs and parses a JSON reply. A body that is not JSON is an error that keeps it.
    pub(crate) async fn json(
        &self,
        provider: &str,
        request: reqwest::RequestBuilder,
        key: Option<&ApiKey>,
    ) -> Result<Value, LlmError> {
        self.in_time(provider, async {
            let response = self.send(provider, request, key).await?;
            let body = self.read_body(provider, response, key).await?;
            serde_json::from_str::<Value>(&body).map_err(|e| {
                LlmError::unreadable(provider, format!("the reply is not JSON: {e}"), &body)
            })
        })
        .await
    }

    /// Runs a whole call under the total timeout.
    pub(crate) async fn in_time<T>(
        &self,
        provider: &str,
        call: impl Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        tokio::time::timeout(self.total, call).await.map_err(|_| {
            LlmError::new(
                ErrorKind::Transient,
                provider,
                format!("no complete reply within {:?}", self.total),
            )
        })?
    }

    /// The limits on a stream starting now.
    pub(crate) fn stream_budget(&self, provider: &str) -> StreamBudget {
        StreamBudget {
            provider: provider.to_string(),
            idle: self.first_byte,
            deadline: tokio::time::Instant::now() + self.total,
            max_bytes: self.max_bytes,
            seen: 0,
        }
    }

    /// POSTs and returns the reply's server-sent events. Each event must arrive within the
    /// first-byte timeout of the one before.
    pub(crate) async fn sse(
        &self,
        provider: &str,
        request: reqwest::RequestBuilder,
        key: Option<&ApiKey>,
    ) -> Result<SseStream, LlmError> {
        let response = self.send(provider, request, key).await?;
        let mut budget = self.stream_budget(provider);
        let key = key.cloned();
        let mut events = response.bytes_stream().eventsource();
        let stream = async_stream(move |tx| async move {
            loop {
                let item = match budget.next(&mut events).await {
                    Err(stalled) => Err(stalled),
                    Ok(None) => return,
                    Ok(Some(Ok(event))) => budget.count(event.data.len()).map(|()| SseEvent {
                        event: event.event,
                        data: event.data,
                    }),
                    Ok(Some(Err(e))) => Err(LlmError::new(
                        ErrorKind::Transient,
                        &budget.provider,
                        scrub(&format!("the stream broke: {e}"), key.as_ref()),
                    )),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(stream)
    }
}

/// Replaces a key in a byte stream. What could be the start of a key split across chunks
/// is held back until the next chunk shows whether it is.
struct Scrubber {
    key: Vec<u8>,
    carry: Vec<u8>,
}

impl Scrubber {
    /// The bytes of `chunk` (and those held back) that can be passed on.
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(chunk);
        self.replace();
        let hold = self.key.len().saturating_sub(1).min(self.carry.len());
        let rest = self.carry.split_off(self.carry.len() - hold);
        std::mem::replace(&mut self.carry, rest)
    }

    /// The bytes held back, at the end of the stream.
    fn finish(&mut self) -> Vec<u8> {
        self.replace();
        std::mem::take(&mut self.carry)
    }

    fn replace(&mut self) {
        // As `scrub`: a key this short would match by chance.
        if self.key.len() < 4 || memchr::memmem::find(&self.carry, &self.key).is_none() {
            return;
        }
        let mut out = Vec::with_capacity(self.carry.len());
        let mut rest = self.carry.as_slice();
        while let Some(at) = memchr::memmem::find(rest, &self.key) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(b"***");
            rest = &rest[at + self.key.len()..];
        }
        out.extend_from_slice(rest);
        self.carry = out;
    }
}

/// Limits on a streamed reply: each event within the first-byte timeout of the one
/// before, the whole within the total timeout, and the size limit on the events' data.
pub(crate) struct StreamBudget {
    provider: String,
    idle: Duration,
    deadline: tokio::time::Instant,
    max_bytes: usize,
    seen: usize,
}

impl StreamBudget {
    /// The stream's next item, or an error when it does not come in time.
    pub(crate) async fn next<S: futures_core::Stream + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<Option<S::Item>, LlmError> {
        let until = self.deadline.min(tokio::time::Instant::now() + self.idle);
        tokio::time::timeout_at(until, stream.next())
            .await
            .map_err(|_| {
                LlmError::new(
                    ErrorKind::Transient,
                    &self.provider,
                    "the stream stalled (timeout)",
                )
            })
    }

    /// Counts an event's bytes against the size limit.
    pub(crate) fn count(&mut self, bytes: usize) -> Result<(), LlmError> {
        self.seen += bytes;
        if self.seen > self.max_bytes {
            return Err(LlmError::new(
                ErrorKind::Permanent,
                &self.provider,
                format!("streamed response larger than {} bytes", self.max_bytes),
            ));
        }
        Ok(())
    }
}

impl SseEvent {
    /// The event's data as JSON; an unreadable event is an error that keeps it.
    pub(crate) fn json(&self, provider: &str) -> Result<Value, LlmError> {
        serde_json::from_str(&self.data).map_err(|e| {
            let name = if self.event.is_empty() {
                ""
            } else {
                self.event.as_str()
            };
            LlmError::unreadable(
                provider,
                format!("unreadable stream event {name}: {e}"),
                &self.data,
            )
        })
    }
}

/// Runs `body` on a task that sends items into a channel, seen as a stream.
pub(crate) fn async_stream<T, F, Fut>(
    body: F,
) -> std::pin::Pin<Box<dyn futures_core::Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(body(tx));
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        let polled = rx.poll_recv(cx);
        if let std::task::Poll::Ready(None) = polled {
            task.abort();
        }
        polled
    }))
}

/// `body` cut to a length fit for an error message, on a character boundary.
pub fn cut(body: &str) -> String {
    if body.len() <= BODY_KEPT {
        return body.to_string();
    }
    let mut end = BODY_KEPT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_string()
}

pub(crate) fn transport_error(
    provider: &str,
    e: &reqwest::Error,
    key: Option<&ApiKey>,
) -> LlmError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    LlmError::new(
        ErrorKind::Transient,
        provider,
        scrub(&format!("{what}: {e}"), key),
    )
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// Turns an HTTP error status and body into a classified error.
/// How a first-byte timeout's message begins (see [`LlmError::is_silence`]).
pub(crate) const SILENCE: &str = "no response within";

pub(crate) fn classify(
    provider: &str,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
    key: Option<&ApiKey>,
) -> LlmError {
    let body = scrub(body, key);
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| match status {
            404 => "not found".to_string(),
            _ => "the server refused the request".to_string(),
        });
    let lower = body.to_ascii_lowercase();
    let too_long = lower.contains("context_length_exceeded")
        || lower.contains("maximum context length")
        || lower.contains("prompt is too long")
        || lower.contains("too many tokens")
        || lower.contains("exceeds the context window");
    let kind = match status {
        429 => ErrorKind::RateLimited,
        401 | 403 => ErrorKind::Auth,
        413 => ErrorKind::ContextTooLong,
        400 | 404 | 422 if too_long => ErrorKind::ContextTooLong,
        400 | 404 | 422 => ErrorKind::InvalidRequest,
        408 | 409 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    LlmError {
        kind,
        provider: provider.to_string(),
        message,
        status: Some(status),
        body: Some(cut(&body)),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_scrubbed_even_when_split_across_chunks() {
        let mut s = Scrubber {
            key: b"sk-secret-123".to_vec(),
            carry: Vec::new(),
        };
        let mut out = Vec::new();
        for chunk in [
            &b"data: {\"error\": \"bad key sk-sec"[..],
            b"ret-123 and again sk-secret-123",
            b"\"}\n\nda",
            b"ta: [DONE]\n\n",
        ] {
            out.extend(s.push(chunk));
        }
        out.extend(s.finish());
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "data: {\"error\": \"bad key *** and again ***\"}\n\ndata: [DONE]\n\n"
        );
    }
}
