//! Agents, domain tools and vendor integrations that graph nodes dispatch to.
//!
//! - [`agent`]: the [`Agent`](agent::Agent) trait, TOML agent specs, the tool-calling
//!   runtime and the catalog of built-in agents in eight categories.
//! - [`tools`]: deterministic domain tools (takeoffs, quotes, storm damage, scheduling,
//!   invoices, lead scores, attack detection, compliance).
//! - [`llm`]: the model layer, re-exported from its own crate (`brainops-llm`, usable
//!   alone): one [`ChatModel`](llm::ChatModel) trait over OpenAI, Anthropic, Gemini,
//!   Perplexity, OpenAI-compatible servers and the local in-process model; here too
//!   [`OpenAiEmbedder`](llm::OpenAiEmbedder), OpenAI embeddings as a memory embedder.
//! - [`integrations`]: Stripe, SendGrid, Twilio, Slack, ClickUp, Notion, Airtable and GitHub
//!   as tools, with a dry-run mode.
//!
//! [`Setup`] puts them together into an [`engine::Registry`] that graphs load against.
// Every public item of the library is documented (issue #14); CI denies warnings.
#![warn(missing_docs)]

pub mod agent;
mod embedder;
pub mod integrations;
pub mod tools;

/// The model layer (the `brainops-llm` crate), with OpenAI embeddings as a memory embedder.
pub mod llm {
    pub use crate::embedder::OpenAiEmbedder;
    pub use ::llm::*;
}

use std::sync::Arc;

use engine::{LoadError, Registry};
use memory::LazyMemories;

pub use agent::{Agent, AgentSpec, Catalog, Category, ModelSource, Providers};

/// What the built-in registry is made of: where agents get models, and the memory store
/// behind `memory.*` tools and agent memory (none: those tools are absent).
pub struct Setup {
    /// Where agents get their models.
    pub models: Arc<dyn ModelSource>,
    /// The memory behind `memory.*` tools and agent memory (none: those tools are absent).
    pub memories: Option<LazyMemories>,
    /// Base URLs and timeouts of model providers.
    pub providers: llm::ProviderConfig,
    /// How integrations send.
    pub integrations: integrations::IntegrationConfig,
    /// Directories of more agent specs (`<dir>/<category>/<name>.toml`), loaded after the
    /// built-in catalog; a spec with a built-in agent's name replaces it.
    pub agent_dirs: Vec<std::path::PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            models: Arc::new(Providers::default()),
            memories: None,
            providers: llm::ProviderConfig::default(),
            integrations: integrations::IntegrationConfig::default(),
            agent_dirs: Vec::new(),
        }
    }
}

impl Setup {
    /// The registry (tools, then agents over them) and the agent catalog, every agent
    /// compiled now.
    pub fn build(self) -> Result<(Registry, Catalog), LoadError> {
        self.build_on(Registry::new())
    }

    /// As [`Setup::build`], over a registry that already holds the embedder's own tools,
    /// so agent specs can offer them to their models.
    pub fn build_on(&self, registry: Registry) -> Result<(Registry, Catalog), LoadError> {
        let mut registry = self.tools_on(registry);
        let mut catalog =
            Catalog::builtin(&registry, Arc::clone(&self.models), self.memories.clone())?;
        for dir in &self.agent_dirs {
            catalog.load_dir(dir, &registry, &self.models, self.memories.clone())?;
        }
        catalog.register_into(&mut registry);
        Ok((registry, catalog))
    }

    /// The registry graphs load against, built for a fast start: built-in agents compile on
    /// their first call; specs from `agent_dirs` are checked now (their errors are the
    /// user's to see before a run). `registry` may already hold the embedder's tools.
    pub fn registry_on(&self, registry: Registry) -> Result<Registry, LoadError> {
        let mut registry = self.tools_on(registry);
        Catalog::register_builtin_lazily(
            &mut registry,
            Arc::clone(&self.models),
            self.memories.clone(),
        );
        if !self.agent_dirs.is_empty() {
            let tools = registry.clone();
            let mut catalog = Catalog::new();
            for dir in &self.agent_dirs {
                catalog.load_dir(dir, &tools, &self.models, self.memories.clone())?;
            }
            catalog.register_into(&mut registry);
        }
        Ok(registry)
    }

    /// The built-in tools, integrations, `llm.chat` and memory tools, then the embedder's
    /// `own` registry over them (its entries win over built-ins of the same name).
    fn tools_on(&self, own: Registry) -> Registry {
        let mut registry = Registry::new();
        tools::register(&mut registry);
        integrations::register(&mut registry, &self.integrations);
        registry.register_tool(
            "llm.chat",
            Arc::new(llm::ChatNode::new(self.providers.clone())),
        );
        if let Some(memories) = &self.memories {
            memory::register_tools(&mut registry, memories.clone());
        }
        registry.merge(own);
        registry
    }
}

/// A registry holding every built-in tool and agent, agents on their specs' models (each
/// compiled on its first call).
pub fn builtin_registry() -> Registry {
    let setup = Setup::default();
    let mut registry = setup.tools_on(Registry::new());
    Catalog::register_builtin_lazily(&mut registry, setup.models, None);
    registry
}
