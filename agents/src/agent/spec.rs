//! Declarative agent specs: one TOML file per agent, `catalog/<category>/<name>.toml`.
//!
//! ```toml
//! name = "revenue.lead_qualifier"
//! category = "revenue"
//! description = "Decides whether a new lead is worth a sales call today."
//! instructions = "Qualify this roofing lead: {{ input.lead }}"
//! tools = ["leads.score"]                       # the only tools the model may call
//! model = ["anthropic:claude-sonnet-4-5", "local:smollm2-135m"]   # tried in order
//! temperature = 0.0
//! max_tool_rounds = 3
//! memory = { namespace = ["tenant:{{ input.tenant }}", "customers"], recall = 5,
//!            remember = "{{ input.lead.name }}: {{ output.reason }}" }   # written after each answer
//!
//! [output]                                      # JSON Schema of the result
//! type = "object"
//! required = ["qualified", "reason"]
//! properties.qualified = { type = "boolean" }
//! properties.reason = { type = "string" }
//!
//! [example]                                     # checked when the spec loads
//! input = { lead = { name = "Ada" } }
//! output = { qualified = true, reason = "Hail claim, owner-occupied." }
//! ```
//!
//! Every problem is a load error at `file:line:col` with a remedy.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use engine::{Diagnostic, LoadError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

use super::template::Template;

/// The eight kinds of work agents do for the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Leads, proposals, follow-ups.
    Revenue,
    /// Crews, schedules, materials.
    Operations,
    /// Systems and code.
    Technical,
    /// Support and customer care.
    Customer,
    /// Invoices, collections, cash.
    Financial,
    /// Campaigns and content.
    Marketing,
    /// Accounts, attacks, compliance.
    Security,
    /// Roofing-specific work and weather analysis.
    Industry,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 8] = [
        Category::Revenue,
        Category::Operations,
        Category::Technical,
        Category::Customer,
        Category::Financial,
        Category::Marketing,
        Category::Security,
        Category::Industry,
    ];

    /// The category's name, as in agent names.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Revenue => "revenue",
            Category::Operations => "operations",
            Category::Technical => "technical",
            Category::Customer => "customer",
            Category::Financial => "financial",
            Category::Marketing => "marketing",
            Category::Security => "security",
            Category::Industry => "industry",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown category `{s}`; use one of {}",
                    Category::ALL.map(Category::as_str).join(", ")
                )
            })
    }
}

/// Where an agent recalls memories from before it starts, and what it remembers after.
#[derive(Debug, Clone)]
pub struct MemorySpec {
    /// Namespace segments, each a template over the input.
    pub namespace: Vec<Template>,
    /// How many memories to put in front of the model (0: none).
    pub recall: usize,
    /// The text of the memory written after each valid answer, a template over `input`
    /// and `output`; the memory also holds both.
    pub remember: Option<Template>,
    /// The kind of memory written (default episodic).
    pub kind: memory::Kind,
}

/// A worked example: an input and an output valid against the output schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// The example's input.
    pub input: Value,
    /// Its output.
    pub output: Value,
}

/// What an agent is and how it runs.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// `category.name`, as graph nodes name it (`agent = "revenue.lead_qualifier"`).
    pub name: String,
    /// Its category.
    pub category: Category,
    /// What it does, for people.
    pub description: String,
    /// The system prompt, a template over the node's input.
    pub instructions: Template,
    /// The tools the model may call; anything else it asks for is refused.
    pub tools: Vec<String>,
    /// The agents it may hand the conversation to (`handoffs = ["financial.billing_desk"]`):
    /// the model is offered a `transfer_to_<name>` tool per agent, and a call routes the
    /// run to the node running that agent. Such an agent answers with messages.
    pub handoffs: Vec<String>,
    /// JSON Schema of the result; without one the result is the reply's text.
    pub output: Option<Value>,
    /// Model strings, tried in order.
    pub models: Vec<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// The most tokens a reply may have.
    pub max_tokens: Option<u32>,
    /// Model turns that may request tools before an answer is required.
    pub max_tool_rounds: u32,
    /// How often an answer that fails the output schema is sent back to be fixed.
    pub max_schema_retries: u32,
    /// What it remembers and recalls.
    pub memory: Option<MemorySpec>,
    /// A worked example shown to the model.
    pub example: Option<Example>,
    /// The file the spec came from.
    pub file: Option<String>,
}

