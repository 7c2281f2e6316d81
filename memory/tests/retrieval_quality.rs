//! Retrieval quality with the real local embedder (all-MiniLM-L6-v2): ten facts about a
//! roofing business, ten questions that paraphrase them with few shared words. The right
//! fact must come first for at least nine, in the embedded store and in Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::sync::Arc;

use memory::{
    EmbeddedStore, Embedder, Index, LocalMiniLm, MemoryStore, Namespace, PgMemoryStore, PutOptions,
    Search,
};
use serde_json::json;

const FACTS: [(&str, &str); 10] = [
    (
        "smith-roof",
        "The Smith residence at 14 Oak Lane has a 20-year-old asphalt shingle roof with a 6/12 pitch.",
    ),
    (
        "hail-2024",
        "A storm on May 3 dropped golf-ball sized hail across the north side of Denver.",
    ),
    (
        "gate-code",
        "The Garcia property gate code is 4471; the side gate sticks in cold weather.",
    ),
    (
        "net-30",
        "Commercial clients are invoiced on net-30 terms with a 2% late fee each month.",
    ),
    (
        "crew-b",
        "Crew B specializes in metal standing-seam roofs and is certified for steep-slope work.",
    ),
    (
        "warranty",
        "Our workmanship warranty covers leaks caused by installation errors for ten years.",
    ),
    (
        "dog",
        "Mrs. Patel has a large dog that must be kept inside before the crew arrives.",
    ),
    (
        "permit",
        "Boulder County requires a re-roofing permit before any tear-off begins.",
    ),
    (
        "supplier",
        "Shingles are ordered from ABC Supply with a two-day lead time.",
    ),
    (
        "osha",
        "Fall protection harnesses are mandatory for any work six feet or more above ground.",
    ),
];

const QUESTIONS: [(&str, &str); 10] = [
    (
        "How old is the covering on the house on Oak Lane?",
        "smith-roof",
    ),
    ("When did ice stones hit the city?", "hail-2024"),
    (
        "What number opens the entrance at the Garcias'?",
        "gate-code",
    ),
    (
        "How long do business customers have to pay their bills?",
        "net-30",
    ),
    ("Which team should install a metal roof?", "crew-b"),
    (
        "For how many years do we guarantee our installation against leaks?",
        "warranty",
    ),
    (
        "Is there a pet we need to worry about at a customer's home?",
        "dog",
    ),
    (
        "What paperwork does the county need before we strip a roof?",
        "permit",
    ),
    (
        "Where do we buy shingles and how fast do they arrive?",
        "supplier",
    ),
    ("When must workers wear a safety harness?", "osha"),
];

async fn score(store: &dyn MemoryStore) -> (usize, Vec<String>) {
    let ns = Namespace::parse("tenant:acme/facts").unwrap();
    for (key, text) in FACTS {
        store
            .put(
                &ns,
                key,
                json!({"kind": "semantic", "text": text}),
                PutOptions {
                    index: Index::Fields(vec!["text".into()]),
                    ttl: None,
                },
            )
            .await
            .unwrap();
    }
    let mut right = 0;
    let mut misses = Vec::new();
    for (question, want) in QUESTIONS {
        let hits = store
            .search(
                &Search::new(Namespace::parse("tenant:acme").unwrap())
                    .query(question)
                    .limit(3),
            )
            .await
            .unwrap();
        if hits.first().map(|h| h.item.key.as_str()) == Some(want) {
            right += 1;
        } else {
            misses.push(format!(
                "{question:?} → {:?}",
                hits.iter().map(|h| &h.item.key).collect::<Vec<_>>()
            ));
        }
    }
    (right, misses)
}

fn embedder() -> Arc<dyn Embedder> {
    Arc::new(LocalMiniLm::load_default().expect("run scripts/local-embedder.sh"))
}

#[tokio::test]
async fn paraphrased_questions_find_their_fact_in_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("m.db"), embedder()).unwrap();
    let (right, misses) = score(&store).await;
    println!("embedded store: top-1 right on {right}/10; misses: {misses:?}");
    assert!(right >= 9, "top-1 right on only {right}/10: {misses:#?}");
}

#[tokio::test]
async fn paraphrased_questions_find_their_fact_in_postgres() {
    let db = pg::fresh_database().await;
    let store = PgMemoryStore::connect(&pg::with_database(&pg::admin_url(), &db), embedder())
        .await
        .unwrap();
    let (right, misses) = score(&store).await;
    println!("postgres store: top-1 right on {right}/10; misses: {misses:?}");
    assert!(right >= 9, "top-1 right on only {right}/10: {misses:#?}");
}

#[tokio::test]
async fn local_embeddings_are_unit_vectors_and_similar_texts_are_close() {
    let e = embedder();
    assert_eq!(e.name(), "local:all-minilm-l6-v2");
    assert_eq!(e.dimensions(), 384);
    let v = e
        .embed(&[
            "The roof leaks over the kitchen.".to_string(),
            "Water is dripping through the ceiling above the kitchen.".to_string(),
            "Invoice 1042 was paid by credit card.".to_string(),
        ])
        .await
        .unwrap();
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 384);
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    let near = memory::cosine(&v[0], &v[1]);
    let far = memory::cosine(&v[0], &v[2]);
    assert!(
        near > far + 0.2,
        "leak/dripping {near} vs leak/invoice {far}"
    );
    // Padding in a batch must not change a text's vector.
    let alone = e
        .embed(&["The roof leaks over the kitchen.".to_string()])
        .await
        .unwrap();
    assert!(memory::cosine(&alone[0], &v[0]) > 0.9999);
}
