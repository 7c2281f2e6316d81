//! The agent server behind `brainops serve`: LangGraph's Agent Server API over HTTP and SSE,
//! so `langgraph-sdk`, `RemoteGraph` and the JS SDK talk to this engine unchanged.
//!
//! Every graph in the `--graphs` directory is an assistant. Threads keep their state in the
//! checkpointer; the server keeps thread metadata and runs beside it (`control`), runs them
//! in the background with at most one active run per thread (`runs`), and translates the
//! engine's events into LangGraph's stream modes (`wire`). `docs/server.md` has the API
//! coverage and what differs from the reference server.

mod api;
mod auth;
mod cleanup;
mod console;
mod control;
mod crons;
mod fanout;
mod metrics;
mod protocol;
mod runs;
mod thread_stream;
mod webhook;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use engine::{Checkpointer, Graph, Runner};

use crate::Engine;

pub use auth::{Auth, SupabaseAuth};
pub use cleanup::Cleanup;
pub use metrics::Metrics;

/// How `brainops serve` listens and runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to bind (default 127.0.0.1).
    pub host: std::net::IpAddr,
    /// The port (default 2024, as `langgraph dev`; 0 picks a free one).
    pub port: u16,
    /// Where threads and runs are kept: the same URL as the engine's checkpointer.
    pub checkpoint: String,
    /// The memory store behind `/store` (same forms as `--memory`).
    pub memory: String,
    /// The embedder for `/store` search.
    pub embedder: String,
    /// Runs executing at once.
    pub max_concurrent_runs: usize,
    /// Origins allowed to call from a browser (CORS); empty allows none.
    pub cors_origins: Vec<String>,
    /// The largest request body, in bytes (413 beyond it).
    pub body_limit: usize,
    /// How long SIGTERM waits for running runs before the process exits (they continue from
    /// their last checkpoint when a server starts again).
    pub shutdown_grace: Duration,
    /// How callers are authenticated.
    pub auth: Auth,
    /// How long a finished run's events stay replayable (`Last-Event-ID`, joins).
    pub stream_retention: Duration,
    /// The longest a run may take; it then ends with status `timeout`.
    pub run_timeout: Duration,
    /// What this process does: serve the API, execute runs, or both.
    pub role: Role,
    /// How long a process's claim on a run lasts unless renewed (renewed every second): how
    /// soon another process continues the runs of one that stopped without a word.
    pub lease: Duration,
    /// How often an idle process looks for runs other processes queued, when nothing wakes
    /// it (shared store only).
    pub poll: Duration,
    /// A direct or session-mode Postgres URL to `LISTEN` on, so runs start and cancels land
    /// at once instead of at the next poll or heartbeat (`BRAINOPS_LISTEN_URL`).
    pub listen_url: Option<String>,
    /// Redis (`REDIS_URL`): instant wake-ups and cancels, and live event fan-out between
    /// processes. Optional; Postgres alone does everything, more slowly.
    pub redis_url: Option<String>,
    /// Scheduled cleanup: idle threads, old checkpoints, expired memories.
    pub cleanup: Cleanup,
    /// The agent catalog as `/agents` and the console show it
    /// ([`listing::catalog_detail`](crate::listing::catalog_detail)); empty: none listed.
    pub agents: Arc<Vec<serde_json::Value>>,
    /// Served at `/metrics`; fed by [`Metrics::layer`], which the process installs with its
    /// `tracing` subscriber ([`telemetry::init`](crate::telemetry::init)). `None`: 404.
    pub metrics: Option<Arc<Metrics>>,
    /// A worker serves `/metrics` (and `/ok`), nothing else, on this address when given
    /// (`BRAINOPS_METRICS_ADDR`); a worker has no other port.
    pub metrics_addr: Option<SocketAddr>,
}

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves the API and executes runs (`brainops serve`).
    Both,
    /// Serves the API only (`brainops serve --no-worker`): other processes execute runs.
    Api,
    /// Executes runs only (`brainops worker`).
    Worker,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 2024,
            checkpoint: "memory".into(),
            memory: "memory".into(),
            embedder: "local".into(),
            max_concurrent_runs: 10,
            cors_origins: Vec::new(),
            body_limit: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            auth: Auth::None,
            stream_retention: Duration::from_secs(600),
            run_timeout: Duration::from_secs(86_400),
            role: Role::Both,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            listen_url: None,
            redis_url: None,
            cleanup: Cleanup::default(),
            agents: Arc::default(),
            metrics: None,
            metrics_addr: None,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {message}\n  help: is another server on that port? pick another with --port"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// The server's store could not be opened.
    #[error("cannot open the server's store: {0}")]
    Store(String),
    /// The options do not fit together.
    #[error("{0}")]
    Options(String),
    /// The server failed while serving.
    #[error("the server stopped: {0}")]
    Serve(String),
}

