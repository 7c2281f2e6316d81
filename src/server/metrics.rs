//! `GET /metrics` in the Prometheus text format. Run outcomes, queue wait and open streams
//! are counted where they happen in the server; step, node, model-call, integration and
//! checkpoint figures come from the engine's spans (`engine::trace`) through [`Metrics::layer`],
//! so the numbers and the exported traces are one measurement.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    graph: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraphLabels {
    graph: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    graph: String,
    node: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntegrationLabels {
    vendor: String,
    integration: String,
    mode: String,
    outcome: String,
}

fn seconds() -> Histogram {
    // 0.5 ms to ~4.6 min.
    Histogram::new(exponential_buckets(0.0005, 2.5, 15))
}

/// The server's metrics, registered once; cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    queue_wait: Histogram,
    queue_depth: Gauge,
    open_streams: Gauge,
    steps: Family<GraphLabels, Histogram, fn() -> Histogram>,
    nodes: Family<NodeLabels, Histogram, fn() -> Histogram>,
    model_calls: Family<ModelLabels, Counter>,
    model_seconds: Family<ModelLabels, Histogram, fn() -> Histogram>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    integrations: Family<IntegrationLabels, Counter>,
    checkpoint_writes: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric under the `brainops_` prefix.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("brainops");
        let m = Metrics {
            runs: Family::default(),
            queue_wait: seconds(),
            queue_depth: Gauge::default(),
            open_streams: Gauge::default(),
            steps: Family::new_with_constructor(seconds as fn() -> Histogram),
            nodes: Family::new_with_constructor(seconds as fn() -> Histogram),
            model_calls: Family::default(),
            model_seconds: Family::new_with_constructor(seconds as fn() -> Histogram),
            tokens: Family::default(),
            cost: Family::default(),
            integrations: Family::default(),
            checkpoint_writes: seconds(),
            registry: Registry::default(),
        };
        registry.register(
            "runs",
            "Runs that ended, by graph and status (success, error, timeout, interrupted)",
            m.runs.clone(),
        );
        registry.register(
            "run_queue_wait_seconds",
            "Time from a run's creation (or its after_seconds) to the start of its first attempt",
            m.queue_wait.clone(),
        );
        registry.register(
            "run_queue_depth",
            "Runs waiting to start, read from the runs table at each scrape",
            m.queue_depth.clone(),
        );
        registry.register(
            "open_streams",
            "Open SSE and WebSocket streams",
            m.open_streams.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Super-step latency (plan, execute, commit, checkpoint), by graph",
            m.steps.clone(),
        );
        registry.register(
            "node_duration_seconds",
            "Node task latency, all attempts included, by graph, node and status",
            m.nodes.clone(),
        );
        registry.register(
            "model_calls",
            "Model calls, by model (provider:model) and status",
            m.model_calls.clone(),
        );
        registry.register(
            "model_call_duration_seconds",
            "Model call latency, by model and status",
            m.model_seconds.clone(),
        );
        registry.register(
            "model_tokens",
            "Tokens of model calls, by model and kind (input, output)",
            m.tokens.clone(),
        );
        registry.register(
            "model_cost_usd",
            "What model calls cost in US dollars, by model (models with a known price)",
            m.cost.clone(),
        );
        registry.register(
            "integration_calls",
            "Integration calls, by vendor, integration, mode (live, dry-run) and outcome",
            m.integrations.clone(),
        );
        registry.register(
            "checkpoint_write_duration_seconds",
            "Time to store one checkpoint",
            m.checkpoint_writes.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// The layer that turns the engine's spans into these metrics.
    pub fn layer(self: &Arc<Self>) -> Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> {
        SpanMetrics {
            metrics: Arc::clone(self),
        }
        .with_filter(FilterFn::new(|m| {
            m.is_span() && m.target() == engine::trace::TARGET
        }))
        .boxed()
    }

    pub(crate) fn run_ended(&self, graph: &str, status: &str) {
        self.runs
            .get_or_create(&RunLabels {
                graph: graph.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    pub(crate) fn run_waited(&self, seconds: f64) {
        self.queue_wait.observe(seconds.max(0.0));
    }

    /// Counts a stream as open until the guard drops.
    pub(crate) fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.inc();
        StreamGuard(Arc::clone(self))
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 << 10);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// An open stream (see [`Metrics::stream_opened`]).
pub(crate) struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.dec();
    }
}

/// `GET /metrics`: 404 when the process was started without metrics (a library embedder
/// that did not install the layer).
pub(crate) async fn scrape(State(app): State<Arc<App>>) -> Response {
    let Some(metrics) = app.options.metrics.as_ref() else {
        return super::api::ApiError::not_found("metrics are not enabled in this process")
            .into_response();
    };
    if let Ok(active) = app.control.active_runs().await {
        let queued = active
            .iter()
            .filter(|r| r.status == super::control::RunState::Pending)
            .count();
        metrics
            .queue_depth
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }
    match metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => super::api::ApiError::internal(format!("cannot encode the metrics: {e}"))
            .into_response(),
    }
}

