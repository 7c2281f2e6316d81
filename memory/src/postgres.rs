//! The Postgres store (Supabase in production): items as `jsonb` with a `tsvector` for
//! keywords, one `vector(d)` row per indexed field under an HNSW cosine index, and hybrid
//! ranking by reciprocal rank fusion, all in one SQL statement per search.
//!
//! Row-level security: [`PgMemoryStore::for_tenant`] runs every statement as the role
//! `brainops_tenant` with `brainops.tenant` set for that transaction only (`SET LOCAL`),
//! so it works through a transaction-mode pooler and a scoped handle cannot read or write
//! another tenant's rows, whatever namespace it asks for.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use engine::pg::{Migration, PgStore, migrate};
use pgvector::Vector;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use crate::embed::embed_changed;
use crate::item::{all_text, texts_to_index};
use crate::rank::{KEYWORD_THRESHOLD, KEYWORD_WEIGHT, RRF_K, adjust, scored};
use crate::{
    Embedder, Hit, Item, MemoryError, MemoryStore, Namespace, PutOptions, Retrieval, Search, now_ms,
};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "memory items, meta, row-level security",
    sql: include_str!("../migrations/memory_0001_init.sql"),
}];

/// Keyword matches ranked per search, at most. A word common to much of the store (say
/// "roof" in a roofing company's memories) matches tens of thousands of rows, and ranking
/// them all costs hundreds of milliseconds while telling little; rows holding all the
/// query's words are always ranked (they come first), then up to this many rows holding any.
const KEYWORD_SCAN: usize = 1000;

/// How many candidates each ranked list contributes before fusion, at least.
const MIN_CANDIDATES: usize = 40;

/// The columns every item query returns, in `item_from_row`'s order.
const ITEM_COLUMNS: &str = "i.ns, i.key, i.value::text,
    (extract(epoch FROM i.created_at) * 1000)::bigint,
    (extract(epoch FROM i.updated_at) * 1000)::bigint,
    (extract(epoch FROM i.expires_at) * 1000)::bigint";

/// Prefix ($1 path, $2 LIKE pattern), liveness and the JSON filter ($3).
const ITEM_WHERE: &str = "($1 = '' OR i.ns = $1 OR i.ns LIKE $2)
    AND (i.expires_at IS NULL OR i.expires_at > now())
    AND ($3::text IS NULL OR i.value @> $3::text::jsonb)";

// The statements, assembled once from the shared fragments above.
static GET_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ITEM_COLUMNS} FROM brainops_memory_items i
         WHERE i.ns = $1 AND i.key = $2 AND (i.expires_at IS NULL OR i.expires_at > now())"
    )
});
static NAMESPACES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT DISTINCT i.ns FROM brainops_memory_items i WHERE {ITEM_WHERE}")
});
static RECENT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {ITEM_COLUMNS}, NULL::float8, NULL::float8 FROM brainops_memory_items i WHERE {ITEM_WHERE}
         ORDER BY i.updated_at DESC, i.ns, i.key LIMIT $4 OFFSET $5"
    )
});
static HYBRID_PAGE_SQL: LazyLock<String> = LazyLock::new(|| search_sql(true));
static HYBRID_ALL_SQL: LazyLock<String> = LazyLock::new(|| search_sql(false));

/// A memory store in Postgres with pgvector.
#[derive(Clone)]
pub struct PgMemoryStore {
    pg: PgStore,
    embedder: Arc<dyn Embedder>,
    tenant: Option<String>,
}

impl std::fmt::Debug for PgMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMemoryStore")
            .field("embedder", &self.embedder.name())
            .field("tenant", &self.tenant)
            .finish()
    }
}

fn like_prefix(path: &str) -> String {
    let escaped = path
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}/%")
}

fn item_from_row(row: &PgRow) -> Result<Item, MemoryError> {
    let ns: String = row.try_get(0)?;
    let value: String = row.try_get(2)?;
    Ok(Item {
        namespace: Namespace::parse(&ns)?,
        key: row.try_get(1)?,
        value: serde_json::from_str(&value)
            .map_err(|e| MemoryError::Store(format!("stored value of {ns} is not JSON: {e}")))?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        expires_at: row.try_get(5)?,
    })
}

