//! Subgraph tasks: the child graph runs on its own thread, and what it changed in shared
//! channels is written back to the parent.

use super::*;

/// What the parent receives for a shared channel the subgraph changed: the change, expressed
/// so the parent's reducer folds it once (the appended tail, the added amount).
pub(super) fn write_back(
    reducer: crate::channel::Reducer,
    before: &Value,
    after: &Value,
) -> Option<Value> {
    use crate::channel::Reducer;
    match reducer {
        Reducer::Replace | Reducer::Merge => Some(after.clone()),
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
    ctx: &NodeContext,
    saver: Option<Arc<dyn Checkpointer>>,
) -> Result<JobOutput, JobError> {
    // The child thread is named after the parent task, so a resumed parent finds it again.
    let child_thread = format!("{}/{}@{}", ctx.thread_id, ctx.task_id, ctx.checkpoint_id);
    let mut runner = Runner::new(Arc::clone(graph));
    // The parent's lease covers its child threads: a claim left on one is a stale attempt's.
    let mut request = RunRequest::new()
        .thread(child_thread.clone())
        .takeover(true);
    match &saver {
        Some(saver) => {
            runner = runner.with_checkpointer(Arc::clone(saver));
            let existing = saver.thread(&child_thread).await.ok().flatten();
            match (&ctx.resume, existing.map(|t| t.status)) {
                (Some(value), Some(ThreadStatus::Interrupted)) => {
                    request = request.resume(value.clone())
                }
                (_, Some(ThreadStatus::Running | ThreadStatus::Failed)) => {}
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
        RunStatus::Done => Ok(JobOutput::Subgraph(outcome.state, input.clone())),
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
