//! What a store holds and what callers ask of it: namespaces, items, put options, searches.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::MemoryError;

/// A path of segments, outermost first: `["tenant:acme", "customer:42"]`. The first segment
/// is the tenant, which row-level security isolates in Postgres. Written as text, segments
/// are joined by `/` (`tenant:acme/customer:42`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Namespace(Vec<String>);

impl Namespace {
    /// Checks each segment: non-empty, no `/` (the separator), no control characters.
    pub fn new<S: Into<String>>(
        segments: impl IntoIterator<Item = S>,
    ) -> Result<Self, MemoryError> {
        let segments: Vec<String> = segments.into_iter().map(Into::into).collect();
        for s in &segments {
            if s.is_empty() || s.contains('/') || s.chars().any(char::is_control) {
                return Err(MemoryError::Invalid(format!(
                    "namespace segment {s:?} is not allowed: segments are non-empty and contain no `/` or control characters"
                )));
            }
        }
        Ok(Namespace(segments))
    }

    /// The root: a prefix that covers every namespace.
    pub fn root() -> Self {
        Namespace(Vec::new())
    }

    /// Parses `a/b/c`; an empty string (or `/`) is the root.
    pub fn parse(path: &str) -> Result<Self, MemoryError> {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Ok(Namespace::root());
        }
        Namespace::new(path.split('/'))
    }

    /// The path's segments, the tenant's first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The empty namespace (the root of every other).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The tenant segment, when there is one.
    pub fn tenant(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// `a/b/c`, the form stored and printed.
    pub fn path(&self) -> String {
        self.0.join("/")
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Namespace) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Refuses the root, which no item may live in.
    pub(crate) fn require_item_namespace(&self) -> Result<(), MemoryError> {
        if self.is_root() {
            return Err(MemoryError::Invalid(
                "an item needs a namespace (e.g. tenant:acme/customers)".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a namespace whose first segment is not a tenant, `tenant:NAME`, as the
    /// command line and services that act for a customer require.
    pub fn require_tenant(&self) -> Result<&str, MemoryError> {
        match self.tenant() {
            Some(t)
                if t.strip_prefix("tenant:")
                    .is_some_and(|name| !name.trim().is_empty()) =>
            {
                Ok(t)
            }
            Some(t) => Err(MemoryError::Invalid(format!(
                "namespace `{self}` does not start with a tenant: its first segment `{t}` should be `tenant:NAME`"
            ))),
            None => Err(MemoryError::Invalid(
                "the namespace is empty; start it with the tenant, e.g. tenant:acme/customers"
                    .into(),
            )),
        }
    }

    /// The first `depth` segments.
    pub fn truncated(&self, depth: usize) -> Namespace {
        Namespace(self.0[..depth.min(self.0.len())].to_vec())
    }
}

struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The largest item a store takes, as JSON. Both stores refuse the same items: Postgres
/// cannot index text whose `tsvector` passes 1 MB, which a value under this always meets.
pub(crate) const MAX_ITEM_BYTES: usize = 256 * 1024;

/// What both stores check before a put: a namespace, a key, and a value of bounded size.
pub(crate) fn check_put(
    namespace: &Namespace,
    key: &str,
    value: &Value,
) -> Result<(), MemoryError> {
    namespace.require_item_namespace()?;
    if key.trim().is_empty() {
        return Err(MemoryError::Invalid("an item needs a non-empty key".into()));
    }
    let mut size = ByteCount(0);
    let _ = serde_json::to_writer(&mut size, value);
    if size.0 > MAX_ITEM_BYTES {
        return Err(MemoryError::Invalid(format!(
            "the item is {} bytes of JSON; the limit is {MAX_ITEM_BYTES} (memories are facts and notes; store documents elsewhere and remember a summary)",
            size.0
        )));
    }
    Ok(())
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Where it lives.
    pub namespace: Namespace,
    /// Its key, unique within the namespace.
    pub key: String,
    /// The JSON it holds.
    pub value: Value,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it was last written, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// When the item stops being visible, if it has a TTL.
    pub expires_at: Option<i64>,
}

/// Which parts of a value are embedded for semantic search.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Index {
    /// The whole value: every string in it, joined.
    #[default]
    Whole,
    /// These fields, each embedded separately (dotted paths: `text`, `address.city`).
    Fields(Vec<String>),
    /// Not embedded: found by keyword, filter and listing only.
    Off,
}

/// How to store an item.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// What is embedded for semantic search.
    pub index: Index,
    /// The item disappears this long after its last write.
    pub ttl: Option<Duration>,
}

/// Extra weight on top of relevance. Both weights default to zero (relevance only).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Favour recently written items: `weight × 0.5^(age / half_life)`.
    pub recency_weight: f64,
    /// The age at which recency counts half.
    pub half_life: Duration,
    /// Favour items whose value carries `"importance": 0..1`.
    pub importance_weight: f64,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            recency_weight: 0.0,
            half_life: Duration::from_secs(30 * 24 * 3600),
            importance_weight: 0.0,
        }
    }
}

