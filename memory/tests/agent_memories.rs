//! Memory as agents use it, with the real local embedder: a restated fact updates one memory
//! instead of adding a copy, different facts stay apart, kinds stay apart, and recall weighs
//! relevance with importance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use memory::{EmbeddedStore, Kind, LocalMiniLm, Memories, Namespace, Search};
use serde_json::{Map, json};

fn memories(dir: &tempfile::TempDir) -> Memories {
    let store = EmbeddedStore::open(
        dir.path().join("m.db"),
        Arc::new(LocalMiniLm::load_default().expect("run scripts/local-embedder.sh")),
    )
    .unwrap();
    Memories::new(Arc::new(store))
}

fn fields(v: serde_json::Value) -> Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn restated_facts_merge_and_different_facts_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let m = memories(&dir);
    let ns = Namespace::parse("tenant:acme/customer:42").unwrap();
    let first = m
        .remember(
            &ns,
            Kind::Semantic,
            "The customer prefers to be called in the morning.",
            fields(json!({"source": "call 1"})),
            Some(0.4),
            None,
        )
        .await
        .unwrap();
    assert!(!first.merged);
    let again = m
        .remember(
            &ns,
            Kind::Semantic,
            "The customer prefers to be called in the mornings.",
            fields(json!({"source": "call 2"})),
            Some(0.7),
            None,
        )
        .await
        .unwrap();
    assert!(again.merged, "a restatement updates the first memory");
    assert_eq!(again.key, first.key);
    let item = m.store().get(&ns, &first.key).await.unwrap().unwrap();
    assert_eq!(item.value["mentions"], 2);
    assert_eq!(
        item.value["importance"], 0.7,
        "the higher importance is kept"
    );
    assert_eq!(item.value["source"], "call 2", "new fields win");

    let other = m
        .remember(
            &ns,
            Kind::Semantic,
            "The invoice for the gutter repair was paid by check.",
            Map::new(),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!other.merged, "a different fact is a new memory");
    let episode = m
        .remember(
            &ns,
            Kind::Episodic,
            "The customer prefers to be called in the morning.",
            Map::new(),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!episode.merged, "kinds never merge into each other");
    let all = m
        .store()
        .search(&Search::new(ns.clone()).limit(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 3);

    // A given key that exists is replaced, not merged elsewhere (a retried node).
    let replay = m
        .remember(
            &ns,
            Kind::Episodic,
            "Call summary: scheduled an inspection.",
            Map::new(),
            None,
            Some(episode.key.clone()),
        )
        .await
        .unwrap();
    assert_eq!(replay.key, episode.key);
    assert!(!replay.merged);
}

#[tokio::test]
async fn recall_filters_by_kind_and_weighs_importance() {
    let dir = tempfile::tempdir().unwrap();
    let m = memories(&dir);
    let ns = Namespace::parse("tenant:acme/procedures").unwrap();
    m.remember(
        &ns,
        Kind::Procedural,
        "Before a tear-off, photograph every roof slope for the insurance file.",
        Map::new(),
        Some(0.9),
        None,
    )
    .await
    .unwrap();
    m.remember(
        &ns,
        Kind::Procedural,
        "Before a tear-off, put tarps over the flower beds.",
        Map::new(),
        Some(0.1),
        None,
    )
    .await
    .unwrap();
    m.remember(
        &ns,
        Kind::Episodic,
        "Yesterday the crew finished a tear-off on Elm Street.",
        Map::new(),
        None,
        None,
    )
    .await
    .unwrap();
    let hits = m
        .recall(
            &Namespace::parse("tenant:acme").unwrap(),
            Some("what do we do before tearing off a roof?"),
            Some(Kind::Procedural),
            5,
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.item.value["kind"] == "procedural"));
    assert!(
        hits[0].item.value["text"]
            .as_str()
            .unwrap()
            .contains("photograph"),
        "{hits:?}"
    );
    assert!(hits[0].score > hits[1].score);
    let empty = m
        .remember(&ns, Kind::Semantic, "   ", Map::new(), None, None)
        .await;
    assert!(empty.is_err());
}
