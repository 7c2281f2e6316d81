//! The local chat model: a GGUF model run in-process on the CPU through llama.cpp
//! (`llama-cpp-2`). The default is SmolLM2-135M-Instruct (Q4_1), fetched by
//! `scripts/local-model.sh`; `BRAINOPS_LOCAL_MODEL` names another GGUF file.
//!
//! Generation applies the chat template stored in the GGUF, streams pieces of text as they
//! are decoded, and can be constrained by a GBNF grammar (see [`schema_grammar`]) so that
//! the output follows a JSON Schema. This crate builds llama.cpp from source; it is kept
//! apart so crates that do not run the model do not compile it.
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// The file `scripts/local-model.sh` fetches.
pub const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Why the local model could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The model file does not exist.
    #[error(
        "the local model file {0} does not exist; fetch it with `eval \"$(scripts/local-model.sh)\"` or point BRAINOPS_LOCAL_MODEL at a GGUF file"
    )]
    Missing(PathBuf),
    /// The file is there but llama.cpp could not load it.
    #[error("cannot load the local model {path}: {message}")]
    Load {
        /// The GGUF file.
        path: PathBuf,
        /// What llama.cpp said.
        message: String,
    },
    /// The prompt and the reply's token budget exceed the model's context.
    #[error(
        "the prompt ({prompt} tokens) and max_tokens ({max}) do not fit the context of {context} tokens"
    )]
    ContextTooLong {
        /// Tokens in the prompt.
        prompt: usize,
        /// The reply's token budget.
        max: u32,
        /// The context size.
        context: u32,
    },
    /// The output schema could not be turned into a grammar.
    #[error("invalid output schema for constrained decoding: {0}")]
    Schema(String),
    /// llama.cpp failed while generating.
    #[error("local model: {0}")]
    Inference(String),
}

fn inference(e: impl std::fmt::Display) -> LocalError {
    LocalError::Inference(e.to_string())
}

/// Where the model is: `$BRAINOPS_LOCAL_MODEL`, else the cache `scripts/local-model.sh` fills
/// (`$BRAINOPS_MODEL_DIR`, default `$HOME/.cache/brainops/models`).
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BRAINOPS_LOCAL_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let dir = std::env::var_os("BRAINOPS_MODEL_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join(".cache/brainops/models")
        });
    dir.join(DEFAULT_FILE)
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend, LocalError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| LocalError::Inference(format!("cannot start llama.cpp: {e}")))
}

/// Sampling and limits for one generation.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// The most tokens to generate.
    pub max_tokens: u32,
    /// 0 picks the most likely token every time.
    pub temperature: f32,
    /// Texts that end the generation when produced (not included in the output).
    pub stop: Vec<String>,
    /// A GBNF grammar the output must follow (root rule `root`).
    pub grammar: Option<String>,
    /// The sampler's seed: the same seed and prompt give the same output.
    pub seed: u32,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            max_tokens: 256,
            temperature: 0.0,
            stop: Vec::new(),
            grammar: None,
            seed: 42,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model produced its end-of-turn token.
    End,
    /// The token budget ran out.
    MaxTokens,
    /// A stop sequence appeared.
    StopSequence,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub output_tokens: usize,
    /// Why generation ended.
    pub finish: Finish,
    /// Time spent reading the prompt.
    pub prompt_time: std::time::Duration,
    /// Time spent generating the output.
    pub generation_time: std::time::Duration,
}

/// A loaded GGUF chat model.
pub struct LocalModel {
    model: LlamaModel,
    template: LlamaChatTemplate,
    path: PathBuf,
    threads: i32,
    context: u32,
    /// Held for a whole generation. Each generation already uses `threads` cores; two at
    /// once (parallel agent nodes, a `for_each` fan-out) oversubscribe them, and llama.cpp's
    /// spinning workers then run ~20x slower than the two would one after the other.
    one_at_a_time: std::sync::Mutex<()>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("path", &self.path)
            .field("threads", &self.threads)
            .finish()
    }
}

impl LocalModel {
    /// Loads the model at `path`. Threads: `$BRAINOPS_LOCAL_THREADS`, default 2 (more
    /// threads than free cores makes generation collapse on a busy machine).
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        if !path.is_file() {
            return Err(LocalError::Missing(path.to_path_buf()));
        }
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| LocalError::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let template = model.chat_template(None).map_err(|e| LocalError::Load {
            path: path.to_path_buf(),
            message: format!("no chat template in the GGUF: {e}"),
        })?;
        let threads = std::env::var("BRAINOPS_LOCAL_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .filter(|&t: &i32| t > 0)
            .unwrap_or(2);
        let context = model.n_ctx_train().clamp(512, 8192);
        Ok(LocalModel {
            model,
            template,
            path: path.to_path_buf(),
            threads,
            context,
            one_at_a_time: std::sync::Mutex::new(()),
        })
    }