/// A search under a namespace prefix.
#[derive(Debug, Clone)]
pub struct Search {
    /// Covers this namespace and everything below it.
    pub namespace_prefix: Namespace,
    /// Text matched semantically (embeddings) and by keyword, the two ranks fused.
    pub query: Option<String>,
    /// JSON containment: every field given must match (`{"kind": "fact", "customer_id": 42}`).
    pub filter: Option<Map<String, Value>>,
    /// The most hits to return (see [`Search::limit`]).
    pub limit: usize,
    /// Hits to skip first, for paging.
    pub offset: usize,
    /// Extra weight for recency and importance.
    pub ranking: Ranking,
    /// Which lists a query ranks by (hybrid by default).
    pub retrieval: Retrieval,
}

/// Which lists a query search ranks by. Hybrid fuses both; the others exist to measure
/// each list alone (`memory/tests/retrieval_eval.rs`) and for callers who know better.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Retrieval {
    /// Both, fused: cosine similarity plus word evidence (the default).
    #[default]
    Hybrid,
    /// By meaning only (embeddings).
    Semantic,
    /// By words only (full-text search).
    Keyword,
}

impl Search {
    /// A search of everything under `namespace_prefix`, newest first until a query is given.
    pub fn new(namespace_prefix: Namespace) -> Self {
        Search {
            namespace_prefix,
            query: None,
            filter: None,
            limit: 10,
            offset: 0,
            ranking: Ranking::default(),
            retrieval: Retrieval::Hybrid,
        }
    }

    /// Chooses the lists a query ranks by.
    pub fn retrieval(mut self, retrieval: Retrieval) -> Self {
        self.retrieval = retrieval;
        self
    }

    /// Ranks by this text, by meaning and by keyword.
    pub fn query(mut self, text: impl Into<String>) -> Self {
        self.query = Some(text.into());
        self
    }

    /// Keeps only items whose value contains these fields.
    pub fn filter(mut self, filter: Map<String, Value>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// At most [`Search::MAX_LIMIT`]; a larger limit is clamped.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.min(Self::MAX_LIMIT);
        self
    }

    /// At most [`Search::MAX_OFFSET`]; a larger offset is clamped (and finds nothing).
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset.min(Self::MAX_OFFSET);
        self
    }

    /// The largest limit a search keeps.
    pub const MAX_LIMIT: usize = 10_000;
    /// Keeps `offset + limit` and every SQL bind far from integer overflow.
    pub const MAX_OFFSET: usize = 1 << 40;

    /// The search as stores run it: limit and offset clamped even when the fields were set
    /// directly (a copy only then).
    pub fn clamped(&self) -> std::borrow::Cow<'_, Search> {
        if self.limit <= Self::MAX_LIMIT && self.offset <= Self::MAX_OFFSET {
            return std::borrow::Cow::Borrowed(self);
        }
        std::borrow::Cow::Owned(self.clone().limit(self.limit).offset(self.offset))
    }

    /// Adds recency and importance to the ranking.
    pub fn ranking(mut self, ranking: Ranking) -> Self {
        self.ranking = ranking;
        self
    }
}