/// A graph served as an assistant.
pub(crate) struct Assistant {
    pub(crate) assistant_id: String,
    pub(crate) graph_id: String,
    pub(crate) graph: Arc<Graph>,
    pub(crate) runner: Runner,
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) assistants: Vec<Assistant>,
    pub(crate) checkpointer: Arc<dyn Checkpointer>,
    pub(crate) control: Arc<dyn control::ControlStore>,
    pub(crate) runs: Arc<runs::Runs>,
    pub(crate) options: ServeOptions,
    pub(crate) memory: tokio::sync::OnceCell<Arc<dyn memory::MemoryStore>>,
    pub(crate) addr: std::sync::OnceLock<SocketAddr>,
    pub(crate) started_ms: u64,
    /// The Supabase project's signing keys, once fetched.
    pub(crate) jwks: tokio::sync::RwLock<Option<jsonwebtoken::jwk::JwkSet>>,
    /// The v2 protocol's per-thread event buses.
    pub(crate) buses: protocol::Buses,
    /// Redis, when `REDIS_URL` is set.
    pub(crate) redis: Option<Arc<fanout::Redis>>,
}

impl App {
    /// Tells the other processes `run` (one was queued) or `cancel:ACTION:RUN_ID`: through
    /// Redis when there is one, else through Postgres (`NOTIFY`, heard where a process
    /// listens).
    pub(crate) async fn tell(&self, payload: &str) {
        match &self.redis {
            Some(r) => r.control(payload).await,
            None => self.control.notify(payload).await,
        }
    }

    /// The assistant with this id, or the system assistant of the graph with this name.
    pub(crate) fn assistant(&self, id: &str) -> Option<&Assistant> {
        self.assistants
            .iter()
            .find(|a| a.assistant_id == id || a.graph_id == id)
    }

    /// The graph of a thread's runs (for answering its question over the v2 protocol).
    pub(crate) async fn latest_assistant(&self, thread_id: &str) -> Option<String> {
        match self.checkpointer.thread(thread_id).await {
            Ok(Some(info)) => Some(info.graph),
            _ => {
                self.control
                    .thread(thread_id)
                    .await
                    .ok()
                    .flatten()?
                    .graph_id
            }
        }
    }

