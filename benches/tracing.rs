//! What tracing costs the executor: the 1,000-node chain of expression nodes with no
//! subscriber, and with the OpenTelemetry layer installed as `brainops` installs it (filter
//! `brainops=info,warn`) exporting over OTLP/HTTP (protobuf, batch processor) to a local sink
//! that answers 200: by default (expression steps are counted on the run span, not spans
//! of their own) and with every step, node and checkpoint write a span
//! (`BRAINOPS_TRACE_EXPRESSIONS=1`). Without and with the in-memory checkpointer.
//!
//!   cargo bench --bench tracing
//!
//! Each variant runs on a current-thread runtime under a thread-scoped subscriber, so the
//! "off" numbers are measured first, before any subscriber exists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use engine::{MemorySaver, RunRequest, Runner};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[path = "shapes.rs"]
mod shapes;

const NODES: usize = 1000;

/// An OTLP endpoint that reads each request and answers 200, counting the bytes it got.
fn sink(received: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let received = received.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    received.fetch_add(length as u64, Ordering::Relaxed);
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1/traces")
}

/// Times one run of the chain; a fresh saver each run (made outside the timing), so stored
/// checkpoints do not pile up across iterations and slow the variants measured later.
fn run_chain(c: &mut Criterion, label: &str, graph: &Arc<engine::Graph>, saver: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    c.bench_function(label, |b| {
        b.iter_batched(
            || {
                let runner = Runner::new(graph.clone());
                if saver {
                    runner.with_checkpointer(Arc::new(MemorySaver::new()))
                } else {
                    runner
                }
            },
            |runner| {
                let outcome = rt.block_on(runner.invoke(RunRequest::new()));
                assert_eq!(outcome.state["n"], NODES);
                outcome
            },
            BatchSize::SmallInput,
        )
    });
}

fn benches(c: &mut Criterion) {
    let graph = Arc::new(shapes::chain(NODES));

    run_chain(c, "tracing/off/chain_1000", &graph, false);
    run_chain(c, "tracing/off/chain_1000_memory_saver", &graph, true);
    {
        let _registry = tracing::subscriber::set_default(tracing_subscriber::Registry::default());
        run_chain(c, "tracing/registry/chain_1000", &graph, false);
    }

    let received = Arc::new(AtomicU64::new(0));
    // Installs the rustls crypto provider the exporter's client needs, as `brainops` does.
    let _ = brainops::agents::llm::http_client_builder();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(sink(received.clone()))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let layer = brainops::telemetry::otel_layer(provider.tracer("brainops"))
        .with_filter(tracing_subscriber::EnvFilter::new("brainops=info,warn"));
    let subscriber = tracing_subscriber::Registry::default().with(layer);
    {
        let _on = tracing::subscriber::set_default(subscriber);
        run_chain(c, "tracing/otlp/chain_1000", &graph, false);
        run_chain(c, "tracing/otlp/chain_1000_memory_saver", &graph, true);
        // Every expression step a span too (BRAINOPS_TRACE_EXPRESSIONS=1, and the server).
        engine::trace::trace_expression_steps(true);
        run_chain(c, "tracing/otlp_expressions/chain_1000", &graph, false);
        run_chain(
            c,
            "tracing/otlp_expressions/chain_1000_memory_saver",
            &graph,
            true,
        );
        engine::trace::trace_expression_steps(false);
    }
    let _ = provider.shutdown();
    eprintln!(
        "OTLP sink received {} KiB of spans",
        received.load(Ordering::Relaxed) / 1024
    );
}

criterion_group! {
    name = tracing_cost;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(tracing_cost);
