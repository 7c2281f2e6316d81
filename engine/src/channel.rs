//! State channels: a declared type, a default value and a reducer that folds writes into the
//! current value.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The JSON type a channel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    /// Text.
    String,
    /// A whole number (64-bit).
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A list.
    Array,
    /// A JSON object.
    Object,
    /// A chat transcript: an array of message objects, reduced with [`Reducer::Messages`].
    Messages,
    /// Any JSON value.
    Any,
}

impl ChannelType {
    /// The type names a `[state]` channel may give, for messages.
    pub const NAMES: &'static str =
        "string, integer, number, boolean, array, object, messages, any";

    /// Whether `value` is acceptable for this type. `null` is accepted everywhere: it is the
    /// value of a channel nobody has written yet.
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) | (ChannelType::Any, _) => true,
            (ChannelType::String, Value::String(_)) => true,
            // Integers are 64-bit signed, as in CEL: a larger one would fail in arithmetic.
            (ChannelType::Integer, Value::Number(n)) => n.is_i64(),
            (ChannelType::Number, Value::Number(_)) => true,
            (ChannelType::Boolean, Value::Bool(_)) => true,
            (ChannelType::Array | ChannelType::Messages, Value::Array(_)) => true,
            (ChannelType::Object, Value::Object(_)) => true,
            _ => false,
        }
    }

    /// The reducer a channel of this type gets when none is declared.
    pub fn default_reducer(self) -> Reducer {
        match self {
            ChannelType::Messages => Reducer::Messages,
            _ => Reducer::Replace,
        }
    }

    /// The value a channel of this type starts with when no default is declared.
    pub fn zero(self) -> Value {
        match self {
            ChannelType::Array | ChannelType::Messages => Value::Array(Vec::new()),
            ChannelType::Object => Value::Object(Map::new()),
            _ => Value::Null,
        }
    }
}

/// A reducer written in Rust: folds one write into the current value. It must be
/// deterministic: checkpoints store the writes and replay them through it.
pub type ReduceFn = dyn Fn(&mut Value, Value) -> Result<(), String> + Send + Sync;

/// A reducer registered by name ([`crate::Registry::register_reducer`]) and named in
/// `[state]` (`reducer = "NAME"`). Until the graph compiles against a registry it is only
/// a name.
#[derive(Clone)]
pub struct CustomReducer {
    /// Its registered name.
    pub name: std::sync::Arc<str>,
    pub(crate) fold: Option<std::sync::Arc<ReduceFn>>,
}

impl CustomReducer {
    /// A reducer named `name`, resolved when the graph compiles.
    pub fn named(name: impl Into<std::sync::Arc<str>>) -> Self {
        CustomReducer {
            name: name.into(),
            fold: None,
        }
    }
}

impl std::fmt::Debug for CustomReducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomReducer({})", self.name)
    }
}

impl PartialEq for CustomReducer {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CustomReducer {}

/// How the writes of a step are folded into a channel's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reducer {
    /// The write becomes the value; two writes in one step are a conflict.
    Replace,
    /// Arrays are concatenated; a non-array write is pushed as one element.
    Append,
    /// Objects are merged shallowly; a `null` field deletes that key.
    Merge,
    /// Numbers are added.
    Add,
    /// Messages are appended; a message whose `id` is already present replaces it.
    Messages,
    /// A reducer written in Rust, registered by name.
    #[serde(skip)]
    Custom(CustomReducer),
}

impl Reducer {
    /// The reducer names a `[state]` channel may give, for messages.
    pub const NAMES: &'static str = "replace, append, merge, add, messages";

    /// Whether this reducer can fold values of type `ty`.
    pub fn fits(&self, ty: ChannelType) -> bool {
        use ChannelType as T;
        match self {
            Reducer::Replace => true,
            Reducer::Append => matches!(ty, T::Array | T::Messages | T::Any),
            Reducer::Merge => matches!(ty, T::Object | T::Any),
            Reducer::Add => matches!(ty, T::Integer | T::Number | T::String | T::Any),
            Reducer::Messages => matches!(ty, T::Messages | T::Array | T::Any),
            Reducer::Custom(_) => true,
        }
    }