impl PgMemoryStore {
    /// Connects to `url` (direct, or a transaction pooler: see [`PgStore::connect`]) and opens.
    pub async fn connect(url: &str, embedder: Arc<dyn Embedder>) -> Result<Self, MemoryError> {
        Self::open(PgStore::connect(url).await?, embedder).await
    }

    /// Runs pending migrations, creates the vector table for the embedder's width if it is
    /// new, and refuses a store filled by a different embedder.
    pub async fn open(pg: PgStore, embedder: Arc<dyn Embedder>) -> Result<Self, MemoryError> {
        Self::migrate(&pg).await?;
        let dims = embedder.dimensions();
        let mut tx = pg.pool().begin().await?;
        sqlx::raw_sql("SELECT pg_advisory_xact_lock(7263110594)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO brainops_memory_meta (id, embedder, dims) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .persistent(false)
            .bind(embedder.name())
            .bind(dims as i32)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT embedder, dims FROM brainops_memory_meta WHERE id = 1")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
        let (name, stored): (String, i32) = (row.try_get(0)?, row.try_get(1)?);
        let typmod: Option<i32> = sqlx::query(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass('brainops_memory_vectors') AND attname = 'embedding'",
        )
        .persistent(false)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let table_dims = match typmod {
            Some(d) => d as usize,
            None => {
                // Only the embedder's width is spliced in: a number, not user text.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE TABLE brainops_memory_vectors (
                        item_id   bigint NOT NULL REFERENCES brainops_memory_items(id) ON DELETE CASCADE,
                        tenant    text NOT NULL,
                        field     text NOT NULL,
                        text_hash bigint NOT NULL,
                        embedding vector({dims}) NOT NULL,
                        PRIMARY KEY (item_id, field));
                    CREATE INDEX brainops_memory_vectors_hnsw ON brainops_memory_vectors
                        USING hnsw (embedding vector_cosine_ops);
                    GRANT SELECT, INSERT, UPDATE, DELETE ON brainops_memory_vectors TO brainops_tenant;
                    ALTER TABLE brainops_memory_vectors ENABLE ROW LEVEL SECURITY;
                    CREATE POLICY brainops_memory_vectors_tenant ON brainops_memory_vectors
                        USING (tenant = current_setting('brainops.tenant', true))
                        WITH CHECK (tenant = current_setting('brainops.tenant', true));"
                )))
                .execute(&mut *tx)
                .await?;
                dims
            }
        };
        tx.commit().await?;
        if name != embedder.name() || stored as usize != dims || table_dims != dims {
            return Err(MemoryError::Dimensions {
                store_embedder: name,
                store_dims: table_dims,
                embedder: embedder.name().to_string(),
                embedder_dims: dims,
            });
        }
        Ok(PgMemoryStore {
            pg,
            embedder,
            tenant: None,
        })
    }

    /// Applies the memory schema's pending migrations; returns how many ran (0 when the
    /// schema is current).
    pub async fn migrate(pg: &PgStore) -> Result<usize, MemoryError> {
        Ok(migrate(pg, "memory", MIGRATIONS).await?)
    }

    /// The hybrid search statement as [`MemoryStore::search`] runs it, for benchmarks and
    /// `EXPLAIN`: `$1` prefix path, `$2` its LIKE pattern, `$3` filter JSON text or NULL,
    /// `$4` query vector, `$5` query text, `$6` candidates per list, `$7` limit, `$8` offset,
    /// `$9` whether keyword matches are weighted by how much of the query they cover.
    pub fn hybrid_search_sql() -> &'static str {
        HYBRID_PAGE_SQL.as_str()
    }

    /// A handle that sees and writes only `tenant`'s rows (the first namespace segment),
    /// enforced by Postgres row-level security.
    pub fn for_tenant(&self, tenant: &str) -> Self {
        PgMemoryStore {
            tenant: Some(tenant.to_string()),
            ..self.clone()
        }
    }

    /// The Postgres connection pool and its settings.
    pub fn pg(&self) -> &PgStore {
        &self.pg
    }

    /// A transaction, scoped to the tenant when this handle has one.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pg.pool().begin().await?;
        if let Some(tenant) = &self.tenant {
            sqlx::query("SELECT set_config('role', 'brainops_tenant', true), set_config('brainops.tenant', $1, true)")
                .persistent(false)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    fn check_tenant(&self, namespace: &Namespace) -> Result<(), MemoryError> {
        match (&self.tenant, namespace.tenant()) {
            (Some(mine), Some(theirs)) if mine != theirs => Err(MemoryError::Invalid(format!(
                "this store is scoped to tenant {mine:?}; namespace {namespace} belongs to {theirs:?}"
            ))),
            _ => Ok(()),
        }
    }

    fn persistent(&self) -> bool {
        self.pg.persistent_statements()
    }
}

