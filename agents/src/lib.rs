//! Agents and tools that graph nodes dispatch to.
//!
//! For now this crate holds the deterministic tools the sample graphs use; the agent catalog
//! (eight categories) and the LLM provider adapters arrive with later issues. Everything is
//! registered into an [`engine::Registry`] by [`builtin_registry`].

pub mod llm;
pub mod tools;

use engine::Registry;

/// A registry holding every built-in tool and agent.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    tools::register(&mut registry);
    registry.register_tool(
        "llm.chat",
        std::sync::Arc::new(llm::ChatNode::new(llm::ProviderConfig::default())),
    );
    registry
}