    /// Whether checkpoints store this channel's writes rather than its whole value.
    pub fn stores_delta(&self) -> bool {
        !matches!(self, Reducer::Replace)
    }

    /// Folds `update` into `current`.
    pub fn apply(&self, current: &mut Value, update: Value) -> Result<(), ReduceError> {
        self.fold(current, update, None)
    }

    /// Folds `update` into `current`, noting in `undo` how to take the fold back. What is
    /// noted is what the fold displaced (moved, not copied), or a length to cut back to.
    pub fn apply_undoable(
        &self,
        current: &mut Value,
        update: Value,
        undo: &mut Vec<Undo>,
    ) -> Result<(), ReduceError> {
        self.fold(current, update, Some(undo))
    }

    fn fold(
        &self,
        current: &mut Value,
        update: Value,
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<(), ReduceError> {
        let mut log = UndoLog(undo);
        let logging = log.0.is_some();
        let mut note = |u: Undo| log.note(u);
        // LangGraph's `Overwrite`: the value replaces the channel's, bypassing the reducer.
        let update = match overwrite(update) {
            Ok(value) => {
                note(Undo::Restore(std::mem::replace(current, value)));
                return Ok(());
            }
            Err(update) => update,
        };
        match self {
            Reducer::Replace => {
                note(Undo::Restore(std::mem::replace(current, update)));
                Ok(())
            }
            Reducer::Append => {
                let was_null = current.is_null();
                let list = as_array(current)?;
                note(if was_null {
                    Undo::Restore(Value::Null)
                } else {
                    Undo::Truncate(list.len())
                });
                match update {
                    Value::Array(items) => list.extend(items),
                    other => list.push(other),
                }
                Ok(())
            }
            Reducer::Merge => {
                let Value::Object(patch) = update else {
                    return Err(ReduceError::Expected {
                        what: "an object to merge",
                        got: kind(&update),
                    });
                };
                let was_null = current.is_null();
                if was_null {
                    *current = Value::Object(Map::new());
                }
                let Value::Object(target) = current else {
                    return Err(ReduceError::Expected {
                        what: "an object channel",
                        got: kind(current),
                    });
                };
                if target.is_empty() {
                    // The first write (often a run's whole input): take the object as it is.
                    note(Undo::Restore(if was_null {
                        Value::Null
                    } else {
                        Value::Object(Map::new())
                    }));
                    let mut patch = patch;
                    patch.retain(|_, v| !v.is_null());
                    *target = patch;
                    return Ok(());
                }
                for (key, value) in patch {
                    if value.is_null() {
                        if let Some(old) = target.shift_remove(&key) {
                            note(Undo::Key(key, Some(old)));
                        }
                    } else if logging {
                        let old = target.insert(key.clone(), value);
                        note(Undo::Key(key, old));
                    } else {
                        target.insert(key, value);
                    }
                }
                Ok(())
            }
            Reducer::Add => {
                if logging {
                    note(Undo::Restore(current.clone()));
                }
                add(current, &update)
            }
            Reducer::Custom(custom) => {
                let Some(fold) = &custom.fold else {
                    return Err(ReduceError::Custom {
                        message: format!("reducer `{}` is not registered", custom.name),
                    });
                };
                if logging {
                    note(Undo::Restore(current.clone()));
                }
                fold(current, update).map_err(|message| ReduceError::Custom {
                    message: format!("reducer `{}`: {message}", custom.name),
                })
            }
            Reducer::Messages => {
                let was_null = current.is_null();
                let list = as_array(current)?;
                note(if was_null {
                    Undo::Restore(Value::Null)
                } else {
                    Undo::Truncate(list.len())
                });
                match update {
                    Value::Array(items) => {
                        for item in items {
                            upsert_message(list, item, &mut note)?;
                        }
                    }
                    other => upsert_message(list, other, &mut note)?,
                }
                Ok(())
            }
        }
    }
}

struct UndoLog<'a>(Option<&'a mut Vec<Undo>>);

