//! Agents: the [`Agent`] trait, declarative specs ([`AgentSpec`], one TOML file per agent),
//! the tool-calling runtime ([`LlmAgent`]) and the catalog ([`Catalog`]) that graph nodes
//! reach by name (`agent = "revenue.lead_qualifier"`).

mod catalog;
mod runtime;
mod spec;
mod template;

pub use catalog::{BUILTIN_SPECS, Catalog};
pub use runtime::LlmAgent;
pub use spec::{AgentSpec, Category, Example, MemorySpec, validate};
pub use template::{Template, TemplateError};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use engine::{Node, NodeContext, NodeError};
use serde_json::Value;

use crate::llm::{ChatModel, LlmError, ProviderConfig};

/// Something a graph node can hand work to: it takes the node's input and returns a result
/// (valid against `spec().output` when the spec has one).
#[async_trait]
pub trait Agent: Send + Sync {
    /// The agent's spec.
    fn spec(&self) -> &AgentSpec;

    /// Runs the agent on `input` as the task `ctx` describes.
    async fn run(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError>;
}

/// An agent as a graph node.
pub struct AgentNode(pub Arc<dyn Agent>);

#[async_trait]
impl Node for AgentNode {
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        self.0.run(input, ctx).await
    }
}

/// Where agents get their models. The default, [`Providers`], connects the spec's model
/// strings; tests use a source of scripted models.
pub trait ModelSource: Send + Sync {
    /// The model (chain) for an agent.
    fn model(&self, agent: &AgentSpec) -> Result<Arc<dyn ChatModel>, LlmError>;
}

/// Connects the models a spec names (or, when set, one chain for every agent), with retries
/// and fallbacks. Connected chains are reused.
pub struct Providers {
    config: ProviderConfig,
    every_agent: Option<Vec<String>>,
    connected: Mutex<HashMap<Vec<String>, Arc<dyn ChatModel>>>,
}

impl Providers {
    /// Providers configured by `config`.
    pub fn new(config: ProviderConfig) -> Self {
        Providers {
            config,
            every_agent: None,
            connected: Mutex::new(HashMap::new()),
        }
    }

    /// Runs every agent on `models` instead of the ones its spec names (e.g. everything on
    /// the local model, or everything on one provider).
    pub fn for_every_agent(mut self, models: Vec<String>) -> Self {
        self.every_agent = Some(models).filter(|m| !m.is_empty());
        self
    }
}

impl Default for Providers {
    fn default() -> Self {
        Providers::new(ProviderConfig::default())
    }
}

impl ModelSource for Providers {
    fn model(&self, agent: &AgentSpec) -> Result<Arc<dyn ChatModel>, LlmError> {
        let names = self.every_agent.as_ref().unwrap_or(&agent.models);
        if let Ok(connected) = self.connected.lock()
            && let Some(model) = connected.get(names)
        {
            return Ok(Arc::clone(model));
        }
        let model = crate::llm::chain(names, &self.config)?;
        if let Ok(mut connected) = self.connected.lock() {
            connected.insert(names.clone(), Arc::clone(&model));
        }
        Ok(model)
    }
}

/// Gives each agent its own scripted model (a test double), by agent name.
#[derive(Default)]
pub struct ScriptedModels {
    models: HashMap<String, Arc<crate::llm::ScriptedModel>>,
}

impl ScriptedModels {
    /// No scripted models yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives agent `name` this scripted model.
    pub fn agent(mut self, name: &str, model: crate::llm::ScriptedModel) -> Self {
        self.models.insert(name.to_string(), Arc::new(model));
        self
    }

    /// The scripted model of `agent`, to look at the requests it received.
    pub fn get(&self, agent: &str) -> Option<&Arc<crate::llm::ScriptedModel>> {
        self.models.get(agent)
    }
}

impl ModelSource for ScriptedModels {
    fn model(&self, agent: &AgentSpec) -> Result<Arc<dyn ChatModel>, LlmError> {
        self.models
            .get(&agent.name)
            .map(|m| Arc::clone(m) as Arc<dyn ChatModel>)
            .ok_or_else(|| {
                LlmError::new(
                    crate::llm::ErrorKind::Permanent,
                    "scripted",
                    format!("no scripted model for agent `{}`", agent.name),
                )
            })
    }
}
