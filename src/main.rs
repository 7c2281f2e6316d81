//! The `brainops` command line: validate, run, inspect threads, draw graphs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use engine::{
    Checkpointer, Graph, MemorySaver, RunRequest, RunStatus, Runner, SqliteSaver, loader, render,
};
use serde_json::{Value, json};

const AFTER_HELP: &str = "Examples:
  brainops validate graphs/*.toml
  brainops run graphs/lead_intake.toml --input '{\"lead\": {\"name\": \"Ada\", \"area_sqft\": 2000, \"pitch\": 6}}'
  brainops run graphs/lead_intake.toml --thread T1 --resume '\"yes\"'
  brainops threads list
  brainops graph graphs/lead_intake.toml --format mermaid";

#[derive(Parser)]
#[command(name = "brainops", version, about = "Run TOML agent graphs with checkpoints, interrupts and streaming", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
  brainops run graph.toml --thread job-42          # continue a crashed or failed run")]
    Run {
        file: PathBuf,
        /// Input as JSON, or @FILE to read it from a file.
        #[arg(long)]
        input: Option<String>,
        /// Thread id (default: a new one). Runs on the same thread share state.
        #[arg(long)]
        thread: Option<String>,
        /// Answer an interrupted thread with this JSON value (or @FILE).
        #[arg(long)]
        resume: Option<String>,
        /// Where checkpoints go: memory, sqlite:PATH, postgres://... (default: sqlite under
        /// .brainops/ or $BRAINOPS_HOME; or $BRAINOPS_CHECKPOINT).
        #[arg(long)]
        checkpoint: Option<String>,
        /// Print events as JSON lines, the final object last.
        #[arg(long)]
        stream: bool,
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
    /// Draw a graph as Mermaid or Graphviz DOT.
    #[command(
        after_help = "Example:\n  brainops graph graphs/lead_intake.toml --format dot | dot -Tpng > graph.png"
    )]
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Mermaid,
    Dot,
}

/// A CLI failure: the message goes to stderr, the code is the exit status.
struct Failure {
    message: String,
    code: u8,
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 2,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let registry = agents::builtin_registry();
    match cli.command {
        Command::Validate { files } => {
            let mut bad = 0;
            for file in &files {
                match loader::load_file(file, &registry) {
                    Ok(graph) => eprintln!(
                        "{}: ok ({} nodes)",
                        file.display(),
                        graph.node_names().count()
                    ),
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if bad == 0 { 0 } else { 1 })
        }
        Command::Graph { file, format } => {
            let graph = load(&file, &registry)?;
            print!(
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
            checkpoint,
            stream,
        } => {
            let graph = Arc::new(load(&file, &registry)?);
            let input = input.map(|s| parse_json("--input", &s)).transpose()?;
            let resume = resume.map(|s| parse_json("--resume", &s)).transpose()?;
            let runner = Runner::new(graph)
                .with_checkpointer(open_store(store_spec(checkpoint.as_deref()).as_deref())?);
            let mut request = RunRequest::new();
            request.thread_id = thread;
            request.input = input;
            request.resume = resume;
            let outcome = if stream {
                let (sink, mut events) = engine::EventSink::channel();
                let task = {
                    let runner = runner.clone();
                    tokio::spawn(async move { runner.run(request, Some(sink)).await })
                };
                while let Some(event) = events.next().await {
                    println!("{}", serde_json::to_string(&event).unwrap_or_default());
                }
                task.await
                    .map_err(|e| fail(format!("error: the run task stopped: {e}")))?
            } else {
                runner.invoke(request).await
            };
            let mut out = json!({
                "status": outcome.status,
                "thread_id": outcome.thread_id,
                "state": outcome.state,
            });
            if let Some(i) = &outcome.interrupt {
                out["interrupt"] = json!(i);
            }
            if let Some(e) = &outcome.error {
                out["error"] = json!({ "message": e.message, "detail": e.detail });
                eprintln!("error: {}", e.message);
            }
            println!("{out}");
            Ok(if outcome.status == RunStatus::Failed {
                1
            } else {
                0
            })
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
            let saver = open_store(spec.as_deref())?;
            threads(command, saver, &registry).await
        }
    }
}

async fn threads(
    command: ThreadsCommand,
    saver: Arc<dyn Checkpointer>,
    registry: &engine::Registry,
) -> Result<u8, Failure> {
    let store_err =
        |e: engine::checkpoint::CheckpointError| fail(format!("error: checkpoint store: {e}"));
    let run_err = |e: engine::RunError| Failure {
        message: format!("error: {e}"),
        code: 1,
    };
    match command {
        ThreadsCommand::List => {
            let list = saver.threads().await.map_err(store_err)?;
            println!("{}", json!(list));
        }
        ThreadsCommand::History { id } => {
            let list = saver.list(&id).await.map_err(store_err)?;
            if list.is_empty() && saver.thread(&id).await.map_err(store_err)?.is_none() {
                return Err(Failure {
                    message: format!("error: no thread `{id}`; see `brainops threads list`"),
                    code: 1,
                });
            }
            println!("{}", json!(list));
        }
        ThreadsCommand::Show { id, graph, at } => {
            let runner = Runner::new(Arc::new(load(&graph, registry)?))
                .with_checkpointer(Arc::clone(&saver));
            let snapshot = runner.state(&id, at).await.map_err(run_err)?;
            let info = saver.thread(&id).await.map_err(store_err)?;
            println!("{}", json!({ "thread": info, "state": snapshot }));
        }
        ThreadsCommand::Fork {
            id,
            at,
            graph,
            new_thread,
        } => {
            let runner = Runner::new(Arc::new(load(&graph, registry)?)).with_checkpointer(saver);
            let new_id = runner.fork(&id, at, new_thread).await.map_err(run_err)?;
            println!(
                "{}",
                json!({ "thread_id": new_id, "forked_from": { "thread_id": id, "checkpoint_id": at } })
            );
        }
        ThreadsCommand::Update { id, graph, values } => {
            let values = parse_json("--values", &values)?;
            let runner = Runner::new(Arc::new(load(&graph, registry)?)).with_checkpointer(saver);
            let checkpoint = runner.update_state(&id, &values).await.map_err(run_err)?;
            println!(
                "{}",
                json!({ "thread_id": id, "checkpoint_id": checkpoint })
            );
        }
        ThreadsCommand::Delete { id } => {
            saver.delete_thread(&id).await.map_err(store_err)?;
            println!("{}", json!({ "deleted": id }));
        }
    }
    Ok(0)
}

fn load(file: &Path, registry: &engine::Registry) -> Result<Graph, Failure> {
    loader::load_file(file, registry).map_err(|e| fail(e.to_string()))
}

/// Parses a JSON flag value, or the file named after `@`.
fn parse_json(flag: &str, text: &str) -> Result<Value, Failure> {
    let (source, body) = match text.strip_prefix('@') {
        Some(path) => {
            let body = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("error: {flag}: cannot read {path}: {e}")))?;
            (path.to_string(), body)
        }
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
fn store_spec(flag: Option<&str>) -> Option<String> {
    let from_env = std::env::var("BRAINOPS_CHECKPOINT")
        .ok()
        .filter(|s| !s.is_empty());
    flag.map(str::to_string).or(from_env)
}

/// Opens the checkpoint store named by `spec` (see [`store_spec`]); `None` is the default
/// SQLite file under `$BRAINOPS_HOME` or `.brainops/`.
fn open_store(spec: Option<&str>) -> Result<Arc<dyn Checkpointer>, Failure> {
    let path = match spec {
        None => default_home().join("threads.db"),
        Some("memory") => return Ok(Arc::new(MemorySaver::new())),
        Some(s) if s.starts_with("sqlite:") => PathBuf::from(&s["sqlite:".len()..]),
        Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            return Err(fail(
                "error: --checkpoint postgres://... is not available yet (the Postgres checkpointer is issue #3); use sqlite:PATH or memory",
            ));
        }
        Some(other) => {
            return Err(fail(format!(
                "error: --checkpoint `{other}` is not a store\n  help: use memory, sqlite:PATH or postgres://..."
            )));
        }
    };
    let saver = SqliteSaver::open(&path).map_err(|e| fail(format!("error: {e}")))?;
    Ok(Arc::new(saver))
}

fn default_home() -> PathBuf {
    match std::env::var_os("BRAINOPS_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(".brainops"),
    }
}
