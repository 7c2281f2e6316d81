//! Long-term memory: search latency at scale, HNSW recall, insert throughput, local
//! embedding speed.
//!
//!   eval "$(scripts/postgres.sh)"; eval "$(scripts/local-embedder.sh)"
//!   cargo bench --bench memory                                  # 100k memories
//!   BRAINOPS_BENCH_MEMORY_SIZES=100000,1000000 cargo bench --bench memory
//!
//! For each size N (384-d vectors in the store's own tables, database
//! `brainops_bench_memory_N`, built once and reused by later runs):
//! - printed: hybrid search p50/p99 through `PgMemoryStore::search` next to the same SQL
//!   run raw with sqlx (same parameters, same connection pool), and plain HNSW top-10;
//! - printed: recall@10 of the HNSW path against exact search (a sequential scan);
//! - criterion `memory_search/N/*`: the same two paths' means.
//!
//! Vectors are synthetic but embedding-like: points near a 24-dimensional subspace of the
//! 384-d space, normalised (uniform random vectors make HNSW recall meaningless). Queries
//! are perturbed copies of stored vectors. The bench's `PrecomputedEmbedder` returns the
//! query's vector without a model, so the store path and the raw path differ only by the
//! store's own work.
//!
//! Also printed: single-row `put` throughput into a store that already holds N items (HNSW
//! maintained), the embedded store's exact search over 10k items, and the local
//! all-MiniLM-L6-v2 embeddings per second (batch 32 and one at a time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use memory::{
    EmbeddedStore, Embedder, HashingEmbedder, Index, MemoryError, MemoryStore, Namespace,
    PgMemoryStore, PutOptions, Search,
};
use pgvector::Vector;
use serde_json::json;
use sqlx::Row;

#[path = "../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod db;

const DIMS: usize = 384;
const LATENT: usize = 24;
const QUERIES: usize = 200;
const WORDS: [&str; 24] = [
    "hail",
    "roof",
    "shingle",
    "gutter",
    "leak",
    "estimate",
    "invoice",
    "crew",
    "storm",
    "wind",
    "flashing",
    "ridge",
    "skylight",
    "permit",
    "inspection",
    "warranty",
    "metal",
    "asphalt",
    "chimney",
    "valley",
    "underlayment",
    "deck",
    "soffit",
    "fascia",
];

/// splitmix64: a small, fixed-seed generator, so every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Vectors near a LATENT-dimensional subspace.
struct Space {
    basis: Vec<Vec<f32>>,
}

impl Space {
    fn new() -> Space {
        let mut rng = Rng(42);
        Space {
            basis: (0..LATENT)
                .map(|_| (0..DIMS).map(|_| rng.normal()).collect())
                .collect(),
        }
    }
    fn point(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 7);
        let mut v = vec![0.0f32; DIMS];
        for b in &self.basis {
            let z = rng.normal();
            v.iter_mut().zip(b).for_each(|(x, y)| *x += z * y);
        }
        v.iter_mut().for_each(|x| *x += 0.3 * rng.normal());
        normalise(v)
    }
    fn near(&self, seed: u64, salt: u64) -> Vec<f32> {
        let mut rng = Rng(salt);
        normalise(
            self.point(seed)
                .into_iter()
                .map(|x| x + 0.02 * rng.normal())
                .collect(),
        )
    }
}

