//! One suite, three backends: the embedded SQLite store, Postgres direct, and Postgres
//! through PgBouncer in transaction mode (as Supabase's pooler). The stores use the
//! `HashingEmbedder` (shared words, not meaning) so results are exact and instant; retrieval
//! quality with the real local model is tested in `retrieval_quality.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../engine/tests/common/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use memory::{
    EmbeddedStore, Embedder, HashingEmbedder, Index, MemoryError, MemoryStore, Namespace,
    PgMemoryStore, PutOptions, Ranking, Search,
};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Embedded,
    Postgres,
    Pooler,
}

/// Where one test's store lives, so it can be opened again.
struct Backend {
    kind: Kind,
    _dir: Option<tempfile::TempDir>,
    location: String,
}

impl Backend {
    async fn new(kind: Kind) -> Backend {
        match kind {
            Kind::Embedded => {
                let dir = tempfile::tempdir().unwrap();
                let location = dir.path().join("memory.db").display().to_string();
                Backend {
                    kind,
                    _dir: Some(dir),
                    location,
                }
            }
            Kind::Postgres | Kind::Pooler => {
                let db = pg::fresh_database().await;
                let base = match kind {
                    Kind::Postgres => pg::admin_url(),
                    _ => pg::pooler_url(),
                };
                Backend {
                    kind,
                    _dir: None,
                    location: pg::with_database(&base, &db),
                }
            }
        }
    }

