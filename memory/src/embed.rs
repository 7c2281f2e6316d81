//! Embedders turn text into vectors for semantic search.
//!
//! - [`LocalMiniLm`] (feature `local-embedder`, on by default): all-MiniLM-L6-v2, 384-d,
//!   in-process; the default, so search needs no key.
//! - OpenAI `text-embedding-3-small` lives with the provider adapters
//!   (`agents::llm::OpenAiEmbedder`), which implement this trait.
//! - [`HashingEmbedder`]: words hashed into buckets. Deterministic and instant, it matches
//!   shared words, not meaning: a stand-in for tests of the stores, not for retrieval.
//!
//! [`Cached`] wraps any of them so a text seen before is not embedded again.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::MemoryError;

/// Text in, unit-length vectors out.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Identifies the model, e.g. `local:all-minilm-l6-v2`; a store refuses vectors from a
    /// different model than the one that filled it.
    fn name(&self) -> &str;
    /// The size of the vectors it returns.
    fn dimensions(&self) -> usize;
    /// One vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError>;
}

/// A stable 64-bit hash of a text (FNV-1a), stored next to each vector so unchanged text is
/// not embedded again when an item is rewritten.
pub fn text_hash(text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// A field's vector as a store keeps it, with the hash of the text it came from.
pub(crate) struct FieldVector {
    pub field: String,
    pub text_hash: i64,
    pub vector: Vec<f32>,
}

/// Embeds the (field, text) pairs whose text differs from what `stored` (field → text hash)
/// says was embedded last time, in one call; unchanged fields keep their stored vectors.
pub(crate) async fn embed_changed(
    embedder: &dyn Embedder,
    texts: &[(String, String)],
    stored: &HashMap<String, i64>,
) -> Result<Vec<FieldVector>, MemoryError> {
    let changed: Vec<(&String, i64, &String)> = texts
        .iter()
        .map(|(field, text)| (field, text_hash(text), text))
        .filter(|(field, hash, _)| stored.get(*field) != Some(hash))
        .collect();
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let input: Vec<String> = changed.iter().map(|(_, _, t)| (*t).clone()).collect();
    let vectors = embedder.embed(&input).await?;
    if vectors.len() != changed.len() {
        return Err(MemoryError::Embedder(format!(
            "{} returned {} vectors for {} texts",
            embedder.name(),
            vectors.len(),
            changed.len()
        )));
    }
    Ok(changed
        .into_iter()
        .zip(vectors)
        .map(|((field, text_hash, _), vector)| FieldVector {
            field: field.clone(),
            text_hash,
            vector,
        })
        .collect())
}

/// Cosine similarity of two vectors (both unit length in practice, but not assumed).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Remembers the vectors of recent texts (up to `capacity`), so repeated queries and
/// re-written items cost no model call.
pub struct Cached<E> {
    inner: E,
    capacity: usize,
    seen: Mutex<HashMap<String, Arc<[f32]>>>,
}

impl<E: Embedder> Cached<E> {
    /// Wraps `inner`, keeping the vectors of the last `capacity` texts.
    pub fn new(inner: E, capacity: usize) -> Self {
        Cached {
            inner,
            capacity,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// How many texts are cached now.
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.len())
    }

    /// Whether no vector is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl<E: Embedder> Embedder for Cached<E> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let mut out: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        let mut missing: Vec<String> = Vec::new();
        {
            let seen = self
                .seen
                .lock()
                .map_err(|_| MemoryError::Embedder("embedding cache poisoned".into()))?;
            for t in texts {
                match seen.get(t) {
                    Some(v) => out.push(Some(v.to_vec())),
                    None => {
                        out.push(None);
                        if !missing.contains(t) {
                            missing.push(t.clone());
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        let fresh = self.inner.embed(&missing).await?;
        if fresh.len() != missing.len() {
            return Err(MemoryError::Embedder(format!(
                "{} returned {} vectors for {} texts",
                self.inner.name(),
                fresh.len(),
                missing.len()
            )));
        }
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| MemoryError::Embedder("embedding cache poisoned".into()))?;
        if seen.len() + missing.len() > self.capacity {
            // Dropping everything is crude but bounded; the cache only saves work.
            seen.clear();
        }
        let by_text: HashMap<&String, Arc<[f32]>> = missing
            .iter()
            .zip(fresh)
            .map(|(t, v)| (t, Arc::<[f32]>::from(v)))
            .collect();
        for (t, v) in &by_text {
            seen.insert((*t).clone(), v.clone());
        }
        Ok(texts
            .iter()
            .zip(out)
            .map(|(t, v)| {
                v.unwrap_or_else(|| by_text.get(t).map(|v| v.to_vec()).unwrap_or_default())
            })
            .collect())
    }
}

/// Words hashed into `dimensions` buckets (signed), then normalised. Matches shared words,
/// not meaning: for testing stores and ranking without a model.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    name: String,
    dimensions: usize,
}

impl HashingEmbedder {
    /// A hashing embedder giving vectors of `dimensions` (a test double: no meaning, only words).
    pub fn new(dimensions: usize) -> Self {
        HashingEmbedder {
            name: format!("hashing:{dimensions}"),
            dimensions,
        }
    }
}

#[async_trait]
impl Embedder for HashingEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        Ok(texts
            .iter()
            .map(|text| {
                let mut v = vec![0.0f32; self.dimensions];
                for word in text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    let mut h = DefaultHasher::new();
                    word.to_lowercase().hash(&mut h);
                    let h = h.finish();
                    let sign = if h & 1 == 0 { 1.0 } else { -1.0 };
                    v[(h >> 1) as usize % self.dimensions] += sign;
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                v
            })
            .collect())
    }
}

/// all-MiniLM-L6-v2 in-process (384-d): the default embedder.
#[cfg(feature = "local-embedder")]
pub struct LocalMiniLm {
    dir: std::path::PathBuf,
    model: std::sync::OnceLock<Arc<local_embedder::LocalEmbedder>>,
}

#[cfg(feature = "local-embedder")]
impl LocalMiniLm {
    /// The model's name in the embedder registry and in stores.
    pub const NAME: &'static str = "local:all-minilm-l6-v2";

    /// `BRAINOPS_EMBEDDER_MODEL`, or the cache directory that `scripts/local-embedder.sh` fills.
    pub fn default_path() -> std::path::PathBuf {
        local_embedder::default_path()
    }

    /// Loads from [`LocalMiniLm::default_path`] now.
    pub fn load_default() -> Result<Self, MemoryError> {
        Self::load(&local_embedder::default_path())
    }

    /// Loads from `dir` now, so a missing model is reported here.
    pub fn load(dir: &std::path::Path) -> Result<Self, MemoryError> {
        let me = Self::lazy(dir.to_path_buf());
        me.model()?;
        Ok(me)
    }

    /// Loads from `dir` on the first embedding (name and width are known before).
    pub fn lazy(dir: std::path::PathBuf) -> Self {
        LocalMiniLm {
            dir,
            model: std::sync::OnceLock::new(),
        }
    }

    fn model(&self) -> Result<Arc<local_embedder::LocalEmbedder>, MemoryError> {
        if let Some(m) = self.model.get() {
            return Ok(m.clone());
        }
        let loaded = Arc::new(
            local_embedder::LocalEmbedder::load(&self.dir)
                .map_err(|e| MemoryError::Embedder(e.to_string()))?,
        );
        // Two first callers may both load; one copy is kept.
        Ok(self.model.get_or_init(|| loaded).clone())
    }
}

#[cfg(feature = "local-embedder")]
#[async_trait]
impl Embedder for LocalMiniLm {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn dimensions(&self) -> usize {
        local_embedder::DIMENSIONS
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, MemoryError> {
        // Batches of similar size keep padding (wasted work) small.
        const BATCH: usize = 32;
        let model = match self.model.get() {
            Some(m) => m.clone(),
            None => {
                let dir = self.dir.clone();
                let loaded =
                    tokio::task::spawn_blocking(move || local_embedder::LocalEmbedder::load(&dir))
                        .await
                        .map_err(|e| {
                            MemoryError::Embedder(format!("loading the model failed: {e}"))
                        })?
                        .map_err(|e| MemoryError::Embedder(e.to_string()))?;
                self.model.get_or_init(|| Arc::new(loaded)).clone()
            }
        };
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(BATCH) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                out.extend(
                    model
                        .embed(&refs)
                        .map_err(|e| MemoryError::Embedder(e.to_string()))?,
                );
            }
            Ok(out)
        })
        .await
        .map_err(|e| MemoryError::Embedder(format!("embedding task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        inner: HashingEmbedder,
        calls: AtomicUsize,
        texts: AtomicUsize,
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
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            self.inner.embed(texts).await
        }
    }

    #[tokio::test]
    async fn cache_embeds_each_text_once() {
        let cached = Cached::new(
            Counting {
                inner: HashingEmbedder::new(16),
                calls: AtomicUsize::new(0),
                texts: AtomicUsize::new(0),
            },
            100,
        );
        let a = vec!["hail on the roof".to_string(), "gutter leak".to_string()];
        let first = cached.embed(&a).await.unwrap();
        let again = cached
            .embed(&[
                "gutter leak".to_string(),
                "new text".to_string(),
                "new text".to_string(),
            ])
            .await
            .unwrap();
        assert_eq!(first[1], again[0]);
        assert_eq!(again[1], again[2]);
        assert_eq!(cached.inner.texts.load(Ordering::SeqCst), 3);
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
        cached.embed(&a).await.unwrap();
        assert_eq!(cached.inner.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn cosine_of_same_direction_is_one() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
