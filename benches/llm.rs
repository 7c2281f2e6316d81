//! LLM benchmarks.
//!
//!   eval "$(scripts/local-model.sh)"; cargo bench --bench llm
//!
//! - `adapter/*`: one `complete` call through the OpenAI adapter against a local HTTP server,
//!   next to a bare HTTP round trip of the same request and reply with the same client
//!   library: the difference is the adapter's own cost per call.
//! - `local/*`: the in-process SmolLM2-135M (Q4_1) at 1 and 2 threads; besides criterion's
//!   times it prints prompt and generation tokens per second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agents::llm::{ApiKey, ChatRequest, Message, ProviderConfig, connect_with};
use criterion::{Criterion, criterion_group, criterion_main};
use local_model::{GenOptions, LocalModel};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn reply() -> serde_json::Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "About 74 bundles of architectural shingles."}}],
        "usage": {"prompt_tokens": 25, "completion_tokens": 9}
    })
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(reply()))
            .mount(&server)
            .await;
        server
    });
    let config = ProviderConfig {
        openai_base: format!("{}/v1", server.uri()),
        ..ProviderConfig::default()
    };
    let model = connect_with("openai:gpt-4o-mini", &config, Some(ApiKey::new("sk-bench"))).unwrap();
    let mut request = ChatRequest::new(vec![
        Message::system("You are the roofing assistant."),
        Message::user("How many bundles for 24.6 squares?"),
    ]);
    request.max_tokens = Some(64);
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are the roofing assistant."},
        {"role": "user", "content": "How many bundles for 24.6 squares?"}], "max_completion_tokens": 64});
    let client = agents::llm::http_client_builder().build().unwrap();
    let url = format!("{}/v1/chat/completions", server.uri());

    let mut group = c.benchmark_group("adapter");
    group.bench_function("bare_http_round_trip", |b| {
        b.to_async(&rt).iter(|| async {
            let v: serde_json::Value = client
                .post(&url)
                .bearer_auth("sk-bench")
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(v["choices"][0]["message"]["content"].is_string());
        })
    });
    group.bench_function("openai_adapter_complete", |b| {
        b.to_async(&rt).iter(|| async {
            let out = model.complete(&request).await.unwrap();
            assert_eq!(out.usage.output_tokens, 9);
        })
    });
    group.finish();

    let path = local_model::default_path();
    let messages = vec![
        ("system".to_string(), "You write short, friendly notes for a roofing company.".to_string()),
        (
            "user".to_string(),
            "Write a short note thanking Ada for approving her roof replacement, and say the crew arrives Thursday at 8am.".to_string(),
        ),
    ];
    let mut group = c.benchmark_group("local");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for threads in [1, 2] {
        // SAFETY of the environment: read once at load; nothing else reads it concurrently.
        unsafe { std::env::set_var("BRAINOPS_LOCAL_THREADS", threads.to_string()) };
        let m = LocalModel::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let options = GenOptions {
            max_tokens: 64,
            ..GenOptions::default()
        };
        let g = m.generate(&messages, &options, |_| true).unwrap();
        let (mut prompt_tps, mut gen_tps) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let g = m.generate(&messages, &options, |_| true).unwrap();
            prompt_tps.push(g.prompt_tokens as f64 / g.prompt_time.as_secs_f64());
            gen_tps.push(g.output_tokens as f64 / g.generation_time.as_secs_f64());
        }
        prompt_tps.sort_by(f64::total_cmp);
        gen_tps.sort_by(f64::total_cmp);
        println!(
            "local smollm2-135m Q4_1, {threads} thread(s): prompt {:.0} tok/s ({} tokens), generation {:.0} tok/s ({} tokens), medians of 5",
            prompt_tps[2], g.prompt_tokens, gen_tps[2], g.output_tokens
        );
        group.bench_function(format!("generate_64_tokens_{threads}_threads"), |b| {
            b.iter(|| m.generate(&messages, &options, |_| true).unwrap())
        });
    }
    group.finish();
}

criterion_group!(llm, benches);
criterion_main!(llm);