impl UndoLog<'_> {
    fn note(&mut self, undo: Undo) {
        if let Some(log) = self.0.as_deref_mut() {
            log.push(undo);
        }
    }
}

/// One step back from a fold (see [`Reducer::apply_undoable`]); undone newest first.
#[derive(Debug)]
pub enum Undo {
    /// Put this value back whole.
    Restore(Value),
    /// Cut the array back to this length.
    Truncate(usize),
    /// Put this element back at this index of the array.
    Element(usize, Value),
    /// Put this element back at this index of the array, moving the rest up.
    Insert(usize, Value),
    /// Put this key's old value back, or remove the key when it had none.
    Key(String, Option<Value>),
}

impl Undo {
    /// Takes the write back from `current`.
    pub fn revert(self, current: &mut Value) {
        match (self, current) {
            (Undo::Restore(old), current) => *current = old,
            (Undo::Truncate(len), Value::Array(list)) => list.truncate(len),
            (Undo::Element(i, old), Value::Array(list)) => {
                if let Some(slot) = list.get_mut(i) {
                    *slot = old;
                }
            }
            (Undo::Insert(i, old), Value::Array(list)) => list.insert(i.min(list.len()), old),
            (Undo::Key(key, Some(old)), Value::Object(map)) => {
                map.insert(key, old);
            }
            (Undo::Key(key, None), Value::Object(map)) => {
                map.shift_remove(&key);
            }
            // A later fold replaced the value whole; its own entry restored it first.
            _ => {}
        }
    }
}

fn as_array(current: &mut Value) -> Result<&mut Vec<Value>, ReduceError> {
    if current.is_null() {
        *current = Value::Array(Vec::new());
    }
    match current {
        Value::Array(list) => Ok(list),
        other => Err(ReduceError::Expected {
            what: "an array channel",
            got: kind(other),
        }),
    }
}

fn add(current: &mut Value, update: &Value) -> Result<(), ReduceError> {
    if let Value::String(tail) = update {
        return match current {
            Value::Null => {
                *current = update.clone();
                Ok(())
            }
            Value::String(text) => {
                text.push_str(tail);
                Ok(())
            }
            other => Err(ReduceError::Expected {
                what: "a string channel to concatenate to",
                got: kind(other),
            }),
        };
    }
    let Value::Number(delta) = update else {
        return Err(ReduceError::Expected {
            what: "a number to add or a string to concatenate",
            got: kind(update),
        });
    };
    let sum = match current {
        Value::Null => Value::Number(delta.clone()),
        Value::Number(base) => match (base.as_i64(), delta.as_i64()) {
            (Some(a), Some(b)) => Value::from(a.checked_add(b).ok_or(ReduceError::Overflow)?),
            _ => {
                let (a, b) = (base.as_f64().unwrap_or(0.0), delta.as_f64().unwrap_or(0.0));
                serde_json::Number::from_f64(a + b)
                    .map(Value::Number)
                    .ok_or(ReduceError::Overflow)?
            }
        },
        other => {
            return Err(ReduceError::Expected {
                what: "a number channel",
                got: kind(other),
            });
        }
    };
    *current = sum;
    Ok(())
}

/// Appends a message, or replaces the message with the same `id`. A message without an id
/// gets its position as id, so replaying the same writes always yields the same transcript.
fn upsert_message(
    list: &mut Vec<Value>,
    message: Value,
    note: &mut impl FnMut(Undo),
) -> Result<(), ReduceError> {
    let mut message = match message {
        Value::String(text) => {
            let mut object = Map::new();
            object.insert("role".into(), Value::from("user"));
            object.insert("content".into(), Value::String(text));
            object
        }
        Value::Object(object) => object,
        other => {
            return Err(ReduceError::Expected {
                what: "a message object or string",
                got: kind(&other),
            });
        }
    };
    let id = match message.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if is_removal(&message) {
        return remove_message(list, id, note);
    }
    match id {
        Some(id) => {
            let existing = list.iter().rposition(|m| match m.get("id") {
                Some(Value::String(other)) => *other == id,
                Some(Value::Number(n)) => n.to_string() == id,
                _ => false,
            });
            match existing {
                Some(i) => {
                    let old = std::mem::replace(&mut list[i], Value::Object(message));
                    note(Undo::Element(i, old));
                }
                None => list.push(Value::Object(message)),
            }
        }
        None => {
            message.insert("id".into(), Value::from(format!("m{}", list.len())));
            list.push(Value::Object(message));
        }
    }
    Ok(())
}

