//! Memory inside graphs: the tools `memory.recall` and `memory.remember`, which the TOML
//! keys `recall = {...}` and `remember = {...}` on a node stand for.
//!
//! The store behind them opens on first use, so graphs that never touch memory do not load
//! an embedding model.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use engine::node::{Node, NodeContext, NodeError, Registry, ToolInfo};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use crate::{Kind, Memories, MemoryError, Namespace, all_text};

type Opener =
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Memories, MemoryError>> + Send>> + Send + Sync;

/// Memories opened on first use and shared by the tools.
#[derive(Clone)]
pub struct LazyMemories {
    cell: Arc<OnceCell<Memories>>,
    open: Arc<Opener>,
}

impl LazyMemories {
    /// Memories opened by `open` the first time a node needs them.
    pub fn new<F, Fut>(open: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Memories, MemoryError>> + Send + 'static,
    {
        LazyMemories {
            cell: Arc::new(OnceCell::new()),
            open: Arc::new(move || Box::pin(open())),
        }
    }

    /// Memories already open.
    pub fn ready(memories: Memories) -> Self {
        let cell = OnceCell::new();
        let _ = cell.set(memories.clone());
        LazyMemories {
            cell: Arc::new(cell),
            open: Arc::new(move || {
                let m = memories.clone();
                Box::pin(async move { Ok(m) })
            }),
        }
    }

    /// Opens the memories on first use (once; a failed open is tried again next time).
    pub async fn get(&self) -> Result<&Memories, MemoryError> {
        self.cell.get_or_try_init(|| (self.open)()).await
    }
}

/// Registers `memory.recall` and `memory.remember` backed by `memories`.
pub fn register_tools(registry: &mut Registry, memories: LazyMemories) {
    registry.register_described_tool(
        "memory.recall",
        ToolInfo::new(
            "Finds the memories under a namespace that best answer a query (hybrid vector and keyword search, weighed by recency and importance).",
            json!({"type": "object", "required": ["namespace"], "properties": {
                "namespace": {"description": "segments as a list, or one `a/b` path"},
                "query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1},
                "kind": {"enum": ["episodic", "semantic", "procedural"]}, "filter": {"type": "object"}}}),
        ),
        Arc::new(RecallTool {
            memories: memories.clone(),
        }),
    );
    registry.register_described_tool(
        "memory.remember",
        ToolInfo::new(
            "Stores a memory (merging it into a near-duplicate of the same kind), keyed by the task so a retried task rewrites its own memory.",
            json!({"type": "object", "required": ["namespace", "value"], "properties": {
                "namespace": {"description": "segments as a list, or one `a/b` path"},
                "value": {"description": "text, or an object with `text` and other fields"},
                "kind": {"enum": ["episodic", "semantic", "procedural"]}, "key": {"type": "string"},
                "importance": {"type": "number", "minimum": 0, "maximum": 1}}}),
        ),
        Arc::new(RememberTool { memories }),
    );
}

/// A store that cannot be reached is worth retrying; anything else is the caller's to fix.
impl From<MemoryError> for NodeError {
    fn from(e: MemoryError) -> Self {
        match e {
            MemoryError::Store(m) => NodeError::transient(m),
            other => NodeError::permanent(other.to_string()),
        }
    }
}

/// `namespace` as a list of segments or one `a/b` path.
fn namespace(input: &Value) -> Result<Namespace, NodeError> {
    let ns = match input.get("namespace") {
        Some(Value::String(path)) => Namespace::parse(path),
        Some(Value::Array(parts)) => Namespace::new(parts.iter().map(|p| match p {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        _ => {
            return Err(NodeError::permanent(
                "memory: `namespace` must be a list of segments or an `a/b` path",
            ));
        }
    };
    let ns = ns.map_err(NodeError::from)?;
    if ns.is_root() {
        return Err(NodeError::permanent(
            "memory: the namespace is empty; it must start with the tenant, e.g. [\"tenant:acme\", \"customers\"]",
        ));
    }
    Ok(ns)
}

/// The memories of the namespace's tenant only: a graph never reads another tenant's.
async fn tenant_memories(memories: &LazyMemories, ns: &Namespace) -> Result<Memories, NodeError> {
    let all = memories.get().await.map_err(NodeError::from)?;
    let tenant = ns.tenant().unwrap_or_default();
    all.for_tenant(tenant).map_err(NodeError::from)
}

/// Recalls memories: input `{namespace, query?, limit?, kind?, filter?}`, output an array of
/// `{namespace, key, value, score}`, best first.
struct RecallTool {
    memories: LazyMemories,
}

#[async_trait]
impl Node for RecallTool {
    async fn call(&self, input: Value, _ctx: &NodeContext) -> Result<Value, NodeError> {
        let prefix = namespace(&input)?;
        let query = input.get("query").and_then(Value::as_str);
        let limit = input.get("limit").and_then(Value::as_u64).unwrap_or(5) as usize;
        let kind = match input.get("kind").and_then(Value::as_str) {
            Some(k) => Some(Kind::parse(k).map_err(NodeError::from)?),
            None => None,
        };
        let memories = tenant_memories(&self.memories, &prefix).await?;
        let hits = match input.get("filter") {
            Some(Value::Object(filter)) => {
                let mut filter: Map<String, Value> = filter.clone();
                if let Some(k) = kind {
                    filter.insert("kind".into(), json!(k.as_str()));
                }
                let mut search = crate::Search::new(prefix).limit(limit).filter(filter);
                if let Some(q) = query {
                    search = search.query(q);
                }
                memories.store().search(&search).await
            }
            _ => memories.recall(&prefix, query, kind, limit).await,
        }
        .map_err(NodeError::from)?;
        Ok(Value::Array(
            hits.into_iter()
                .map(|h| {
                    json!({"namespace": h.item.namespace.path(), "key": h.item.key,
                           "value": h.item.value, "score": h.score})
                })
                .collect(),
        ))
    }
}

/// Remembers: input `{namespace, value, kind?, key?, importance?}`. A string value is the
/// memory's text; an object keeps its fields, with `text` (or all its text) embedded.
/// Without a key, the task's idempotency key is used, so a retried or resumed node
/// rewrites its own memory instead of adding another.
struct RememberTool {
    memories: LazyMemories,
}

#[async_trait]
impl Node for RememberTool {
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        let ns = namespace(&input)?;
        let kind = Kind::parse(
            input
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("semantic"),
        )
        .map_err(NodeError::from)?;
        let value = input.get("value").cloned().unwrap_or(Value::Null);
        let (text, fields) = match value {
            Value::String(s) => (s, Map::new()),
            Value::Object(map) => {
                let text = map
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or_else(|| all_text(&Value::Object(map.clone())), str::to_string);
                (text, map)
            }
            Value::Null => {
                return Err(NodeError::permanent(
                    "memory.remember: `value` is null; point it at the state to remember",
                ));
            }
            other => (all_text(&other), Map::new()),
        };
        let key = input
            .get("key")
            .and_then(Value::as_str)
            .map_or_else(|| ctx.idempotency_key(), str::to_string);
        let importance = input.get("importance").and_then(Value::as_f64);
        let memories = tenant_memories(&self.memories, &ns).await?;
        let done = memories
            .remember(&ns, kind, &text, fields, importance, Some(key))
            .await
            .map_err(NodeError::from)?;
        Ok(json!({"namespace": done.namespace.path(), "key": done.key, "merged": done.merged}))
    }
}
