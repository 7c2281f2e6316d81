//! Instruction templates: text with `{{ CEL }}` holes evaluated over the agent's input
//! (and, for what an agent remembers, its output).
//!
//! ```text
//! Qualify the lead from {{ input.lead.name }} ({{ input.lead.source }}).
//! ```
//!
//! A hole that yields a string is inserted as is; anything else is inserted as compact JSON.
//! Holes are compiled when the spec loads, so a syntax error is a load error.

use std::fmt;
use std::sync::Arc;

use cel::{Context, Program};
use engine::expr::{cel_env, cel_to_json, json_to_cel};
use serde_json::Value;

/// A compiled template.
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    parts: Arc<[Part]>,
}

enum Part {
    Text(String),
    Hole { source: String, program: Program },
}

/// Why a template did not compile: the byte offset of the bad hole in the template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// Where in the template, in bytes.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl Template {
    /// A template over `input`.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        Template::compile_over(source, &["input"])
    }

    /// A template whose holes may read the variables `names`, and nothing else.
    pub fn compile_over(source: &str, names: &[&str]) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    offset: offset + open,
                    message: "`{{` without a closing `}}`".into(),
                });
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let hole = after[..close].trim();
            let program = cel_env().compile(hole).map_err(|e| TemplateError {
                offset: offset + open,
                message: format!(
                    "`{{{{ {hole} }}}}` is not a CEL expression: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            })?;
            if let Some(unknown) = program
                .references()
                .variables()
                .into_iter()
                .find(|v| !names.contains(v))
            {
                let seen = names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                return Err(TemplateError {
                    offset: offset + open,
                    message: format!(
                        "`{{{{ {hole} }}}}` uses `{unknown}`; this template sees only {seen} (e.g. `{}.{unknown}`)",
                        names.first().copied().unwrap_or("input")
                    ),
                });
            }
            parts.push(Part::Hole {
                source: hole.to_string(),
                program,
            });
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: Arc::from(source),
            parts: parts.into(),
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fills the holes from `input`; `Err` names the hole that failed and why.
    pub fn render(&self, input: &Value) -> Result<String, String> {
        self.render_with(&[("input", input)])
    }

    /// Fills the holes from the named values.
    pub fn render_with(&self, values: &[(&str, &Value)]) -> Result<String, String> {
        let mut context = Context::default();
        for (name, value) in values {
            context.add_variable_from_value(*name, json_to_cel(value));
        }
        let mut out = String::with_capacity(self.source.len() + 64);
        for part in self.parts.iter() {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Hole { source, program } => {
                    let value = program
                        .execute(&context)
                        .map_err(|e| format!("`{{{{ {source} }}}}`: {e}"))
                        .and_then(|v| {
                            cel_to_json(&v).map_err(|e| format!("`{{{{ {source} }}}}`: {e}"))
                        })?;
                    match value {
                        Value::String(s) => out.push_str(&s),
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_holes_with_strings_raw_and_values_as_json() {
        let t = Template::compile(
            "Lead {{ input.name }} scored {{input.score * 2}}: {{ input.tags }}.",
        )
        .unwrap();
        let out = t
            .render(&json!({"name": "Ada", "score": 21, "tags": ["hail", "urgent"]}))
            .unwrap();
        assert_eq!(out, r#"Lead Ada scored 42: ["hail","urgent"]."#);
    }

    #[test]
    fn templates_over_input_and_output() {
        let t =
            Template::compile_over("{{ input.name }}: {{ output.score }}", &["input", "output"])
                .unwrap();
        let out = t
            .render_with(&[
                ("input", &json!({"name": "Ada"})),
                ("output", &json!({"score": 87})),
            ])
            .unwrap();
        assert_eq!(out, "Ada: 87");
    }

    #[test]
    fn a_missing_field_names_the_hole() {
        let t = Template::compile("Hi {{ input.lead.name }}").unwrap();
        let err = t.render(&json!({})).unwrap_err();
        assert!(err.contains("input.lead.name"), "{err}");
    }

    #[test]
    fn bad_holes_are_refused_with_their_offset() {
        let err = Template::compile("ok {{ input. }}").unwrap_err();
        assert_eq!(err.offset, 3);
        let err = Template::compile("ok {{ state.x }}").unwrap_err();
        assert!(err.message.contains("only `input`"), "{}", err.message);
        let err = Template::compile_over("{{ state.x }}", &["input", "output"]).unwrap_err();
        assert!(
            err.message.contains("only `input` and `output`"),
            "{}",
            err.message
        );
        let err = Template::compile("ok {{ input.x").unwrap_err();
        assert!(err.message.contains("closing"), "{}", err.message);
    }
}