#[async_trait]
impl MemoryStore for PgMemoryStore {
    fn tenant_store(&self, tenant: &str) -> Option<Arc<dyn MemoryStore>> {
        Some(Arc::new(self.for_tenant(tenant)))
    }

    async fn put(
        &self,
        namespace: &Namespace,
        key: &str,
        value: Value,
        options: PutOptions,
    ) -> Result<(), MemoryError> {
        crate::item::check_put(namespace, key, &value)?;
        self.check_tenant(namespace)?;
        let ns = namespace.path();
        let tenant = namespace.tenant().unwrap_or_default().to_string();
        let texts = texts_to_index(&value, &options.index);
        let stored: HashMap<String, i64> = self
            .pg
            .retrying(|| async {
                let mut tx = self.begin().await?;
                let rows = sqlx::query(
                    "SELECT v.field, v.text_hash FROM brainops_memory_vectors v
                     JOIN brainops_memory_items i ON i.id = v.item_id WHERE i.ns = $1 AND i.key = $2",
                )
                .persistent(self.persistent())
                .bind(&ns)
                .bind(key)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, sqlx::Error>>()
            })
            .await?;
        let fresh: Vec<(String, i64, Vector)> =
            embed_changed(self.embedder.as_ref(), &texts, &stored)
                .await?
                .into_iter()
                .map(|f| (f.field, f.text_hash, Vector::from(f.vector)))
                .collect();
        let fields: Vec<String> = texts.iter().map(|(f, _)| f.clone()).collect();
        let body = all_text(&value);
        let value = value.to_string();
        let ttl_ms = options.ttl.map(|t| t.as_millis() as i64);
        self.pg
            .retrying(|| async {
                let mut tx = self.begin().await?;
                let row = sqlx::query(
                    "INSERT INTO brainops_memory_items (ns, key, value, search, expires_at)
                     VALUES ($1, $2, $3::text::jsonb, to_tsvector('english', $4),
                             now() + $5::bigint * interval '1 millisecond')
                     ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value,
                         search = EXCLUDED.search, updated_at = now(), expires_at = EXCLUDED.expires_at
                     RETURNING id",
                )
                .persistent(self.persistent())
                .bind(&ns)
                .bind(key)
                .bind(&value)
                .bind(&body)
                .bind(ttl_ms)
                .fetch_one(&mut *tx)
                .await?;
                let id: i64 = row.try_get(0)?;
                sqlx::query(
                    "DELETE FROM brainops_memory_vectors WHERE item_id = $1 AND NOT (field = ANY($2))",
                )
                .persistent(self.persistent())
                .bind(id)
                .bind(&fields)
                .execute(&mut *tx)
                .await?;
                for (field, hash, vector) in &fresh {
                    sqlx::query(
                        "INSERT INTO brainops_memory_vectors (item_id, tenant, field, text_hash, embedding)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (item_id, field) DO UPDATE
                         SET text_hash = EXCLUDED.text_hash, embedding = EXCLUDED.embedding",
                    )
                    .persistent(self.persistent())
                    .bind(id)
                    .bind(&tenant)
                    .bind(field)
                    .bind(hash)
                    .bind(vector)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            })
            .await?;
        Ok(())
    }

    async fn get(&self, namespace: &Namespace, key: &str) -> Result<Option<Item>, MemoryError> {
        let ns = namespace.path();
        let row = self
            .pg
            .retrying(|| async {
                let mut tx = self.begin().await?;
                let row = sqlx::query(GET_SQL.as_str())
                    .persistent(self.persistent())
                    .bind(&ns)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row)
            })
            .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn delete(&self, namespace: &Namespace, key: &str) -> Result<bool, MemoryError> {
        let ns = namespace.path();
        let n = self
            .pg
            .retrying(|| async {
                let mut tx = self.begin().await?;
                let done =
                    sqlx::query("DELETE FROM brainops_memory_items WHERE ns = $1 AND key = $2")
                        .persistent(self.persistent())
                        .bind(&ns)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            })
            .await?;
        Ok(n > 0)
    }

    async fn search(&self, search: &Search) -> Result<Vec<Hit>, MemoryError> {
        crate::traced_search("postgresql", search, async move {
            let search = &*search.clamped();
            let prefix = search.namespace_prefix.path();
            let like = like_prefix(&prefix);
            let filter = search
                .filter
                .as_ref()
                .map(|f| Value::Object(f.clone()).to_string());
            let query = search.query.as_deref().filter(|q| !q.trim().is_empty());
            let weighted = scored(None, &search.ranking);
            let now = now_ms();
            let window = search.offset + search.limit;
            let rows: Vec<PgRow> = match query {
                None => {
                    // With ranking weights, re-rank a window of the most recent items.
                    let fetch = if weighted {
                        (window * 10).max(100)
                    } else {
                        search.limit
                    };
                    let sql = RECENT_SQL.as_str();
                    let offset = if weighted { 0 } else { search.offset };
                    self.pg
                        .retrying(|| async {
                            let mut tx = self.begin().await?;
                            let rows = sqlx::query(sql)
                                .persistent(self.persistent())
                                .bind(&prefix)
                                .bind(&like)
                                .bind(&filter)
                                .bind(fetch as i64)
                                .bind(offset as i64)
                                .fetch_all(&mut *tx)
                                .await?;
                            tx.commit().await?;
                            Ok(rows)
                        })
                        .await?
                }
                Some(q) => {
                    let vector = self
                        .embedder
                        .embed(&[q.to_string()])
                        .await?
                        .into_iter()
                        .next()
                        .map(Vector::from);
                    let k = (window * 4).max(MIN_CANDIDATES);
                    let sql = if weighted {
                        HYBRID_ALL_SQL.as_str()
                    } else {
                        HYBRID_PAGE_SQL.as_str()
                    };
                    self.pg
                        .retrying(|| async {
                            let mut tx = self.begin().await?;
                            // Iterative scans keep reading the HNSW graph until enough rows pass
                            // the namespace and filter conditions (pgvector 0.8).
                            sqlx::query(
                                "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                            )
                            .persistent(self.persistent())
                            .bind(k.clamp(40, 1000).to_string())
                            .execute(&mut *tx)
                            .await?;
                            // One list alone: the other gets nothing to rank.
                            let (vector, text) = match search.retrieval {
                                Retrieval::Hybrid => (vector.as_ref(), q),
                                Retrieval::Semantic => (vector.as_ref(), ""),
                                Retrieval::Keyword => (None, q),
                            };
                            let rows = sqlx::query(sql)
                                .persistent(self.persistent())
                                .bind(&prefix)
                                .bind(&like)
                                .bind(&filter)
                                .bind(vector)
                                .bind(text)
                                .bind(k as i64)
                                .bind(search.limit as i64)
                                .bind(search.offset as i64)
                                .bind(search.retrieval == Retrieval::Hybrid)
                                .fetch_all(&mut *tx)
                                .await?;
                            tx.commit().await?;
                            Ok(rows)
                        })
                        .await?
                }
            };
            let mut hits = Vec::with_capacity(rows.len());
            for row in &rows {
                let item = item_from_row(row)?;
                let relevance: Option<f64> = row.try_get(6)?;
                let score = if weighted {
                    Some(adjust(
                        relevance.unwrap_or(1.0),
                        item.updated_at,
                        &item.value,
                        &search.ranking,
                        now,
                    ))
                } else {
                    relevance
                };
                let similarity: Option<f64> = row.try_get(7)?;
                hits.push(Hit {
                    item,
                    score,
                    similarity: similarity.map(|s| s as f32),
                });
            }
            if weighted {
                hits.sort_by(|a, b| {
                    b.score
                        .unwrap_or(0.0)
                        .total_cmp(&a.score.unwrap_or(0.0))
                        .then(b.item.updated_at.cmp(&a.item.updated_at))
                });
                hits = hits
                    .into_iter()
                    .skip(search.offset)
                    .take(search.limit)
                    .collect();
            }
            Ok(hits)
        })
        .await
    }

    async fn list_namespaces(
        &self,
        prefix: &Namespace,
        max_depth: Option<usize>,
    ) -> Result<Vec<Namespace>, MemoryError> {
        let path = prefix.path();
        let like = like_prefix(&path);
        let rows = self
            .pg
            .retrying(|| async {
                let mut tx = self.begin().await?;
                let rows = sqlx::query(NAMESPACES_SQL.as_str())
                    .persistent(self.persistent())
                    .bind(&path)
                    .bind(&like)
                    .bind(None::<String>)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(rows)
            })
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let ns = Namespace::parse(&row.try_get::<String, _>(0)?)?;
            found.push(match max_depth {
                Some(d) => ns.truncated(d),
                None => ns,
            });
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn sweep_expired(&self) -> Result<u64, MemoryError> {
        let n = self
            .pg
            .retrying(|| async {
                let mut tx = self.begin().await?;
                let done =
                    sqlx::query("DELETE FROM brainops_memory_items WHERE expires_at <= now()")
                        .persistent(self.persistent())
                        .execute(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            })
            .await?;
        Ok(n)
    }

    fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }
}

/// The hybrid search: the `$6` nearest vectors (HNSW) and the `$6` best keyword matches
/// (among rows with all the query's words and a bounded scan of rows with any), each
/// ranked, fused by reciprocal rank. `$4` query vector, `$5` query text, `$7`/`$8`
/// limit/offset (applied here only when `paginate`; weighted ranking re-sorts in Rust).
pub(crate) fn search_sql(paginate: bool) -> String {
    let page = if paginate {
        "LIMIT $7 OFFSET $8"
    } else {
        "LIMIT greatest(2000, $7 + $8)"
    };
    format!(
        "WITH vec AS (
            SELECT item_id, dist, rank() OVER (ORDER BY dist) AS r FROM (
                SELECT DISTINCT ON (item_id) item_id, dist FROM (
                    SELECT v.item_id, v.embedding <=> $4 AS dist
                    FROM brainops_memory_vectors v JOIN brainops_memory_items i ON i.id = v.item_id
                    WHERE $4::vector IS NOT NULL AND {ITEM_WHERE}
                    ORDER BY v.embedding <=> $4 LIMIT $6) top
                ORDER BY item_id, dist) best),
        q AS (
            SELECT plainto_tsquery('english', $5) AS all_q,
                   to_tsquery('english', coalesce(array_to_string(ARRAY(
                       SELECT quote_literal(l) FROM unnest(tsvector_to_array(to_tsvector('english', $5))) l), ' | '), '')) AS any_q,
                   tsvector_to_array(to_tsvector('english', $5)) AS words),
        kw_candidates AS (
            (SELECT i.id, i.search FROM brainops_memory_items i, q
             WHERE i.search @@ q.all_q AND {ITEM_WHERE} LIMIT $6)
            UNION ALL
            (SELECT i.id, i.search FROM brainops_memory_items i, q
             WHERE i.search @@ q.any_q AND {ITEM_WHERE} LIMIT {KEYWORD_SCAN})),
        kw AS (
            SELECT id AS item_id, rank() OVER (ORDER BY rank DESC) AS r, coverage FROM (
                SELECT DISTINCT ON (c.id) c.id, ts_rank_cd(c.search, q.any_q) AS rank,
                       -- The share of the query's words this match holds (rank::hybrid_score).
                       (SELECT count(*) FROM unnest(q.words) w
                         WHERE c.search @@ to_tsquery('simple', quote_literal(w)))::float8
                         / greatest(cardinality(q.words), 1) AS coverage
                FROM kw_candidates c, q) ranked
            ORDER BY rank DESC LIMIT $6)
        SELECT {ITEM_COLUMNS},
               (CASE WHEN $9
                     -- rank::hybrid_score: similarity plus the weighted share of the words.
                     THEN greatest(COALESCE(1 - vec.dist, 0), 0) + {KEYWORD_WEIGHT}
                          * greatest((COALESCE(kw.coverage, 0) - {KEYWORD_THRESHOLD}) / (1 - {KEYWORD_THRESHOLD}), 0)
                     ELSE COALESCE(1.0 / ({RRF_K} + vec.r), 0) + COALESCE(1.0 / ({RRF_K} + kw.r), 0)
                END)::float8 AS score,
               (1 - vec.dist)::float8 AS similarity
        FROM (SELECT item_id FROM vec UNION SELECT item_id FROM kw) ids
        JOIN brainops_memory_items i ON i.id = ids.item_id
        LEFT JOIN vec ON vec.item_id = i.id
        LEFT JOIN kw ON kw.item_id = i.id
        ORDER BY score DESC, i.updated_at DESC, i.id
        {page}"
    )
}
