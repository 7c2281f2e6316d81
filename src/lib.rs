//! BrainOps Engine: multi-agent orchestration of TOML agent graphs.
//!
//! This facade re-exports the crates an embedding backend needs: [`engine`] (graphs,
//! executor, checkpoints, events), [`agents`] (tools, agents, the built-in registry) and
//! [`memory`]. The `brainops` binary is the command-line front end.

pub use agents;
pub use engine;
pub use memory;
