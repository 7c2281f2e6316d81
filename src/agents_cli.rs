//! `brainops agents list|show` and `brainops tools list`: what the catalog holds.

use agents::{Catalog, Category};
use clap::Subcommand;
use engine::Registry;
use serde_json::{Value, json};

use crate::{Failure, fail};

#[derive(Subcommand)]
pub(crate) enum AgentsCommand {
    /// List agents: name, category, description, tools (with --json: a JSON array).
    List {
        /// Only this category: revenue, operations, technical, customer, financial,
        /// marketing, security or industry.
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one agent's spec as JSON: models, tools (with their argument schemas),
    /// instructions, output schema, memory and worked example.
    Show { name: String },
}

#[derive(Subcommand)]
pub(crate) enum ToolsCommand {
    /// List tools: name and description (with --json: also the argument schema).
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn agents(
    command: AgentsCommand,
    catalog: &Catalog,
    registry: &Registry,
) -> Result<u8, Failure> {
    match command {
        AgentsCommand::List { category, json } => {
            let category = category
                .map(|c| c.parse::<Category>())
                .transpose()
                .map_err(|e| fail(format!("error: --category: {e}")))?;
            let listed: Vec<_> = catalog
                .iter()
                .filter(|a| category.is_none_or(|c| a.spec().category == c))
                .collect();
            if json {
                let rows: Vec<Value> = listed
                    .iter()
                    .map(|a| brainops::listing::agent_summary(a.spec()))
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else {
                let width = listed
                    .iter()
                    .map(|a| a.spec().name.len())
                    .max()
                    .unwrap_or(0);
                for a in &listed {
                    let s = a.spec();
                    let tools = if s.tools.is_empty() {
                        String::new()
                    } else {
                        format!("  [{}]", s.tools.join(", "))
                    };
                    outln!("{:width$}  {}{tools}", s.name, s.description);
                }
                eprintln!("{} agents", listed.len());
            }
            Ok(0)
        }
        AgentsCommand::Show { name } => {
            let Some(agent) = catalog.get(&name) else {
                let names: Vec<&str> = catalog.iter().map(|a| a.spec().name.as_str()).collect();
                let help = engine::graph::suggest("agents", &name, &names);
                return Err(fail(format!("error: no agent `{name}`\n  help: {help}")));
            };
            let shown = brainops::listing::agent_detail(agent.spec(), registry);
            outln!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
            Ok(0)
        }
    }
}

pub(crate) fn tools(command: ToolsCommand, registry: &Registry) -> Result<u8, Failure> {
    let ToolsCommand::List { json } = command;
    let names = registry.tool_names();
    if json {
        let rows: Vec<Value> = names
            .iter()
            .map(|n| match registry.tool_info(n) {
                Some(info) => json!({"name": n, "description": info.description, "parameters": info.parameters}),
                None => json!({"name": n, "description": "", "parameters": {"type": "object"}}),
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        for n in &names {
            let description = registry.tool_info(n).map_or("", |i| i.description.as_str());
            outln!("{n:width$}  {description}");
        }
        eprintln!("{} tools", names.len());
    }
    Ok(0)
}
