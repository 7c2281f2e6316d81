//! Row-level security: a handle scoped to one tenant cannot read, find, list, overwrite or
//! delete another tenant's memories — checked through the store API, and through raw SQL
//! under the same role and setting, directly and through PgBouncer in transaction mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../engine/tests/common/pg.rs"]
mod pg;

use std::sync::Arc;

use memory::{
    HashingEmbedder, MemoryError, MemoryStore, Namespace, PgMemoryStore, PutOptions, Search,
};
use serde_json::json;
use sqlx::Row;

fn ns(path: &str) -> Namespace {
    Namespace::parse(path).unwrap()
}

async fn isolation(url: &str) {
    let admin = PgMemoryStore::connect(url, Arc::new(HashingEmbedder::new(64)))
        .await
        .unwrap();
    for (tenant, secret) in [
        ("tenant:acme", "acme gate code 1111"),
        ("tenant:globex", "globex gate code 2222"),
    ] {
        admin
            .put(
                &ns(&format!("{tenant}/customers")),
                "gate",
                json!({"text": secret}),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    let acme = admin.for_tenant("tenant:acme");

    // Reads: only acme's row, whatever the prefix asks for.
    let everything = acme
        .search(&Search::new(Namespace::root()).query("gate code").limit(100))
        .await
        .unwrap();
    assert_eq!(everything.len(), 1, "{everything:?}");
    assert_eq!(everything[0].item.value["text"], "acme gate code 1111");
    let listed = acme
        .search(&Search::new(ns("tenant:globex")))
        .await
        .unwrap();
    assert!(listed.is_empty());
    assert!(
        acme.get(&ns("tenant:globex/customers"), "gate")
            .await
            .unwrap()
            .is_none()
    );
    let spaces: Vec<String> = acme
        .list_namespaces(&Namespace::root(), None)
        .await
        .unwrap()
        .iter()
        .map(|n| n.path())
        .collect();
    assert_eq!(spaces, ["tenant:acme/customers"]);

    // Writes into another tenant are refused before and by the database.
    let refused = acme
        .put(
            &ns("tenant:globex/customers"),
            "gate",
            json!({"text": "overwritten"}),
            PutOptions::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(MemoryError::Invalid(_))),
        "{refused:?}"
    );
    assert!(
        !acme
            .delete(&ns("tenant:globex/customers"), "gate")
            .await
            .unwrap()
    );
    assert_eq!(acme.sweep_expired().await.unwrap(), 0);
    let globex = admin
        .get(&ns("tenant:globex/customers"), "gate")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        globex.value["text"], "globex gate code 2222",
        "globex's row is untouched"
    );

    // Raw SQL under the scoped role sees one tenant in both tables, and cannot insert
    // a row for another tenant (WITH CHECK).
    let pool = admin.pg().pool();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('role', 'brainops_tenant', true), set_config('brainops.tenant', 'tenant:acme', true)")
        .persistent(false)
        .execute(&mut *tx)
        .await
        .unwrap();
    let tenants: Vec<String> = sqlx::query("SELECT DISTINCT tenant FROM brainops_memory_items UNION SELECT DISTINCT tenant FROM brainops_memory_vectors")
        .persistent(false)
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tenants, ["tenant:acme"]);
    let forged = sqlx::query("INSERT INTO brainops_memory_items (ns, key, value, search) VALUES ('tenant:globex/x', 'k', '{}', ''::tsvector)")
        .persistent(false)
        .execute(&mut *tx)
        .await;
    let message = forged.unwrap_err().to_string();
    assert!(message.contains("row-level security"), "{message}");
    drop(tx);

    // An unscoped connection without the setting, as the tenant role, sees nothing at all.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('role', 'brainops_tenant', true)")
        .persistent(false)
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT count(*) FROM brainops_memory_items")
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_scoped_store_sees_only_its_tenant_direct() {
    let db = pg::fresh_database().await;
    isolation(&pg::with_database(&pg::admin_url(), &db)).await;
}

#[tokio::test]
async fn a_scoped_store_sees_only_its_tenant_through_pgbouncer() {
    let db = pg::fresh_database().await;
    isolation(&pg::with_database(&pg::pooler_url(), &db)).await;
}

#[tokio::test]
async fn migrations_rerun_as_no_ops_and_race_safely() {
    let db = pg::fresh_database().await;
    let url = pg::with_database(&pg::admin_url(), &db);
    // Eight processes' worth of first opens at once.
    let opens = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            PgMemoryStore::connect(&url, Arc::new(HashingEmbedder::new(64))).await
        })
    });
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let store = PgMemoryStore::connect(&url, Arc::new(HashingEmbedder::new(64)))
        .await
        .unwrap();
    let ran = PgMemoryStore::migrate(store.pg()).await.unwrap();
    assert_eq!(ran, 0);
    let applied: i64 =
        sqlx::query("SELECT count(*) FROM brainops_migrations WHERE component = 'memory'")
            .fetch_one(store.pg().pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(applied, 1, "migration 1 recorded once");
}

/// What graph nodes use: the memory tools, on the embedded store (no row-level security),
/// refuse an empty namespace and never return another tenant's items.
#[tokio::test]
async fn graph_recall_sees_only_its_tenant_on_the_embedded_store() {
    use engine::{NodeContext, Registry};
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MemoryStore> = Arc::new(
        memory::EmbeddedStore::open(dir.path().join("m.db"), Arc::new(HashingEmbedder::new(64)))
            .unwrap(),
    );
    for (tenant, secret) in [
        ("tenant:acme", "acme gate code 1111"),
        ("tenant:globex", "globex gate code 2222"),
    ] {
        store
            .put(
                &ns(&format!("{tenant}/customers")),
                "gate",
                json!({"text": secret}),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    let mut registry = Registry::new();
    memory::register_tools(
        &mut registry,
        memory::LazyMemories::ready(memory::Memories::new(store.clone())),
    );
    let recall = registry.tool("memory.recall").unwrap();
    let ctx = NodeContext::detached("recall");
    let err = recall
        .call(json!({"namespace": [], "query": "gate code"}), &ctx)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must start with the tenant"),
        "{err}"
    );
    let hits = recall
        .call(
            json!({"namespace": ["tenant:acme"], "query": "gate code", "limit": 10}),
            &ctx,
        )
        .await
        .unwrap();
    let texts: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["value"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["acme gate code 1111"]);

    // The scoped handle itself: the root means the tenant; another tenant is refused.
    let acme = memory::TenantScoped::new(&store, "tenant:acme").unwrap();
    let all = acme
        .search(&Search::new(Namespace::root()).limit(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let err = acme
        .get(&ns("tenant:globex/customers"), "gate")
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::Invalid(_)), "{err}");
}
