//! BrainOps Engine: multi-agent orchestration of TOML agent graphs.
//!
//! This facade is what a backend embeds. [`Engine`] puts together the built-in tools and
//! agents, your own tools and nodes, the graphs of a directory and a checkpoint store;
//! [`open_checkpointer`] and [`open_memory`] open stores from the URLs users write. The
//! crates underneath are re-exported for everything else: [`engine`] (graphs, executor,
//! checkpoints, events), [`agents`] (models, tools, agents, integrations) and [`memory`].
//!
//! The whole story, from a directory of graphs to a forked thread:
//!
//! ```
//! # brainops::doc_runtime(async {
//! use brainops::{Engine, RunRequest, RunStatus, node_async};
//! use serde_json::json;
//! let engine = Engine::builder()
//!     .tool("crm.note", node_async(|input, _ctx| async move { Ok(json!({"noted": input})) }))
//!     .graphs("graphs") // every *.toml in it, by graph name
//!     .checkpointer("memory") // or sqlite:PATH, a file, postgres://…
//!     .build()
//!     .await?;
//! let runner = engine.runner("lead_intake")?;
//! let lead = json!({"lead": {"name": "Ada", "area_sqft": 2000, "pitch": 6,
//!                            "roof_age_years": 22, "storm_damage": true}});
//! let mut run = runner.stream(RunRequest::new().thread("lead-1").input(lead));
//! while let Some(event) = run.next().await {
//!     println!("{}", serde_json::to_string(&event)?);
//! }
//! let outcome = run.outcome().await; // it waits for a person's approval
//! assert_eq!(outcome.status, RunStatus::Interrupted);
//! let done = runner.invoke(RunRequest::new().thread("lead-1").resume(json!("approve"))).await;
//! assert_eq!(done.state["proposal"]["to"], "Ada");
//! let history = runner.history("lead-1").await?; // every checkpoint, oldest first
//! let fork = runner.fork("lead-1", history[1].checkpoint_id, None).await?;
//! assert_eq!(runner.state(&fork, None).await?.values["approval"], json!(null));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

pub mod listing;
pub mod server;
pub mod stores;
pub mod telemetry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use agents;
pub use engine;
pub use memory;

pub use engine::{
    Checkpointer, Event, Graph, LoadError, Node, NodeContext, NodeError, Registry, RunOutcome,
    RunRequest, RunStatus, RunStream, Runner, node_async, node_fn,
};
pub use stores::{
    OpenError, default_home, lazy_memory, open_checkpointer, open_embedder, open_memory,
    open_memory_store,
};

