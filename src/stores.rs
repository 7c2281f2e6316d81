//! Opening stores from the URLs users write: one call for a checkpointer, one for memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Checkpointer, MemorySaver, SqliteSaver};
use memory::{Cached, EmbeddedStore, Embedder, LazyMemories, Memories, MemoryStore};

/// Texts whose vectors one process keeps (queries and rewritten items repeat).
const EMBEDDING_CACHE: usize = 10_000;

/// A store that could not be opened: what was asked, why, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenError {
    /// What went wrong, naming the store (passwords redacted).
    pub message: String,
    /// The remedy, when the message does not say it already.
    pub help: Option<String>,
    /// The user gave a URL or name that can never work (as opposed to a store that is down).
    pub bad_input: bool,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match &self.help {
            Some(help) => write!(f, "\n  help: {help}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for OpenError {}

impl OpenError {
    fn input(message: String, help: &str) -> Self {
        OpenError {
            message,
            help: (!help.is_empty()).then(|| help.into()),
            bad_input: true,
        }
    }

    fn unavailable(message: String, help: &str) -> Self {
        OpenError {
            message,
            help: (!help.is_empty()).then(|| help.into()),
            bad_input: false,
        }
    }
}

const POSTGRES_HELP: &str =
    "check the URL and that the server is up; a local one: eval \"$(scripts/postgres.sh)\"";

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The directory for default files: `$BRAINOPS_HOME`, else `.brainops/`.
pub fn default_home() -> PathBuf {
    match std::env::var_os("BRAINOPS_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(".brainops"),
    }
}

/// Opens a checkpoint store: `memory` (in the process, gone when it exits), `sqlite:PATH`
/// or a file path (SQLite), or `postgres://…` (add `?pgbouncer=true`, or use port 6543,
/// through a transaction pooler).
pub async fn open_checkpointer(url: &str) -> Result<Arc<dyn Checkpointer>, OpenError> {
    if url == "memory" {
        return Ok(Arc::new(MemorySaver::new()));
    }
    if is_postgres(url) {
        let saver = engine::PostgresSaver::connect(url).await.map_err(|e| {
            OpenError::unavailable(
                format!(
                    "cannot open the Postgres checkpoint store {}: {}",
                    engine::pg::redact(url),
                    engine::pg::redact(&e.to_string())
                ),
                POSTGRES_HELP,
            )
        })?;
        return Ok(Arc::new(saver));
    }
    let path = sqlite_path(
        url,
        "checkpoint store",
        "memory, sqlite:PATH, a file path or postgres://...",
    )?;
    let saver = SqliteSaver::open(&path).map_err(|e| {
        // The store's own message names the path and the remedy.
        OpenError::input(e.to_string(), "")
    })?;
    Ok(Arc::new(saver))
}

/// `sqlite:PATH` or a plain path. (An empty path is refused by the store itself: SQLite
/// would open a temporary database and keep nothing.)
fn sqlite_path(url: &str, what: &str, forms: &str) -> Result<PathBuf, OpenError> {
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    if path.contains("://") {
        return Err(OpenError::input(
            format!("the {what} `{}` is not a store", engine::pg::redact(url)),
            &format!("use {forms}"),
        ));
    }
    Ok(PathBuf::from(path))
}

/// The embedder named `local` (all-MiniLM-L6-v2 in the process, loaded on first use) or
/// `openai:MODEL[@DIMS]`, with a cache of recent texts.
pub fn open_embedder(name: &str) -> Result<Arc<dyn Embedder>, OpenError> {
    match name {
        "local" | "local:all-minilm-l6-v2" => Ok(Arc::new(Cached::new(
            memory::LocalMiniLm::lazy(local_embedder_path()),
            EMBEDDING_CACHE,
        ))),
        s if s.starts_with("openai:") => {
            let model = agents::llm::OpenAiEmbedder::connect(
                s,
                &agents::llm::ProviderConfig::default(),
                None,
            )
            .map_err(|e| {
                OpenError::input(
                    format!("the embedder {s}: {e}"),
                    "set OPENAI_API_KEY, or use `local`",
                )
            })?;
            Ok(Arc::new(Cached::new(model, EMBEDDING_CACHE)))
        }
        other => Err(OpenError::input(
            format!("the embedder {other:?} is not known"),
            "use `local` (all-MiniLM-L6-v2, the default) or openai:MODEL, e.g. openai:text-embedding-3-small",
        )),
    }
}

/// The local embedder's model directory: `$BRAINOPS_EMBEDDER_MODEL`, else the default.
fn local_embedder_path() -> PathBuf {
    match std::env::var_os("BRAINOPS_EMBEDDER_MODEL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => memory::LocalMiniLm::default_path(),
    }
}

/// Opens a memory store: `sqlite:PATH` or a file path (the embedded store), or
/// `postgres://…` (pgvector), embedding with `embedder` (see [`open_embedder`]).
pub async fn open_memory_store(
    url: &str,
    embedder: Arc<dyn Embedder>,
) -> Result<Arc<dyn MemoryStore>, OpenError> {
    if is_postgres(url) {
        let store = memory::PgMemoryStore::connect(url, embedder)
            .await
            .map_err(|e| {
                OpenError::unavailable(
                    format!(
                        "cannot open the Postgres memory store {}: {}",
                        engine::pg::redact(url),
                        engine::pg::redact(&e.to_string())
                    ),
                    POSTGRES_HELP,
                )
            })?;
        return Ok(Arc::new(store));
    }
    let path = sqlite_path(
        url,
        "memory store",
        "sqlite:PATH, a file path or postgres://...",
    )?;
    let store = EmbeddedStore::open(&path, embedder).map_err(|e| {
        OpenError::unavailable(
            format!("cannot open the memory store {}: {e}", path.display()),
            "give a path in a directory you can write to",
        )
    })?;
    Ok(Arc::new(store))
}

/// [`open_memory_store`] with the embedder named `embedder`, as the [`Memories`] that
/// `recall`/`remember` nodes and agents use.
pub async fn open_memory(url: &str, embedder: &str) -> Result<Memories, OpenError> {
    let embedder = open_embedder(embedder)?;
    Ok(Memories::new(open_memory_store(url, embedder).await?))
}

/// Memory opened only when a node first recalls or remembers: a run that never touches
/// memory never loads the embedder or connects.
pub fn lazy_memory(url: impl Into<String>, embedder: impl Into<String>) -> LazyMemories {
    let url = url.into();
    let embedder = embedder.into();
    LazyMemories::new(move || {
        let url = url.clone();
        let embedder = embedder.clone();
        async move {
            open_memory(&url, &embedder).await.map_err(|e| {
                // A wrong name is the user's to fix: a node must not retry it.
                if e.bad_input {
                    memory::MemoryError::Invalid(e.to_string())
                } else {
                    memory::MemoryError::Store(e.to_string())
                }
            })
        }
    })
}

/// The default file for `name` (`threads.db`, `memory.db`) under [`default_home`].
pub fn default_file(name: &str) -> String {
    default_home().join(Path::new(name)).display().to_string()
}
