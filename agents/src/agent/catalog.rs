//! The agent catalog: every agent by name, from the built-in specs (embedded from
//! `agents/catalog/` at build time), spec directories, and agents registered in Rust.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use engine::{Diagnostic, LoadError, Node, NodeContext, NodeError, Registry};
use memory::LazyMemories;
use serde_json::Value;

use super::{Agent, AgentNode, AgentSpec, Category, LlmAgent, ModelSource};

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// Agents by name.
#[derive(Clone, Default)]
pub struct Catalog {
    agents: BTreeMap<String, Arc<dyn Agent>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in agents, their tools resolved in `registry`.
    pub fn builtin(
        registry: &Registry,
        models: Arc<dyn ModelSource>,
        memories: Option<LazyMemories>,
    ) -> Result<Catalog, LoadError> {
        let mut catalog = Catalog::new();
        let mut diagnostics = Vec::new();
        for (path, source) in BUILTIN_SPECS {
            if let Err(e) = catalog.add_spec_source(
                source,
                &format!("agents/{path}"),
                registry,
                &models,
                memories.clone(),
            ) {
                diagnostics.extend(e.diagnostics);
            }
        }
        if diagnostics.is_empty() {
            Ok(catalog)
        } else {
            Err(LoadError { diagnostics })
        }
    }

    /// Registers every built-in agent in `registry` by name, each compiled on its first
    /// call: loading and validating graphs need only the names, so a command that runs no
    /// agent never parses the 61 specs. Tools are resolved in `registry` as it is now.
    pub fn register_builtin_lazily(
        registry: &mut Registry,
        models: Arc<dyn ModelSource>,
        memories: Option<LazyMemories>,
    ) {
        let tools = Arc::new(registry.clone());
        for (path, source) in BUILTIN_SPECS {
            let Some(name) = builtin_name(path) else {
                continue;
            };
            registry.register_agent(
                name,
                Arc::new(LazyAgentNode {
                    file: format!("agents/{path}"),
                    source,
                    tools: Arc::clone(&tools),
                    models: Arc::clone(&models),
                    memories: memories.clone(),
                    agent: OnceLock::new(),
                }),
            );
        }
    }

    /// Adds every `<category>/<name>.toml` under `dir` (a spec with a built-in agent's name
    /// replaces it).
    pub fn load_dir(
        &mut self,
        dir: &Path,
        registry: &Registry,
        models: &Arc<dyn ModelSource>,
        memories: Option<LazyMemories>,
    ) -> Result<usize, LoadError> {
        let read_error = |path: &Path, e: std::io::Error| LoadError {
            diagnostics: vec![Diagnostic {
                file: path.display().to_string(),
                line: 0,
                col: 0,
                message: format!("cannot read: {e}"),
                help: Some("agent specs live in <dir>/<category>/<name>.toml".into()),
            }],
        };
        let mut files = Vec::new();
        for category in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
            let category = category.map_err(|e| read_error(dir, e))?.path();
            if !category.is_dir() {
                continue;
            }
            for spec in std::fs::read_dir(&category).map_err(|e| read_error(&category, e))? {
                let path = spec.map_err(|e| read_error(&category, e))?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut diagnostics = Vec::new();
        for path in &files {
            let source = std::fs::read_to_string(path).map_err(|e| read_error(path, e))?;
            if let Err(e) = self.add_spec_source(
                &source,
                &path.display().to_string(),
                registry,
                models,
                memories.clone(),
            ) {
                diagnostics.extend(e.diagnostics);
            }
        }
        if diagnostics.is_empty() {
            Ok(files.len())
        } else {
            Err(LoadError { diagnostics })
        }
    }

    /// Parses one spec and adds the agent it describes. The file must sit at
    /// `<category>/<name>.toml` matching the spec's own name.
    pub fn add_spec_source(
        &mut self,
        source: &str,
        file: &str,
        registry: &Registry,
        models: &Arc<dyn ModelSource>,
        memories: Option<LazyMemories>,
    ) -> Result<(), LoadError> {
        let spec = AgentSpec::from_toml_with(
            source,
            file,
            &|t| registry.tool(t).is_some(),
            Some(&registry.tool_names()),
        )?;
        let path = Path::new(file);
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let dir = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let expected = format!("{dir}.{stem}");
        if spec.name != expected {
            return Err(LoadError {
                diagnostics: vec![Diagnostic::at(
                    file,
                    source,
                    None,
                    format!(
                        "the spec is named `{}` but its file says `{expected}`",
                        spec.name
                    ),
                    Some(format!(
                        "put `{}` at {}/{}.toml",
                        spec.name,
                        spec.category,
                        spec.name.split_once('.').map_or("", |(_, n)| n)
                    )),
                )],
            });
        }
        let agent =
            LlmAgent::new(spec, registry, Arc::clone(models), memories).map_err(|e| LoadError {
                diagnostics: vec![Diagnostic::at(file, source, None, e, None)],
            })?;
        self.add(Arc::new(agent));
        Ok(())
    }

    /// Adds (or replaces) an agent.
    pub fn add(&mut self, agent: Arc<dyn Agent>) -> &mut Self {
        self.agents.insert(agent.spec().name.clone(), agent);
        self
    }

    /// An agent by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Agent>> {
        self.agents.get(name)
    }

    /// How many agents there are.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Every agent, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Agent>> {
        self.agents.values()
    }

    /// The agents of one category, by name.
    pub fn in_category(&self, category: Category) -> impl Iterator<Item = &Arc<dyn Agent>> {
        self.iter().filter(move |a| a.spec().category == category)
    }

    /// Makes every agent reachable from graph nodes (`agent = "NAME"`).
    pub fn register_into(&self, registry: &mut Registry) {
        for (name, agent) in &self.agents {
            registry.register_agent(name.clone(), Arc::new(AgentNode(Arc::clone(agent))));
        }
    }
}

/// A built-in spec's agent name from its path: `catalog/revenue/lead_qualifier.toml` is
/// `revenue.lead_qualifier`.
fn builtin_name(path: &str) -> Option<String> {
    let path = Path::new(path);
    let stem = path.file_stem()?.to_str()?;
    let category = path.parent()?.file_name()?.to_str()?;
    Some(format!("{category}.{stem}"))
}

/// A built-in agent as a graph node, compiled the first time it is called.
struct LazyAgentNode {
    file: String,
    source: &'static str,
    tools: Arc<Registry>,
    models: Arc<dyn ModelSource>,
    memories: Option<LazyMemories>,
    agent: OnceLock<Result<Arc<dyn Agent>, String>>,
}

#[async_trait]
impl Node for LazyAgentNode {
    async fn call(&self, input: Value, ctx: &NodeContext) -> Result<Value, NodeError> {
        let agent = self.agent.get_or_init(|| {
            let mut one = Catalog::new();
            one.add_spec_source(
                self.source,
                &self.file,
                &self.tools,
                &self.models,
                self.memories.clone(),
            )
            .map_err(|e| e.to_string())?;
            one.agents
                .into_values()
                .next()
                .ok_or_else(|| format!("{}: no agent in the spec", self.file))
        });
        match agent {
            Ok(agent) => agent.run(input, ctx).await,
            Err(e) => Err(NodeError::permanent(format!(
                "the built-in agent spec {} does not compile: {e}",
                self.file
            ))),
        }
    }
}
