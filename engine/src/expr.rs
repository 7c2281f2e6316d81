//! CEL expressions: compiled once when a graph loads, evaluated against the state.
//!
//! An expression sees `state` (the channels it names), and inside a `for_each` node `item`
//! and `index`. At compile time we record which channels an expression reads, so evaluation
//! converts only those channels to CEL values, not the whole state.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value as Cel};
use serde_json::{Map, Number, Value};

use crate::graph::ChannelId;

/// The variables an expression may use besides `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Only `state`.
    State,
    /// `state`, `item` and `index` (inside a `for_each` node).
    Item,
    /// `state`, `item`, `index` and `answer` (an `ask` node's question and check).
    Answer,
}

/// A compiled CEL expression. Clones share the program: a graph that writes the same
/// formula in many nodes parses it once.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<Program>,
    /// The channels read through `state.NAME`; `None` when `state` is used as a whole.
    reads: Option<Box<[ChannelId]>>,
    /// How deep loops (comprehensions) nest; two or more get a cost check before running.
    loops: u32,
    /// Whether it reads the run's `context`.
    reads_context: bool,
}

/// Expressions longer than this are refused at load: a long one is a program, not a
/// formula, and the CEL parser recurses over it.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024;
/// How deep an expression's syntax tree may go. CEL evaluation recurses once per level, and
/// a run evaluates on a worker thread with a small stack. cel-go's parser allows 250.
pub const MAX_DEPTH: u32 = 250;
/// Nested loops allowed in one expression (`[1,2].all(x, [3].all(y, ...))` is two).
pub const MAX_LOOP_NESTING: u32 = 3;
/// The most loop iterations an expression may be estimated to take: the number of values
/// it reads raised to its loop nesting. About a second of CEL on one core.
pub const MAX_COST: u128 = 20_000_000;

/// The depth of an expression's tree and the deepest nesting of loops in it, found
/// without descending further than [`MAX_DEPTH`] (so the check itself cannot overflow).
#[derive(Default, Clone, Copy)]
struct Shape {
    depth: u32,
    loops: u32,
}

impl Shape {
    fn of(expr: &IdedExpr, level: u32) -> Shape {
        if level > MAX_DEPTH {
            return Shape {
                depth: level,
                loops: 0,
            };
        }
        let mut inner = Shape::default();
        let mut visit = |e: &IdedExpr| {
            let s = Shape::of(e, level + 1);
            inner.depth = inner.depth.max(s.depth);
            inner.loops = inner.loops.max(s.loops);
        };
        let mut is_loop = false;
        match &expr.expr {
            Ast::Select(select) => visit(&select.operand),
            Ast::Call(call) => {
                if let Some(target) = &call.target {
                    visit(target);
                }
                call.args.iter().for_each(&mut visit);
            }
            Ast::List(list) => list.elements.iter().for_each(&mut visit),
            Ast::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(e) => {
                            visit(&e.key);
                            visit(&e.value);
                        }
                        EntryExpr::StructField(f) => visit(&f.value),
                    }
                }
            }
            Ast::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        visit(&f.value);
                    }
                }
            }
            Ast::Comprehension(c) => {
                is_loop = true;
                visit(&c.iter_range);
                visit(&c.accu_init);
                visit(&c.loop_cond);
                visit(&c.loop_step);
                visit(&c.result);
            }
            Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => {}
        }
        Shape {
            depth: inner.depth.max(level),
            loops: inner.loops + u32::from(is_loop),
        }
    }
}

/// How many JSON values `value` holds, counting itself; stops counting past `cap`.
fn value_count(value: &Value, cap: u128) -> u128 {
    let mut count: u128 = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        count += 1;
        if count > cap {
            break;
        }
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.source)
            .finish()
    }
}

/// Why an expression failed to compile.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: String,
    /// Where in the expression the problem is: a byte offset into its source.
    pub at: Option<usize>,
}

/// Why an expression failed when evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{source_text}` failed: {message}")]
pub struct EvalError {
    /// The expression.
    pub source_text: String,
    /// What went wrong.
    pub message: String,
}

/// The CEL environment graphs use (standard library and string helpers), for other crates
/// that compile CEL of their own (agent instruction templates).
pub fn cel_env() -> &'static Arc<Env> {
    env()
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // The string helpers (lowerAscii, replace, split, ...) are part of the language users
        // expect; failing to add them only loses those helpers.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
}

