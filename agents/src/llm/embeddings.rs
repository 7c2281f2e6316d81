//! OpenAI embeddings (`POST /embeddings`), e.g. `openai:text-embedding-3-small`.
//! The memory layer wraps this in its embedder; batching and ordering are handled here.

use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput, EncodingFormat};

use super::http::Http;
use super::openai::{WireConfig, from_openai, wire_client};
use super::{ApiKey, ErrorKind, LlmError, ProviderConfig, Usage, key_from_env};

/// Inputs per request (OpenAI accepts up to 2,048).
const BATCH: usize = 512;

/// An OpenAI embedding model, called through `async-openai`'s client and typed replies.
pub struct OpenAiEmbeddings {
    client: async_openai::Client<WireConfig>,
    http: Http,
    base: String,
    model: String,
    dimensions: Option<u32>,
    key: ApiKey,
}

impl std::fmt::Debug for OpenAiEmbeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbeddings")
            .field("base", &self.base)
            .field("model", &self.model)
            .field("key", &self.key)
            .finish()
    }
}

impl OpenAiEmbeddings {
    /// `model` is `openai:MODEL`; the key comes from `key` or `OPENAI_API_KEY`.
    /// `dimensions` shortens the vectors (text-embedding-3 models support it).
    pub fn connect(
        model: &str,
        config: &ProviderConfig,
        key: Option<ApiKey>,
        dimensions: Option<u32>,
    ) -> Result<Self, LlmError> {
        let Some(name) = model.strip_prefix("openai:").filter(|n| !n.is_empty()) else {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                "config",
                format!(
                    "embedding model `{model}`: use openai:MODEL, e.g. openai:text-embedding-3-small"
                ),
            ));
        };
        let key = match key {
            Some(k) => k,
            None => key_from_env("openai", &["OPENAI_API_KEY"])?,
        };
        let http = Http::new(config)?;
        let base = config.openai_base.trim_end_matches('/').to_string();
        Ok(OpenAiEmbeddings {
            client: wire_client("openai", &http, &base, Some(&key))?,
            http,
            base,
            model: name.to_string(),
            dimensions,
            key,
        })
    }

    /// One vector per input, in input order, and the tokens used.
    pub async fn embed(&self, inputs: &[String]) -> Result<(Vec<Vec<f32>>, Usage), LlmError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut usage = Usage::default();
        for batch in inputs.chunks(BATCH) {
            let request = CreateEmbeddingRequest {
                model: self.model.clone(),
                input: EmbeddingInput::StringArray(batch.to_vec()),
                encoding_format: Some(EncodingFormat::Float),
                user: None,
                dimensions: self.dimensions,
            };
            let reply = self
                .http
                .in_time("openai", async {
                    self.client
                        .embeddings()
                        .create(request)
                        .await
                        .map_err(|e| from_openai("openai", e, Some(&self.key)))
                })
                .await?;
            if reply.data.len() != batch.len() {
                return Err(LlmError::new(
                    ErrorKind::Permanent,
                    "openai",
                    format!(
                        "unexpected embeddings reply: {} vectors for {} inputs",
                        reply.data.len(),
                        batch.len()
                    ),
                ));
            }
            let mut got = reply.data;
            got.sort_by_key(|e| e.index);
            vectors.extend(got.into_iter().map(|e| e.embedding));
            usage.input_tokens += u64::from(reply.usage.prompt_tokens);
        }
        Ok((vectors, usage))
    }
}

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
        let model = format!("openai:{}", self.inner.model);
        engine::record_usage_here(engine::UsageRecord {
            cost_usd: super::pricing::cost_usd(&model, usage),
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
