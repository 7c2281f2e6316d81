//! What a process reports about itself: log lines on stderr, traces over OTLP, failures to
//! Sentry, and (in the server) the spans behind `/metrics`. Everything listens to the one
//! stream of `tracing` spans and events the engine, the providers and the server emit
//! (target `brainops`, see `engine::trace`); each consumer has its own filter, so a span
//! nobody wants is never built. Variables and meanings: `docs/observability.md`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, FilterFn, LevelFilter, Targets};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// Target of the events error trackers receive: a node failed after its last attempt, a
/// run failed.
pub const FAILURE_TARGET: &str = "brainops::failure";

/// Whether spans go out over OTLP in this process.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the exporters alive; dropping it sends what is buffered (spans, Sentry events).
#[must_use = "dropping it stops the exporters"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    sentry: Option<sentry::ClientInitGuard>,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporters.
    pub fn shutdown(mut self) {
        self.flush_and_stop();
    }

    fn flush_and_stop(&mut self) {
        if let Some(provider) = self.tracer.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: could not send the last spans: {e}");
        }
        if let Some(guard) = self.sentry.take() {
            guard.flush(Some(std::time::Duration::from_secs(5)));
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

/// Sets up logs, traces and error reports from the environment, plus `extra` (the server's
/// metrics layer). Call once, inside the Tokio runtime.
///
/// - logs: `RUST_LOG`, else `BRAINOPS_LOG`, else `warn`; `BRAINOPS_LOG_FORMAT=text|json`;
/// - traces: `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (with
///   the standard `OTEL_*` variables), filtered by `BRAINOPS_TRACE_FILTER`;
/// - failures and panics: `SENTRY_DSN` (with `SENTRY_ENVIRONMENT`, `SENTRY_RELEASE`).
///
/// A bad setting is an error naming the variable and the remedy.
pub fn init(extra: Option<Box<dyn Layer<Registry> + Send + Sync>>) -> Result<Telemetry, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let directives = |name: &str, value: &str| {
        EnvFilter::builder().parse(value).map_err(|e| {
            format!(
                "{name}: {e}\n  help: give directives such as `info` or `warn,brainops=debug` (https://docs.rs/tracing-subscriber/latest/tracing_subscriber/filter/struct.EnvFilter.html)"
            )
        })
    };
    let json = match var("BRAINOPS_LOG_FORMAT").as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(format!(
                "BRAINOPS_LOG_FORMAT: `{other}` is not a log format\n  help: use `text` (the default) or `json`"
            ));
        }
    };
    let logs = match (var("RUST_LOG"), var("BRAINOPS_LOG")) {
        (Some(d), _) => log_layer(json, directives("RUST_LOG", &d)?),
        (None, Some(d)) => log_layer(json, directives("BRAINOPS_LOG", &d)?),
        // The default is built, not parsed: EnvFilter's parser compiles a regex first,
        // a visible share of a short command's start.
        // Failure reports are for error trackers; on stderr they would repeat the run's result.
        (None, None) => log_layer(
            json,
            Targets::new()
                .with_default(LevelFilter::WARN)
                .with_target(FAILURE_TARGET, LevelFilter::OFF),
        ),
    };
    let mut layers = vec![logs];

    let mut telemetry = Telemetry {
        tracer: None,
        sentry: None,
    };
    if otlp_configured() {
        let filter = directives(
            "BRAINOPS_TRACE_FILTER",
            &var("BRAINOPS_TRACE_FILTER").unwrap_or_else(|| "brainops=info,warn".into()),
        )?;
        let provider = tracer_provider()?;
        let tracer = provider.tracer("brainops");
        layers.push(otel_layer(tracer).with_filter(filter).boxed());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        agents::llm::trace::on_outgoing_request(inject_current);
        EXPORTING.store(true, Ordering::Release);
        telemetry.tracer = Some(provider);
    }
    if let Some(dsn) = var("SENTRY_DSN") {
        telemetry.sentry = Some(sentry_client(&dsn)?);
        layers.push(
            FailureReports
                .with_filter(FilterFn::new(|m| {
                    m.target() == FAILURE_TARGET || (m.is_span() && m.name() == "server.run")
                }))
                .boxed(),
        );
    }
    // The server's step and node metrics need every step; elsewhere, on request.
    engine::trace::trace_expression_steps(
        extra.is_some() || engine::trace::env_flag("BRAINOPS_TRACE_EXPRESSIONS"),
    );
    if let Some(extra) = extra {
        layers.push(extra);
    }
    // A second call (tests that start several servers in one process) keeps the first.
    let _ = tracing::subscriber::set_global_default(Registry::default().with(layers));
    Ok(telemetry)
}