impl Expr {
    /// Compiles `source`; `channels` resolves `state.NAME` references.
    pub fn compile(
        source: &str,
        scope: Scope,
        channels: &dyn Fn(&str) -> Option<ChannelId>,
    ) -> Result<Expr, CompileError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(CompileError {
                message: format!(
                    "the expression is {} bytes long; the limit is {MAX_SOURCE_BYTES}",
                    source.len()
                ),
                help: "split the work over several nodes or channels, or do it in a tool".into(),
                at: None,
            });
        }
        let program = env().compile(source).map_err(|errors| CompileError {
            message: format!("CEL syntax error: {}", first_line(&errors.to_string())),
            help: "expressions are CEL, e.g. `state.count + 1`, `state.lead.score >= 0.5`, `[item * 2]`".into(),
            at: errors
                .errors
                .first()
                .and_then(|e| byte_at_line_col(source, e.pos.0, e.pos.1)),
        })?;
        let shape = Shape::of(program.expression(), 0);
        if shape.depth > MAX_DEPTH {
            return Err(CompileError {
                message: format!(
                    "the expression nests more than {MAX_DEPTH} operations deep (evaluating it could overflow the stack)"
                ),
                help: "split it over several nodes or channels, e.g. sum a list with a reducer `add` channel".into(),
                at: None,
            });
        }
        if shape.loops > MAX_LOOP_NESTING {
            return Err(CompileError {
                message: format!(
                    "the expression nests {} loops (`all`, `exists`, `map`, `filter`); the limit is {MAX_LOOP_NESTING}",
                    shape.loops
                ),
                help: "nested loops grow as the list size to that power; precompute an index in a tool or an earlier node".into(),
                at: None,
            });
        }
        let mut refs = References::default();
        refs.walk(program.expression(), &mut Vec::new());
        for (name, id) in &refs.free {
            // CEL's type names, for `type(x) == int`.
            const TYPES: &[&str] = &[
                "int",
                "uint",
                "double",
                "string",
                "bool",
                "bytes",
                "list",
                "map",
                "null_type",
                "type",
            ];
            let allowed = TYPES.contains(&name.as_str())
                // The run's context (LangGraph's runtime context / `configurable`).
                || name == "context"
                || match scope {
                    Scope::State => name == "state",
                    Scope::Item => matches!(name.as_str(), "state" | "item" | "index"),
                    Scope::Answer => matches!(name.as_str(), "state" | "item" | "index" | "answer"),
                };
            if !allowed {
                let help = if matches!(name.as_str(), "item" | "index") {
                    "`item` and `index` exist only in a node with `for_each` or one that receives work items (named in a `goto` list)".to_string()
                } else {
                    format!("read channels through `state`, e.g. `state.{name}`")
                };
                return Err(CompileError {
                    message: format!("unknown variable `{name}` in `{source}`"),
                    help,
                    at: node_start(&program, source, *id),
                });
            }
        }
        let mut reads = Vec::new();
        for (field, id) in &refs.state_fields {
            match channels(field) {
                Some(id) => {
                    if !reads.contains(&id) {
                        reads.push(id)
                    }
                }
                None => {
                    return Err(CompileError {
                        message: format!("`state.{field}` in `{source}` is not a declared channel"),
                        help: format!(
                            "declare it in [state], e.g. `{field} = {{ type = \"any\" }}`"
                        ),
                        at: field_start(&program, source, *id),
                    });
                }
            }
        }
        Ok(Expr {
            source: Arc::from(source),
            loops: shape.loops,
            reads_context: refs.free.iter().any(|(name, _)| name == "context"),
            program: Arc::new(program),
            reads: if refs.whole_state {
                None
            } else {
                Some(reads.into_boxed_slice())
            },
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The channels this expression reads, or `None` when it reads the whole state.
    pub fn reads(&self) -> Option<&[ChannelId]> {
        self.reads.as_deref()
    }

    /// Evaluates against `state`, with `item`/`index` bound when given.
    pub fn eval(
        &self,
        state: &dyn StateReader,
        item: Option<(&Value, usize)>,
    ) -> Result<Value, EvalError> {
        let cel = self.eval_cel(state, item, None)?;
        cel_to_json(&cel).map_err(|message| self.error(message))
    }

    /// Evaluates with `answer` bound too (an `ask` node's question and check).
    pub fn eval_answer(
        &self,
        state: &dyn StateReader,
        item: Option<(&Value, usize)>,
        answer: Option<&Value>,
    ) -> Result<Value, EvalError> {
        let cel = self.eval_cel(state, item, answer)?;
        cel_to_json(&cel).map_err(|message| self.error(message))
    }

    /// Evaluates to a boolean (edge conditions).
    pub fn eval_bool(&self, state: &dyn StateReader) -> Result<bool, EvalError> {
        match self.eval_cel(state, None, None)? {
            Cel::Bool(b) => Ok(b),
            other => Err(self.error(format!("a condition must be true or false, got {other:?}"))),
        }
    }

    /// Refuses to run nested loops whose estimated cost (values read, to the power of the
    /// loop nesting) is over [`MAX_COST`]: CEL cannot be interrupted once it runs.
    fn check_cost(
        &self,
        state: &dyn StateReader,
        item: Option<(&Value, usize)>,
    ) -> Result<(), EvalError> {
        let root = (MAX_COST as f64).powf(1.0 / f64::from(self.loops)).ceil() as u128;
        let mut values: u128 = item.map_or(0, |(v, _)| value_count(v, root));
        let all: Vec<ChannelId>;
        let ids: &[ChannelId] = match &self.reads {
            Some(ids) => ids,
            None => {
                all = (0..state.channel_count() as ChannelId).collect();
                &all
            }
        };
        for &id in ids {
            if values > root {
                break;
            }
            values += state.json_value(id).map_or(1, |v| value_count(v, root));
        }
        let cost = values.saturating_pow(self.loops);
        if cost > MAX_COST {
            return Err(self.error(format!(
                "{} nested loops over about {values} values would take about {cost} steps; the limit is {MAX_COST}",
                self.loops
            )));
        }
        Ok(())
    }

    fn eval_cel(
        &self,
        state: &dyn StateReader,
        item: Option<(&Value, usize)>,
        answer: Option<&Value>,
    ) -> Result<Cel, EvalError> {
        if self.loops >= 2 {
            self.check_cost(state, item)?;
        }
        let mut map: HashMap<Key, Cel> = HashMap::new();
        match &self.reads {
            Some(ids) => {
                map.reserve(ids.len());
                for &id in ids.iter() {
                    map.insert(Key::String(state.channel_name(id)), state.cel_value(id));
                }
            }
            None => {
                for id in 0..state.channel_count() as ChannelId {
                    map.insert(Key::String(state.channel_name(id)), state.cel_value(id));
                }
            }
        }
        let mut ctx = Context::with_env(Arc::clone(env()));
        ctx.add_variable_from_value("state", Cel::Map(CelMap { map: Arc::new(map) }));
        if let Some((value, index)) = item {
            ctx.add_variable_from_value("item", json_to_cel(value));
            ctx.add_variable_from_value("index", Cel::Int(index as i64));
        }
        if let Some(answer) = answer {
            ctx.add_variable_from_value("answer", json_to_cel(answer));
        }
        if self.reads_context {
            ctx.add_variable_from_value(
                "context",
                state.context().unwrap_or_else(|| {
                    Cel::Map(CelMap {
                        map: Arc::new(HashMap::new()),
                    })
                }),
            );
        }
        self.program
            .execute(&ctx)
            .map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, message: String) -> EvalError {
        EvalError {
            source_text: self.source.to_string(),
            message,
        }
    }
}

/// The byte offset of 1-based `line` and 0-based character `col` in `source`.
fn byte_at_line_col(source: &str, line: isize, col: isize) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let col = usize::try_from(col).ok()?;
    let start: usize = source.split_inclusive('\n').take(line).map(str::len).sum();
    let rest = source.get(start..)?;
    Some(start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i))
}