/// Why an [`Engine`] could not be built or a graph not found.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A graph file is invalid (every problem, at its `file:line:col`).
    #[error("{0}")]
    Load(#[from] LoadError),
    /// An agent spec from an agent directory is invalid.
    #[error("{0}\n  (the agent catalog did not load)")]
    Catalog(LoadError),
    /// A store could not be opened.
    #[error("{0}")]
    Open(#[from] OpenError),
    /// A graph directory could not be read.
    #[error("cannot read the graph directory {dir}: {message}")]
    GraphDir {
        /// The directory.
        dir: String,
        /// What reading it said.
        message: String,
    },
    /// Two files declare the same graph name.
    #[error("graph `{name}` is declared by both {first} and {second}; graph names must be unique")]
    DuplicateGraph {
        /// The graph name.
        name: String,
        /// The file loaded first.
        first: String,
        /// The file that claims the name again.
        second: String,
    },
    /// No graph of that name was loaded.
    #[error("no graph named `{name}`; loaded: {known}")]
    UnknownGraph {
        /// The name asked for.
        name: String,
        /// The loaded graphs' names, comma-separated.
        known: String,
    },
}

/// How agents, memory, stores and graphs are put together: see [`Engine::builder`].
#[derive(Clone)]
pub struct EngineBuilder {
    own: Registry,
    catalog: bool,
    models: Vec<String>,
    agent_dirs: Vec<PathBuf>,
    memory: Option<memory::LazyMemories>,
    integrations: agents::integrations::IntegrationConfig,
    graph_dirs: Vec<PathBuf>,
    graph_files: Vec<PathBuf>,
    checkpointer: Option<Result<Arc<dyn Checkpointer>, String>>,
}

impl EngineBuilder {
    /// Adds a tool graphs (`tool = "NAME"`) and agent specs (`tools = ["NAME"]`) can call;
    /// it replaces a built-in tool of the same name.
    pub fn tool(mut self, name: impl Into<String>, node: Arc<dyn Node>) -> Self {
        self.own.register_tool(name, node);
        self
    }

    /// Adds a tool with the description and argument schema models are shown.
    pub fn described_tool(
        mut self,
        name: impl Into<String>,
        info: engine::ToolInfo,
        node: Arc<dyn Node>,
    ) -> Self {
        self.own.register_described_tool(name, info, node);
        self
    }

    /// Adds an agent graphs can name (`agent = "NAME"`); it replaces a catalog agent of the
    /// same name.
    pub fn agent(mut self, name: impl Into<String>, node: Arc<dyn Node>) -> Self {
        self.own.register_agent(name, node);
        self
    }

    /// Leaves out the built-in tools, agents and integrations: only what you add.
    pub fn without_catalog(mut self) -> Self {
        self.catalog = false;
        self
    }

    /// Runs every agent on this model chain instead of its spec's (`local:smollm2-135m`,
    /// `openai:gpt-4o-mini`, ...; fallbacks in order).
    pub fn models(mut self, chain: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.models = chain.into_iter().map(Into::into).collect();
        self
    }

    /// Adds agent specs from `<dir>/<category>/<name>.toml`.
    pub fn agent_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.agent_dirs.push(dir.into());
        self
    }

    /// Adds agent specs from each directory (see [`agent_dir`](Self::agent_dir)).
    pub fn agent_dirs(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.agent_dirs.extend(dirs);
        self
    }

    /// The memory behind `recall`/`remember` nodes and agent memory, opened on first use
    /// (see [`open_memory`]). Default: the embedded file under [`default_home`], local
    /// embedder.
    pub fn memory(mut self, url: impl Into<String>, embedder: impl Into<String>) -> Self {
        self.memory = Some(lazy_memory(url, embedder));
        self
    }

    /// How integrations (Stripe, email, SMS, ...) send: live, or recorded (dry run).
    pub fn integrations(mut self, config: agents::integrations::IntegrationConfig) -> Self {
        self.integrations = config;
        self
    }

    /// Loads every `*.toml` in `dir` as a graph, by its `[graph] name`.
    pub fn graphs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.graph_dirs.push(dir.into());
        self
    }

    /// Loads one graph file.
    pub fn graph_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.graph_files.push(file.into());
        self
    }

    /// Where runs keep their checkpoints: see [`open_checkpointer`]. Default: in memory.
    pub fn checkpointer(mut self, url: impl Into<String>) -> Self {
        self.checkpointer = Some(Err(url.into()));
        self
    }

    /// A checkpoint store you opened yourself.
    pub fn with_checkpointer(mut self, store: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(Ok(store));
        self
    }

    /// The agent setup this builder describes.
    fn setup(&mut self) -> agents::Setup {
        let mut models = agents::Providers::default();
        if !self.models.is_empty() {
            models = models.for_every_agent(std::mem::take(&mut self.models));
        }
        agents::Setup {
            models: Arc::new(models),
            memories: Some(
                self.memory
                    .take()
                    .unwrap_or_else(|| lazy_memory(stores::default_file("memory.db"), "local")),
            ),
            providers: agents::llm::ProviderConfig::default(),
            integrations: self.integrations.clone(),
            agent_dirs: std::mem::take(&mut self.agent_dirs),
        }
    }

    /// Every agent compiled now (the built-in catalog, agent directories, then the agents
    /// you added), with the registry they were compiled against: for listing and showing
    /// agents. [`build`](Self::build) compiles each agent on its first call instead.
    pub fn catalog(mut self) -> Result<(Registry, agents::Catalog), EngineError> {
        let own = std::mem::take(&mut self.own);
        self.setup().build_on(own).map_err(EngineError::Catalog)
    }

    /// Opens the store, builds the registry (built-ins, then yours over them) and loads
    /// the graphs. Agents compile on their first call.
    pub async fn build(mut self) -> Result<Engine, EngineError> {
        let own = std::mem::take(&mut self.own);
        let registry = if self.catalog {
            self.setup()
                .registry_on(own)
                .map_err(EngineError::Catalog)?
        } else {
            own
        };
        let checkpointer = match self.checkpointer {
            None => open_checkpointer("memory").await?,
            Some(Ok(store)) => store,
            Some(Err(url)) => open_checkpointer(&url).await?,
        };
        let mut engine = Engine {
            registry: Arc::new(registry),
            graphs: BTreeMap::new(),
            files: BTreeMap::new(),
            checkpointer,
        };
        for dir in &self.graph_dirs {
            engine.load_dir(dir)?;
        }
        for file in &self.graph_files {
            engine.load_file(file)?;
        }
        Ok(engine)
    }
}

