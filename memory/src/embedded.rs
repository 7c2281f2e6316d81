//! The embedded store: one SQLite file, no server. Vector search is exact (every vector
//! under the prefix is compared), which is fast enough at a laptop's scale; keywords go
//! through an FTS5 index with Porter stemming. Several processes may share the file (WAL).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::embed::{cosine, embed_changed};
use crate::item::{all_text, contains, texts_to_index};
use crate::rank::{adjust, fuse, hybrid_score, scored};
use crate::{
    Embedder, Hit, Item, MemoryError, MemoryStore, Namespace, PutOptions, Retrieval, Search, now_ms,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS memory_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    embedder TEXT NOT NULL,
    dims     INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS memory_items (
    id         INTEGER PRIMARY KEY,
    ns         TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    UNIQUE (ns, key));
CREATE TABLE IF NOT EXISTS memory_vectors (
    item_id   INTEGER NOT NULL REFERENCES memory_items(id) ON DELETE CASCADE,
    field     TEXT NOT NULL,
    text_hash INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (item_id, field));
CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(body, tokenize = 'porter unicode61');
";

/// A memory store in one SQLite file.
#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("embedder", &self.embedder.name())
            .finish()
    }
}

/// The namespace clause: the prefix itself or anything below it; `?1` is the prefix path.
const UNDER_PREFIX: &str = "(?1 = '' OR i.ns = ?1 OR substr(i.ns, 1, length(?1) + 1) = ?1 || '/') AND (i.expires_at IS NULL OR i.expires_at > ?2)";

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path`. A store filled by another embedder
    /// (other name or width) is refused.
    pub fn open(path: impl AsRef<Path>, embedder: Arc<dyn Embedder>) -> Result<Self, MemoryError> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            // SQLite takes "" for a temporary database that keeps nothing.
            return Err(MemoryError::Invalid(
                "the memory store path is empty (was it an unset variable?); give a file, e.g. .brainops/memory.db".into(),
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| MemoryError::Store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT OR IGNORE INTO memory_meta (id, embedder, dims) VALUES (1, ?1, ?2)",
            params![embedder.name(), embedder.dimensions() as i64],
        )?;
        let (name, dims): (String, i64) = conn.query_row(
            "SELECT embedder, dims FROM memory_meta WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if name != embedder.name() || dims as usize != embedder.dimensions() {
            return Err(MemoryError::Dimensions {
                store_embedder: name,
                store_dims: dims as usize,
                embedder: embedder.name().to_string(),
                embedder_dims: embedder.dimensions(),
            });
        }
        Ok(EmbeddedStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
            embedder,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| MemoryError::Store("sqlite connection poisoned".into()))?;
            op(&mut conn)
        })
        .await
        .map_err(|e| MemoryError::Store(format!("sqlite task failed: {e}")))?
    }
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Snowball's English stop words, as Postgres' `english` configuration drops them: matching
/// "the" or "is" says nothing about relevance and would drown the words that do.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// An FTS5 query matching any of the words that are not stop words (each quoted, so no
/// word is read as syntax).
/// The query's distinct words that count for keyword search (no stop words).
fn query_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.len() > 1 && !STOP_WORDS.contains(&w.as_str()))
    {
        if !words.contains(&w) {
            words.push(w);
        }
    }
    words
}

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Item)> {
    let ns: String = r.get(1)?;
    let value: String = r.get(3)?;
    Ok((
        r.get(0)?,
        Item {
            namespace: Namespace::parse(&ns).unwrap_or_else(|_| Namespace::root()),
            key: r.get(2)?,
            value: serde_json::from_str(&value).unwrap_or(Value::Null),
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
            expires_at: r.get(6)?,
        },
    ))
}

#[async_trait]
impl MemoryStore for EmbeddedStore {
    async fn put(
        &self,
        namespace: &Namespace,
        key: &str,
        value: Value,
        options: PutOptions,
    ) -> Result<(), MemoryError> {
        crate::item::check_put(namespace, key, &value)?;
        let ns = namespace.path();
        let texts = texts_to_index(&value, &options.index);
        let stored: HashMap<String, i64> = {
            let (ns, key) = (ns.clone(), key.to_string());
            self.with_conn(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT v.field, v.text_hash FROM memory_vectors v JOIN memory_items i ON i.id = v.item_id WHERE i.ns = ?1 AND i.key = ?2",
                )?;
                let rows = stmt.query_map(params![ns, key], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?
        };
        let fresh: Vec<(String, i64, Vec<u8>)> =
            embed_changed(self.embedder.as_ref(), &texts, &stored)
                .await?
                .into_iter()
                .map(|f| (f.field, f.text_hash, to_blob(&f.vector)))
                .collect();
        let fields: Vec<String> = texts.into_iter().map(|(f, _)| f).collect();
        let body = all_text(&value);
        let value = value.to_string();
        let now = now_ms();
        let expires = options.ttl.map(|ttl| now + ttl.as_millis() as i64);
        let key = key.to_string();
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let id: i64 = tx.query_row(
                "INSERT INTO memory_items (ns, key, value, created_at, updated_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                 ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value,
                   updated_at = excluded.updated_at, expires_at = excluded.expires_at
                 RETURNING id",
                params![ns, key, value, now, expires],
                |r| r.get(0),
            )?;
            {
                let mut existing = tx.prepare_cached("SELECT field FROM memory_vectors WHERE item_id = ?1")?;
                let old: Vec<String> = existing
                    .query_map([id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for field in old.iter().filter(|f| !fields.contains(f)) {
                    tx.execute(
                        "DELETE FROM memory_vectors WHERE item_id = ?1 AND field = ?2",
                        params![id, field],
                    )?;
                }
            }
            for (field, hash, blob) in &fresh {
                tx.execute(
                    "INSERT INTO memory_vectors (item_id, field, text_hash, embedding) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (item_id, field) DO UPDATE SET text_hash = excluded.text_hash, embedding = excluded.embedding",
                    params![id, field, hash, blob],
                )?;
            }
            tx.execute("DELETE FROM memory_fts WHERE rowid = ?1", [id])?;
            tx.execute("INSERT INTO memory_fts (rowid, body) VALUES (?1, ?2)", params![id, body])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get(&self, namespace: &Namespace, key: &str) -> Result<Option<Item>, MemoryError> {
        let (ns, key) = (namespace.path(), key.to_string());
        self.with_conn(move |c| {
            Ok(c.query_row(
                "SELECT id, ns, key, value, created_at, updated_at, expires_at FROM memory_items
                 WHERE ns = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                params![ns, key, now_ms()],
                item_from_row,
            )
            .optional()?
            .map(|(_, item)| item))
        })
        .await
    }

    async fn delete(&self, namespace: &Namespace, key: &str) -> Result<bool, MemoryError> {
        let (ns, key) = (namespace.path(), key.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let id: Option<i64> = tx
                .query_row(
                    "DELETE FROM memory_items WHERE ns = ?1 AND key = ?2 RETURNING id",
                    params![ns, key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = id {
                tx.execute("DELETE FROM memory_fts WHERE rowid = ?1", [id])?;
            }
            tx.commit()?;
            Ok(id.is_some())
        })
        .await
    }

    async fn search(&self, search: &Search) -> Result<Vec<Hit>, MemoryError> {
        crate::traced_search("sqlite", search, async move {
            let search = &*search.clamped();
            let query_vector = match &search.query {
                Some(q) if !q.trim().is_empty() && search.retrieval != Retrieval::Keyword => self
                    .embedder
                    .embed(std::slice::from_ref(q))
                    .await?
                    .into_iter()
                    .next(),
                _ => None,
            };
            let search = search.clone();
            self.with_conn(move |c| {
                let prefix = search.namespace_prefix.path();
                let now = now_ms();
                let filter = search.filter.clone().map(Value::Object);
                // Values are parsed only when a filter or the importance weight needs them; the
                // page's items are read in full at the end.
                let need_value = filter.is_some() || search.ranking.importance_weight > 0.0;
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT i.id, i.updated_at, CASE WHEN ?3 THEN i.value END FROM memory_items i WHERE {UNDER_PREFIX}"
                ))?;
                let mut candidates: HashMap<i64, (i64, Value)> = HashMap::new();
                let mut rows = stmt.query(params![prefix, now, need_value])?;
                while let Some(r) = rows.next()? {
                    let value = match r.get::<_, Option<String>>(2)? {
                        Some(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
                        None => Value::Null,
                    };
                    if filter.as_ref().is_none_or(|f| contains(&value, f)) {
                        candidates.insert(r.get(0)?, (r.get(1)?, value));
                    }
                }
                let query = search.query.as_deref().filter(|q| !q.trim().is_empty());
                let mut similarity: HashMap<i64, f32> = HashMap::new();
                let mut ranked: Vec<(i64, Option<f64>, i64)> = if let Some(q) = query {
                    let mut by_vector: Vec<(i64, f64)> = Vec::new();
                    if let Some(qv) = &query_vector {
                        let mut best: HashMap<i64, f32> = HashMap::new();
                        let mut stmt = c.prepare_cached(&format!(
                            "SELECT v.item_id, v.embedding FROM memory_vectors v JOIN memory_items i ON i.id = v.item_id WHERE {UNDER_PREFIX}"
                        ))?;
                        let mut rows = stmt.query(params![prefix, now])?;
                        while let Some(r) = rows.next()? {
                            let id: i64 = r.get(0)?;
                            if !candidates.contains_key(&id) {
                                continue;
                            }
                            let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                            let sim = cosine(qv, &from_blob(blob));
                            let slot = best.entry(id).or_insert(f32::MIN);
                            *slot = slot.max(sim);
                        }
                        by_vector = best.iter().map(|(id, s)| (*id, f64::from(*s))).collect();
                        similarity = best;
                        by_vector.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    }
                    let mut by_keyword: Vec<(i64, f64)> = Vec::new();
                    let words = query_words(q);
                    let mut covered: HashMap<i64, usize> = HashMap::new();
                    if !words.is_empty() && search.retrieval != Retrieval::Semantic {
                        let any = words
                            .iter()
                            .map(|w| format!("\"{w}\""))
                            .collect::<Vec<_>>()
                            .join(" OR ");
                        let mut stmt = c.prepare_cached(
                            "SELECT rowid, bm25(memory_fts) FROM memory_fts WHERE memory_fts MATCH ?1 ORDER BY bm25(memory_fts), rowid",
                        )?;
                        for row in stmt.query_map([any], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))? {
                            let (id, bm25) = row?;
                            if candidates.contains_key(&id) {
                                // bm25() is lower for better matches.
                                by_keyword.push((id, -bm25));
                            }
                        }
                        // Which of the query's words each match holds (FTS5's own stemming).
                        let mut one = c.prepare_cached(
                            "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?1",
                        )?;
                        for w in &words {
                            for id in one.query_map([format!("\"{w}\"")], |r| r.get::<_, i64>(0))? {
                                *covered.entry(id?).or_default() += 1;
                            }
                        }
                    }
                    let total = words.len().max(1) as f64;
                    let coverage = |id: i64| covered.get(&id).map_or(0.0, |&n| n as f64 / total);
                    let fused: HashMap<i64, f64> = match search.retrieval {
                        Retrieval::Hybrid => by_vector
                            .iter()
                            .chain(&by_keyword)
                            .map(|&(id, _)| {
                                let sim = similarity.get(&id).map(|&s| f64::from(s));
                                (id, hybrid_score(sim, coverage(id)))
                            })
                            .collect(),
                        Retrieval::Semantic => fuse(&[&by_vector]),
                        Retrieval::Keyword => fuse(&[&by_keyword]),
                    };
                    fused
                        .into_iter()
                        .filter_map(|(id, s)| {
                            candidates.get(&id).map(|(updated, value)| {
                                (id, Some(adjust(s, *updated, value, &search.ranking, now)), *updated)
                            })
                        })
                        .collect()
                } else if scored(None, &search.ranking) {
                    candidates
                        .iter()
                        .map(|(id, (updated, value))| {
                            (*id, Some(adjust(1.0, *updated, value, &search.ranking, now)), *updated)
                        })
                        .collect()
                } else {
                    candidates.iter().map(|(id, (updated, _))| (*id, None, *updated)).collect()
                };
                ranked.sort_by(|a, b| {
                    b.1.unwrap_or(0.0)
                        .total_cmp(&a.1.unwrap_or(0.0))
                        .then(b.2.cmp(&a.2))
                        .then(b.0.cmp(&a.0))
                });
                let mut read = c.prepare_cached(
                    "SELECT id, ns, key, value, created_at, updated_at, expires_at FROM memory_items WHERE id = ?1",
                )?;
                let mut hits = Vec::new();
                for (id, score, _) in ranked.into_iter().skip(search.offset).take(search.limit) {
                    let (_, item) = read.query_row([id], item_from_row)?;
                    hits.push(Hit {
                        item,
                        score,
                        similarity: similarity.get(&id).copied(),
                    });
                }
                Ok(hits)
            })
            .await
        })
        .await
    }

    async fn list_namespaces(
        &self,
        prefix: &Namespace,
        max_depth: Option<usize>,
    ) -> Result<Vec<Namespace>, MemoryError> {
        let path = prefix.path();
        let mut found: Vec<Namespace> = self
            .with_conn(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT DISTINCT i.ns FROM memory_items i WHERE {UNDER_PREFIX}"
                ))?;
                let rows = stmt.query_map(params![path, now_ms()], |r| r.get::<_, String>(0))?;
                let mut out = Vec::new();
                for ns in rows {
                    out.push(Namespace::parse(&ns?)?);
                }
                Ok(out)
            })
            .await?;
        if let Some(depth) = max_depth {
            found = found.into_iter().map(|ns| ns.truncated(depth)).collect();
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn sweep_expired(&self) -> Result<u64, MemoryError> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let now = now_ms();
            tx.execute(
                "DELETE FROM memory_fts WHERE rowid IN (SELECT id FROM memory_items WHERE expires_at <= ?1)",
                [now],
            )?;
            let n = tx.execute("DELETE FROM memory_items WHERE expires_at <= ?1", [now])?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }
}