/// What a span recorded that a metric needs.
#[derive(Default)]
struct Recorded {
    graph: Option<String>,
    node: Option<String>,
    model: Option<String>,
    failed: bool,
    input_tokens: u64,
    output_tokens: u64,
    cost: Option<f64>,
    vendor: Option<String>,
    integration: Option<String>,
    mode: Option<String>,
    outcome: Option<String>,
}

impl Visit for Recorded {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "graph" => &mut self.graph,
            "node" => &mut self.node,
            "brainops.model" => &mut self.model,
            "brainops.vendor" => &mut self.vendor,
            "brainops.integration" => &mut self.integration,
            "brainops.mode" => &mut self.mode,
            "brainops.outcome" => &mut self.outcome,
            "otel.status_code" => {
                self.failed = value == "ERROR";
                return;
            }
            _ => return,
        };
        *slot = Some(value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        let value = u64::try_from(value).unwrap_or_default();
        match field.name() {
            "gen_ai.usage.input_tokens" => self.input_tokens = value,
            "gen_ai.usage.output_tokens" => self.output_tokens = value,
            _ => {}
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "brainops.cost_usd" {
            self.cost = Some(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here.
        if matches!(
            field.name(),
            "graph" | "node" | "brainops.model" | "brainops.vendor"
        ) {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

struct Timed {
    start: Instant,
    recorded: Recorded,
}

struct SpanMetrics {
    metrics: Arc<Metrics>,
}

impl<S> Layer<S> for SpanMetrics
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut recorded = Recorded::default();
        attrs.record(&mut recorded);
        span.extensions_mut().insert(Timed {
            start: Instant::now(),
            recorded,
        });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(timed) = span.extensions_mut().get_mut::<Timed>()
        {
            values.record(&mut timed.recorded);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(timed) = span.extensions_mut().remove::<Timed>() else {
            return;
        };
        let elapsed = timed.start.elapsed().as_secs_f64();
        let r = timed.recorded;
        let m = &self.metrics;
        let status = if r.failed { "error" } else { "ok" };
        // The graph of the nearest enclosing run.
        let graph = || {
            span.scope()
                .skip(1)
                .find(|s| s.name() == "run")
                .and_then(|s| {
                    s.extensions()
                        .get::<Timed>()
                        .and_then(|t| t.recorded.graph.clone())
                })
                .unwrap_or_default()
        };
        match span.name() {
            "step" => m
                .steps
                .get_or_create(&GraphLabels { graph: graph() })
                .observe(elapsed),
            "node" => m
                .nodes
                .get_or_create(&NodeLabels {
                    graph: graph(),
                    node: r.node.unwrap_or_default(),
                    status: status.into(),
                })
                .observe(elapsed),
            "checkpoint.write" => m.checkpoint_writes.observe(elapsed),
            "chat" => {
                // Set when the span opens, and to the model that answered at the end.
                let model = r.model.unwrap_or_default();
                let labels = ModelLabels {
                    model: model.clone(),
                    status: status.into(),
                };
                m.model_calls.get_or_create(&labels).inc();
                m.model_seconds.get_or_create(&labels).observe(elapsed);
                for (kind, n) in [("input", r.input_tokens), ("output", r.output_tokens)] {
                    if n > 0 {
                        m.tokens
                            .get_or_create(&TokenLabels {
                                model: model.clone(),
                                kind: kind.into(),
                            })
                            .inc_by(n);
                    }
                }
                if let Some(cost) = r.cost {
                    m.cost.get_or_create(&CostLabels { model }).inc_by(cost);
                }
            }
            "integration" => {
                m.integrations
                    .get_or_create(&IntegrationLabels {
                        vendor: r.vendor.unwrap_or_default(),
                        integration: r.integration.unwrap_or_default(),
                        mode: r.mode.unwrap_or_default(),
                        outcome: r.outcome.unwrap_or_default(),
                    })
                    .inc();
            }
            _ => {}
        }
    }
}
