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
    /// The model's name at OpenAI (without the `openai:` prefix).
    pub fn model(&self) -> &str {
        &self.model
    }

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
