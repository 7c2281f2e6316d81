//! Retrieval evaluation with the real local embedder (all-MiniLM-L6-v2): 300 short business
//! facts (`data/facts.tsv`) and 141 questions (`data/questions.tsv`): 101 that paraphrase
//! their fact without its key words, 40 that share them. For each store, top-1 and MRR@10 by
//! meaning only, by words only, by the fusion as it was (plain reciprocal rank fusion of the
//! two lists, computed here from them) and by the hybrid search the store runs now
//! (cosine similarity plus the evidence of the question's words, `memory::rank`).
//!
//! Held: on both kinds of question, hybrid is at least as good as the better of the two
//! lists alone (top-1 and MRR@10), and at least as good as the old fusion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::collections::HashMap;
use std::sync::Arc;

use memory::{
    EmbeddedStore, Embedder, Index, LocalMiniLm, MemoryStore, Namespace, PgMemoryStore, PutOptions,
    Retrieval, Search,
};
use serde_json::json;

const FACTS: &str = include_str!("data/facts.tsv");
const QUESTIONS: &str = include_str!("data/questions.tsv");

fn facts() -> Vec<(&'static str, &'static str)> {
    FACTS.lines().filter_map(|l| l.split_once('\t')).collect()
}

/// (fact, kind, question)
fn questions() -> Vec<(&'static str, &'static str, &'static str)> {
    QUESTIONS
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct Score {
    top1: usize,
    reciprocal: f64,
    n: usize,
}

impl Score {
    fn add(&mut self, ranked: &[String], want: &str) {
        self.n += 1;
        if let Some(i) = ranked.iter().take(10).position(|k| k == want) {
            if i == 0 {
                self.top1 += 1;
            }
            self.reciprocal += 1.0 / (i + 1) as f64;
        }
    }
    fn top1(&self) -> f64 {
        self.top1 as f64 / self.n.max(1) as f64
    }
    fn mrr(&self) -> f64 {
        self.reciprocal / self.n.max(1) as f64
    }
}

const METHODS: [&str; 4] = ["semantic", "keyword", "plain RRF (before)", "hybrid (now)"];

/// Plain reciprocal rank fusion of two ranked lists, as the stores fused them before.
fn plain_rrf(a: &[String], b: &[String]) -> Vec<String> {
    let mut scores: HashMap<&String, f64> = HashMap::new();
    for list in [a, b] {
        for (i, k) in list.iter().enumerate() {
            *scores.entry(k).or_default() += 1.0 / (60.0 + (i + 1) as f64);
        }
    }
    let mut ranked: Vec<(&String, f64)> = scores.into_iter().collect();
    ranked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
    ranked.into_iter().map(|(k, _)| k.clone()).collect()
}

async fn evaluate(store: &dyn MemoryStore) -> HashMap<(&'static str, &'static str), Score> {
    let ns = Namespace::parse("tenant:eval/facts").unwrap();
    for (key, text) in facts() {
        store
            .put(
                &ns,
                key,
                json!({"text": text}),
                PutOptions {
                    index: Index::Fields(vec!["text".into()]),
                    ttl: None,
                },
            )
            .await
            .unwrap();
    }
    let prefix = Namespace::parse("tenant:eval").unwrap();
    let mut scores: HashMap<(&str, &str), Score> = HashMap::new();
    for (want, kind, question) in questions() {
        let mut lists: Vec<Vec<String>> = Vec::new();
        for retrieval in [Retrieval::Semantic, Retrieval::Keyword, Retrieval::Hybrid] {
            let hits = store
                .search(
                    &Search::new(prefix.clone())
                        .query(question)
                        .retrieval(retrieval)
                        .limit(50),
                )
                .await
                .unwrap();
            lists.push(hits.into_iter().map(|h| h.item.key).collect());
        }
        let before = plain_rrf(&lists[0], &lists[1]);
        let ranked = [&lists[0], &lists[1], &before, &lists[2]];
        for (method, list) in METHODS.iter().zip(ranked) {
            scores.entry((kind, method)).or_default().add(list, want);
        }
    }
    scores
}

fn report(store: &str, scores: &HashMap<(&str, &str), Score>) -> String {
    let mut out = format!("\n{store}: top-1 / MRR@10\n");
    for kind in ["paraphrase", "keyword"] {
        for method in METHODS {
            let s = scores[&(kind, method)];
            out.push_str(&format!(
                "  {kind:<10} {method:<20} {:>5.1}% / {:.3}  (n={})\n",
                100.0 * s.top1(),
                s.mrr(),
                s.n
            ));
        }
    }
    out
}

fn check(store: &str, scores: &HashMap<(&str, &str), Score>) {
    let table = report(store, scores);
    println!("{table}");
    for kind in ["paraphrase", "keyword"] {
        let get = |m: &str| scores[&(kind, m)];
        let (sem, kw, before, now) = (
            get(METHODS[0]),
            get(METHODS[1]),
            get(METHODS[2]),
            get(METHODS[3]),
        );
        let best_top1 = sem.top1.max(kw.top1);
        let best_mrr = sem.mrr().max(kw.mrr());
        assert!(
            now.top1 >= best_top1 && now.mrr() >= best_mrr - 1e-9,
            "{kind}: hybrid is worse than a single list{table}"
        );
        assert!(
            now.top1 >= before.top1 && now.mrr() >= before.mrr() - 1e-9,
            "{kind}: hybrid is worse than the old fusion{table}"
        );
    }
}

fn embedder() -> Arc<dyn Embedder> {
    Arc::new(LocalMiniLm::load_default().expect("run scripts/local-embedder.sh"))
}

#[test]
fn the_evaluation_set_is_what_it_says() {
    let facts = facts();
    assert_eq!(facts.len(), 300);
    let ids: std::collections::HashSet<&str> = facts.iter().map(|f| f.0).collect();
    assert_eq!(ids.len(), 300, "fact ids are unique");
    let questions = questions();
    let paraphrases = questions.iter().filter(|q| q.1 == "paraphrase").count();
    let keywords = questions.iter().filter(|q| q.1 == "keyword").count();
    assert!(paraphrases >= 100, "{paraphrases}");
    assert!(keywords >= 20, "{keywords}");
    assert!(questions.iter().all(|q| ids.contains(q.0)));
}

#[tokio::test]
async fn hybrid_ranking_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("m.db"), embedder()).unwrap();
    check("embedded store", &evaluate(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_ranking_on_postgres() {
    let db = pg::fresh_database().await;
    let store = PgMemoryStore::connect(&pg::with_database(&pg::admin_url(), &db), embedder())
        .await
        .unwrap();
    check("postgres", &evaluate(&store).await);
}
