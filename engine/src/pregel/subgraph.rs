//! Subgraph tasks: the child graph runs on its own thread, and what it changed in shared
//! channels is written back to the parent.

use super::*;

/// What the parent receives for a shared channel the subgraph changed: the change, expressed
/// so the parent's reducer folds it once (the appended tail, the added amount).
pub(super) fn write_back(
    reducer: &crate::channel::Reducer,
    before: &Value,
    after: &Value,
) -> Option<Value> {
    use crate::channel::Reducer;
    match reducer {
        // A Rust reducer's change cannot be told apart from its input: the value is passed.
        Reducer::Replace | Reducer::Merge | Reducer::Custom(_) => Some(after.clone()),
        Reducer::Append | Reducer::Messages => match (before, after) {
            (Value::Array(b), Value::Array(a)) if a.len() >= b.len() && a[..b.len()] == b[..] => {
                let tail = &a[b.len()..];
                if tail.is_empty() {
                    None
                } else {
                    Some(Value::Array(tail.to_vec()))
                }
            }
            _ => Some(after.clone()),
        },
        Reducer::Add => match (before.as_i64(), after.as_i64()) {
            (Some(b), Some(a)) => Some(Value::from(a - b)),
            _ => serde_json::Number::from_f64(
                after.as_f64().unwrap_or(0.0) - before.as_f64().unwrap_or(0.0),
            )
            .map(Value::Number),
        },
    }
}

pub(super) async fn run_subgraph(
    graph: &Arc<Graph>,
    input: &Value,
    stateful: bool,
    ctx: &NodeContext,
    saver: Option<Arc<dyn Checkpointer>>,
) -> Result<JobOutput, JobError> {
    // The child thread is named after the parent task, so a resumed parent finds it again;
    // a stateful child keeps one thread per task across the parent's steps and runs.
    let child_thread = if stateful && saver.is_some() {
        format!("{}/{}", ctx.thread_id, ctx.task_id)
    } else {
        format!("{}/{}@{}", ctx.thread_id, ctx.task_id, ctx.checkpoint_id)
    };
    let mut runner = Runner::new(Arc::clone(graph));
    // What the parent receives is what the child changed after its input was applied: for
    // a stateful child, on top of the state it kept from earlier calls.
    let mut before = input.clone();
    // The parent's lease covers its child threads: a claim left on one is a stale attempt's.
    let mut request = RunRequest::new()
        .thread(child_thread.clone())
        .takeover(true);
    // A subgraph sees its caller's context, as in LangGraph.
    if ctx.context.as_object().is_none_or(|m| !m.is_empty()) {
        request.context = Some(Value::clone(&ctx.context));
    }
    match &saver {
        Some(saver) => {
            runner = runner.with_checkpointer(Arc::clone(saver));
            let existing = saver.thread(&child_thread).await.ok().flatten();
            let waiting = existing.as_ref().and_then(|t| t.interrupt.clone());
            match (&ctx.fresh_answer, existing.map(|t| t.status)) {
                (Some(value), Some(ThreadStatus::Interrupted)) => {
                    request = request.resume(value.clone())
                }
                // The parent step runs again for a sibling's answer: this child still
                // waits on its question.
                (None, Some(ThreadStatus::Interrupted)) if waiting.is_some() => {
                    return Err(JobError::Interrupt(
                        waiting.map_or(Value::Null, |i| i.value),
                    ));
                }
                (_, Some(ThreadStatus::Running | ThreadStatus::Failed)) => {}
                (_, Some(_)) if stateful => {
                    if let Ok(kept) = runner.state(&child_thread, None).await {
                        before = kept.values;
                        fold_input(graph, &mut before, input);
                    }
                    request = request.input(input.clone());
                }
                _ => request = request.input(input.clone()),
            }
        }
        None => request = request.input(input.clone()),
    }
    let events = ctx
        .events
        .as_ref()
        .and_then(|sink| sink.nested(&format!("{}:{}", ctx.node, ctx.task_id)));
    let outcome = runner.run_boxed(request, events).await;
    match outcome.status {
        RunStatus::Done => Ok(JobOutput::Subgraph(outcome.state, before)),
        RunStatus::Interrupted => Err(JobError::Interrupt(
            outcome.interrupt.map_or(Value::Null, |i| i.value),
        )),
        RunStatus::Failed => Err(JobError::Failed {
            message: format!(
                "subgraph `{}`: {}",
                graph.name,
                outcome.error.map_or_else(String::new, |e| e.message)
            ),
            attempts: ctx.attempt,
            retryable: false,
        }),
    }
}

/// Folds a run's input into a state object through the graph's reducers, as the run will.
fn fold_input(graph: &Graph, state: &mut Value, input: &Value) {
    let (Value::Object(state), Value::Object(input)) = (state, input) else {
        return;
    };
    for (key, value) in input {
        if let Some(id) = graph.channel_id(key) {
            let slot = state.entry(key.clone()).or_insert(Value::Null);
            let _ = graph.channels[id as usize]
                .reducer
                .apply(slot, value.clone());
        }
    }
}
