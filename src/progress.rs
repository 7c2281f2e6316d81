//! The live progress line of `brainops run` on a terminal: the current step, the nodes
//! running, the time so far, and the tokens and cost of the model calls so far, redrawn in
//! place on stderr and erased when the run ends (stdout keeps only the result).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use engine::Event;

/// Redraws the line at least this often while nothing happens (a long model call).
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// What the line shows, folded from the run's events.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    step: u64,
    /// Running tasks, by task id, with their node.
    running: BTreeMap<String, String>,
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Option<f64>,
}

impl Progress {
    pub(crate) fn on(&mut self, event: &Event) {
        match event {
            Event::StepStarted { step, .. } => self.step = *step,
            Event::NodeStarted { node, task, .. } => {
                self.running.insert(task.clone(), node.clone());
            }
            Event::NodeFinished { task, .. } | Event::Interrupt { task, .. } => {
                self.running.remove(task);
            }
            Event::Usage {
                input_tokens,
                output_tokens,
                cost_usd,
                ..
            } => {
                self.input_tokens += input_tokens;
                self.output_tokens += output_tokens;
                if let Some(c) = cost_usd {
                    self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
                }
            }
            _ => {}
        }
    }

    /// One line, without control characters, at most `width` characters.
    pub(crate) fn line(&self, elapsed: Duration, width: usize) -> String {
        let nodes: BTreeSet<&str> = self.running.values().map(String::as_str).collect();
        let running = if nodes.is_empty() {
            "—".to_string()
        } else {
            nodes.into_iter().collect::<Vec<_>>().join(", ")
        };
        let mut line = format!(
            "step {} · running {running} · {:.1} s",
            self.step,
            elapsed.as_secs_f64()
        );
        if self.input_tokens + self.output_tokens > 0 {
            line.push_str(&format!(
                " · {} in / {} out tokens",
                self.input_tokens, self.output_tokens
            ));
        }
        if let Some(c) = self.cost_usd {
            line.push_str(&format!(" · ${c:.4}"));
        }
        if line.chars().count() > width {
            line = line.chars().take(width.saturating_sub(1)).collect();
            line.push('…');
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_line_follows_steps_tasks_and_spending() {
        let mut p = Progress::default();
        assert_eq!(
            p.line(Duration::from_millis(0), 80),
            "step 0 · running — · 0.0 s"
        );
        p.on(&Event::StepStarted {
            step: 2,
            nodes: vec!["score".into(), "draft".into()],
        });
        for (node, task) in [
            ("score", "score"),
            ("draft", "draft[0]"),
            ("draft", "draft[1]"),
        ] {
            p.on(&Event::NodeStarted {
                step: 2,
                node: node.into(),
                task: task.into(),
            });
        }
        p.on(&Event::Usage {
            node: "draft".into(),
            task: "draft[0]".into(),
            model: "openai:gpt-4o-mini".into(),
            input_tokens: 120,
            output_tokens: 30,
            cost_usd: Some(0.00036),
        });
        p.on(&Event::NodeFinished {
            step: 2,
            node: "score".into(),
            task: "score".into(),
            update: json!({}),
        });
        assert_eq!(
            p.line(Duration::from_millis(1540), 200),
            "step 2 · running draft · 1.5 s · 120 in / 30 out tokens · $0.0004"
        );
        // A narrow terminal gets a cut line, never a wrapped one.
        let cut = p.line(Duration::from_millis(1540), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
    }
}