    async fn open_with(
        &self,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Arc<dyn MemoryStore>, MemoryError> {
        Ok(match self.kind {
            Kind::Embedded => Arc::new(EmbeddedStore::open(&self.location, embedder)?),
            _ => Arc::new(PgMemoryStore::connect(&self.location, embedder).await?),
        })
    }

    async fn open(&self) -> Arc<dyn MemoryStore> {
        self.open_with(Arc::new(HashingEmbedder::new(64)))
            .await
            .unwrap()
    }
}

fn ns(path: &str) -> Namespace {
    Namespace::parse(path).unwrap()
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn put(store: &dyn MemoryStore, path: &str, key: &str, value: Value) {
    store
        .put(&ns(path), key, value, PutOptions::default())
        .await
        .unwrap();
}

fn keys(hits: &[memory::Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| format!("{}#{}", h.item.namespace, h.item.key))
        .collect()
}

async fn crud(b: Backend) {
    let store = b.open().await;
    let n = ns("tenant:acme/customers");
    assert!(store.get(&n, "c42").await.unwrap().is_none());
    let v1 = json!({"name": "Dana Smith", "roof": "asphalt shingle", "age_years": 17});
    store
        .put(&n, "c42", v1.clone(), PutOptions::default())
        .await
        .unwrap();
    let first = store.get(&n, "c42").await.unwrap().unwrap();
    assert_eq!(first.value, v1);
    assert_eq!(first.namespace, n);
    assert_eq!(first.key, "c42");
    assert!(first.expires_at.is_none());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let v2 = json!({"name": "Dana Smith", "roof": "metal standing seam"});
    store
        .put(&n, "c42", v2.clone(), PutOptions::default())
        .await
        .unwrap();
    let second = store.get(&n, "c42").await.unwrap().unwrap();
    assert_eq!(second.value, v2);
    assert_eq!(
        second.created_at, first.created_at,
        "an update keeps created_at"
    );
    assert!(
        second.updated_at > first.updated_at,
        "an update moves updated_at"
    );
    assert!(store.delete(&n, "c42").await.unwrap());
    assert!(!store.delete(&n, "c42").await.unwrap());
    assert!(store.get(&n, "c42").await.unwrap().is_none());
    let root = store
        .put(&Namespace::root(), "k", json!(1), PutOptions::default())
        .await;
    assert!(matches!(root, Err(MemoryError::Invalid(_))), "{root:?}");
}

async fn namespaces_and_prefixes(b: Backend) {
    let store = b.open().await;
    for path in [
        "tenant:a/jobs",
        "tenant:a/jobs/2024",
        "tenant:a/jobs_old",
        "tenant:a/jobsx",
        "tenant:b/jobs",
    ] {
        put(
            &*store,
            path,
            "k",
            json!({"text": format!("item in {path}")}),
        )
        .await;
    }
    let hits = store
        .search(&Search::new(ns("tenant:a/jobs")))
        .await
        .unwrap();
    let mut found = keys(&hits);
    found.sort();
    assert_eq!(
        found,
        ["tenant:a/jobs#k", "tenant:a/jobs/2024#k"],
        "a prefix covers itself and below, not siblings sharing letters (`_` is not a wildcard)"
    );
    let all = store
        .list_namespaces(&Namespace::root(), None)
        .await
        .unwrap();
    let all: Vec<String> = all.iter().map(|n| n.path()).collect();
    assert_eq!(
        all,
        [
            "tenant:a/jobs",
            "tenant:a/jobs/2024",
            "tenant:a/jobs_old",
            "tenant:a/jobsx",
            "tenant:b/jobs"
        ]
    );
    let top: Vec<String> = store
        .list_namespaces(&Namespace::root(), Some(1))
        .await
        .unwrap()
        .iter()
        .map(|n| n.path())
        .collect();
    assert_eq!(top, ["tenant:a", "tenant:b"]);
    let under: Vec<String> = store
        .list_namespaces(&ns("tenant:a/jobs"), Some(2))
        .await
        .unwrap()
        .iter()
        .map(|n| n.path())
        .collect();
    assert_eq!(under, ["tenant:a/jobs"]);
}

async fn filters(b: Backend) {
    let store = b.open().await;
    let n = ns("tenant:acme/memories");
    put(
        &*store,
        "tenant:acme/memories",
        "f1",
        json!({"kind": "fact", "customer_id": 42, "text": "Prefers morning calls"}),
    )
    .await;
    put(
        &*store,
        "tenant:acme/memories",
        "f2",
        json!({"kind": "fact", "customer_id": 7, "text": "Has a dog in the yard"}),
    )
    .await;
    put(&*store, "tenant:acme/memories", "e1", json!({"kind": "episode", "customer_id": 42, "text": "Inspected the roof", "tags": ["hail", "inspection"]})).await;
    let only = |f: Value| Search::new(n.clone()).filter(obj(f));
    let hits = store
        .search(&only(json!({"kind": "fact", "customer_id": 42})))
        .await
        .unwrap();
    assert_eq!(keys(&hits), ["tenant:acme/memories#f1"]);
    let hits = store
        .search(&only(json!({"customer_id": 42})))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    let hits = store
        .search(&only(json!({"tags": ["hail"]})))
        .await
        .unwrap();
    assert_eq!(keys(&hits), ["tenant:acme/memories#e1"]);
    let hits = store
        .search(&only(json!({"kind": "fact"})).query("dog in the yard"))
        .await
        .unwrap();
    assert_eq!(keys(&hits)[0], "tenant:acme/memories#f2");
    assert!(hits.iter().all(|h| h.item.value["kind"] == "fact"));
    let none = store
        .search(&only(json!({"kind": "nothing"})))
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn hybrid_search_ranks_and_pages(b: Backend) {
    let store = b.open().await;
    let n = ns("tenant:acme/notes");
    let notes = [
        ("n1", "Hail damage found on the north slope of the roof"),
        ("n2", "Customer asked about gutter cleaning prices"),
        ("n3", "Crew scheduled for Tuesday, weather permitting"),
        ("n4", "Invoice 1042 paid by card"),
        ("n5", "Wind lifted three shingles near the ridge"),
    ];
    for (k, t) in notes {
        put(&*store, "tenant:acme/notes", k, json!({"text": t})).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let hits = store
        .search(&Search::new(n.clone()).query("hail damage roof").limit(3))
        .await
        .unwrap();
    assert_eq!(hits[0].item.key, "n1", "{:?}", keys(&hits));
    assert!(hits.len() <= 3);
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
    assert!(hits.iter().all(|h| h.score.is_some()));
    let best = hits[0]
        .similarity
        .expect("a semantic match reports its cosine similarity");
    assert!(best > 0.0 && best <= 1.0 + 1e-5, "{best}");
    let page1 = store
        .search(&Search::new(n.clone()).limit(2))
        .await
        .unwrap();
    let page2 = store
        .search(&Search::new(n.clone()).limit(2).offset(2))
        .await
        .unwrap();
    let page3 = store
        .search(&Search::new(n.clone()).limit(2).offset(4))
        .await
        .unwrap();
    assert!(
        page1
            .iter()
            .all(|h| h.similarity.is_none() && h.score.is_none())
    );
    let mut all: Vec<String> = [page1, page2, page3].iter().flat_map(|p| keys(p)).collect();
    assert_eq!(all.len(), 5);
    assert_eq!(
        all[0], "tenant:acme/notes#n5",
        "most recent first without a query"
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5, "pages do not overlap");
    // Index::Off: found by keyword, not embedded.
    store
        .put(
            &n,
            "plain",
            json!({"text": "skylight flashing replaced"}),
            PutOptions {
                index: Index::Off,
                ttl: None,
            },
        )
        .await
        .unwrap();
    let hits = store
        .search(&Search::new(n.clone()).query("skylight"))
        .await
        .unwrap();
    assert_eq!(hits[0].item.key, "plain");
}

async fn ranking_weighs_importance_and_recency(b: Backend) {
    let store = b.open().await;
    let n = ns("tenant:acme/facts");
    put(
        &*store,
        "tenant:acme/facts",
        "low",
        json!({"text": "gate code 1234", "importance": 0.1}),
    )
    .await;
    put(
        &*store,
        "tenant:acme/facts",
        "high",
        json!({"text": "gate code 5678", "importance": 0.9}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    put(
        &*store,
        "tenant:acme/facts",
        "newest",
        json!({"text": "unrelated", "importance": 0.0}),
    )
    .await;
    let by_importance = Ranking {
        importance_weight: 1.0,
        ..Ranking::default()
    };
    let hits = store
        .search(&Search::new(n.clone()).ranking(by_importance))
        .await
        .unwrap();
    assert_eq!(hits[0].item.key, "high");
    let by_recency = Ranking {
        recency_weight: 1.0,
        half_life: Duration::from_millis(50),
        ..Ranking::default()
    };
    let hits = store
        .search(&Search::new(n).ranking(by_recency))
        .await
        .unwrap();
    assert_eq!(hits[0].item.key, "newest");
}

async fn ttl_expiry(b: Backend) {
    let store = b.open().await;
    let n = ns("tenant:acme/session");
    store
        .put(
            &n,
            "short",
            json!({"text": "temporary hold on the calendar"}),
            PutOptions {
                index: Index::Whole,
                ttl: Some(Duration::from_millis(400)),
            },
        )
        .await
        .unwrap();
    put(
        &*store,
        "tenant:acme/session",
        "long",
        json!({"text": "permanent"}),
    )
    .await;
    let item = store.get(&n, "short").await.unwrap().unwrap();
    assert!(item.expires_at.unwrap() > item.updated_at);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        store.get(&n, "short").await.unwrap().is_none(),
        "expired items are invisible"
    );
    let hits = store
        .search(&Search::new(n.clone()).query("temporary calendar hold"))
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.item.key != "short"));
    assert_eq!(store.sweep_expired().await.unwrap(), 1);
    assert_eq!(store.sweep_expired().await.unwrap(), 0);
    assert!(store.get(&n, "long").await.unwrap().is_some());
}

async fn concurrent_writers(b: Backend) {
    let store = b.open().await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let n = ns(&format!("tenant:acme/w{w}"));
                store
                    .put(
                        &n,
                        &format!("k{i}"),
                        json!({"text": format!("writer {w} item {i}")}),
                        PutOptions::default(),
                    )
                    .await
                    .unwrap();
                // Everyone also fights over one key.
                store
                    .put(
                        &ns("tenant:acme/shared"),
                        "hot",
                        json!({"text": format!("writer {w} wrote {i}"), "w": w}),
                        PutOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store
        .search(&Search::new(ns("tenant:acme")).limit(1000))
        .await
        .unwrap();
    assert_eq!(all.len(), 8 * 20 + 1);
    let hot = store
        .get(&ns("tenant:acme/shared"), "hot")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        hot.value["text"],
        format!("writer {} wrote 19", hot.value["w"]),
        "the last write of some writer wins whole"
    );
}

struct Counting {
    inner: HashingEmbedder,
    texts: Arc<AtomicUsize>,
}

#[async_trait]
impl Embedder for Counting {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

async fn unchanged_text_is_not_embedded_again(b: Backend) {
    let texts = Arc::new(AtomicUsize::new(0));
    let store = b
        .open_with(Arc::new(Counting {
            inner: HashingEmbedder::new(64),
            texts: texts.clone(),
        }))
        .await
        .unwrap();
    let n = ns("tenant:acme/jobs");
    let fields = || PutOptions {
        index: Index::Fields(vec!["summary".into(), "address".into()]),
        ttl: None,
    };
    store
        .put(
            &n,
            "j1",
            json!({"summary": "tear-off and reroof", "address": "12 Elm St", "status": "open"}),
            fields(),
        )
        .await
        .unwrap();
    assert_eq!(texts.load(Ordering::SeqCst), 2);
    store
        .put(
            &n,
            "j1",
            json!({"summary": "tear-off and reroof", "address": "12 Elm St", "status": "done"}),
            fields(),
        )
        .await
        .unwrap();
    assert_eq!(
        texts.load(Ordering::SeqCst),
        2,
        "same texts, no new embeddings"
    );
    store
        .put(
            &n,
            "j1",
            json!({"summary": "tear-off, reroof and gutters", "address": "12 Elm St"}),
            fields(),
        )
        .await
        .unwrap();
    assert_eq!(
        texts.load(Ordering::SeqCst),
        3,
        "only the changed field is embedded"
    );
    let hits = store
        .search(&Search::new(n).query("gutters"))
        .await
        .unwrap();
    assert_eq!(hits[0].item.key, "j1");
}

async fn other_embedder_is_refused(b: Backend) {
    let store = b.open().await;
    put(&*store, "tenant:acme/x", "k", json!({"text": "hello"})).await;
    drop(store);
    let err = b
        .open_with(Arc::new(HashingEmbedder::new(32)))
        .await
        .err()
        .expect("a 32-d embedder on a 64-d store must be refused");
    let message = err.to_string();
    assert!(
        matches!(
            err,
            MemoryError::Dimensions {
                store_dims: 64,
                embedder_dims: 32,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("64-d") && message.contains("hashing:32"),
        "{message}"
    );
    // Re-opening with the same embedder runs no migration again and keeps the data.
    let again = b.open().await;
    assert!(
        again
            .get(&ns("tenant:acme/x"), "k")
            .await
            .unwrap()
            .is_some()
    );
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod embedded { $( #[tokio::test] async fn $case() { super::$case(super::Backend::new(super::Kind::Embedded).await).await } )* }
        mod postgres { $( #[tokio::test] async fn $case() { super::$case(super::Backend::new(super::Kind::Postgres).await).await } )* }
        mod pgbouncer { $( #[tokio::test] async fn $case() { super::$case(super::Backend::new(super::Kind::Pooler).await).await } )* }
    };
}

suite!(
    crud,
    namespaces_and_prefixes,
    filters,
    hybrid_search_ranks_and_pages,
    ranking_weighs_importance_and_recency,
    ttl_expiry,
    concurrent_writers,
    unchanged_text_is_not_embedded_again,
    other_embedder_is_refused,
);
