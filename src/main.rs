//! The `brainops` command line: validate, run, inspect threads, draw graphs.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Prints a line to stdout; see [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints to stdout; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod agents_cli;
mod cron_cli;
mod memory_cli;
mod progress;

/// Writes to stdout. A reader that went away (`brainops threads history | head`) ends the
/// process quietly with status 0, as `cat` would, instead of a panic.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

use clap::{Parser, Subcommand, ValueEnum};
use engine::{Checkpointer, Graph, RunRequest, RunStatus, Runner, loader, render};
use serde_json::{Value, json};
use tracing::Instrument;

const AFTER_HELP: &str = "Examples:
  brainops validate graphs/*.toml
  brainops run graphs/lead_intake.toml --input '{\"lead\": {\"name\": \"Ada\", \"area_sqft\": 2000, \"pitch\": 6}}'
  brainops run graphs/lead_intake.toml --thread T1 --resume '\"yes\"'
  brainops threads list
  brainops graph graphs/lead_intake.toml --format mermaid

Logs go to stderr: RUST_LOG=info (filters), BRAINOPS_LOG_FORMAT=json (JSON lines); see
docs/observability.md. On a terminal, `run` shows a live progress line.";

#[derive(Parser)]
#[command(name = "brainops", version, about = "Run TOML agent graphs with checkpoints, interrupts and streaming", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A directory of more agent specs, <DIR>/<category>/<name>.toml, added to the
    /// built-in catalog (repeatable; also $BRAINOPS_AGENT_DIR, dirs joined by `:`).
    #[arg(long, global = true, value_name = "DIR")]
    agent_dir: Vec<PathBuf>,
}

/// How `serve` authenticates callers.
#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    None,
    ApiKey,
    Supabase,
}

#[derive(Subcommand)]
enum Command {
    /// Check graph files; print every problem as FILE:LINE:COL: error: ...
    #[command(
        after_help = "Example:\n  brainops validate graphs/lead_intake.toml graphs/storm_response.toml"
    )]
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a graph; print {"status", "thread_id", "state"} as JSON.
    #[command(after_help = "Examples:
  brainops run graph.toml --input '{\"count\": 1}'
  brainops run graph.toml --input @input.json --thread job-42 --stream
  brainops run graph.toml --thread job-42 --resume '{\"approved\": true}'
  brainops run graph.toml --thread job-42          # continue a crashed or failed run
  brainops run graph.toml --checkpoint postgres://postgres@127.0.0.1:55432/postgres --input '{}'

Exit status: 0 done or interrupted, 1 the run failed, 2 bad usage or input,
3 conflict (another run is advancing the thread).")]
    Run {
        file: PathBuf,
        /// Input as JSON, or @FILE to read it from a file.
        #[arg(long)]
        input: Option<String>,
        /// Thread id (default: a new one). Runs on the same thread share state.
        #[arg(long)]
        thread: Option<String>,
        /// Answer an interrupted thread with this JSON value (or @FILE).
        #[arg(long, conflicts_with = "input")]
        resume: Option<String>,
        /// Answer several waiting questions at once (parallel interrupts): a JSON object of
        /// task → value, e.g. '{"ask_a": "yes", "ask_b": "no"}' (or @FILE).
        #[arg(long, conflicts_with_all = ["input", "resume"])]
        resume_each: Option<String>,
        /// Read-only values for this run, as a JSON object (or @FILE): `context.NAME` in
        /// expressions (LangGraph's runtime context). Not saved: give it again to resume.
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        /// Fail this run after N super-steps instead of the graph's `recursion_limit`.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        recursion_limit: Option<u32>,
        /// Where checkpoints go: memory, sqlite:PATH (or a plain file path), postgres://... (default:
        /// $BRAINOPS_CHECKPOINT, else sqlite under $BRAINOPS_HOME or .brainops/). Add
        /// `?pgbouncer=true` (or use port 6543) when connecting through a transaction pooler.
        #[arg(long)]
        checkpoint: Option<String>,
        /// Print events as JSON lines, the final object last.
        #[arg(long)]
        stream: bool,
        /// Take the thread over even though another run's lease on it has not run out
        /// (only when that run's process is known to be gone).
        #[arg(long)]
        takeover: bool,
        /// After the run, keep only the thread's latest N checkpoints.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// The memory store for `recall`/`remember` nodes (same forms as `memory --store`).
        #[arg(long)]
        memory: Option<String>,
        /// The embedder for memory: local (default) or openai:MODEL.
        #[arg(long)]
        embedder: Option<String>,
        /// Run every agent on this model instead of its spec's; repeat for a fallback chain
        /// (e.g. --model local:smollm2-135m to stay offline).
        #[arg(long)]
        model: Vec<String>,
        /// Integrations (Stripe, email, SMS, Slack, tasks) record what they would send and
        /// send nothing (same as BRAINOPS_INTEGRATIONS=dry-run).
        #[arg(long)]
        dry_run: bool,
    },
    /// The crons of a running agent server: runs of a graph on a schedule.
    #[command(after_help = "Examples:
  brainops cron create --assistant lead_intake --schedule '0 9 * * 1-5' --timezone America/Chicago --input '{\"lead\": {}}'
  brainops cron create --assistant weather_watch --schedule '*/15 * * * *' --thread 0b6c…  # one thread for every tick
  brainops cron list
  brainops cron enable CRON_ID --on false
  brainops cron delete CRON_ID

