//! Long-term memory for agents: JSON items under namespaces, found again by meaning, by
//! keyword and by filter.
//!
//! - [`MemoryStore`]: put / get / delete / search / list namespaces, with per-item TTL.
//!   Namespaces carry the tenant first (`["tenant:acme", "customer:42"]`).
//! - [`PgMemoryStore`]: PostgreSQL with pgvector (HNSW, cosine) and `tsvector` keyword search,
//!   ranked together by reciprocal rank fusion weighted by how much of the query each
//!   keyword match covers; row-level security keeps tenants apart.
//!   Works directly and through a transaction-mode pooler (Supabase's).
//! - [`EmbeddedStore`]: one SQLite file, no server; exact vector search and FTS5 keywords.
//! - [`Embedder`]: the local all-MiniLM-L6-v2 by default ([`LocalMiniLm`]), OpenAI through
//!   the provider adapters.
//! - [`Memories`]: what agents use: episodic, semantic and procedural memories, with
//!   near-duplicates merged instead of piled up, and recall ranked by relevance, recency
//!   and importance.
//! - [`register_tools`]: `memory.recall` and `memory.remember`, which graph nodes reach
//!   through `recall = {...}` and `remember = {...}`.
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

mod agent;
mod embed;
mod embedded;
mod item;
mod postgres;
mod rank;
mod scoped;
mod tools;

use async_trait::async_trait;

pub use agent::{Kind, Memories, Remembered};
#[cfg(feature = "local-embedder")]
pub use embed::LocalMiniLm;
pub use embed::{Cached, Embedder, HashingEmbedder, cosine, text_hash};
pub use embedded::EmbeddedStore;
pub use item::{
    Hit, Index, Item, Namespace, PutOptions, Ranking, Retrieval, Search, all_text, contains,
    texts_to_index,
};
pub use postgres::PgMemoryStore;
pub use scoped::TenantScoped;
pub use tools::{LazyMemories, register_tools};

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Bad input: a namespace, key, value, TTL or search the caller must fix.
    #[error("{0}")]
    Invalid(String),
    /// The store's vectors and the embedder's differ in size.
    #[error(
        "the store holds {store_dims}-d vectors from {store_embedder}, but the embedder {embedder} gives {embedder_dims}-d: use the same embedder (--embedder), or a separate store for this one"
    )]
    Dimensions {
        /// The embedder the store was filled with.
        store_embedder: String,
        /// Its vectors' size.
        store_dims: usize,
        /// The embedder given now.
        embedder: String,
        /// Its vectors' size.
        embedder_dims: usize,
    },
    /// The embedder failed.
    #[error("embedder: {0}")]
    Embedder(String),
    /// The store failed (connection, SQL, file).
    #[error("memory store: {0}")]
    Store(String),
}

impl From<sqlx::Error> for MemoryError {
    fn from(e: sqlx::Error) -> Self {
        MemoryError::Store(engine::pg::describe(&e))
    }
}

impl From<engine::pg::PgError> for MemoryError {
    fn from(e: engine::pg::PgError) -> Self {
        MemoryError::Store(engine::pg::redact(&e.to_string()))
    }
}

impl From<rusqlite::Error> for MemoryError {
    fn from(e: rusqlite::Error) -> Self {
        MemoryError::Store(format!("sqlite: {e}"))
    }
}

/// A long-term memory store.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Creates or replaces the item at (namespace, key). `options.index` chooses what is
    /// embedded; `options.ttl` makes it expire.
    async fn put(
        &self,
        namespace: &Namespace,
        key: &str,
        value: serde_json::Value,
        options: PutOptions,
    ) -> Result<(), MemoryError>;

    /// The item, unless it is absent or expired.
    async fn get(&self, namespace: &Namespace, key: &str) -> Result<Option<Item>, MemoryError>;

    /// Removes the item; says whether it existed.
    async fn delete(&self, namespace: &Namespace, key: &str) -> Result<bool, MemoryError>;

    /// Items under a namespace prefix, best first (most recently updated first when there is
    /// no query).
    async fn search(&self, search: &Search) -> Result<Vec<Hit>, MemoryError>;

    /// The distinct namespaces under `prefix` (sorted), cut to `max_depth` segments.
    async fn list_namespaces(
        &self,
        prefix: &Namespace,
        max_depth: Option<usize>,
    ) -> Result<Vec<Namespace>, MemoryError>;

    /// Deletes expired items; returns how many. Expired items are invisible before this runs.
    async fn sweep_expired(&self) -> Result<u64, MemoryError>;

    /// The embedder this store uses for indexing and queries.
    fn embedder(&self) -> &std::sync::Arc<dyn Embedder>;

    /// A handle the store itself limits to `tenant` (Postgres: row-level security), when
    /// it can; [`TenantScoped`] checks namespaces on top of it either way.
    fn tenant_store(&self, _tenant: &str) -> Option<std::sync::Arc<dyn MemoryStore>> {
        None
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs a store's search inside a `memory.search` span (target `brainops`): the store, the
/// namespace, the limit and how many hits came back; the query only with
/// `BRAINOPS_TRACE_CONTENT=1`, since it may hold what a customer said.
async fn traced_search(
    system: &'static str,
    search: &Search,
    run: impl std::future::Future<Output = Result<Vec<Hit>, MemoryError>>,
) -> Result<Vec<Hit>, MemoryError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        target: "brainops",
        "memory.search",
        db.system.name = system,
        brainops.namespace = tracing::field::Empty,
        brainops.limit = engine::trace::int(search.limit),
        brainops.hits = tracing::field::Empty,
        brainops.query = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record(
            "brainops.namespace",
            search.namespace_prefix.path().as_str(),
        );
        if engine::trace::content_enabled()
            && let Some(q) = &search.query
        {
            span.record("brainops.query", q.as_str());
        }
    }
    let result = run.instrument(span.clone()).await;
    if !span.is_disabled() {
        match &result {
            Ok(hits) => {
                span.record("brainops.hits", engine::trace::int(hits.len()));
            }
            Err(e) => engine::trace::fail(&span, &e.to_string()),
        }
    }
    result
}