/// Log lines on stderr, as text (colored on a terminal) or JSON lines, through `filter`.
fn log_layer<F>(json: bool, filter: F) -> Box<dyn Layer<Registry> + Send + Sync>
where
    F: Filter<Registry> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    }
}

/// The OpenTelemetry layer as every `brainops` process installs it: spans carry their own
/// attributes only (no thread, source location or busy/idle timings), and a span's parent is
/// the enclosing `tracing` span, so entering a span (every poll of a future) costs nothing.
pub fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::SdkTracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

fn otlp_configured() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true")
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider() -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    // reqwest is built without a bundled crypto provider; this installs ring's.
    let _ = agents::llm::http_client_builder();
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match protocol.trim() {
        "" | "http/protobuf" => {}
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL: `{other}` is not supported\n  help: use `http/protobuf` (the default; collectors, Jaeger and Tempo accept it on port 4318)"
            ));
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| {
            format!(
                "OTEL_EXPORTER_OTLP_ENDPOINT: cannot set up the exporter: {e}\n  help: give the collector's base URL, e.g. http://127.0.0.1:4318"
            )
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "brainops".into()),
        )
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "process.pid",
            i64::from(std::process::id()),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Whether this process exports traces.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Adds the current span's trace context (`traceparent`, `tracestate`) to a request.
fn inject_current(headers: &mut reqwest::header::HeaderMap) {
    let cx = Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The W3C trace context of `span`, to store with work another process will pick up.
pub fn carrier(span: &Span) -> Option<BTreeMap<String, String>> {
    if !exporting() || span.is_disabled() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    (!carrier.is_empty()).then(|| carrier.into_iter().collect())
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Makes `span` a child of the remote span `carrier` names (from [`carrier`], or the
/// `traceparent` header of a request).
pub fn continue_trace(span: &Span, carrier: &BTreeMap<String, String>) {
    if !exporting() || span.is_disabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&MapExtractor(carrier));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The trace id of `span` (32 hex digits), when traces are exported.
pub fn trace_id(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

// ---------------------------------------------------------------------------------------
// Sentry

fn sentry_client(dsn: &str) -> Result<sentry::ClientInitGuard, String> {
    let parsed: sentry::types::Dsn = dsn.parse().map_err(|e| {
        format!(
            "SENTRY_DSN: not a DSN ({e})\n  help: copy it from the project's Client Keys page: https://PUBLIC_KEY@HOST/PROJECT_ID"
        )
    })?;
    let _ = agents::llm::http_client_builder();
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(parsed);
    options.release = std::env::var("SENTRY_RELEASE")
        .ok()
        .map(Into::into)
        .or_else(|| Some(concat!("brainops@", env!("CARGO_PKG_VERSION")).into()));
    options.environment = std::env::var("SENTRY_ENVIRONMENT").ok().map(Into::into);
    options.send_default_pii = false;
    options.attach_stacktrace = false;
    options.before_send = Some(std::sync::Arc::new(scrub_event));
    options.before_breadcrumb = Some(std::sync::Arc::new(|_| None));
    Ok(sentry::init(options))
}

/// Turns failure events (`brainops::failure`) into Sentry events tagged with the graph,
/// node, thread and run, and linked to the trace.
struct FailureReports;

/// The run id of a `server.run` span, kept for failures reported inside it.
struct RunTags(BTreeMap<String, String>);

#[derive(Default)]
struct Fields {
    message: Option<String>,
    tags: BTreeMap<String, String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field.name(), value.to_string());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, name: &str, value: String) {
        match name {
            "message" => self.message = Some(value),
            "graph" | "node" | "thread" | "run" | "run_id" | "assistant_id" | "step"
            | "attempt" | "worker" => {
                let key = if name == "run_id" { "run" } else { name };
                self.tags.insert(key.to_string(), value);
            }
            _ => {}
        }
    }
}

impl<S> Layer<S> for FailureReports
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(RunTags(fields.tags));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != FAILURE_TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut tags = BTreeMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(RunTags(t)) = span.extensions().get::<RunTags>() {
                    tags.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        tags.extend(fields.tags);
        let mut report = sentry::protocol::Event {
            level: sentry::Level::Error,
            logger: Some("brainops".into()),
            message: fields.message,
            ..Default::default()
        };
        // Linked to the OpenTelemetry trace: Sentry's trace and span ids have the same
        // widths, so the ids are the trace viewer's.
        let cx = Span::current().context();
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            tags.insert("trace_id".into(), sc.trace_id().to_string());
            let trace = sentry::protocol::TraceContext {
                trace_id: sc.trace_id().to_bytes().into(),
                span_id: sc.span_id().to_bytes().into(),
                ..Default::default()
            };
            report.contexts.insert("trace".into(), trace.into());
        }
        report.tags = tags;
        sentry::capture_event(report);
    }
}