Talks to the server at --url (default http://127.0.0.1:2024); BRAINOPS_API_KEY authenticates.
Every replica and worker sees the same crons; each tick runs once. See docs/deploy.md.")]
    Cron {
        /// The agent server.
        #[arg(long, default_value = "http://127.0.0.1:2024", global = true)]
        url: String,
        #[command(subcommand)]
        command: cron_cli::CronCommand,
    },
    /// The agent catalog: list agents, show one agent's spec.
    #[command(after_help = "Examples:
  brainops agents list
  brainops agents list --category industry --json
  brainops agents show revenue.lead_qualifier")]
    Agents {
        #[command(subcommand)]
        command: agents_cli::AgentsCommand,
    },
    /// The tools graph nodes and agents can call.
    #[command(after_help = "Examples:\n  brainops tools list\n  brainops tools list --json")]
    Tools {
        #[command(subcommand)]
        command: agents_cli::ToolsCommand,
    },
    /// Inspect, edit and fork threads.
    #[command(after_help = "Examples:
  brainops threads list
  brainops threads history job-42
  brainops threads show job-42 --graph graph.toml --at 3
  brainops threads fork job-42 --at 3 --graph graph.toml --new-thread job-42-retry
  brainops threads update job-42 --graph graph.toml --values '{\"approved\": true}'")]
    Threads {
        #[command(subcommand)]
        command: ThreadsCommand,
        /// The checkpoint store (same forms as `run --checkpoint`).
        #[arg(long, global = true)]
        checkpoint: Option<String>,
    },
    /// Ask a model; print its reply (with --schema: the JSON, valid against the schema).
    #[command(after_help = "Examples:
  brainops chat 'Write a two-line note thanking a customer for their roof inspection.'
  brainops chat --stream --system 'You are a roofing estimator.' 'What is a roofing square?'
  brainops chat --schema lead.schema.json 'Ada, 2000 sq ft, hail damage last week'
  brainops chat --model anthropic:claude-sonnet-4-5 --model local:smollm2-135m 'Hi'   # fallback chain

Models: local:smollm2-135m (default; no key, no network), openai:MODEL, anthropic:MODEL,
gemini:MODEL, perplexity:MODEL, openai-compat:BASE_URL#MODEL. Keys: OPENAI_API_KEY,
ANTHROPIC_API_KEY (or CLAUDE_API_KEY), GEMINI_API_KEY (or GOOGLE_API_KEY),
PERPLEXITY_API_KEY. Base URLs: docs/llm.md.")]
    Chat {
        /// The user's message.
        message: String,
        /// The model; repeat to give fallbacks, tried in order.
        #[arg(long, default_value = agents::llm::DEFAULT_MODEL)]
        model: Vec<String>,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// A JSON Schema file; the reply is JSON valid against it.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Print the reply as it is generated.
        #[arg(long)]
        stream: bool,
        /// The most tokens the reply may have.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Sampling temperature, 0 (most focused) to 2.
        #[arg(long)]
        temperature: Option<f32>,
    },
    /// Draw a graph as Mermaid or Graphviz DOT.
    #[command(
        after_help = "Example:\n  brainops graph graphs/lead_intake.toml --format dot | dot -Tpng > graph.png"
    )]
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
    },
    /// Serve the graphs as a LangGraph-compatible Agent Server (HTTP + SSE) until SIGTERM.
    #[command(after_help = "Examples:
  brainops serve                                  # graphs/ on http://127.0.0.1:2024
  brainops serve --graphs graphs --port 8123 --checkpoint postgres://user@db:5432/app
  curl -s localhost:2024/runs/wait -H 'content-type: application/json' \\
       -d '{\"assistant_id\": \"lead_intake\", \"input\": {...}}'