    /// The memory store behind `/store`, opened on first use.
    pub(crate) async fn memory(&self) -> Result<&Arc<dyn memory::MemoryStore>, String> {
        self.memory
            .get_or_try_init(|| async {
                let embedder = crate::stores::open_embedder(&self.options.embedder)
                    .map_err(|e| e.to_string())?;
                crate::stores::open_memory_store(&self.options.memory, embedder)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }
}

/// Locks a mutex; `None` when a thread panicked holding it (nothing here panics).
pub(crate) fn lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    m.lock().ok()
}

/// Serves `engine`'s graphs until SIGTERM or Ctrl-C, calling `ready` with the bound address
/// once `/ok` answers.
pub async fn serve(
    engine: Engine,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    serve_until(engine, options, ready, shutdown_signal()).await
}

/// Serves until `shutdown` completes, then drains as on SIGTERM (for embedding and tests).
pub async fn serve_until(
    engine: Engine,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let control = control::open(&options.checkpoint)
        .await
        .map_err(ServeError::Store)?;
    if options.role != Role::Both && !control.shared() {
        return Err(ServeError::Options(format!(
            "{} needs a store other processes share; SQLite and memory belong to one process\n  \
             help: give --checkpoint postgres://… (the same database for every server and worker), \
             or run plain `brainops serve`",
            if options.role == Role::Worker {
                "a worker"
            } else {
                "--no-worker"
            }
        )));
    }
    let redis = match options.redis_url.as_deref() {
        Some(url) if control.shared() => {
            Some(fanout::Redis::open(url).map_err(ServeError::Options)?)
        }
        _ => None,
    };
    let checkpointer = engine.checkpointer().clone();
    let assistants = engine
        .graphs()
        .map(|(name, graph)| Assistant {
            assistant_id: wire::assistant_uuid(name),
            graph_id: name.to_string(),
            graph: graph.clone(),
            runner: engine.runner_for(graph.clone()).with_lease(options.lease),
        })
        .collect();
    let app = Arc::new(App {
        assistants,
        checkpointer,
        control,
        runs: Arc::new(runs::Runs::new(options.max_concurrent_runs)),
        options: options.clone(),
        memory: tokio::sync::OnceCell::new(),
        addr: std::sync::OnceLock::new(),
        started_ms: wire::now_ms(),
        jwks: tokio::sync::RwLock::new(None),
        buses: protocol::Buses::default(),
        redis: redis.as_ref().map(|(r, _)| r.clone()),
    });
    let executes = options.role != Role::Api;
    let listener = if options.role == Role::Worker && options.metrics_addr.is_none() {
        None
    } else {
        let addr = match (options.role, options.metrics_addr) {
            (Role::Worker, Some(addr)) => addr,
            _ => SocketAddr::new(options.host, options.port),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServeError::Bind {
                addr,
                message: e.to_string(),
            })?;
        let bound = listener.local_addr().map_err(|e| ServeError::Bind {
            addr,
            message: e.to_string(),
        })?;
        let _ = app.addr.set(bound);
        Some((listener, bound))
    };
    let mut background = Vec::new();
    if let Some((r, client)) = redis {
        background.push(tokio::spawn(fanout::subscribe(app.clone(), r, client)));
    }
    if app.control.shared() {
        background.push(tokio::spawn(protocol::watch_threads(app.clone())));
        let store = app.control.clone();
        background.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(control::CLOCK_SYNC_EVERY).await;
                control::sync_clock(store.as_ref()).await;
            }
        }));
    }
    if executes {
        let recovered = runs::recover(&app).await.map_err(ServeError::Store)?;
        if recovered > 0 {
            tracing::info!("{recovered} runs left running are queued again");
        }
        background.push(tokio::spawn(runs::dispatch(app.clone())));
        background.push(tokio::spawn(runs::heartbeat(app.clone())));
        if let Some(url) = options.listen_url.clone() {
            background.push(tokio::spawn(runs::listen(app.clone(), url)));
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server = None;
    let bound = match listener {
        Some((listener, bound)) => {
            let router = if options.role == Role::Worker {
                api::metrics_router(app.clone())
            } else {
                api::router(app.clone())
            };
            let mut stop_http = stop_rx.clone();
            // Responses are written in pieces (headers, then a streamed body): without
            // NODELAY, Nagle's algorithm holds the last piece for the client's delayed ACK,
            // ~40 ms a request.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("cannot set TCP_NODELAY: {e}");
                }
            });
            server = Some(tokio::spawn(async move {
                // Served as a plain service: handing axum the Router itself makes it
                // deep-copy the whole route table for every connection (~85 KB each), since
                // `with_state` unwraps a shared Arc by cloning it. The service is an Arc
                // clone per connection.
                use axum::ServiceExt;
                let service = router
                    .into_service::<axum::body::Body>()
                    .into_make_service();
                axum::serve(listener, service)
                    .with_graceful_shutdown(async move {
                        let _ = stop_http.wait_for(|s| *s).await;
                    })
                    .await
            }));
            bound
        }
        None => SocketAddr::new(options.host, 0),
    };
    ready(bound);
    shutdown.await;
    // Stop taking requests and starting runs; let running runs end (each step they finish
    // is checkpointed), then exit. Runs still going after the grace period continue from
    // their last checkpoint in the next process that claims them.
    let _ = stop_tx.send(true);
    app.runs.stop();
    let deadline = tokio::time::Instant::now() + options.shutdown_grace;
    let mut ended = app.runs.ended();
    let mut left_running = false;
    while app.runs.running() > 0 {
        if tokio::time::timeout_at(deadline, ended.changed())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} runs still running at shutdown; another process (or the next start) continues them",
                app.runs.running()
            );
            left_running = true;
            break;
        }
    }
    for task in background {
        task.abort();
    }
    if left_running && app.control.shared() {
        runs::hand_over(&app).await;
    }
    // Open streams would hold the graceful shutdown forever; they end with the process.
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_millis(200), server).await;
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