impl AgentSpec {
    /// A spec for agents written in Rust: no tools, no schema, the default model.
    pub fn new(name: &str, category: Category, description: &str, instructions: Template) -> Self {
        AgentSpec {
            name: name.to_string(),
            category,
            description: description.to_string(),
            instructions,
            tools: Vec::new(),
            handoffs: Vec::new(),
            output: None,
            models: vec![crate::llm::DEFAULT_MODEL.to_string()],
            temperature: None,
            max_tokens: None,
            max_tool_rounds: DEFAULT_TOOL_ROUNDS,
            max_schema_retries: DEFAULT_SCHEMA_RETRIES,
            memory: None,
            example: None,
            file: None,
        }
    }

    /// Reads a spec from TOML. `tool_exists` says which tool names the registry knows.
    pub fn from_toml(
        source: &str,
        file: &str,
        tool_exists: &dyn Fn(&str) -> bool,
    ) -> Result<AgentSpec, LoadError> {
        Self::from_toml_with(source, file, tool_exists, None)
    }

    /// Like [`AgentSpec::from_toml`], suggesting the closest of `tool_names` for a typo.
    pub fn from_toml_with(
        source: &str,
        file: &str,
        tool_exists: &dyn Fn(&str) -> bool,
        tool_names: Option<&[&str]>,
    ) -> Result<AgentSpec, LoadError> {
        let problem = |span: Option<Range<usize>>, message: String, help: Option<String>| {
            Diagnostic::at(file, source, span, message, help)
        };
        let raw: RawSpec = toml::from_str(source).map_err(|e| LoadError {
            diagnostics: vec![problem(
                e.span(),
                e.message().trim().to_string(),
                Some(format!("agent spec keys are: {}", SPEC_KEYS.join(", "))),
            )],
        })?;
        let mut problems = Vec::new();

        let category = match raw.category.get_ref().parse::<Category>() {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(problem(Some(raw.category.span()), e, None));
                None
            }
        };
        let name = raw.name.get_ref();
        match (name.split_once('.'), category) {
            (Some((prefix, rest)), Some(c)) if prefix == c.as_str() && is_snake(rest) => {}
            (_, Some(c)) => problems.push(problem(
                Some(raw.name.span()),
                format!("agent name `{name}` must be `{c}.<snake_case_name>`"),
                Some(format!(
                    "e.g. `{c}.lead_qualifier`; the prefix is the category"
                )),
            )),
            _ => {}
        }
        if raw.description.get_ref().trim().is_empty() {
            problems.push(problem(
                Some(raw.description.span()),
                "`description` is empty".into(),
                Some("say in one sentence what the agent is for".into()),
            ));
        }
        let instructions = match Template::compile(raw.instructions.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(problem(
                    Some(raw.instructions.span()),
                    format!("in `instructions` (at byte {}): {}", e.offset, e.message),
                    Some("holes are `{{ CEL over input }}`, e.g. `{{ input.lead.name }}`".into()),
                ));
                None
            }
        };
        for tool in &raw.tools {
            if !tool_exists(tool.get_ref()) {
                problems.push(problem(
                    Some(tool.span()),
                    format!("unknown tool `{}` in `tools`", tool.get_ref()),
                    Some(match tool_names {
                        Some(names) => engine::graph::suggest("tools", tool.get_ref(), names),
                        None => "`brainops tools list` shows the tools there are".into(),
                    }),
                ));
            }
        }
        for target in &raw.handoffs {
            let t = target.get_ref();
            let well_formed = t
                .split_once('.')
                .is_some_and(|(c, rest)| c.parse::<Category>().is_ok() && is_snake(rest));
            if !well_formed {
                problems.push(problem(
                    Some(target.span()),
                    format!("`handoffs`: `{t}` is not an agent name"),
                    Some(
                        "name agents as `category.snake_case_name`, e.g. `financial.billing_desk`"
                            .into(),
                    ),
                ));
            } else if t == raw.name.get_ref() {
                problems.push(problem(
                    Some(target.span()),
                    format!("`handoffs`: `{t}` is this agent"),
                    Some("an agent hands off to others; remove it".into()),
                ));
            }
        }
        let output = raw.output.as_ref().and_then(|o| {
            let schema = serde_json::to_value(o.get_ref()).ok()?;
            match jsonschema::validator_for(&schema) {
                Ok(_) => Some(schema),
                Err(e) => {
                    problems.push(problem(
                        Some(o.span()),
                        format!("`output` is not a valid JSON Schema: {e}"),
                        Some(
                            "write it as a TOML table, e.g. `[output]` with `type = \"object\"`"
                                .into(),
                        ),
                    ));
                    None
                }
            }
        });
        let mut models = Vec::new();
        if let Some(m) = &raw.model {
            let names: Vec<&toml::Value> = match m.get_ref() {
                toml::Value::Array(list) => list.iter().collect(),
                one => vec![one],
            };
            for name in names {
                match name.as_str().map(crate::llm::check_model_name) {
                    Some(Ok(())) => models.push(name.as_str().unwrap_or_default().to_string()),
                    Some(Err(e)) => problems.push(problem(Some(m.span()), e, None)),
                    None => problems.push(problem(
                        Some(m.span()),
                        "`model` is a model string or a list of them".into(),
                        Some("e.g. `model = [\"anthropic:claude-sonnet-4-5\", \"local:smollm2-135m\"]`".into()),
                    )),
                }
            }
        }
        if let Some(t) = &raw.temperature
            && !(0.0..=2.0).contains(t.get_ref())
        {
            problems.push(problem(
                Some(t.span()),
                format!("`temperature` {} is outside 0..=2", t.get_ref()),
                None,
            ));
        }
        if let Some(r) = &raw.max_tool_rounds
            && *r.get_ref() > MAX_TOOL_ROUNDS
        {
            problems.push(problem(
                Some(r.span()),
                format!(
                    "`max_tool_rounds` {} is more than {MAX_TOOL_ROUNDS}",
                    r.get_ref()
                ),
                None,
            ));
        }
        let memory = raw.memory.as_ref().map(|m| {
            let mut namespace = Vec::new();
            for segment in &m.get_ref().namespace {
                match Template::compile(segment.get_ref()) {
                    Ok(t) => namespace.push(t),
                    Err(e) => problems.push(problem(Some(segment.span()), e.message, None)),
                }
            }
            if namespace.is_empty() {
                problems.push(problem(
                    Some(m.span()),
                    "`memory.namespace` is empty".into(),
                    Some(
                        "e.g. `namespace = [\"tenant:{{ input.tenant }}\", \"customers\"]`".into(),
                    ),
                ));
            }
            let remember = m.get_ref().remember.as_ref().and_then(|r| {
                Template::compile_over(r.get_ref(), &["input", "output"])
                    .map_err(|e| problems.push(problem(Some(r.span()), e.message, None)))
                    .ok()
            });
            let kind = match &m.get_ref().kind {
                None => memory::Kind::Episodic,
                Some(k) => memory::Kind::parse(k.get_ref()).unwrap_or_else(|_| {
                    problems.push(problem(
                        Some(k.span()),
                        format!("unknown memory kind `{}`", k.get_ref()),
                        Some("use \"episodic\", \"semantic\" or \"procedural\"".into()),
                    ));
                    memory::Kind::Episodic
                }),
            };
            MemorySpec {
                namespace,
                recall: m.get_ref().recall.unwrap_or(5),
                remember,
                kind,
            }
        });

        let example = raw.example.as_ref().map(|e| {
            let ex = e.get_ref();
            Example {
                input: serde_json::to_value(&ex.input).unwrap_or(Value::Null),
                output: serde_json::to_value(&ex.output).unwrap_or(Value::Null),
            }
        });
        if let (Some(ex), Some(span)) = (&example, raw.example.as_ref().map(Spanned::span)) {
            if let Some(t) = &instructions
                && let Err(e) = t.render(&ex.input)
            {
                problems.push(problem(
                    Some(span.clone()),
                    format!("the example's input does not fill `instructions`: {e}"),
                    Some("give the example every field the instructions read".into()),
                ));
            }
            if let Some(m) = &memory {
                for t in &m.namespace {
                    if let Err(e) = t.render(&ex.input) {
                        problems.push(problem(
                            Some(span.clone()),
                            format!("the example's input does not fill `memory.namespace`: {e}"),
                            None,
                        ));
                    }
                }
                if let Some(t) = &m.remember
                    && let Err(e) = t.render_with(&[("input", &ex.input), ("output", &ex.output)])
                {
                    problems.push(problem(
                        Some(span.clone()),
                        format!("the example does not fill `memory.remember`: {e}"),
                        Some("`remember` may read only what every input and answer has".into()),
                    ));
                }
            }
            if let Some(schema) = &output
                && let Err(e) = validate(schema, &ex.output)
            {
                problems.push(problem(
                    Some(span),
                    format!("the example's output does not match `output`: {e}"),
                    None,
                ));
            }
        }

        if !problems.is_empty() {
            return Err(LoadError {
                diagnostics: problems,
            });
        }
        let (Some(category), Some(instructions)) = (category, instructions) else {
            return Err(LoadError {
                diagnostics: vec![problem(None, "invalid spec".into(), None)],
            });
        };
        let handoffs = raw.handoffs.iter().map(|h| h.get_ref().clone()).collect();
        Ok(AgentSpec {
            handoffs,
            name: raw.name.into_inner(),
            category,
            description: raw.description.into_inner(),
            instructions,
            tools: raw.tools.into_iter().map(Spanned::into_inner).collect(),
            output,
            models: if models.is_empty() {
                vec![crate::llm::DEFAULT_MODEL.to_string()]
            } else {
                models
            },
            temperature: raw.temperature.map(Spanned::into_inner),
            max_tokens: raw.max_tokens,
            max_tool_rounds: raw
                .max_tool_rounds
                .map_or(DEFAULT_TOOL_ROUNDS, Spanned::into_inner),
            max_schema_retries: raw.max_schema_retries.unwrap_or(DEFAULT_SCHEMA_RETRIES),
            memory,
            example,
            file: Some(file.to_string()),
        })
    }
}