Every *.toml in --graphs is an assistant (its graph name works as the assistant id).
Python: langgraph_sdk.get_client(url=\"http://127.0.0.1:2024\"). See docs/server.md.
The console: open http://127.0.0.1:2024/ui in a browser (docs/console.md).")]
    Serve {
        /// The directory of graph files to serve.
        #[arg(long, default_value = "graphs", value_name = "DIR")]
        graphs: PathBuf,
        /// The address to listen on. Anything but loopback needs --auth (or --insecure).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// The port (0 picks a free one; the address is printed on stderr).
        #[arg(long, default_value_t = 2024)]
        port: u16,
        /// Where threads, checkpoints and runs are kept (same forms as `run --checkpoint`;
        /// default: $BRAINOPS_CHECKPOINT, else sqlite under $BRAINOPS_HOME or .brainops/).
        #[arg(long)]
        checkpoint: Option<String>,
        /// The memory store behind /store and agent memory (same forms as `memory --store`).
        #[arg(long)]
        memory: Option<String>,
        /// The embedder for memory: local (default) or openai:MODEL.
        #[arg(long)]
        embedder: Option<String>,
        /// Run every agent on this model instead of its spec's (repeat for a fallback chain).
        #[arg(long)]
        model: Vec<String>,
        /// Runs executing at once; more wait in the queue.
        #[arg(long, default_value_t = 10, value_name = "N")]
        max_concurrent_runs: usize,
        /// How callers authenticate: none, api-key (keys in BRAINOPS_API_KEYS, `user:key`
        /// pairs, sent as x-api-key or a bearer token) or supabase (the session JWT, checked
        /// with SUPABASE_JWT_SECRET or the project's keys at SUPABASE_URL). Each user sees
        /// only its own threads, runs and store items.
        #[arg(long, value_enum, default_value_t = AuthArg::None)]
        auth: AuthArg,
        /// Allow listening on a non-loopback address with --auth none.
        #[arg(long)]
        insecure: bool,
        /// Serve the API only; `brainops worker` processes on the same Postgres execute the
        /// runs.
        #[arg(long)]
        no_worker: bool,
        /// Integrations record what they would send and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Execute the runs that `brainops serve` processes queue in a shared Postgres, until
    /// SIGTERM (which lets running runs finish, or hands them to another process).
    #[command(after_help = "Examples:
  brainops worker --checkpoint postgres://user@db:6543/app?pgbouncer=true
  BRAINOPS_LISTEN_URL=postgres://user@db:5432/app brainops worker --max-concurrent-runs 20

Any number of workers and `serve` processes may share one database; each run is claimed by
exactly one of them. A worker that dies mid-run is replaced after its lease
(BRAINOPS_LEASE_SECS, 30 s): another process continues the run from its last checkpoint.
See docs/deploy.md.")]
    Worker {
        /// The directory of graph files (the same as the servers').
        #[arg(long, default_value = "graphs", value_name = "DIR")]
        graphs: PathBuf,
        /// The shared Postgres of threads, checkpoints and runs (or $BRAINOPS_CHECKPOINT).
        #[arg(long)]
        checkpoint: Option<String>,
        /// The memory store agents use (same forms as `memory --store`).
        #[arg(long)]
        memory: Option<String>,
        /// The embedder for memory: local (default) or openai:MODEL.
        #[arg(long)]
        embedder: Option<String>,
        /// Run every agent on this model instead of its spec's (repeat for a fallback chain).
        #[arg(long)]
        model: Vec<String>,
        /// Runs executing at once in this process.
        #[arg(long, default_value_t = 10, value_name = "N")]
        max_concurrent_runs: usize,
        /// Integrations record what they would send and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Long-term memory: put, get, search, delete, list namespaces.
    #[command(after_help = "Examples:
  brainops memory put --namespace tenant:acme/customers --key c42 --value '{\"text\": \"Prefers morning calls\", \"kind\": \"fact\"}'
  brainops memory get --namespace tenant:acme/customers --key c42
  brainops memory search --namespace tenant:acme --query 'when should we call?' --limit 5
  brainops memory search --namespace tenant:acme --filter '{\"kind\": \"fact\"}'
  brainops memory namespaces --prefix tenant:acme
  brainops memory delete --namespace tenant:acme/customers --key c42

Stores: the embedded file .brainops/memory.db (default; $BRAINOPS_HOME moves it), or
--store postgres://... ($BRAINOPS_MEMORY). Embedders: local (all-MiniLM-L6-v2, default) or
openai:text-embedding-3-small (OPENAI_API_KEY).")]
    Memory {
        #[command(subcommand)]
        command: memory_cli::MemoryCommand,
        /// The memory store: a file path (embedded) or postgres://... (default:
        /// $BRAINOPS_MEMORY, else .brainops/memory.db).
        #[arg(long, global = true)]
        store: Option<String>,
        /// local (default) or openai:MODEL (default: $BRAINOPS_EMBEDDER).
        #[arg(long, global = true)]
        embedder: Option<String>,
    },
}

#[derive(Subcommand)]
enum ThreadsCommand {
    /// List threads, most recent first.
    List,
    /// Show a thread's status and state (at its latest checkpoint, or `--at N`).
    Show {
        id: String,
        #[arg(long)]
        graph: PathBuf,
        #[arg(long)]
        at: Option<u64>,
    },
    /// List a thread's checkpoints, oldest first.
    History { id: String },
    /// Start a new thread from checkpoint N of this one; run it with `brainops run --thread NEW`.
    Fork {
        id: String,
        #[arg(long)]
        at: u64,
        #[arg(long)]
        graph: PathBuf,
        #[arg(long)]
        new_thread: Option<String>,
    },
    /// Write values into a thread's state (through the channels' reducers) as a new checkpoint.
    Update {
        id: String,
        #[arg(long)]
        graph: PathBuf,
        /// A JSON object of channel writes, or @FILE.
        #[arg(long)]
        values: String,
    },
    /// Delete a thread and its checkpoints.
    Delete { id: String },
    /// Keep a thread's latest N checkpoints and delete the older ones.
    #[command(
        after_help = "With --graph the oldest kept checkpoint is first stored as a full snapshot,
so exactly N remain; without it, checkpoints back to the nearest snapshot are kept."
    )]
    Prune {
        id: String,
        #[arg(long, value_name = "N")]
        keep: usize,
        #[arg(long)]
        graph: Option<PathBuf>,
    },
    /// Delete every thread not updated for a while (and not owned by a live run).
    Expire {
        /// An age such as 90m, 12h, 30d.
        #[arg(long, value_name = "AGE")]
        older_than: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Mermaid,
    Dot,
}

/// A CLI failure: the message goes to stderr, the code is the exit status.
pub(crate) struct Failure {
    pub(crate) message: String,
    code: u8,
}

pub(crate) fn fail(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 2,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server's and workers' spans also feed /metrics.
    let metrics = matches!(cli.command, Command::Serve { .. } | Command::Worker { .. })
        .then(brainops::server::Metrics::new);
    let telemetry = match brainops::telemetry::init(metrics.as_ref().map(|m| m.layer())) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    // Commands that only read files need no worker threads: starting them is a measurable
    // share of a `validate`.
    let mut builder = match cli.command {
        Command::Validate { .. } | Command::Graph { .. } => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(dispatch(cli, metrics)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code)
        }
    };
    // Sends the last spans and error reports before the process ends.
    telemetry.shutdown();
    code
}

