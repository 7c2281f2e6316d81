//! `brainops memory ...`: long-term memory from the command line, and the store that
//! `brainops run` attaches for graphs with `recall`/`remember` nodes.

use std::time::Duration;

use clap::Subcommand;
use memory::{Index, Namespace, PutOptions, Search};
use serde_json::{Map, Value, json};

use crate::{Failure, fail, parse_age, parse_json};

/// The longest `--ttl`: 100 years (every store can represent it).
const MAX_TTL_MS: u64 = 100 * 365 * 86_400_000;

#[derive(Subcommand)]
pub(crate) enum MemoryCommand {
    /// Store an item (replacing one with the same namespace and key); print it.
    Put {
        #[arg(long, value_name = "PATH")]
        namespace: String,
        #[arg(long)]
        key: String,
        /// The item, as JSON (or @FILE).
        #[arg(long)]
        value: String,
        /// A field to embed for semantic search (repeatable; dotted paths). Default: all
        /// the value's text. `--index none` turns embedding off.
        #[arg(long = "index", value_name = "FIELD")]
        index: Vec<String>,
        /// Forget the item after this long: 90s, 10m, 12h, 30d.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Print an item as JSON; exit 1 when there is none.
    Get {
        #[arg(long, value_name = "PATH")]
        namespace: String,
        #[arg(long)]
        key: String,
    },
    /// Print a JSON array of {"namespace", "key", "value", "score"}, best first, from the
    /// namespace and everything below it.
    Search {
        #[arg(long, value_name = "PATH")]
        namespace: String,
        /// Text to match by meaning and by keyword.
        #[arg(long)]
        query: Option<String>,
        /// JSON the items must contain, e.g. '{"kind": "fact", "customer_id": 42}'.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Delete an item; print {"deleted": true|false}.
    Delete {
        #[arg(long, value_name = "PATH")]
        namespace: String,
        #[arg(long)]
        key: String,
    },
    /// Print the namespaces (a JSON array of paths) under a prefix.
    Namespaces {
        #[arg(long, value_name = "PATH", default_value = "")]
        prefix: String,
        /// Cut namespaces to this many segments.
        #[arg(long)]
        depth: Option<usize>,
    },
    /// Delete expired items now; print {"expired": N}.
    Sweep,
}

/// Where memory lives: `--store`/`--memory`, else `$BRAINOPS_MEMORY`, else the embedded
/// file under `$BRAINOPS_HOME` or `.brainops/`.
pub(crate) fn memory_spec(flag: Option<&str>) -> Option<String> {
    // An empty flag is kept, so that opening it is refused rather than the default used.
    flag.map(str::to_string).or_else(|| {
        std::env::var("BRAINOPS_MEMORY")
            .ok()
            .filter(|s| !s.is_empty())
    })
}

/// The embedder named by `--embedder` (or `$BRAINOPS_EMBEDDER`): `local` (default) or
/// `openai:MODEL[@DIMS]`.
pub(crate) fn embedder_name(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var("BRAINOPS_EMBEDDER")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "local".into())
}

/// The memory URL: the flag (or `$BRAINOPS_MEMORY`), else the default embedded file.
pub(crate) fn memory_url(spec: Option<&str>) -> String {
    spec.map_or_else(
        || brainops::stores::default_file("memory.db"),
        str::to_string,
    )
}

/// A namespace that starts with its tenant (`tenant:NAME/...`).
fn namespace(flag: &str, path: &str) -> Result<Namespace, Failure> {
    let ns = Namespace::parse(path).and_then(|ns| ns.require_tenant().map(|_| ns.clone()));
    ns.map_err(|e| {
        fail(format!(
            "error: {flag} {path:?}: {e}\n  help: segments joined by `/`, the tenant first, e.g. tenant:acme/customers"
        ))
    })
}

fn item_json(item: &memory::Item) -> Value {
    json!({
        "namespace": item.namespace.path(),
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "expires_at": item.expires_at,
    })
}

pub(crate) async fn run(
    command: MemoryCommand,
    store: Option<String>,
    embedder: Option<String>,
) -> Result<u8, Failure> {
    let embedder = brainops::open_embedder(&embedder_name(embedder.as_deref()))
        .map_err(|e| fail(format!("error: --embedder: {e}")))?;
    let store = brainops::open_memory_store(
        &memory_url(memory_spec(store.as_deref()).as_deref()),
        embedder,
    )
    .await
    .map_err(|e| fail(format!("error: {e}")))?;
    let failed = |e: memory::MemoryError| fail(format!("error: {e}"));
    match command {
        MemoryCommand::Put {
            namespace: ns,
            key,
            value,
            index,
            ttl,
        } => {
            let ns = namespace("--namespace", &ns)?;
            let value = parse_json("--value", &value)?;
            let index = match index.as_slice() {
                [] => Index::Whole,
                [none] if none == "none" => Index::Off,
                fields => Index::Fields(fields.to_vec()),
            };
            let ttl: Option<Duration> = ttl
                .as_deref()
                .map(|t| {
                    let ms = parse_age("--ttl", t)?;
                    if ms > MAX_TTL_MS {
                        return Err(fail(format!(
                            "error: --ttl `{t}` is longer than 100 years\n  help: leave --ttl out for a memory that never expires"
                        )));
                    }
                    Ok(ms)
                })
                .transpose()?
                .map(Duration::from_millis);
            store
                .put(&ns, &key, value, PutOptions { index, ttl })
                .await
                .map_err(failed)?;
            let item = store.get(&ns, &key).await.map_err(failed)?;
            outln!("{}", item.as_ref().map_or(Value::Null, item_json));
            Ok(0)
        }
        MemoryCommand::Get { namespace: ns, key } => {
            let ns = namespace("--namespace", &ns)?;
            match store.get(&ns, &key).await.map_err(failed)? {
                Some(item) => {
                    outln!("{}", item_json(&item));
                    Ok(0)
                }
                None => {
                    eprintln!("error: no item {key:?} in {ns} (or it expired)");
                    Ok(1)
                }
            }
        }
        MemoryCommand::Search {
            namespace: ns,
            query,
            filter,
            limit,
            offset,
        } => {
            let mut search = Search::new(namespace("--namespace", &ns)?)
                .limit(limit)
                .offset(offset);
            if let Some(q) = query {
                search = search.query(q);
            }
            if let Some(f) = filter {
                match parse_json("--filter", &f)? {
                    Value::Object(map) => search = search.filter(map),
                    _ => {
                        return Err(fail(
                            "error: --filter must be a JSON object, e.g. '{\"kind\": \"fact\"}'",
                        ));
                    }
                }
            }
            let hits = store.search(&search).await.map_err(failed)?;
            let out: Vec<Value> = hits
                .iter()
                .map(|h| {
                    let mut o = Map::new();
                    o.insert("namespace".into(), json!(h.item.namespace.path()));
                    o.insert("key".into(), json!(h.item.key));
                    o.insert("value".into(), h.item.value.clone());
                    o.insert("score".into(), json!(h.score));
                    Value::Object(o)
                })
                .collect();
            outln!("{}", Value::Array(out));
            Ok(0)
        }
        MemoryCommand::Delete { namespace: ns, key } => {
            let ns = namespace("--namespace", &ns)?;
            let deleted = store.delete(&ns, &key).await.map_err(failed)?;
            outln!("{}", json!({ "deleted": deleted }));
            Ok(0)
        }
        MemoryCommand::Namespaces { prefix, depth } => {
            if depth == Some(0) {
                return Err(fail(
                    "error: --depth 0 would cut every namespace to nothing\n  help: give 1 for the tenants, 2 for their first level, ...",
                ));
            }
            // An empty prefix lists every tenant's namespaces (an operator's view).
            let prefix = if prefix.trim_matches('/').is_empty() {
                Namespace::root()
            } else {
                namespace("--prefix", &prefix)?
            };
            let found = store
                .list_namespaces(&prefix, depth)
                .await
                .map_err(failed)?;
            let paths: Vec<String> = found.iter().map(Namespace::path).collect();
            outln!("{}", json!(paths));
            Ok(0)
        }
        MemoryCommand::Sweep => {
            let n = store.sweep_expired().await.map_err(failed)?;
            outln!("{}", json!({ "expired": n }));
            Ok(0)
        }
    }
}