/// Graphs ready to run against one registry and one checkpoint store.
pub struct Engine {
    registry: Arc<Registry>,
    graphs: BTreeMap<String, Arc<Graph>>,
    files: BTreeMap<String, PathBuf>,
    checkpointer: Arc<dyn Checkpointer>,
}

impl Engine {
    /// Starts an engine: the built-in catalog, in-memory checkpoints, no graphs yet.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            own: Registry::new(),
            catalog: true,
            models: Vec::new(),
            agent_dirs: Vec::new(),
            memory: None,
            integrations: agents::integrations::IntegrationConfig::default(),
            graph_dirs: Vec::new(),
            graph_files: Vec::new(),
            checkpointer: None,
        }
    }

    /// Loads one graph file; returns it. It replaces a graph of the same name.
    pub fn load_file(&mut self, file: impl AsRef<Path>) -> Result<Arc<Graph>, EngineError> {
        let file = file.as_ref();
        let graph = Arc::new(engine::loader::load_file(file, &self.registry)?);
        let name = graph.name().to_string();
        self.files.insert(name.clone(), file.to_path_buf());
        self.graphs.insert(name, Arc::clone(&graph));
        Ok(graph)
    }

    /// A runner for `graph` (loaded or not) on the engine's checkpoint store.
    pub fn runner_for(&self, graph: Arc<Graph>) -> Runner {
        Runner::new(graph).with_checkpointer(Arc::clone(&self.checkpointer))
    }

    /// Loads every `*.toml` in `dir` (not below it), in name order; every file's problems
    /// are reported together.
    pub fn load_dir(&mut self, dir: impl AsRef<Path>) -> Result<usize, EngineError> {
        let dir = dir.as_ref();
        let unreadable = |e: std::io::Error| EngineError::GraphDir {
            dir: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut diagnostics = Vec::new();
        for file in &files {
            let graph = match engine::loader::load_file(file, &self.registry) {
                Ok(graph) => Arc::new(graph),
                Err(e) => {
                    diagnostics.extend(e.diagnostics);
                    continue;
                }
            };
            let name = graph.name().to_string();
            // Names are the ids graphs are run by: two files may not claim one.
            if let Some(first) = self.files.get(&name).filter(|f| f.as_path() != file) {
                return Err(EngineError::DuplicateGraph {
                    name,
                    first: first.display().to_string(),
                    second: file.display().to_string(),
                });
            }
            self.files.insert(name.clone(), file.clone());
            self.graphs.insert(name, graph);
        }
        if diagnostics.is_empty() {
            Ok(files.len())
        } else {
            Err(LoadError { diagnostics }.into())
        }
    }

    /// The graph named `name`.
    pub fn graph(&self, name: &str) -> Result<&Arc<Graph>, EngineError> {
        self.graphs
            .get(name)
            .ok_or_else(|| EngineError::UnknownGraph {
                name: name.to_string(),
                known: self.graphs.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every loaded graph, by name.
    pub fn graphs(&self) -> impl Iterator<Item = (&str, &Arc<Graph>)> {
        self.graphs.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// A runner for graph `name` on the engine's checkpoint store: invoke, stream, resume,
    /// read state and history, update, fork.
    pub fn runner(&self, name: &str) -> Result<Runner, EngineError> {
        Ok(self.runner_for(Arc::clone(self.graph(name)?)))
    }

    /// Adds a tool after the engine was built: graphs loaded from now on can call it.
    /// (Agent specs are offered the tools given to the builder.)
    pub fn register_tool(&mut self, name: impl Into<String>, node: Arc<dyn Node>) {
        Arc::make_mut(&mut self.registry).register_tool(name, node);
    }

    /// The tools and agents graphs load against.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The checkpoint store.
    pub fn checkpointer(&self) -> &Arc<dyn Checkpointer> {
        &self.checkpointer
    }
}

/// Runs a future on a fresh runtime (for the examples in these docs).
#[doc(hidden)]
pub fn doc_runtime<F: std::future::Future>(f: F) -> F::Output {
    engine::tokio_test_shim::run(f)
}
