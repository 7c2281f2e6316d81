//! The spans a run opens, for whoever listens: the CLI and the server turn them into
//! OpenTelemetry spans and Prometheus metrics (`docs/observability.md`). Without a listener
//! each costs a load and a branch, and no field is evaluated.
//!
//! All are at level INFO under the target `brainops`, so one filter directive
//! (`brainops=info`) selects them. Names are static (`run`, `step`, `node`, `attempt`,
//! `checkpoint.write`); `otel.name` gives the exported span a readable one (`node triage`).
//! A failed span records `otel.status_code = "ERROR"` and `otel.status_description`.
//!
//! A step that only evaluates expressions (`set`, `ask`, `wait` nodes: microseconds) opens
//! no span unless [`trace_expression_steps`] is on: exported, such a span would cost several
//! times the step. Steps that call a tool, an agent or a subgraph always do, with a span for
//! every one of their tasks and their checkpoint write. The run span counts the others
//! (`expression_steps`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Span;
use tracing::field::Empty;

static EXPRESSION_STEPS: AtomicBool = AtomicBool::new(false);

/// Whether steps of expression nodes alone open spans too (off by default; the server turns
/// it on for its step and node metrics, `BRAINOPS_TRACE_EXPRESSIONS=1` elsewhere).
pub fn trace_expression_steps(on: bool) {
    EXPRESSION_STEPS.store(on, Ordering::Relaxed);
}

pub(crate) fn expression_steps() -> bool {
    EXPRESSION_STEPS.load(Ordering::Relaxed)
}

/// Whether the environment variable `name` is set to `1` or `true`.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true"))
}

/// Whether spans may carry content: prompts, replies, tool arguments and results, memory
/// queries (`BRAINOPS_TRACE_CONTENT=1`, read once per process).
pub fn content_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| env_flag("BRAINOPS_TRACE_CONTENT"))
}

/// Target of every span and failure report the engine emits.
pub const TARGET: &str = "brainops";

/// A run of `graph`: the root of its trace unless the caller's span is current.
pub(crate) fn run(graph: &str) -> Span {
    tracing::info_span!(
        target: "brainops",
        "run",
        otel.name = %format_args!("run {graph}"),
        graph,
        thread = Empty,
        status = Empty,
        steps = Empty,
        expression_steps = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// Super-step `step` of the current run.
pub(crate) fn step(step: u64) -> Span {
    tracing::info_span!(target: "brainops", "step", otel.name = %format_args!("step {step}"), step = int(step))
}

/// One task of a step: a node, or one element or work item of it.
pub(crate) fn node(node: &str, task: &str, step: u64) -> Span {
    tracing::info_span!(
        target: "brainops",
        "node",
        otel.name = %format_args!("node {node}"),
        node,
        task,
        step = int(step),
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// Attempt `n` of a task whose node retries.
pub(crate) fn attempt(n: u32) -> Span {
    tracing::info_span!(
        target: "brainops",
        "attempt",
        attempt = i64::from(n),
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// Storing checkpoint `id` of a thread.
pub(crate) fn checkpoint_write(id: u64, step: u64) -> Span {
    tracing::info_span!(
        target: "brainops",
        "checkpoint.write",
        checkpoint = int(id),
        step = int(step),
        bytes = Empty,
    )
}

/// A count as an OpenTelemetry integer attribute (the exporters drop unsigned fields to
/// strings).
pub fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Marks `span` failed with `message` (shown by trace viewers as the span's error).
pub fn fail(span: &Span, message: &str) {
    if !span.is_disabled() {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", message);
    }
}
