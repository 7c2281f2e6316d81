//! Agents, tools and model providers that graph nodes dispatch to.
//!
//! - [`agent`]: the [`Agent`](agent::Agent) trait, TOML agent specs, the tool-calling
//!   runtime and the catalog of built-in agents in eight categories.
//! - [`tools`]: deterministic domain tools (takeoffs, quotes, storm damage, scheduling,
//!   invoices, lead scores, attack detection, compliance).
//! - [`llm`]: one [`ChatModel`](llm::ChatModel) trait over OpenAI, Anthropic, Gemini,
//!   Perplexity, OpenAI-compatible servers and the local in-process model.
//!
//! - [`integrations`]: Stripe, SendGrid, Twilio, Slack, ClickUp, Notion, Airtable and GitHub
//!   as tools, with a dry-run mode.
//!
//! [`Setup`] puts them together into an [`engine::Registry`] that graphs load against.

pub mod agent;
pub mod integrations;
pub mod llm;
pub mod tools;

use std::sync::Arc;

use engine::{LoadError, Registry};
use memory::LazyMemories;

pub use agent::{Agent, AgentSpec, Catalog, Category, ModelSource, Providers};

/// What the built-in registry is made of: where agents get models, and the memory store
/// behind `memory.*` tools and agent memory (none: those tools are absent).
pub struct Setup {
    pub models: Arc<dyn ModelSource>,
    pub memories: Option<LazyMemories>,
    pub providers: llm::ProviderConfig,
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
    /// The registry (tools, then agents over them) and the agent catalog.
    pub fn build(self) -> Result<(Registry, Catalog), LoadError> {
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
        let mut catalog =
            Catalog::builtin(&registry, Arc::clone(&self.models), self.memories.clone())?;
        for dir in &self.agent_dirs {
            catalog.load_dir(dir, &registry, &self.models, self.memories.clone())?;
        }
        catalog.register_into(&mut registry);
        Ok((registry, catalog))
    }
}

/// A registry holding every built-in tool and agent, agents on their specs' models.
pub fn builtin_registry() -> Registry {
    match Setup::default().build() {
        Ok((registry, _)) => registry,
        Err(e) => {
            // The built-in specs are checked by tests; this is a broken build, not bad input.
            tracing::error!("built-in agent catalog failed to load: {e}");
            let mut registry = Registry::new();
            tools::register(&mut registry);
            registry
        }
    }
}