    /// The GGUF file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The prompt for `messages` (role, content), rendered by the GGUF's chat template and
    /// ending with the assistant's turn opened.
    pub fn prompt(&self, messages: &[(String, String)]) -> Result<String, LocalError> {
        let chat = messages
            .iter()
            .map(|(role, content)| LlamaChatMessage::new(role.clone(), content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(inference)?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(inference)
    }

    /// Generates a reply to `messages`, calling `on_text` with each new piece of text; the
    /// generation stops early when `on_text` returns false.
    pub fn generate(
        &self,
        messages: &[(String, String)],
        options: &GenOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, LocalError> {
        let _turn = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let backend = backend()?;
        let prompt = self.prompt(messages)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        if tokens.len() + options.max_tokens as usize > self.context as usize {
            return Err(LocalError::ContextTooLong {
                prompt: tokens.len(),
                max: options.max_tokens,
                context: self.context,
            });
        }
        // The KV cache is sized for this call only: allocating the model's whole training
        // context (8,192 tokens for SmolLM2) on every call costs more than short replies.
        let needed = (tokens.len() as u32 + options.max_tokens).div_ceil(256) * 256;
        let n_ctx = needed.clamp(512, self.context);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = self.model.new_context(backend, params).map_err(inference)?;
        let mut batch = LlamaBatch::new(tokens.len().max(1), 1);
        let last = tokens.len().saturating_sub(1);
        for (i, &token) in tokens.iter().enumerate() {
            batch
                .add(token, i as i32, &[0], i == last)
                .map_err(inference)?;
        }
        let started = std::time::Instant::now();
        ctx.decode(&mut batch).map_err(inference)?;
        let prompt_time = started.elapsed();
        let started = std::time::Instant::now();

        // Greedy decoding without a grammar is an argmax over the logits; llama.cpp's
        // sampler would first copy all 49,152 candidates into an array on every token.
        let plain_greedy = options.grammar.is_none() && options.temperature <= 0.0;
        let mut chain = Vec::new();
        if let Some(grammar) = &options.grammar {
            chain.push(
                LlamaSampler::grammar(&self.model, grammar, "root").map_err(|e| {
                    LocalError::Schema(format!("the grammar does not compile: {e}"))
                })?,
            );
        }
        if options.temperature > 0.0 {
            chain.push(LlamaSampler::temp(options.temperature));
            chain.push(LlamaSampler::dist(options.seed));
        } else {
            chain.push(LlamaSampler::greedy());
        }
        let mut sampler = LlamaSampler::chain_simple(chain);

        let mut text = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut position = tokens.len() as i32;
        let mut output_tokens = 0usize;
        let mut finish = Finish::MaxTokens;
        let mut logits_at = batch.n_tokens() - 1;
        while output_tokens < options.max_tokens as usize {
            let token = if plain_greedy {
                argmax(ctx.get_logits_ith(logits_at))
            } else {
                sampler.sample(&ctx, logits_at)
            };
            if vocab.is_eog(token) {
                finish = Finish::End;
                break;
            }
            output_tokens += 1;
            pending.extend(vocab.token_to_piece(token, false, None));
            // A piece may end inside a UTF-8 character: emit only whole characters.
            let valid = match std::str::from_utf8(&pending) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                let piece: String = String::from_utf8_lossy(&pending[..valid]).into_owned();
                pending.drain(..valid);
                text.push_str(&piece);
                if let Some(cut) = options
                    .stop
                    .iter()
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    text.truncate(cut);
                    finish = Finish::StopSequence;
                    break;
                }
                if !on_text(&piece) {
                    break;
                }
            }
            batch.clear();
            batch.add(token, position, &[0], true).map_err(inference)?;
            position += 1;
            ctx.decode(&mut batch).map_err(inference)?;
            logits_at = 0;
        }
        Ok(Generation {
            text,
            prompt_tokens: tokens.len(),
            output_tokens,
            finish,
            prompt_time,
            generation_time: started.elapsed(),
        })
    }
}

/// The token with the highest logit (the first, on ties, as llama.cpp's greedy sampler).
fn argmax(logits: &[f32]) -> LlamaToken {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i, l);
        }
    }
    LlamaToken::new(best.0 as i32)
}

/// A GBNF grammar that accepts exactly the JSON documents `schema` describes (as far as
/// llama.cpp's converter goes: numeric ranges are not enforced, so validate the result).
pub fn schema_grammar(schema: &serde_json::Value) -> Result<String, LocalError> {
    // llama.cpp's converter reports only an FFI code ("ffi error -3"); say what it means.
    llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| {
        LocalError::Schema(format!(
            "the local model cannot follow this schema (llama.cpp's schema converter refused it: {e}); \
             keep to types, properties, required, enum, items and simple formats, or use a provider model"
        ))
    })
}
