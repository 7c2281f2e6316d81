//! Errors: load diagnostics that point at `file:line:col`, and run errors that name the node.

use std::fmt;
use std::ops::Range;

use serde::Serialize;
use serde_json::Value;

/// A byte range in a source file; `None` for graphs built in Rust.
pub type Loc = Option<Range<usize>>;

/// One problem found while loading a graph, with where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// The file, or the graph name for graphs built in Rust.
    pub file: String,
    /// 1-based line and column; 0 when the problem has no place in a file.
    pub line: usize,
    /// The column (characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at byte `span` of `source` (the text of `file`), with a remedy.
    pub fn at(
        file: &str,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let (line, col) = span.map_or((0, 0), |s| LineIndex::new(source).line_col(s.start));
        Diagnostic {
            file: file.to_string(),
            line,
            col,
            message: message.into(),
            help,
        }
    }
}

impl Diagnostic {
    /// Shows it as a warning: `file:line:col: warning: ...` and its remedy.
    pub fn as_warning(&self) -> impl fmt::Display + '_ {
        Shown(self, "warning")
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Shown(self, "error").fmt(f)
    }
}

/// A diagnostic with its severity word.
struct Shown<'a>(&'a Diagnostic, &'static str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Shown(d, severity) = self;
        if d.line > 0 {
            write!(
                f,
                "{}:{}:{}: {severity}: {}",
                d.file, d.line, d.col, d.message
            )?;
        } else {
            write!(f, "{}: {severity}: {}", d.file, d.message)?;
        }
        if let Some(help) = &d.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// A graph that failed to load: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct LoadError {
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A problem with a location not yet turned into line and column.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub loc: Loc,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    pub(crate) fn new(loc: &Loc, message: impl Into<String>, help: impl Into<String>) -> Self {
        Problem {
            loc: loc.clone(),
            message: message.into(),
            help: Some(help.into()),
        }
    }
}

/// Turns byte offsets into 1-based line and column (columns count characters).
pub(crate) struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { source, starts }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts[line.min(self.starts.len() - 1)];
        let col = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

pub(crate) fn to_diagnostics(
    file: &str,
    source: Option<&str>,
    problems: Vec<Problem>,
) -> Vec<Diagnostic> {
    let index = source.map(LineIndex::new);
    let mut out: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| {
            let (line, col) = match (&index, &p.loc) {
                (Some(index), Some(range)) => index.line_col(range.start),
                _ => (0, 0),
            };
            Diagnostic {
                file: file.to_string(),
                line,
                col,
                message: p.message,
                help: p.help,
            }
        })
        .collect();
    out.sort_by_key(|d| (d.line, d.col));
    out.dedup();
    out
}

/// Why a run stopped without finishing.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunError {
    /// A node failed after its last attempt.
    #[error("node `{node}` failed after {attempts} attempt(s): {message}")]
    NodeFailed {
        /// The node.
        node: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// A node's attempt took longer than its `timeout_s`.
    #[error(
        "node `{node}` timed out after {seconds}s (attempt {attempts}); raise `timeout_s` or make the node faster"
    )]
    Timeout {
        /// The node.
        node: String,
        /// The timeout.
        seconds: f64,
        /// Attempts made.
        attempts: u32,
    },
    /// No edge out of a node matched, and it has no default edge.
    #[error(
        "no edge out of `{node}` matched and it has no `default = true` edge; the conditions saw {seen}"
    )]
    NoRoute {
        /// The node.
        node: String,
        /// The channels its conditions read, as they were.
        seen: Value,
    },
    /// Two tasks wrote one `replace` channel in a step.
    #[error(
        "nodes `{first}` and `{second}` both wrote `{channel}` in step {step}; give `{channel}` a reducer (append, merge, add) or let one node write it"
    )]
    ReplaceConflict {
        /// The channel.
        channel: String,
        /// The first writer.
        first: String,
        /// The second writer.
        second: String,
        /// The step.
        step: u64,
    },
    /// The run took more super-steps than the graph (or the run's request) allows.
    #[error(
        "the run exceeded the recursion limit of {limit} super-steps; raise `recursion_limit` in [graph] (or the run's own limit, when it set one) or check the loop's exit condition"
    )]
    RecursionLimit {
        /// The limit: the graph's `recursion_limit`, or the run's when it set one.
        limit: u32,
    },
    /// A CEL expression failed at run time.
    #[error("node `{node}`: {message}")]
    Expression {
        /// The node.
        node: String,
        /// What failed.
        message: String,
    },
    /// A node wrote a value its channel refuses.
    #[error("node `{node}` wrote `{channel}`: {message}")]
    BadWrite {
        /// The node.
        node: String,
        /// The channel.
        channel: String,
        /// Why the value was refused.
        message: String,
    },
    /// The run's input or resume value was refused before any node ran.
    #[error("invalid input: {message}")]
    Input {
        /// Why.
        message: String,
    },
    /// The run was cancelled with its [`CancelToken`](crate::CancelToken).
    #[error("the run was cancelled")]
    Cancelled,
    /// The checkpoint store failed.
    #[error("checkpoint store: {message}")]
    Checkpoint {
        /// What it said.
        message: String,
    },
    /// Another run owns the thread, or moved it on first.
    #[error("conflict: {message}")]
    Conflict {
        /// The thread.
        thread_id: String,
        /// What happened.
        message: String,
    },
    /// The thread cannot take this run (missing, finished, internal).
    #[error("{message}")]
    Thread {
        /// Why.
        message: String,
    },
}