/// Runs with the progress line (`progress`) on stderr, redrawn on every event and every
/// `TICK`, and erased before the result is printed.
async fn run_with_progress(runner: &Runner, request: RunRequest) -> engine::RunOutcome {
    use std::io::Write;
    let started = std::time::Instant::now();
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|w| *w > 10)
        .unwrap_or(100)
        - 1;
    let mut shown = progress::Progress::default();
    let mut run = runner.stream(request);
    let mut tick = tokio::time::interval(progress::TICK);
    let draw = |p: &progress::Progress| {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", p.line(started.elapsed(), width));
        let _ = err.flush();
    };
    // A burst of events (an agent's tokens) redraws at most every 50 ms.
    let mut drawn = started;
    loop {
        let ticked = tokio::select! {
            event = run.next() => match event {
                Some(e) => {
                    shown.on(&e);
                    false
                }
                None => break,
            },
            _ = tick.tick() => true,
        };
        if ticked || drawn.elapsed() >= Duration::from_millis(50) {
            draw(&shown);
            drawn = std::time::Instant::now();
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
    drop(err);
    run.outcome().await
}

/// What `serve` and `worker` were given.
struct ServeArgs {
    role: brainops::server::Role,
    metrics: Option<std::sync::Arc<brainops::server::Metrics>>,
    graphs: PathBuf,
    host: std::net::IpAddr,
    port: u16,
    checkpoint: Option<String>,
    max_concurrent_runs: usize,
    insecure: bool,
    auth: AuthArg,
    memory_store: Option<String>,
    memory_embedder: Option<String>,
}

/// One process of the agent server: `serve` (API, runs or both) and `worker`.
async fn serve_command(builder: brainops::EngineBuilder, args: ServeArgs) -> Result<u8, Failure> {
    let ServeArgs {
        role,
        metrics,
        graphs,
        host,
        port,
        checkpoint,
        max_concurrent_runs,
        insecure,
        auth,
        memory_store,
        memory_embedder,
    } = args;
    // Bad settings are reported before the graphs load.
    let cleanup = cleanup_policy()?;
    {
        let auth = match auth {
            AuthArg::None => Ok(brainops::server::Auth::None),
            AuthArg::ApiKey => brainops::server::Auth::api_keys_from_env(),
            AuthArg::Supabase => brainops::server::Auth::supabase_from_env(),
        }
        .map_err(|e| Failure {
            message: format!("error: {e}"),
            code: 2,
        })?;
        if !host.is_loopback() && !insecure && !auth.is_on() {
            return Err(Failure {
                message: format!(
                    "error: --host {host}: without --auth anyone who reaches the port can run graphs and read threads\n  help: add --auth api-key or --auth supabase, or pass --insecure to expose it anyway"
                ),
                code: 2,
            });
        }
        if !graphs.is_dir() {
            return Err(Failure {
                message: format!(
                    "error: --graphs {}: not a directory\n  help: give the directory of *.toml graphs to serve",
                    graphs.display()
                ),
                code: 2,
            });
        }
        let url = match store_spec(checkpoint.as_deref()) {
            Some(url) => url,
            None => format!("sqlite:{}", brainops::stores::default_file("threads.db")),
        };
        let memory =
            memory_cli::memory_url(memory_cli::memory_spec(memory_store.as_deref()).as_deref());
        let embedder = memory_cli::embedder_name(memory_embedder.as_deref());
        // The catalog as the console lists it: every agent compiled once (~10 ms); a worker
        // serves no pages.
        let agents = match role {
            brainops::server::Role::Worker => Vec::new(),
            _ => match builder.clone().catalog() {
                Ok((registry, catalog)) => brainops::listing::catalog_detail(&catalog, &registry),
                Err(e) => return Err(engine_failure(e)),
            },
        };
        let engine = builder.graphs(&graphs).checkpointer(url.clone());
        let engine = engine.build().await.map_err(engine_failure)?;
        // Browser frontends on other origins: BRAINOPS_CORS_ORIGINS="https://a.example,https://b.example".
        let cors_origins = std::env::var("BRAINOPS_CORS_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(String::from)
            .collect();
        let metrics_addr = match std::env::var("BRAINOPS_METRICS_ADDR") {
            Ok(a) if !a.trim().is_empty() && role == brainops::server::Role::Worker => {
                Some(a.trim().parse::<std::net::SocketAddr>().map_err(|e| {
                    fail(format!(
                        "error: BRAINOPS_METRICS_ADDR: `{a}` is not an address ({e})\n  help: give IP:PORT, e.g. 127.0.0.1:9464 or 0.0.0.0:9464"
                    ))
                })?)
            }
            _ => None,
        };
        let listen_url = std::env::var("BRAINOPS_LISTEN_URL")
            .ok()
            .filter(|u| !u.trim().is_empty());
        let options = brainops::server::ServeOptions {
            host,
            port,
            checkpoint: url,
            memory,
            embedder,
            max_concurrent_runs,
            cors_origins,
            auth,
            run_timeout: run_timeout(),
            role,
            lease: env_duration("BRAINOPS_LEASE_SECS", 1000.0).unwrap_or(Duration::from_secs(30)),
            poll: env_duration("BRAINOPS_POLL_MS", 1.0).unwrap_or(if listen_url.is_some() {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(500)
            }),
            listen_url,
            redis_url: std::env::var("REDIS_URL")
                .ok()
                .filter(|u| !u.trim().is_empty()),
            cleanup,
            agents: std::sync::Arc::new(agents),
            metrics,
            metrics_addr,
            ..Default::default()
        };
        let served = engine.graphs().count();
        brainops::server::serve(engine, options, |addr| match role {
                brainops::server::Role::Worker if metrics_addr.is_some() => eprintln!(
                    "brainops worker: {served} graphs, executing queued runs, metrics on http://{addr}/metrics (SIGTERM stops it)"
                ),
                brainops::server::Role::Worker => eprintln!(
                    "brainops worker: {served} graphs, executing queued runs (SIGTERM stops it)"
                ),
                brainops::server::Role::Api => eprintln!(
                    "brainops serve: {served} graphs on http://{addr} (API only; workers execute the runs)"
                ),
                brainops::server::Role::Both => eprintln!(
                    "brainops serve: {served} graphs on http://{addr} (console: http://{addr}/ui; docs/server.md)"
                ),
            })
            .await
            .map_err(|e| fail(format!("error: {e}")))?;
        Ok(0)
    }
}

async fn dispatch(
    cli: Cli,
    metrics: Option<std::sync::Arc<brainops::server::Metrics>>,
) -> Result<u8, Failure> {
    let (memory_store, memory_embedder, models, dry_run) = match &cli.command {
        Command::Run {
            memory,
            embedder,
            model,
            dry_run,
            ..
        }
        | Command::Serve {
            memory,
            embedder,
            model,
            dry_run,
            ..
        }
        | Command::Worker {
            memory,
            embedder,
            model,
            dry_run,
            ..
        } => (memory.clone(), embedder.clone(), model.clone(), *dry_run),
        _ => (None, None, Vec::new(), false),
    };
    for m in &models {
        agents::llm::check_model_name(m).map_err(|e| fail(format!("error: --model: {e}")))?;
    }
    let mut integrations = agents::integrations::IntegrationConfig::default();
    if dry_run {
        integrations.mode = agents::integrations::Mode::DryRun;
    }
    let mut agent_dirs = cli.agent_dir.clone();
    if let Some(dirs) = std::env::var_os("BRAINOPS_AGENT_DIR") {
        agent_dirs.extend(std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()));
    }
    if let Some(missing) = agent_dirs.iter().find(|d| !d.is_dir()) {
        return Err(fail(format!(
            "error: --agent-dir {}: not a directory\n  help: give a directory of agent specs, <DIR>/<category>/<name>.toml",
            missing.display()
        )));
    }
    let builder = brainops::Engine::builder()
        .models(models)
        .memory(
            memory_cli::memory_url(memory_cli::memory_spec(memory_store.as_deref()).as_deref()),
            memory_cli::embedder_name(memory_embedder.as_deref()),
        )
        .integrations(integrations)
        .agent_dirs(agent_dirs);
    // Graphs need only the agents' names (each compiles on its first call); `memory` and
    // `chat` need no engine at all. The in-memory store is the default until a command
    // names one.
    let engine = |builder: brainops::EngineBuilder| async move {
        builder.build().await.map_err(engine_failure)
    };
    match cli.command {
        Command::Validate { files } => {
            let mut engine = engine(builder).await?;
            let mut bad = 0;
            for file in &files {
                match engine.load_file(file) {
                    Ok(graph) => {
                        for warning in graph.warnings() {
                            eprintln!("{}", warning.as_warning());
                        }
                        eprintln!(
                            "{}: ok ({} nodes)",
                            file.display(),
                            graph.node_names().count()
                        )
                    }
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if bad == 0 { 0 } else { 1 })
        }
        Command::Worker {
            graphs,
            checkpoint,
            max_concurrent_runs,
            ..
        } => {
            let role = brainops::server::Role::Worker;
            let (host, port) = (std::net::IpAddr::from([127, 0, 0, 1]), 0);
            serve_command(
                builder,
                ServeArgs {
                    role,
                    graphs,
                    host,
                    port,
                    checkpoint,
                    max_concurrent_runs,
                    insecure: false,
                    auth: AuthArg::None,
                    memory_store,
                    memory_embedder,
                    metrics: metrics.clone(),
                },
            )
            .await
        }
        Command::Serve {
            graphs,
            host,
            port,
            checkpoint,
            max_concurrent_runs,
            insecure,
            auth,
            no_worker,
            ..
        } => {
            let role = if no_worker {
                brainops::server::Role::Api
            } else {
                brainops::server::Role::Both
            };
            serve_command(
                builder,
                ServeArgs {
                    role,
                    graphs,
                    host,
                    port,
                    checkpoint,
                    max_concurrent_runs,
                    insecure,
                    auth,
                    memory_store,
                    memory_embedder,
                    metrics: metrics.clone(),
                },
            )
            .await
        }
        Command::Graph { file, format } => {
            let graph = load(&mut engine(builder).await?, &file)?;
            out!(
                "{}",
                match format {
                    Format::Mermaid => render::mermaid(&graph),
                    Format::Dot => render::dot(&graph),
                }
            );
            Ok(0)
        }
        Command::Run {
            file,
            input,
            thread,
            resume,
            resume_each,
            context,
            recursion_limit,
            checkpoint,
            stream,
            takeover,
            keep,
            ..
        } => {
            if let Some(id) = &thread {
                check_thread_id(id)?;
            }
            let mut engine = engine(builder).await?;
            let graph = load(&mut engine, &file)?;
            let input = input.map(|s| parse_json("--input", &s)).transpose()?;
            let resume = resume.map(|s| parse_json("--resume", &s)).transpose()?;
            let resume_each = match resume_each
                .map(|s| parse_json("--resume-each", &s))
                .transpose()?
            {
                None => Vec::new(),
                Some(Value::Object(map)) => map.into_iter().collect(),
                Some(other) => {
                    return Err(fail(format!(
                        "error: --resume-each: expected a JSON object of task → value, got {}\n  help: e.g. --resume-each '{{\"ask_a\": \"yes\", \"ask_b\": \"no\"}}'; the tasks are in the run's `interrupt` and its `siblings`",
                        engine::channel::kind(&other)
                    )));
                }
            };
            let context = match context.map(|s| parse_json("--context", &s)).transpose()? {
                Some(other) if !other.is_object() => {
                    return Err(fail(format!(
                        "error: --context: expected a JSON object, got {}\n  help: e.g. --context '{{\"user_name\": \"Ada\"}}'; the graph reads it as `context.user_name`",
                        engine::channel::kind(&other)
                    )));
                }
                context => context,
            };
            let store = open_store(store_spec(checkpoint.as_deref()).as_deref()).await?;
            // The trace's root, and what a failure report links to.
            let span = tracing::info_span!(
                target: "brainops",
                "cli.run",
                otel.name = %format_args!("brainops run {}", graph.name()),
                graph = %graph.name(),
            );
            let runner = Runner::new(graph).with_checkpointer(store);
            let mut request = RunRequest::new();
            request.thread_id = thread;
            request.input = input;
            request.resume = resume;
            request.resume_each = resume_each;
            request.takeover = takeover;
            request.context = context;
            request.recursion_limit = recursion_limit;
            let outcome = async {
                if stream {
                    let mut run = runner.stream(request);
                    while let Some(event) = run.next().await {
                        outln!("{}", serde_json::to_string(&event).unwrap_or_default());
                    }
                    run.outcome().await
                } else if std::io::stderr().is_terminal() {
                    // A person watches: a live line on stderr, erased at the end.
                    run_with_progress(&runner, request).await
                } else {
                    runner.invoke(request).await
                }
            }
            .instrument(span.clone())
            .await;
            if let Some(e) = &outcome.error {
                let _in_run = span.enter();
                tracing::error!(
                    target: "brainops::failure",
                    graph = %runner.graph().name(),
                    thread = %outcome.thread_id,
                    "run failed: {}", e.message
                );
            }
            // A run refused before it started (bad input, a thread that cannot take it) is
            // bad usage: exit 2 with the reason, as for a bad flag.
            if let Some(e) = &outcome.error
                && outcome.steps == 0
                && matches!(
                    e.detail,
                    engine::RunError::Input { .. } | engine::RunError::Thread { .. }
                )
            {
                return Err(fail(format!("error: {}", e.message)));
            }
            let conflict = outcome
                .error
                .as_ref()
                .is_some_and(|e| matches!(e.detail, engine::RunError::Conflict { .. }));
            let mut out = json!({
                "status": if conflict { json!("conflict") } else { json!(outcome.status) },
                "thread_id": outcome.thread_id,
                "state": outcome.state,
            });
            if let Some(i) = &outcome.interrupt {
                out["interrupt"] = json!(i);
                if i.kind == engine::InterruptKind::Wait {
                    eprintln!(
                        "note: node `{}` sleeps until {}; continue the thread after that with --thread {} and no input (`brainops serve` and `brainops worker` continue it by themselves)",
                        i.node,
                        i.value
                            .get("until")
                            .and_then(Value::as_str)
                            .unwrap_or("its due time"),
                        outcome.thread_id
                    );
                }
            }
            if !outcome.usage.is_empty() {
                out["usage"] = json!(outcome.usage);
            }
            if let Some(e) = &outcome.error {
                out["error"] = json!({ "message": e.message, "detail": e.detail });
                eprintln!("error: {}", e.message);
            }
            if let (Some(keep), None) = (keep, &outcome.error) {
                let pruned = runner
                    .prune(&outcome.thread_id, keep)
                    .await
                    .map_err(|e| fail(format!("error: --keep {keep}: {e}")))?;
                out["pruned_checkpoints"] = json!(pruned);
            }
            outln!("{out}");
            Ok(match &outcome.error {
                _ if conflict => 3,
                _ if outcome.status == RunStatus::Failed => 1,
                _ => 0,
            })
        }
        Command::Memory {
            command,
            store,
            embedder,
        } => memory_cli::run(command, store, embedder).await,
        Command::Cron { url, command } => cron_cli::run(command, &url).await,
        Command::Agents { command } => {
            let (registry, catalog) = builder.catalog().map_err(engine_failure)?;
            agents_cli::agents(command, &catalog, &registry)
        }
        Command::Tools { command } => agents_cli::tools(command, engine(builder).await?.registry()),
        Command::Chat {
            message,
            model,
            system,
            schema,
            stream,
            max_tokens,
            temperature,
        } => {
            chat(ChatArgs {
                message,
                models: model,
                system,
                schema,
                stream,
                max_tokens,
                temperature,
            })
            .await
        }
        Command::Threads {
            command,
            checkpoint,
        } => {
            let spec = store_spec(checkpoint.as_deref());
            if spec.as_deref() == Some("memory") {
                return Err(fail(
                    "error: `threads` needs a persistent store; `memory` forgets threads when the process exits\n  help: use sqlite:PATH, or leave --checkpoint out for the default file",
                ));
            }
            let saver = open_store(spec.as_deref()).await?;
            let engine = engine(builder.with_checkpointer(Arc::clone(&saver))).await?;
            threads(command, saver, engine).await
        }
    }
}

async fn threads(
    command: ThreadsCommand,
    saver: Arc<dyn Checkpointer>,
    mut engine: brainops::Engine,
) -> Result<u8, Failure> {
    let store_err =
        |e: engine::checkpoint::CheckpointError| fail(format!("error: checkpoint store: {e}"));
    let run_err = |e: engine::RunError| Failure {
        code: if matches!(e, engine::RunError::Conflict { .. }) {
            3
        } else {
            1
        },
        message: format!("error: {e}"),
    };
    match command {
        ThreadsCommand::List => {
            let list = saver.threads().await.map_err(store_err)?;
            outln!("{}", json!(list));
        }
        ThreadsCommand::History { id } => {
            let list = saver.list(&id).await.map_err(store_err)?;
            if list.is_empty() && saver.thread(&id).await.map_err(store_err)?.is_none() {
                return Err(Failure {
                    message: format!("error: no thread `{id}`; see `brainops threads list`"),
                    code: 1,
                });
            }
            outln!("{}", json!(list));
        }
        ThreadsCommand::Show { id, graph, at } => {
            let graph = load(&mut engine, &graph)?;
            let runner = engine.runner_for(graph);
            let snapshot = runner.state(&id, at).await.map_err(run_err)?;
            let info = saver.thread(&id).await.map_err(store_err)?;
            outln!("{}", json!({ "thread": info, "state": snapshot }));
        }
        ThreadsCommand::Fork {
            id,
            at,
            graph,
            new_thread,
        } => {
            let graph = load(&mut engine, &graph)?;
            let runner = engine.runner_for(graph);
            let new_id = runner.fork(&id, at, new_thread).await.map_err(run_err)?;
            outln!(
                "{}",
                json!({ "thread_id": new_id, "forked_from": { "thread_id": id, "checkpoint_id": at } })
            );
        }
        ThreadsCommand::Update { id, graph, values } => {
            let values = parse_json("--values", &values)?;
            let graph = load(&mut engine, &graph)?;
            let runner = engine.runner_for(graph);
            let checkpoint = runner.update_state(&id, &values).await.map_err(run_err)?;
            outln!(
                "{}",
                json!({ "thread_id": id, "checkpoint_id": checkpoint })
            );
        }
        ThreadsCommand::Delete { id } => {
            check_thread_id(&id)?;
            if saver.thread(&id).await.map_err(store_err)?.is_none() {
                return Err(Failure {
                    message: format!("error: no thread `{id}`; see `brainops threads list`"),
                    code: 1,
                });
            }
            // Its subgraph threads go with it.
            saver.delete_thread(&id).await.map_err(store_err)?;
            outln!("{}", json!({ "deleted": id }));
        }
        ThreadsCommand::Prune { id, keep, graph } => {
            if keep == 0 {
                return Err(fail(
                    "error: --keep 0 would delete the thread's state\n  help: use `brainops threads delete ID` to delete a thread",
                ));
            }
            if saver.thread(&id).await.map_err(store_err)?.is_none() {
                return Err(Failure {
                    message: format!("error: no thread `{id}`; see `brainops threads list`"),
                    code: 1,
                });
            }
            let pruned = match graph {
                Some(graph) => {
                    let graph = load(&mut engine, &graph)?;
                    engine
                        .runner_for(graph)
                        .prune(&id, keep)
                        .await
                        .map_err(run_err)?
                }
                None => saver.prune(&id, keep).await.map_err(store_err)?,
            };
            let left = saver.list(&id).await.map_err(store_err)?.len();
            outln!(
                "{}",
                json!({ "thread_id": id, "pruned": pruned, "kept": left })
            );
        }
        ThreadsCommand::Expire { older_than } => {
            let age = parse_age("--older-than", &older_than)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let gone = saver
                .expire(now.saturating_sub(age))
                .await
                .map_err(store_err)?;
            outln!("{}", json!({ "expired": gone }));
        }
    }
    Ok(0)
}

struct ChatArgs {
    message: String,
    models: Vec<String>,
    system: Option<String>,
    schema: Option<PathBuf>,
    stream: bool,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
}

async fn chat(args: ChatArgs) -> Result<u8, Failure> {
    use agents::llm::{
        ChatModel, ChatRequest, Fallback, Message, ProviderConfig, Resilient, RetryPolicy,
        StreamEvent, connect,
    };
    use futures_util::StreamExt;
    use std::io::Write;

    if let Some(t) = args.temperature
        && !(t.is_finite() && (0.0..=2.0).contains(&t))
    {
        return Err(fail(format!(
            "error: --temperature {t} is out of range\n  help: give a number from 0 (most focused) to 2"
        )));
    }
    let schema = match &args.schema {
        Some(path) => Some(read_schema(path)?),
        None => None,
    };
    let config = ProviderConfig::default();
    let mut chain: Vec<Arc<dyn ChatModel>> = Vec::new();
    for name in &args.models {
        let model = connect(name, &config).map_err(|e| Failure {
            message: format!("error: --model {name}: {e}"),
            code: if e.kind == agents::llm::ErrorKind::InvalidRequest {
                2
            } else {
                1
            },
        })?;
        chain.push(Arc::new(Resilient::new(model, RetryPolicy::default())));
    }
    let model: Arc<dyn ChatModel> = if chain.len() == 1 {
        chain.remove(0)
    } else {
        Arc::new(Fallback::new(chain))
    };
    let mut messages = Vec::new();
    if let Some(system) = args.system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(args.message));
    let mut request = ChatRequest::new(messages);
    request.output_schema = schema;
    request.max_tokens = args.max_tokens;
    request.temperature = args.temperature;
    let failed = |e: agents::llm::LlmError| Failure {
        message: format!("error: {e}"),
        code: 1,
    };
    if args.stream {
        let mut events = model.stream(&request).await.map_err(failed)?;
        let mut out = std::io::stdout().lock();
        while let Some(event) = events.next().await {
            match event.map_err(failed)? {
                StreamEvent::Text { delta } => {
                    if let Err(e) = out.write_all(delta.as_bytes()).and_then(|()| out.flush())
                        && e.kind() == std::io::ErrorKind::BrokenPipe
                    {
                        // Nobody reads the rest: stop generating it.
                        return Ok(0);
                    }
                }
                StreamEvent::Done { .. } => {
                    let _ = writeln!(out);
                }
                StreamEvent::ToolCall { .. } => {}
            }
        }
    } else {
        let reply = model.complete(&request).await.map_err(failed)?;
        // With a schema the reply is JSON: print it on one line, as scripts expect.
        match (
            &request.output_schema,
            serde_json::from_str::<Value>(&reply.text),
        ) {
            (Some(_), Ok(value)) => outln!("{value}"),
            _ => outln!("{}", reply.text.trim_end()),
        }
    }
    Ok(0)
}

/// Reads `--schema FILE`: JSON, and a valid JSON Schema, checked before any model sees it.
fn read_schema(path: &Path) -> Result<Value, Failure> {
    let shown = path.display();
    let text = read_file("--schema", path)?;
    let schema: Value = serde_json::from_str(&text).map_err(|e| {
        fail(format!(
            "error: {shown}:{}:{}: invalid JSON: {e}\n  help: --schema takes a file holding a JSON Schema, e.g. {{\"type\": \"object\", \"properties\": {{\"priority\": {{\"enum\": [\"low\", \"urgent\"]}}}}}}",
            e.line(),
            e.column()
        ))
    })?;
    jsonschema::validator_for(&schema).map_err(|e| {
        fail(format!(
            "error: {shown}: not a valid JSON Schema: {e} (at `{}`)\n  help: see https://json-schema.org/understanding-json-schema/",
            e.instance_path()
        ))
    })?;
    Ok(schema)
}

/// Parses an age like `90m`, `12h`, `30d` or `45s` into milliseconds (saturating); `flag`
/// names it in errors.
fn parse_age(flag: &str, text: &str) -> Result<u64, Failure> {
    let bad = || {
        fail(format!(
            "error: {flag} `{text}` is not an age\n  help: use a number and a unit: 45s, 90m, 12h, 30d"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// Refuses thread ids a user cannot mean: empty ones, and a subgraph's internal thread.
fn check_thread_id(id: &str) -> Result<(), Failure> {
    if id.trim().is_empty() {
        return Err(fail(
            "error: --thread must not be empty\n  help: leave it out for a new thread id, or give one, e.g. --thread job-42",
        ));
    }
    if engine::checkpoint::is_subgraph_thread(id) {
        let parent = id.split_once('/').map_or(id, |(p, _)| p);
        return Err(fail(format!(
            "error: `{id}` is the internal thread of a subgraph; the runner owns it\n  help: run, resume or delete its parent thread `{parent}`"
        )));
    }
    Ok(())
}

fn load(engine: &mut brainops::Engine, file: &Path) -> Result<Arc<Graph>, Failure> {
    engine.load_file(file).map_err(engine_failure)
}

/// An engine that could not be put together, or a graph that did not load: bad input.
fn engine_failure(e: brainops::EngineError) -> Failure {
    match e {
        brainops::EngineError::Load(e) => fail(e.to_string()),
        other => fail(format!("error: {other}")),
    }
}

/// The largest file a flag reads (`--input @FILE`, `--schema FILE`, ...).
const MAX_FLAG_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the UTF-8 file a flag names, at most [`MAX_FLAG_FILE_BYTES`].
fn read_file(flag: &str, path: &Path) -> Result<String, Failure> {
    loader::read_text_file(path, MAX_FLAG_FILE_BYTES).map_err(|d| {
        let place = if d.line > 0 {
            format!("{}:{}:{}", d.file, d.line, d.col)
        } else {
            format!("{flag}: {}", d.file)
        };
        let help = d.help.map(|h| format!("\n  help: {h}")).unwrap_or_default();
        fail(format!("error: {place}: {}{help}", d.message))
    })
}

/// Parses a JSON flag value, or the file named after `@`.
fn parse_json(flag: &str, text: &str) -> Result<Value, Failure> {
    let (source, body) = match text.strip_prefix('@') {
        Some(path) => (path.to_string(), read_file(flag, Path::new(path))?),
        None => (flag.to_string(), text.to_string()),
    };
    serde_json::from_str(&body).map_err(|e| {
        fail(format!(
            "error: {source}:{}:{}: invalid JSON: {e}\n  help: pass a JSON value, e.g. {flag} '{{\"key\": 1}}'; quote strings: '\"yes\"'",
            e.line(),
            e.column()
        ))
    })
}

/// Which store to use: `--checkpoint`, else `$BRAINOPS_CHECKPOINT`, else the default file.
/// The longest a served run may take: `BRAINOPS_RUN_TIMEOUT_SECS` (default one day, as the
/// reference server's `BG_JOB_TIMEOUT_SECS`).
/// Scheduled cleanup from BRAINOPS_CLEANUP_EVERY (default 1h), BRAINOPS_THREAD_TTL and
/// BRAINOPS_KEEP_CHECKPOINTS (both off unless set).
fn cleanup_policy() -> Result<brainops::server::Cleanup, Failure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut policy = brainops::server::Cleanup::default();
    if let Some(every) = var("BRAINOPS_CLEANUP_EVERY") {
        policy.every =
            Duration::from_millis(parse_age("BRAINOPS_CLEANUP_EVERY", every.trim())?.max(1000));
    }
    if let Some(ttl) = var("BRAINOPS_THREAD_TTL") {
        policy.thread_ttl = Some(Duration::from_millis(parse_age(
            "BRAINOPS_THREAD_TTL",
            ttl.trim(),
        )?));
    }
    if let Some(keep) = var("BRAINOPS_KEEP_CHECKPOINTS") {
        policy.keep_checkpoints = Some(keep.trim().parse::<usize>().ok().filter(|k| *k >= 1).ok_or_else(|| {
            Failure {
                message: format!("error: BRAINOPS_KEEP_CHECKPOINTS `{keep}` is not a count\n  help: give how many of each thread's latest checkpoints to keep, at least 1"),
                code: 2,
            }
        })?);
    }
    Ok(policy)
}

/// A positive number of `unit_ms` milliseconds from the environment variable `name`.
fn env_duration(name: &str, unit_ms: f64) -> Option<Duration> {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .map(|v| Duration::from_secs_f64(v * unit_ms / 1000.0))
}

fn run_timeout() -> std::time::Duration {
    let secs = std::env::var("BRAINOPS_RUN_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(86_400.0);
    std::time::Duration::from_secs_f64(secs)
}

fn store_spec(flag: Option<&str>) -> Option<String> {
    let from_env = std::env::var("BRAINOPS_CHECKPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    flag.map(str::to_string).or(from_env)
}

/// Opens the checkpoint store named by `spec` (see [`store_spec`]); `None` is the default
/// SQLite file under `$BRAINOPS_HOME` or `.brainops/`.
async fn open_store(spec: Option<&str>) -> Result<Arc<dyn Checkpointer>, Failure> {
    let url = match spec {
        Some(url) => url.to_string(),
        None => format!("sqlite:{}", brainops::stores::default_file("threads.db")),
    };
    brainops::open_checkpointer(&url)
        .await
        .map_err(|e| fail(format!("error: {e}")))
}
