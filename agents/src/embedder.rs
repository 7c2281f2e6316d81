//! OpenAI embedding models as memory embedders: the LLM layer's embeddings client behind
//! memory's [`Embedder`](memory::Embedder) trait.

use llm::{ApiKey, ErrorKind, LlmError, OpenAiEmbeddings, ProviderConfig};

/// An OpenAI embedding model as a memory [`memory::Embedder`].
///
/// `spec` is `openai:MODEL` or `openai:MODEL@DIMS` (text-embedding-3 models can shorten
/// their vectors). The width of the known models is built in; others need `@DIMS`.
pub struct OpenAiEmbedder {
    name: String,
    dimensions: usize,
    inner: OpenAiEmbeddings,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("name", &self.name)
            .field("inner", &self.inner)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// An OpenAI embedding model from `openai:MODEL[@DIMS]`; the key from `OPENAI_API_KEY` unless given.
    pub fn connect(
        spec: &str,
        config: &ProviderConfig,
        key: Option<ApiKey>,
    ) -> Result<Self, LlmError> {
        let (model, asked) = match spec.rsplit_once('@') {
            Some((m, d)) => {
                let dims = d.parse::<u32>().map_err(|_| {
                    LlmError::new(
                        ErrorKind::InvalidRequest,
                        "config",
                        format!("embedding model `{spec}`: `@{d}` is not a number of dimensions"),
                    )
                })?;
                (m, Some(dims))
            }
            None => (spec, None),
        };
        let native = match model.strip_prefix("openai:") {
            Some("text-embedding-3-small") | Some("text-embedding-ada-002") => Some(1536),
            Some("text-embedding-3-large") => Some(3072),
            _ => None,
        };
        let Some(dimensions) = asked.or(native) else {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                "config",
                format!(
                    "embedding model `{spec}`: its width is unknown; add it, e.g. `{model}@1536`"
                ),
            ));
        };
        Ok(OpenAiEmbedder {
            name: spec.to_string(),
            dimensions: dimensions as usize,
            inner: OpenAiEmbeddings::connect(model, config, key, asked)?,
        })
    }
}

#[async_trait::async_trait]
impl memory::Embedder for OpenAiEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, memory::MemoryError> {
        let (vectors, usage) = self
            .inner
            .embed(texts)
            .await
            .map_err(|e| memory::MemoryError::Embedder(e.to_string()))?;
        // The store calling this has no node context to hand down; the call running on
        // this task takes the tokens into its usage and the run's.
        let model = format!("openai:{}", self.inner.model());
        engine::record_usage_here(engine::UsageRecord {
            cost_usd: llm::pricing::cost_usd(&model, usage),
            model,
            input_tokens: usage.input_tokens,
            output_tokens: 0,
        });
        if let Some(v) = vectors.iter().find(|v| v.len() != self.dimensions) {
            return Err(memory::MemoryError::Embedder(format!(
                "{} returned {}-d vectors, expected {}",
                self.name,
                v.len(),
                self.dimensions
            )));
        }
        Ok(vectors)
    }
}
