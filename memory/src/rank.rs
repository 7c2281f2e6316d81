//! Ranking shared by the stores: reciprocal rank fusion of the semantic and keyword lists,
//! then the optional recency and importance weights.

use std::collections::HashMap;
use std::hash::Hash;

use crate::{Item, Ranking};

/// The constant of reciprocal rank fusion (Cormack et al.): damps the head of each list so
/// an item ranked well by both beats one ranked first by only one.
pub(crate) const RRF_K: f64 = 60.0;

/// Fuses ranked lists of ids into one score per id: Σ 1 / (RRF_K + rank).
pub(crate) fn fuse<Id: Copy + Eq + Hash>(lists: &[&[Id]]) -> HashMap<Id, f64> {
    let mut scores: HashMap<Id, f64> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    scores
}

/// Relevance scaled by the ranking weights. With no query, relevance is 1 for all, so the
/// weights alone order the items.
pub(crate) fn adjust(relevance: f64, item: &Item, ranking: &Ranking, now_ms: i64) -> f64 {
    let mut factor = 1.0;
    if ranking.recency_weight > 0.0 {
        let age = (now_ms - item.updated_at).max(0) as f64;
        let half = ranking.half_life.as_millis().max(1) as f64;
        factor += ranking.recency_weight * 0.5f64.powf(age / half);
    }
    if ranking.importance_weight > 0.0 {
        let importance = item
            .value
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
    fn both_lists_beat_one() {
        let s = fuse(&[&[1, 2, 3][..], &[2, 4][..]]);
        assert!(s[&2] > s[&1]);
        assert!(s[&1] > s[&4]);
    }
}