/// Replaces secrets and personal data in a Sentry event before it leaves the process: any
/// value under a key that names a secret or a personal field, and anything in a string that
/// looks like a key, a token, a password in a URL, an e-mail address or a phone number.
/// An event that cannot be checked is not sent.
pub fn scrub_event(
    event: sentry::protocol::Event<'static>,
) -> Option<sentry::protocol::Event<'static>> {
    let mut value = serde_json::to_value(&event).ok()?;
    scrub_value(&mut value, false);
    serde_json::from_value(value).ok()
}

const FILTERED: &str = "[Filtered]";

fn sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    const WORDS: [&str; 18] = [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "authorization",
        "cookie",
        "dsn",
        "credential",
        "private_key",
        "email",
        "phone",
        "address",
        "ssn",
        "card",
        "session",
    ];
    WORDS.iter().any(|w| k.contains(w))
}

fn scrub_value(value: &mut serde_json::Value, under_sensitive: bool) {
    match value {
        serde_json::Value::String(s) => {
            *s = if under_sensitive {
                FILTERED.into()
            } else {
                scrub_text(s)
            };
        }
        serde_json::Value::Array(items) => {
            for item in items {
                scrub_value(item, under_sensitive);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                scrub_value(v, under_sensitive || sensitive_key(k));
            }
        }
        serde_json::Value::Number(_) if under_sensitive => *value = FILTERED.into(),
        _ => {}
    }
}