/// Checks `value` against `schema`; `Err` lists what is wrong, with JSON pointers.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| format!("the schema is invalid: {e}"))?;
    crate::llm::answer::problems(&validator, value)
}

fn is_snake(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

const DEFAULT_TOOL_ROUNDS: u32 = 4;
const MAX_TOOL_ROUNDS: u32 = 20;
const DEFAULT_SCHEMA_RETRIES: u32 = 2;
const SPEC_KEYS: &[&str] = &[
    "name",
    "category",
    "description",
    "handoffs",
    "instructions",
    "tools",
    "output",
    "model",
    "temperature",
    "max_tokens",
    "max_tool_rounds",
    "max_schema_retries",
    "memory",
    "example",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Spanned<String>,
    category: Spanned<String>,
    description: Spanned<String>,
    instructions: Spanned<String>,
    #[serde(default)]
    tools: Vec<Spanned<String>>,
    #[serde(default)]
    handoffs: Vec<Spanned<String>>,
    output: Option<Spanned<toml::Value>>,
    model: Option<Spanned<toml::Value>>,
    temperature: Option<Spanned<f32>>,
    max_tokens: Option<u32>,
    max_tool_rounds: Option<Spanned<u32>>,
    max_schema_retries: Option<u32>,
    memory: Option<Spanned<RawMemory>>,
    example: Option<Spanned<RawExample>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    namespace: Vec<Spanned<String>>,
    recall: Option<usize>,
    remember: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExample {
    input: toml::Value,
    output: toml::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "revenue.lead_qualifier"
category = "revenue"
description = "Qualifies leads."
instructions = "Qualify {{ input.lead.name }}."
tools = ["leads.score"]
model = "local:smollm2-135m"

[output]
type = "object"
required = ["qualified"]
properties.qualified = { type = "boolean" }

[example]
input = { lead = { name = "Ada" } }
output = { qualified = true }
"#;

    fn tools(name: &str) -> bool {
        name == "leads.score"
    }

    #[test]
    fn a_good_spec_loads() {
        let spec = AgentSpec::from_toml(GOOD, "q.toml", &tools).unwrap();
        assert_eq!(spec.name, "revenue.lead_qualifier");
        assert_eq!(spec.category, Category::Revenue);
        assert_eq!(spec.models, ["local:smollm2-135m"]);
        assert_eq!(spec.max_tool_rounds, DEFAULT_TOOL_ROUNDS);
        assert_eq!(spec.output.unwrap()["required"][0], "qualified");
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_place() {
        let src = GOOD.replace("tools = [", "toolz = 1\ntools = [");
        let err = AgentSpec::from_toml(&src, "q.toml", &tools).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("q.toml:6:1: error: unknown field `toolz`"),
            "{text}"
        );
        assert!(text.contains("help: agent spec keys are"), "{text}");
    }

    #[test]
    fn semantic_problems_are_all_reported_with_places() {
        let src = GOOD
            .replace("\"leads.score\"", "\"leads.scor\"")
            .replace("local:smollm2-135m", "gpt4")
            .replace("qualified = true", "qualified = \"yes\"");
        let err = AgentSpec::from_toml(&src, "q.toml", &tools).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("q.toml:6:10: error: unknown tool `leads.scor`"),
            "{text}"
        );
        assert!(text.contains("q.toml:7:9: error: model `gpt4`"), "{text}");
        assert!(
            text.contains("the example's output does not match"),
            "{text}"
        );
        assert_eq!(err.diagnostics.len(), 3, "{text}");
    }

    #[test]
    fn memory_writes_are_checked_when_the_spec_loads() {
        let with = |memory: &str| {
            GOOD.replace(
                "model = \"local:smollm2-135m\"",
                &format!("model = \"local:smollm2-135m\"\nmemory = {memory}"),
            )
        };
        let spec = AgentSpec::from_toml(
            &with(r#"{ namespace = ["leads"], remember = "{{ input.lead.name }}: {{ output.qualified }}", kind = "semantic" }"#),
            "q.toml",
            &tools,
        )
        .unwrap();
        let memory = spec.memory.unwrap();
        assert_eq!(memory.kind, memory::Kind::Semantic);
        assert!(memory.remember.is_some());

        let err = AgentSpec::from_toml(
            &with(r#"{ namespace = ["leads"], remember = "{{ state.lead }}", kind = "gossip" }"#),
            "q.toml",
            &tools,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("q.toml:8:46: error: `{{ state.lead }}` uses `state`; this template sees only `input` and `output`"),
            "{text}"
        );
        assert!(
            text.contains("q.toml:8:73: error: unknown memory kind `gossip`"),
            "{text}"
        );

        let err = AgentSpec::from_toml(
            &with(r#"{ namespace = ["leads"], remember = "{{ output.reason }}" }"#),
            "q.toml",
            &tools,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("the example does not fill `memory.remember`"),
            "{err}"
        );
    }

    #[test]
    fn the_name_must_carry_the_category() {
        let src = GOOD.replace("name = \"revenue.", "name = \"customer.");
        let err = AgentSpec::from_toml(&src, "q.toml", &tools).unwrap_err();
        assert!(
            err.to_string()
                .contains("must be `revenue.<snake_case_name>`"),
            "{err}"
        );
    }
}
