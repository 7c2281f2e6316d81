//! Ranking shared by the stores: the hybrid score of the semantic and keyword matches,
//! reciprocal rank fusion for a single list, then the optional recency and importance weights.

use std::collections::HashMap;
use std::hash::Hash;

use crate::Ranking;

/// The constant of reciprocal rank fusion (Cormack et al.): damps the head of each list so
/// an item ranked well by both beats one ranked first by only one.
pub(crate) const RRF_K: f64 = 60.0;

/// Fuses lists of (id, relevance), each sorted best first, into one score per id:
/// Σ 1 / (RRF_K + rank). Equal relevance shares a rank, as SQL's `rank()` gives it.
pub(crate) fn fuse<Id: Copy + Eq + Hash>(lists: &[&[(Id, f64)]]) -> HashMap<Id, f64> {
    let mut scores: HashMap<Id, f64> = HashMap::new();
    for list in lists {
        let mut rank = 0;
        for (i, (id, relevance)) in list.iter().enumerate() {
            if i == 0 || list[i - 1].1 != *relevance {
                rank = i + 1;
            }
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f64);
        }
    }
    scores
}

/// How much a keyword match that holds every word of the query adds to a hybrid score.
/// Chosen on `memory/tests/retrieval_eval.rs` (docs/memory.md has the table).
pub(crate) const KEYWORD_WEIGHT: f64 = 0.3;

/// A hybrid score: the item's cosine similarity to the query (0 when it was found by words
/// only) plus [`KEYWORD_WEIGHT`] times its [`word_evidence`].
///
/// Reciprocal rank fusion, used before, flattened the semantic list (rank 1 and rank 5
/// differ by 6%), so any keyword match, even of one common word ("required"), reordered
/// it: a paraphrased question lost its answer to a fact sharing one word. Scores keep the
/// semantic margins, and words count in proportion to how much of the question they cover.
pub(crate) fn hybrid_score(similarity: Option<f64>, coverage: f64) -> f64 {
    similarity.unwrap_or(0.0).max(0.0) + KEYWORD_WEIGHT * word_evidence(coverage)
}

/// What a keyword match is worth, from the share of the query's words it holds: nothing up
/// to half of them (a paraphrase shares a word or two with many wrong facts), then rising to
/// 1 for all of them (a question naming its subject: a code, a name, a truck number).
pub(crate) fn word_evidence(coverage: f64) -> f64 {
    ((coverage.clamp(0.0, 1.0) - KEYWORD_THRESHOLD) / (1.0 - KEYWORD_THRESHOLD)).max(0.0)
}

/// The share of the query's words below which a keyword match adds nothing.
pub(crate) const KEYWORD_THRESHOLD: f64 = 0.5;

/// Relevance scaled by the ranking weights. With no query, relevance is 1 for all, so the
/// weights alone order the items.
pub(crate) fn adjust(
    relevance: f64,
    updated_at: i64,
    value: &serde_json::Value,
    ranking: &Ranking,
    now_ms: i64,
) -> f64 {
    let mut factor = 1.0;
    if ranking.recency_weight > 0.0 {
        let age = (now_ms - updated_at).max(0) as f64;
        let half = ranking.half_life.as_millis().max(1) as f64;
        factor += ranking.recency_weight * 0.5f64.powf(age / half);
    }
    if ranking.importance_weight > 0.0 {
        let importance = value
            .get("importance")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        factor += ranking.importance_weight * importance;
    }
    relevance * factor
}

/// Whether a search asks for scores at all.
pub(crate) fn scored(query: Option<&str>, ranking: &Ranking) -> bool {
    query.is_some() || ranking.recency_weight > 0.0 || ranking.importance_weight > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_common_word_does_not_outweigh_the_best_meaning() {
        // The answer by meaning (0.55, no shared word) against a weaker match by meaning
        // that shares one of five words.
        assert!(hybrid_score(Some(0.55), 0.0) > hybrid_score(Some(0.42), 0.2));
        assert_eq!(hybrid_score(Some(0.42), 0.5), 0.42);
        // Close by meaning, the match holding the whole question wins.
        assert!(hybrid_score(Some(0.50), 1.0) > hybrid_score(Some(0.56), 0.2));
        assert_eq!(hybrid_score(None, 1.0), KEYWORD_WEIGHT);
        assert_eq!(hybrid_score(Some(-0.2), 0.0), 0.0);
    }

    #[test]
    fn both_lists_beat_one() {
        let s = fuse(&[
            &[(1, 0.9), (2, 0.8), (3, 0.7)][..],
            &[(2, 5.0), (4, 4.0)][..],
        ]);
        assert!(s[&2] > s[&1]);
        assert!(s[&1] > s[&4]);
        let tied = fuse(&[&[(1, 1.0), (2, 1.0), (3, 0.5)][..]]);
        assert_eq!(tied[&1], tied[&2]);
        assert!(tied[&2] > tied[&3]);
    }
}