/// The id that removes every message (LangGraph's `REMOVE_ALL_MESSAGES`).
pub const REMOVE_ALL_MESSAGES: &str = "__remove_all__";

/// LangGraph's `RemoveMessage`: `{"type": "remove", "id": ...}` (or `"role": "remove"`).
fn is_removal(message: &Map<String, Value>) -> bool {
    [message.get("type"), message.get("role")]
        .into_iter()
        .flatten()
        .any(|v| v.as_str() == Some("remove"))
}

/// Deletes the message with `id`, or every message for [`REMOVE_ALL_MESSAGES`]. Deleting a
/// message that is not there is an error, as in LangGraph.
fn remove_message(
    list: &mut Vec<Value>,
    id: Option<String>,
    note: &mut impl FnMut(Undo),
) -> Result<(), ReduceError> {
    let Some(id) = id else {
        return Err(ReduceError::Removal {
            message: "a removal needs the `id` of the message to delete".into(),
        });
    };
    if id == REMOVE_ALL_MESSAGES {
        note(Undo::Restore(Value::Array(std::mem::take(list))));
        return Ok(());
    }
    let position = list.iter().position(|m| match m.get("id") {
        Some(Value::String(other)) => *other == id,
        Some(Value::Number(n)) => n.to_string() == id,
        _ => false,
    });
    match position {
        Some(i) => {
            let old = list.remove(i);
            note(Undo::Insert(i, old));
            Ok(())
        }
        None => Err(ReduceError::Removal {
            message: format!("there is no message with id `{id}` to delete"),
        }),
    }
}

/// The key of LangGraph's `Overwrite` in JSON: `{"__overwrite__": value}`.
pub const OVERWRITE: &str = "__overwrite__";

/// The value of an overwrite (`{"__overwrite__": v}`, or the serialised dataclass
/// `{"type": "__overwrite__", "value": v}`), or the write unchanged when it is not one.
pub fn overwrite(write: Value) -> Result<Value, Value> {
    if !is_overwrite(&write) {
        return Err(write);
    }
    match write {
        Value::Object(mut map) => Ok(map
            .shift_remove(OVERWRITE)
            .or_else(|| map.shift_remove("value"))
            .unwrap_or(Value::Null)),
        other => Err(other),
    }
}

/// Whether a write is an overwrite (see [`overwrite`]).
pub fn is_overwrite(write: &Value) -> bool {
    match write {
        Value::Object(map) => {
            (map.len() == 1 && map.contains_key(OVERWRITE))
                || (map.get("type").and_then(Value::as_str) == Some(OVERWRITE)
                    && map.contains_key("value"))
        }
        _ => false,
    }
}

/// A name for the JSON kind of `value`, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A write that a reducer could not fold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReduceError {
    /// The write has the wrong type.
    #[error("expected {what}, got {got}")]
    Expected {
        /// What the reducer folds.
        what: &'static str,
        /// What the write was.
        got: &'static str,
    },
    /// An `add` channel's sum left the number range.
    #[error("the sum overflows")]
    Overflow,
    /// A Rust reducer refused the write.
    #[error("{message}")]
    Custom {
        /// Why.
        message: String,
    },
    /// A message removal that cannot be applied.
    #[error("{message}")]
    Removal {
        /// Why.
        message: String,
    },
}

/// A declared state channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: ChannelType,
    /// How writes fold into it.
    pub reducer: Reducer,
    /// Its value before anything writes it.
    pub default: Value,
    /// What a new run's input must give for it.
    pub required: Option<Required>,
}

/// What a new run's input must provide for a channel (`required = true` or a list of
/// fields in `[state]`), checked before any node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// A value other than null.
    Value,
    /// An object holding each of these fields, none null.
    Fields(Vec<String>),
}