/// One search result. `score` is set when the search had a query or ranking weights:
/// higher is better. `similarity` is the cosine similarity of the item's closest indexed
/// field to the query, when the item was among the semantic matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The item found.
    #[serde(flatten)]
    pub item: Item,
    /// Its rank score, higher is better (when the search had a query or ranking weights).
    pub score: Option<f64>,
    /// The cosine similarity of its closest indexed field to the query.
    pub similarity: Option<f32>,
}

/// The texts of `value` to embed under `index`, as (field, text) pairs. Fields absent from
/// the value are skipped; non-string fields are embedded as their JSON text.
pub fn texts_to_index(value: &Value, index: &Index) -> Vec<(String, String)> {
    match index {
        Index::Off => Vec::new(),
        Index::Whole => {
            let text = all_text(value);
            if text.is_empty() {
                Vec::new()
            } else {
                vec![("$".to_string(), text)]
            }
        }
        Index::Fields(fields) => fields
            .iter()
            .filter_map(|field| {
                let mut at = value;
                for part in field.split('.') {
                    at = at.get(part)?;
                }
                let text = match at {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    other => all_text(other),
                };
                (!text.is_empty()).then(|| (field.clone(), text))
            })
            .collect(),
    }
}

/// Every string in a value, depth first, joined by newlines; numbers and booleans as text.
pub fn all_text(value: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(s);
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            Value::Number(n) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&n.to_string());
            }
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

/// JSON containment with Postgres `jsonb @>` semantics: objects match when every field of
/// `filter` is contained in the value's field; arrays when each filter element is
/// contained in some element; scalars when equal (numbers by value).
pub fn contains(value: &Value, filter: &Value) -> bool {
    match (value, filter) {
        (Value::Object(v), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| v.get(k).is_some_and(|vv| contains(vv, fv))),
        (Value::Array(v), Value::Array(f)) => {
            f.iter().all(|fv| v.iter().any(|vv| contains(vv, fv)))
        }
        (Value::Array(v), scalar) if !scalar.is_object() => v.iter().any(|vv| vv == scalar),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn namespaces_parse_and_refuse_bad_segments() {
        let ns = Namespace::parse("tenant:acme/customers/").unwrap();
        assert_eq!(ns.segments(), ["tenant:acme", "customers"]);
        assert_eq!(ns.tenant(), Some("tenant:acme"));
        assert!(Namespace::parse("").unwrap().is_root());
        assert!(Namespace::parse("a//b").is_err());
        assert!(Namespace::new(["a/b"]).is_err());
        assert!(ns.starts_with(&Namespace::parse("tenant:acme").unwrap()));
        assert!(!ns.starts_with(&Namespace::parse("tenant:ac").unwrap()));
    }

    #[test]
    fn containment_follows_jsonb() {
        let v = json!({"kind": "fact", "customer_id": 42, "tags": ["roof", "hail"], "a": {"b": 1}});
        assert!(contains(&v, &json!({"kind": "fact", "customer_id": 42.0})));
        assert!(contains(&v, &json!({"tags": ["hail"]})));
        assert!(contains(&v, &json!({"a": {}})));
        assert!(!contains(&v, &json!({"kind": "episode"})));
        assert!(!contains(&v, &json!({"missing": null})));
    }

    #[test]
    fn index_texts_pick_fields() {
        let v = json!({"text": "Leak over the garage", "meta": {"city": "Denver"}, "n": 3});
        assert_eq!(
            texts_to_index(
                &v,
                &Index::Fields(vec!["text".into(), "meta.city".into(), "nope".into()])
            ),
            vec![
                ("text".to_string(), "Leak over the garage".to_string()),
                ("meta.city".to_string(), "Denver".to_string())
            ]
        );
        assert_eq!(
            texts_to_index(&v, &Index::Whole)[0].1,
            "Leak over the garage\nDenver\n3"
        );
        assert!(texts_to_index(&v, &Index::Off).is_empty());
    }
}
