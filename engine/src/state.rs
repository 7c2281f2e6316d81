//! The values of a run's channels, with CEL conversions cached until a channel changes.

use std::sync::{Arc, OnceLock};

use cel::Value as Cel;
use serde_json::{Map, Value};

use crate::checkpoint::{ChannelDelta, CheckpointRecord};
use crate::expr::{StateReader, json_to_cel};
use crate::graph::{ChannelId, Graph};

pub(crate) struct State {
    pub values: Vec<Value>,
    cel: Vec<OnceLock<Cel>>,
    names: Vec<Arc<String>>,
    /// The run's context as CEL, converted once per run.
    context: Option<Cel>,
}

impl State {
    pub(crate) fn new(graph: &Graph) -> Self {
        State {
            values: graph.channels.iter().map(|c| c.default.clone()).collect(),
            cel: graph.channels.iter().map(|_| OnceLock::new()).collect(),
            names: graph.channel_names.clone(),
            context: None,
        }
    }

    /// Makes `context` readable as `context` in expressions for the rest of the run.
    pub(crate) fn set_context(&mut self, context: &Value) {
        self.context = Some(json_to_cel(context));
    }

    /// Rebuilds the state at the last record of `chain` (which starts at a snapshot or at the
    /// thread's first checkpoint).
    pub(crate) fn rebuild(graph: &Graph, chain: &[CheckpointRecord]) -> Result<Self, String> {
        let mut state = State::new(graph);
        for record in chain {
            if let Some(snapshot) = &record.snapshot {
                for (name, value) in snapshot {
                    if let Some(id) = graph.channel_id(name) {
                        state.values[id as usize] = value.clone();
                    }
                }
            }
            for delta in &record.deltas {
                state.apply_delta(graph, delta)?;
            }
        }
        Ok(state)
    }

    pub(crate) fn apply_delta(
        &mut self,
        graph: &Graph,
        delta: &ChannelDelta,
    ) -> Result<(), String> {
        match delta {
            ChannelDelta::Set { channel, value } => {
                if let Some(id) = graph.channel_id(channel) {
                    self.set(id, value.clone());
                }
            }
            ChannelDelta::Reduce { channel, writes } => {
                if let Some(id) = graph.channel_id(channel) {
                    let reducer = &graph.channels[id as usize].reducer;
                    for w in writes {
                        reducer
                            .apply(&mut self.values[id as usize], w.clone())
                            .map_err(|e| {
                                format!("stored write to `{channel}` does not fold: {e}")
                            })?;
                    }
                    self.cel[id as usize] = OnceLock::new();
                }
            }
        }
        Ok(())
    }

    pub(crate) fn set(&mut self, id: ChannelId, value: Value) {
        self.values[id as usize] = value;
        self.cel[id as usize] = OnceLock::new();
    }

    /// Folds `value` into channel `ch` through its reducer, noting in `undo` how to take it
    /// back (`scratch` is reused between calls); `Err` says why the write does not fit.
    /// Whatever was changed before an error is noted too, so `undo` restores it.
    pub(crate) fn fold_logged(
        &mut self,
        graph: &Graph,
        ch: ChannelId,
        value: Value,
        undo: &mut Vec<(ChannelId, crate::channel::Undo)>,
        scratch: &mut Vec<crate::channel::Undo>,
    ) -> Result<(), String> {
        let channel = &graph.channels[ch as usize];
        let slot = &mut self.values[ch as usize];
        let folded = channel.reducer.apply_undoable(slot, value, scratch);
        undo.extend(scratch.drain(..).map(|u| (ch, u)));
        self.invalidate(ch);
        folded.map_err(|e| e.to_string())?;
        if !channel.ty.accepts(&self.values[ch as usize]) {
            return Err(format!(
                "the result is not of type {}",
                crate::graph::type_name(channel.ty)
            ));
        }
        Ok(())
    }

    /// Takes back folds noted by [`crate::channel::Reducer::apply_undoable`], newest first.
    pub(crate) fn undo(&mut self, log: &mut Vec<(ChannelId, crate::channel::Undo)>) {
        while let Some((id, undo)) = log.pop() {
            undo.revert(&mut self.values[id as usize]);
            self.invalidate(id);
        }
    }

    pub(crate) fn invalidate(&mut self, id: ChannelId) {
        self.cel[id as usize] = OnceLock::new();
    }

    pub(crate) fn to_json(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// The state as one JSON object, moving the values out rather than copying them.
    pub(crate) fn into_json(self) -> Value {
        Value::Object(
            self.names
                .iter()
                .map(|n| n.as_str().to_owned())
                .zip(self.values)
                .collect(),
        )
    }

    pub(crate) fn to_map(&self) -> Map<String, Value> {
        self.names
            .iter()
            .zip(&self.values)
            .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
            .collect()
    }
}

impl StateReader for State {
    fn channel_count(&self) -> usize {
        self.values.len()
    }

    fn channel_name(&self, id: ChannelId) -> Arc<String> {
        Arc::clone(&self.names[id as usize])
    }

    fn json_value(&self, id: ChannelId) -> Option<&Value> {
        self.values.get(id as usize)
    }

    fn cel_value(&self, id: ChannelId) -> Cel {
        self.cel[id as usize]
            .get_or_init(|| json_to_cel(&self.values[id as usize]))
            .clone()
    }

    fn context(&self) -> Option<Cel> {
        self.context.clone()
    }
}