fn words(i: u64) -> String {
    (0..4)
        .map(|j| WORDS[((i * 7 + j * 13 + i / 24) % 24) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Returns the vector registered for each query text: no model in the measured path.
struct PrecomputedEmbedder {
    vectors: HashMap<String, Vec<f32>>,
}

#[async_trait]
impl Embedder for PrecomputedEmbedder {
    fn name(&self) -> &str {
        "bench:synthetic-384"
    }
    fn dimensions(&self) -> usize {
        DIMS
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        texts
            .iter()
            .map(|t| {
                self.vectors
                    .get(t)
                    .cloned()
                    .ok_or_else(|| MemoryError::Embedder(format!("no vector for {t:?}")))
            })
            .collect()
    }
}

/// Creates and fills `brainops_bench_memory_N` unless a previous run did.
async fn populate(n: u64, space: &Space) -> String {
    let name = format!("brainops_bench_memory_{n}");
    let admin = sqlx::PgPool::connect(&db::admin_url()).await.unwrap();
    let exists: bool = sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap()
        .get(0);
    let url = db::with_database(&db::admin_url(), &name);
    if exists {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let ready: Option<i64> = sqlx::query("SELECT (SELECT count(*) FROM brainops_memory_vectors) FROM pg_indexes WHERE indexname = 'brainops_memory_vectors_hnsw'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if ready == Some(n as i64) {
            return url;
        }
        pool.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let started = Instant::now();
    let store = PgMemoryStore::connect(
        &url,
        Arc::new(PrecomputedEmbedder {
            vectors: HashMap::new(),
        }),
    )
    .await
    .unwrap();
    let pool = store.pg().pool().clone();
    sqlx::raw_sql("DROP INDEX brainops_memory_vectors_hnsw")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO brainops_memory_items (id, ns, key, value, search)
         SELECT i, 'tenant:bench/c' || (i % 1000), 'k' || i,
                jsonb_build_object('kind', 'fact', 'n', i, 'text', t), to_tsvector('english', t)
         FROM (SELECT i, $1[1 + (i * 7 + i / 24) % 24] || ' ' || $1[1 + (i * 7 + 13 + i / 24) % 24] || ' '
                      || $1[1 + (i * 7 + 26 + i / 24) % 24] || ' ' || $1[1 + (i * 7 + 39 + i / 24) % 24] AS t
               FROM generate_series(1, $2::bigint) i) g",
    )
    .bind(WORDS.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    .bind(n as i64)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql("SELECT setval('brainops_memory_items_id_seq', (SELECT max(id) FROM brainops_memory_items))").execute(&pool).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut copy = conn
        .copy_in_raw("COPY brainops_memory_vectors (item_id, tenant, field, text_hash, embedding) FROM STDIN")
        .await
        .unwrap();
    let mut buf = String::with_capacity(8 << 20);
    for i in 1..=n {
        let v = space.point(i);
        buf.push_str(&format!("{i}\ttenant:bench\ttext\t0\t["));
        for (j, x) in v.iter().enumerate() {
            if j > 0 {
                buf.push(',');
            }
            buf.push_str(&format!("{x:.5}"));
        }
        buf.push_str("]\n");
        if buf.len() > (4 << 20) {
            copy.send(buf.as_bytes()).await.unwrap();
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    drop(conn);
    let loaded = started.elapsed();
    let index_started = Instant::now();
    let mut conn = pool.acquire().await.unwrap();
    for statement in [
        "SET maintenance_work_mem = '4GB'",
        "SET max_parallel_maintenance_workers = 1",
        "CREATE INDEX brainops_memory_vectors_hnsw ON brainops_memory_vectors USING hnsw (embedding vector_cosine_ops)",
        "VACUUM ANALYZE brainops_memory_items",
        "VACUUM ANALYZE brainops_memory_vectors",
    ] {
        sqlx::raw_sql(statement).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    println!(
        "memory/{n}: loaded {n} items in {:.1} s, HNSW index (m=16, ef_construction=64) built in {:.1} s",
        loaded.as_secs_f64(),
        index_started.elapsed().as_secs_f64()
    );
    url
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "  {label}: p50 {:.2} ms, p99 {:.2} ms ({} queries)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        times.len()
    );
    (p50, p99)
}

async fn raw_hybrid(pool: &sqlx::PgPool, vector: &Vector, text: &str) -> usize {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('hnsw.ef_search', '40', true), set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rows = sqlx::query(PgMemoryStore::hybrid_search_sql())
        .bind("tenant:bench")
        .bind("tenant:bench/%")
        .bind(None::<String>)
        .bind(vector)
        .bind(text)
        .bind(40i64)
        .bind(10i64)
        .bind(0i64)
        .bind(true)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.len()
}

async fn top10(pool: &sqlx::PgPool, vector: &Vector, exact: bool) -> Vec<i64> {
    let mut tx = pool.begin().await.unwrap();
    if exact {
        sqlx::raw_sql("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let rows = sqlx::query(
        "SELECT item_id FROM brainops_memory_vectors ORDER BY embedding <=> $1 LIMIT 10",
    )
    .bind(vector)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

fn bench_size(c: &mut Criterion, rt: &tokio::runtime::Runtime, n: u64, space: &Space) {
    let url = rt.block_on(populate(n, space));
    let queries: Vec<(String, Vec<f32>)> = (0..QUERIES as u64)
        .map(|q| {
            let seed = 1 + (q * 7919) % n;
            (format!("{} q{q}", words(seed)), space.near(seed, q + 1000))
        })
        .collect();
    let embedder = PrecomputedEmbedder {
        vectors: queries.iter().cloned().collect(),
    };
    let store = rt
        .block_on(PgMemoryStore::connect(&url, Arc::new(embedder)))
        .unwrap();
    let pool = store.pg().pool().clone();
    let prefix = Namespace::parse("tenant:bench").unwrap();
    println!("memory/{n} (384-d, hybrid vector + keyword, top 10):");
    rt.block_on(async {
        // Warm the caches once.
        for (text, v) in queries.iter().take(20) {
            store
                .search(&Search::new(prefix.clone()).query(text.clone()).limit(10))
                .await
                .unwrap();
            raw_hybrid(&pool, &Vector::from(v.clone()), text).await;
        }
        let mut store_times = Vec::new();
        let mut raw_times = Vec::new();
        // Alternate which path goes first, so neither always finds the other's pages cached.
        for (q, (text, v)) in queries.iter().enumerate() {
            let vector = Vector::from(v.clone());
            for turn in 0..2 {
                if (q + turn) % 2 == 0 {
                    let t = Instant::now();
                    let hits = store
                        .search(&Search::new(prefix.clone()).query(text.clone()).limit(10))
                        .await
                        .unwrap();
                    store_times.push(t.elapsed());
                    assert_eq!(hits.len(), 10);
                } else {
                    let t = Instant::now();
                    let rows = raw_hybrid(&pool, &vector, text).await;
                    raw_times.push(t.elapsed());
                    assert_eq!(rows, 10);
                }
            }
        }
        let (s50, s99) = report("store search", store_times);
        let (r50, r99) = report("same SQL raw", raw_times);
        println!(
            "  overhead: p50 {:+.1}%, p99 {:+.1}%",
            (s50.as_secs_f64() / r50.as_secs_f64() - 1.0) * 100.0,
            (s99.as_secs_f64() / r99.as_secs_f64() - 1.0) * 100.0
        );
        let mut hnsw_times = Vec::new();
        let mut exact_times = Vec::new();
        let mut found = 0usize;
        for (_, v) in queries.iter().take(100) {
            let vector = Vector::from(v.clone());
            let t = Instant::now();
            let approx = top10(&pool, &vector, false).await;
            hnsw_times.push(t.elapsed());
            let t = Instant::now();
            let exact = top10(&pool, &vector, true).await;
            exact_times.push(t.elapsed());
            found += approx.iter().filter(|id| exact.contains(id)).count();
        }
        report("HNSW top-10 alone", hnsw_times);
        report("exact top-10 (seq scan)", exact_times);
        println!(
            "  recall@10 of HNSW (ef_search 40) vs exact: {:.3} over 100 queries",
            found as f64 / 1000.0
        );

        // Single-row puts into the full store: HNSW maintenance included.
        let mut vectors = HashMap::new();
        let texts: Vec<String> = (0..500u64)
            .map(|i| format!("insert bench {i} {}", words(i)))
            .collect();
        for (i, t) in texts.iter().enumerate() {
            vectors.insert(t.clone(), space.point(10_000_000 + i as u64));
        }
        let writer = PgMemoryStore::connect(&url, Arc::new(PrecomputedEmbedder { vectors }))
            .await
            .unwrap();
        let ns = Namespace::parse("tenant:bench/inserts").unwrap();
        let t = Instant::now();
        for (i, text) in texts.iter().enumerate() {
            writer
                .put(
                    &ns,
                    &format!("i{i}"),
                    json!({"text": text}),
                    PutOptions::default(),
                )
                .await
                .unwrap();
        }
        let took = t.elapsed();
        println!(
            "  put (one item, HNSW maintained, into {n}): {:.0} items/s ({:.2} ms each)",
            texts.len() as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e3 / texts.len() as f64
        );
        for i in 0..texts.len() {
            writer.delete(&ns, &format!("i{i}")).await.unwrap();
        }
    });
    let mut group = c.benchmark_group(format!("memory_search/{n}"));
    group.sample_size(30);
    let (text, v) = queries[0].clone();
    let vector = Vector::from(v);
    group.bench_function("store_hybrid", |b| {
        b.to_async(rt).iter(|| async {
            store
                .search(&Search::new(prefix.clone()).query(text.clone()).limit(10))
                .await
                .unwrap()
        })
    });
    group.bench_function("raw_sql_hybrid", |b| {
        b.to_async(rt).iter(|| raw_hybrid(&pool, &vector, &text))
    });
    group.finish();
}

fn embedded_and_embeddings(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(
            dir.path().join("m.db"),
            Arc::new(HashingEmbedder::new(DIMS)),
        )
        .unwrap();
        let ns = Namespace::parse("tenant:bench/notes").unwrap();
        let t = Instant::now();
        for i in 0..10_000u64 {
            store
                .put(
                    &ns,
                    &format!("k{i}"),
                    json!({"text": words(i)}),
                    PutOptions {
                        index: Index::Whole,
                        ttl: None,
                    },
                )
                .await
                .unwrap();
        }
        println!(
            "embedded store: put {:.0} items/s (hashing embedder, 384-d)",
            10_000.0 / t.elapsed().as_secs_f64()
        );
        let mut times = Vec::new();
        for q in 0..50u64 {
            let t = Instant::now();
            let hits = store
                .search(
                    &Search::new(Namespace::parse("tenant:bench").unwrap())
                        .query(words(q * 31))
                        .limit(10),
                )
                .await
                .unwrap();
            times.push(t.elapsed());
            assert_eq!(hits.len(), 10);
        }
        report("embedded store exact hybrid search over 10k", times);

        match memory::LocalMiniLm::load_default() {
            Ok(model) => {
                let texts: Vec<String> = (0..256u64)
                    .map(|i| format!("Customer {i} reported {} after the storm", words(i)))
                    .collect();
                model.embed(&texts[..8]).await.unwrap();
                let t = Instant::now();
                model.embed(&texts).await.unwrap();
                println!(
                    "local all-MiniLM-L6-v2: {:.0} embeddings/s in batches of 32",
                    texts.len() as f64 / t.elapsed().as_secs_f64()
                );
                let t = Instant::now();
                for text in texts.iter().take(64) {
                    model.embed(std::slice::from_ref(text)).await.unwrap();
                }
                println!(
                    "local all-MiniLM-L6-v2: {:.0} embeddings/s one at a time",
                    64.0 / t.elapsed().as_secs_f64()
                );
            }
            Err(e) => println!("local embedder skipped: {e}"),
        }
    });
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sizes: Vec<u64> = std::env::var("BRAINOPS_BENCH_MEMORY_SIZES")
        .unwrap_or_else(|_| "100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let space = Space::new();
    for n in sizes {
        bench_size(c, &rt, n, &space);
    }
    embedded_and_embeddings(&rt);
}

criterion_group!(memory_benches, benches);
criterion_main!(memory_benches);
