//! Memory as agents use it: three kinds of memories, written so that saying the same thing
//! twice updates one memory instead of adding a second, and recalled by relevance weighed
//! with recency and importance.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::embed::text_hash;
use crate::{Hit, Index, MemoryError, MemoryStore, Namespace, PutOptions, Ranking, Search};

/// What a memory is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What happened: run summaries, conversations, jobs done.
    Episodic,
    /// What is true: facts about customers, properties, jobs.
    Semantic,
    /// How to do things: playbooks, preferences, rules.
    Procedural,
}

impl Kind {
    /// The word stored in an item's `kind` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Episodic => "episodic",
            Kind::Semantic => "semantic",
            Kind::Procedural => "procedural",
        }
    }

    /// Reads a kind word; an unknown one is an error.
    pub fn parse(s: &str) -> Result<Kind, MemoryError> {
        match s {
            "episodic" | "episode" => Ok(Kind::Episodic),
            "semantic" | "fact" => Ok(Kind::Semantic),
            "procedural" | "procedure" | "howto" => Ok(Kind::Procedural),
            other => Err(MemoryError::Invalid(format!(
                "unknown memory kind {other:?}: use episodic, semantic or procedural"
            ))),
        }
    }
}

/// The outcome of [`Memories::remember`].
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    /// Where the memory was written.
    pub namespace: Namespace,
    /// Its key.
    pub key: String,
    /// True when an existing near-duplicate was updated instead of a new memory written.
    pub merged: bool,
}

/// An agent's handle on long-term memory. Cheap to clone.
#[derive(Clone)]
pub struct Memories {
    store: Arc<dyn MemoryStore>,
    /// Cosine similarity at or above which a new memory of the same kind merges into an
    /// existing one in the same namespace.
    merge_threshold: f32,
    /// The default weights for [`Memories::recall`].
    ranking: Ranking,
}

impl std::fmt::Debug for Memories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memories")
            .field("embedder", &self.store.embedder().name())
            .field("merge_threshold", &self.merge_threshold)
            .finish()
    }
}

impl Memories {
    /// Memories over `store`, with the default merge threshold and no extra ranking.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        Memories {
            store,
            merge_threshold: 0.9,
            ranking: Ranking {
                recency_weight: 0.1,
                importance_weight: 0.2,
                ..Ranking::default()
            },
        }
    }

    /// How similar (cosine) a new memory must be to an existing one to replace it instead of adding.
    pub fn with_merge_threshold(mut self, threshold: f32) -> Self {
        self.merge_threshold = threshold;
        self
    }

    /// The ranking recall uses.
    pub fn with_ranking(mut self, ranking: Ranking) -> Self {
        self.ranking = ranking;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.store
    }

    /// These memories limited to one tenant (the first namespace segment), as graph nodes
    /// and agents use them: nothing outside the tenant can be read or written.
    pub fn for_tenant(&self, tenant: &str) -> Result<Memories, MemoryError> {
        Ok(Memories {
            store: Arc::new(crate::TenantScoped::new(&self.store, tenant)?),
            merge_threshold: self.merge_threshold,
            ranking: self.ranking.clone(),
        })
    }

    /// Writes a memory: `{"kind", "text", "importance", ...fields}` indexed on `text`.
    ///
    /// - With `key` naming an existing item, that item is replaced (a retried node writes
    ///   the same key, so replays do not add memories).
    /// - Otherwise the closest memory of the same kind in `namespace` is looked up; at or
    ///   above the merge threshold it is updated in place: new fields win, `importance` keeps
    ///   the higher value, `mentions` counts the repeats.
    /// - Otherwise a new item is written under `key`, or a key derived from the text.
    pub async fn remember(
        &self,
        namespace: &Namespace,
        kind: Kind,
        text: &str,
        fields: Map<String, Value>,
        importance: Option<f64>,
        key: Option<String>,
    ) -> Result<Remembered, MemoryError> {
        if text.trim().is_empty() {
            return Err(MemoryError::Invalid("a memory needs some text".into()));
        }
        let mut value = Map::new();
        value.insert("kind".into(), json!(kind.as_str()));
        value.insert("text".into(), json!(text));
        if let Some(i) = importance {
            value.insert("importance".into(), json!(i.clamp(0.0, 1.0)));
        }
        for (k, v) in fields {
            if !matches!(k.as_str(), "kind" | "text") {
                value.insert(k, v);
            }
        }
        let explicit = match &key {
            Some(k) => self.store.get(namespace, k).await?,
            None => None,
        };
        let (key, merged, value) = match explicit {
            Some(existing) => (existing.key, false, Value::Object(value)),
            None => match self.near_duplicate(namespace, kind, text).await? {
                Some(hit) => {
                    let mut merged = hit.item.value.as_object().cloned().unwrap_or_default();
                    let old_importance = merged.get("importance").and_then(Value::as_f64);
                    let mentions = merged.get("mentions").and_then(Value::as_u64).unwrap_or(1);
                    for (k, v) in value {
                        merged.insert(k, v);
                    }
                    if let Some(old) = old_importance {
                        let new = merged
                            .get("importance")
                            .and_then(Value::as_f64)
                            .unwrap_or(old);
                        merged.insert("importance".into(), json!(old.max(new)));
                    }
                    merged.insert("mentions".into(), json!(mentions + 1));
                    (hit.item.key, true, Value::Object(merged))
                }
                None => (
                    key.unwrap_or_else(|| format!("{}-{:016x}", kind.as_str(), text_hash(text))),
                    false,
                    Value::Object(value),
                ),
            },
        };
        self.store
            .put(
                namespace,
                &key,
                value,
                PutOptions {
                    index: Index::Fields(vec!["text".into()]),
                    ttl: None,
                },
            )
            .await?;
        Ok(Remembered {
            namespace: namespace.clone(),
            key,
            merged,
        })
    }

    async fn near_duplicate(
        &self,
        namespace: &Namespace,
        kind: Kind,
        text: &str,
    ) -> Result<Option<Hit>, MemoryError> {
        let mut filter = Map::new();
        filter.insert("kind".into(), json!(kind.as_str()));
        let hits = self
            .store
            .search(
                &Search::new(namespace.clone())
                    .query(text)
                    .filter(filter)
                    .limit(5),
            )
            .await?;
        // The store reports each hit's cosine similarity to the text: nothing is embedded
        // again here.
        Ok(hits
            .into_iter()
            .filter(|h| &h.item.namespace == namespace)
            .filter_map(|h| h.similarity.map(|sim| (sim, h)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .and_then(|(sim, hit)| (sim >= self.merge_threshold).then_some(hit)))
    }

    /// The memories under `prefix` that best answer `query`, weighed by this handle's
    /// ranking (relevance first, then recency and importance).
    pub async fn recall(
        &self,
        prefix: &Namespace,
        query: Option<&str>,
        kind: Option<Kind>,
        limit: usize,
    ) -> Result<Vec<Hit>, MemoryError> {
        let mut search = Search::new(prefix.clone())
            .limit(limit)
            .ranking(self.ranking.clone());
        if let Some(q) = query {
            search = search.query(q);
        }
        if let Some(k) = kind {
            let mut filter = Map::new();
            filter.insert("kind".into(), json!(k.as_str()));
            search = search.filter(filter);
        }
        self.store.search(&search).await
    }
}