/// Masks secrets and personal data inside free text.
pub fn scrub_text(text: &str) -> String {
    static PATTERNS: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            // user:password@ in any URL (postgres://, redis://, https://).
            (
                r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@",
                "$1:[Filtered]@",
            ),
            // Bearer and Basic credentials.
            (
                r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
                "$1 [Filtered]",
            ),
            // Vendor keys: OpenAI/Anthropic sk-, Stripe sk_/rk_/pk_, Slack xox?-, GitHub, Google.
            (
                r"\b(sk|rk|pk)[-_](live_|test_|ant-|proj-)?[A-Za-z0-9_-]{12,}",
                "[Filtered]",
            ),
            (r"\bxox[abpr]-[A-Za-z0-9-]{10,}", "[Filtered]"),
            (r"\bgh[pousr]_[A-Za-z0-9]{20,}", "[Filtered]"),
            (r"\bAIza[0-9A-Za-z_-]{20,}", "[Filtered]"),
            // JWTs (Supabase keys and session tokens).
            (
                r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
                "[Filtered]",
            ),
            // key=value pairs whose key names a secret.
            (
                r"(?i)\b(api[_-]?key|token|secret|password|passwd|key)=[^\s&]+",
                "$1=[Filtered]",
            ),
            // Personal data.
            (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[email]"),
            (r"\+\d[\d\s().-]{7,}\d", "[phone]"),
            (r"\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b", "[phone]"),
        ]
        .into_iter()
        .filter_map(|(p, r)| regex::Regex::new(p).ok().map(|re| (re, r)))
        .collect()
    });
    let mut out = std::borrow::Cow::Borrowed(text);
    for (re, with) in patterns {
        if re.is_match(&out) {
            out = std::borrow::Cow::Owned(re.replace_all(&out, *with).into_owned());
        }
    }
    out.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_loses_keys_tokens_passwords_and_personal_data() {
        let text = "openai said 401 for sk-proj-abcdefghijklmnop1234; db postgres://app:hunter2@db:5432/x; \
                    Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ24; \
                    customer jane.doe@example.com +1 (555) 010-9999; url ?api_key=abc123";
        let out = scrub_text(text);
        for secret in [
            "sk-proj-abcdefghijklmnop1234",
            "hunter2",
            "eyJhbGciOiJIUzI1NiJ9",
            "jane.doe@example.com",
            "010-9999",
            "abc123",
        ] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert!(out.contains("postgres://app:[Filtered]@db:5432/x"), "{out}");
        assert!(out.contains("openai said 401"), "{out}");
    }

    #[test]
    fn values_under_sensitive_keys_are_filtered_and_others_kept() {
        let mut v = serde_json::json!({
            "tags": {"graph": "lead_qualification", "node": "score"},
            "extra": {"customer_email": "x", "phone_number": 5550100, "auth": {"token": "t"}},
        });
        scrub_value(&mut v, false);
        assert_eq!(v["tags"]["graph"], "lead_qualification");
        assert_eq!(v["extra"]["customer_email"], FILTERED);
        assert_eq!(v["extra"]["phone_number"], FILTERED);
        assert_eq!(v["extra"]["auth"]["token"], FILTERED);
    }

    /// The panic hook `sentry::init` installs reports a panic on any thread, scrubbed, to
    /// the DSN's envelope endpoint (a local server here, read as raw envelope text).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_is_reported_to_sentry_without_the_secret_in_its_message() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let ingest = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/7/envelope/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&ingest)
            .await;
        let dsn = format!("http://publickey@{}/7", ingest.address());
        let guard = sentry_client(&dsn).expect("a valid DSN");

        let worker = std::thread::Builder::new()
            .name("estimate-worker".into())
            .spawn(|| panic!("estimate broke with key sk-proj-abcdefghijklmnop1234 in hand"))
            .expect("spawn");
        assert!(worker.join().is_err(), "the thread panicked");
        tokio::task::spawn_blocking(move || guard.flush(Some(std::time::Duration::from_secs(5))))
            .await
            .expect("flush");

        let requests = ingest.received_requests().await.expect("recording is on");
        let sent: String = requests
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        let event = sent
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|item| item.get("exception").is_some())
            .unwrap_or_else(|| panic!("no event with an exception in {sent}"));
        let exception = &event["exception"]["values"][0];
        assert_eq!(exception["mechanism"]["type"], "panic", "{event}");
        assert_eq!(exception["mechanism"]["handled"], false, "{event}");
        let message = exception["value"].as_str().unwrap_or_default();
        assert!(message.contains("estimate broke with key"), "{message}");
        assert!(!sent.contains("sk-proj-abcdefghijklmnop1234"), "{sent}");
        assert_eq!(event["level"], "fatal", "{event}");
    }
}
