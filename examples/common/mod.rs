//! What every business-graph runner shares: an [`brainops::Engine`] (local model, embedded
//! memory, integrations that record instead of sending when unconfigured), readable
//! streamed progress, automatic answers to the graph's questions, and a readable result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use brainops::engine::events::{AgentStep, IntegrationCall, Progress};
use brainops::{Event, RunRequest, RunStatus};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
pub(crate) struct Args {
    /// Input JSON file (default: examples/data/<graph>.json).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Run every agent on this model (repeat for a fallback chain). Default: the local
    /// model, so the run needs no key and no network.
    #[arg(long, default_value = "local:smollm2-135m")]
    pub model: Vec<String>,
    /// Answer the graph's questions yourself on stdin instead of with the example's answers.
    #[arg(long)]
    pub ask: bool,
}

/// What a runner knows about its graph.
pub(crate) struct Business {
    pub graph: &'static str,
    /// Answers to the graph's questions, by node.
    pub answers: &'static [(&'static str, &'static str)],
    /// The readable result, from the final state.
    pub report: fn(&Value) -> Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn main(business: Business) -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(business, args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(business: Business, args: Args) -> Result<ExitCode, String> {
    let name = business.graph;
    let input_path = args
        .input
        .unwrap_or_else(|| root().join("examples/data").join(format!("{name}.json")));
    let input: Value = serde_json::from_str(
        &std::fs::read_to_string(&input_path)
            .map_err(|e| format!("{}: {e}", input_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", input_path.display()))?;

    let file = root().join("graphs").join(format!("{name}.toml"));
    let home = brainops::default_home();
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    let engine = brainops::Engine::builder()
        .models(args.model.clone())
        .memory(home.join("memory.db").display().to_string(), "local")
        .graph_file(&file)
        .checkpointer("memory")
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let runner = engine.runner(name).map_err(|e| e.to_string())?;

    println!(
        "== {name} ({}), agents on {}",
        rel(&file),
        args.model.join(" then ")
    );
    let started = Instant::now();
    let thread = format!("{name}-{}", std::process::id());
    let mut request = RunRequest::new().thread(thread.clone()).input(input);
    let mut usage = brainops::engine::UsageSum::default();
    let outcome = loop {
        let mut run = runner.stream(request);
        while let Some(event) = run.next().await {
            show(&event, started);
        }
        let outcome = run.outcome().await;
        usage.calls += outcome.usage.total.calls;
        usage.input_tokens += outcome.usage.total.input_tokens;
        usage.output_tokens += outcome.usage.total.output_tokens;
        if outcome.status != RunStatus::Interrupted {
            break outcome;
        }
        let node = outcome
            .interrupt
            .as_ref()
            .map(|i| i.node.clone())
            .unwrap_or_default();
        let answer = if args.ask {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            line.trim().to_string()
        } else {
            let answer = business
                .answers
                .iter()
                .find(|(n, _)| *n == node)
                .map(|(_, a)| *a);
            let answer = answer.ok_or_else(|| format!("no answer for `{node}`; run with --ask"))?;
            println!("    -> {answer}   (the example's answer; --ask to give your own)");
            answer.to_string()
        };
        request = RunRequest::new()
            .thread(thread.clone())
            .resume(Value::String(answer));
    };

    println!();
    if let Some(e) = &outcome.error {
        println!(
            "FAILED after {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            e.message
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "== result ({:.1} s, {} model calls, {} tokens in, {} out)",
        started.elapsed().as_secs_f64(),
        usage.calls,
        usage.input_tokens,
        usage.output_tokens
    );
    for line in (business.report)(&outcome.state) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn show(event: &Event, started: Instant) {
    let at = started.elapsed().as_secs_f64();
    match event {
        Event::StepStarted { step, nodes } => {
            println!("[{at:6.1}s] step {step}: {}", nodes.join(", "))
        }
        Event::NodeFinished { node, update, .. } => {
            println!("[{at:6.1}s]   done {node}: {}", preview(update))
        }
        Event::Progress { node, progress } => match progress {
            Progress::Agent {
                step: AgentStep::ToolCall { name, .. },
                ..
            } => println!("[{at:6.1}s]   {node} calls {name}"),
            Progress::Agent {
                agent,
                step: AgentStep::Handoff { to, reason },
            } => println!(
                "[{at:6.1}s]   {agent} hands the conversation to {to}{}",
                reason
                    .as_deref()
                    .map_or_else(String::new, |r| format!(" ({r})"))
            ),
            Progress::Agent {
                step: AgentStep::SchemaRetry(problem),
                ..
            } => println!(
                "[{at:6.1}s]   {node}: answer did not fit its schema, asking again ({})",
                preview(&Value::String(problem.clone()))
            ),
            Progress::Integration {
                integration,
                call: IntegrationCall::Recorded { reason },
            } => println!("[{at:6.1}s]   {node}: {integration} recorded, not sent ({reason})"),
            _ => {}
        },
        Event::Interrupt { node, value, .. } => println!(
            "[{at:6.1}s]   {node} asks: {}",
            value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string)
        ),
        Event::Error { message } => println!("[{at:6.1}s]   error: {message}"),
        _ => {}
    }
}

fn preview(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 110 {
        format!("{}...", text.chars().take(107).collect::<String>())
    } else {
        text
    }
}

/// `state[key]` as text for a report line.
pub(crate) fn text(state: &Value, pointer: &str) -> String {
    match state.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// The `messages` channel as lines: who handed to whom, and who answered what.
#[allow(dead_code)]
pub(crate) fn conversation(state: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for m in state["messages"].as_array().into_iter().flatten() {
        let who = m["name"].as_str().unwrap_or("?");
        if let Some(call) = m["tool_calls"].get(0) {
            lines.push(format!("  {who} -> {}", text(call, "/name")));
        } else if let Some(to) = m["handoff"].as_str() {
            lines.push(format!("  {who} -> {to}"));
        } else if m["role"] == "assistant" {
            let content = m["content"].as_str().unwrap_or_default();
            let reply = serde_json::from_str::<Value>(content)
                .ok()
                .and_then(|v| v["reply"].as_str().map(str::to_string))
                .unwrap_or_else(|| content.to_string());
            lines.push(format!("  {who} answers: {reply}"));
        }
    }
    lines
}