/// Where the syntax node `id` starts, as a byte offset (the parser counts characters).
fn node_start(program: &Program, source: &str, id: u64) -> Option<usize> {
    let (start, _) = program.source_info().offset_for(id)?;
    char_to_byte(source, start as usize)
}

/// Where the field of the select node `id` (`state.FIELD`) is written: after its dot.
fn field_start(program: &Program, source: &str, id: u64) -> Option<usize> {
    let (start, _) = program.source_info().offset_for(id)?;
    let from = char_to_byte(source, start as usize)?;
    let rest = source.get(from..)?;
    let Some(dot) = rest.find('.') else {
        return Some(from);
    };
    let after = &rest[dot + 1..];
    Some(from + dot + 1 + (after.len() - after.trim_start().len()))
}

fn char_to_byte(source: &str, chars: usize) -> Option<usize> {
    source
        .char_indices()
        .nth(chars)
        .map(|(i, _)| i)
        .or((chars == source.chars().count()).then_some(source.len()))
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// Read access to channel values, converted to CEL on demand.
pub trait StateReader {
    /// How many channels there are.
    fn channel_count(&self) -> usize;
    /// A channel's name.
    fn channel_name(&self, id: ChannelId) -> Arc<String>;
    /// A channel's value as CEL.
    fn cel_value(&self, id: ChannelId) -> Cel;
    /// The channel's JSON value, where the reader has it (for cost estimates).
    fn json_value(&self, id: ChannelId) -> Option<&Value>;
    /// The run's context (`context` in expressions), when the run was given one.
    fn context(&self) -> Option<Cel> {
        None
    }
}

#[derive(Default)]
struct References {
    /// `state.NAME` reads, with the id of their select node.
    state_fields: Vec<(String, u64)>,
    whole_state: bool,
    /// Free variables, with the id of their first use.
    free: Vec<(String, u64)>,
}

impl References {
    fn walk(&mut self, expr: &IdedExpr, bound: &mut Vec<String>) {
        match &expr.expr {
            Ast::Select(select) => {
                if let Ast::Ident(name) = &select.operand.expr
                    && name == "state"
                    && !bound.iter().any(|b| b == "state")
                {
                    self.state_fields.push((select.field.clone(), expr.id));
                    return;
                }
                self.walk(&select.operand, bound);
            }
            Ast::Ident(name) => {
                if bound.iter().any(|b| b == name) {
                    return;
                }
                if name == "state" {
                    self.whole_state = true;
                }
                if !self.free.iter().any(|(n, _)| n == name) {
                    self.free.push((name.clone(), expr.id));
                }
            }
            Ast::Call(call) => {
                if let Some(target) = &call.target {
                    self.walk(target, bound);
                }
                for arg in &call.args {
                    self.walk(arg, bound);
                }
            }
            Ast::List(list) => {
                for element in &list.elements {
                    self.walk(element, bound);
                }
            }
            Ast::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(e) => {
                            self.walk(&e.key, bound);
                            self.walk(&e.value, bound);
                        }
                        EntryExpr::StructField(f) => self.walk(&f.value, bound),
                    }
                }
            }
            Ast::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value, bound);
                    }
                }
            }
            Ast::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    bound.push(v.clone());
                }
                bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond, bound);
                self.walk(&c.loop_step, bound);
                self.walk(&c.result, bound);
                bound.truncate(depth);
            }
            Ast::Literal(_) | Ast::Unspecified => {}
        }
    }
}

/// Converts JSON to a CEL value. Integers stay integers, so `state.count + 1` works.
pub fn json_to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cel::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cel::UInt(u)
            } else {
                Cel::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(json_to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<Key, Cel> = map
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Cel::Map(CelMap { map: Arc::new(map) })
        }
    }
}

/// Converts a CEL result back to JSON. Map keys are sorted so results are deterministic.
pub fn cel_to_json(value: &Cel) -> Result<Value, String> {
    Ok(match value {
        Cel::Null => Value::Null,
        Cel::Bool(b) => Value::Bool(*b),
        Cel::Int(i) => Value::from(*i),
        Cel::UInt(u) => Value::from(*u),
        Cel::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} is not a JSON number"))?,
        Cel::String(s) => Value::String(s.as_str().to_owned()),
        Cel::Bytes(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        Cel::List(items) => Value::Array(items.iter().map(cel_to_json).collect::<Result<_, _>>()?),
        Cel::Map(map) => {
            let mut entries: Vec<(String, Value)> = Vec::with_capacity(map.map.len());
            for (key, value) in map.map.iter() {
                let key = match key {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                entries.push((key, cel_to_json(value)?));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect::<Map<String, Value>>())
        }
        other => return Err(format!("{other:?} has no JSON form")),
    })
}
