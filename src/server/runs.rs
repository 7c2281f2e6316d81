//! Runs in the background: a queue with at most one active run per thread, a pool of
//! `--max-concurrent-runs`, cancellation, and each run's event log that streams read,
//! join and resume from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::{CancelToken, RunOutcome, RunRequest, RunStatus};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore, watch};

use super::control::{RunRow, RunState, ThreadRow};
use super::wire::{self, Modes, Translator, now_ms};
use super::{App, lock};

/// One event of a run, as the stream sends it.
#[derive(Debug, Clone)]
pub(crate) struct LogEvent {
    /// Its position in the run's log, from 1: the SSE `id`.
    pub(crate) seq: u64,
    pub(crate) event: wire::Name,
    pub(crate) data: Arc<str>,
}

/// Everything a run streamed, kept while the process lives so a dropped stream can resume
/// (`Last-Event-ID`) and a join can replay it.
#[derive(Debug)]
pub(crate) struct RunLog {
    events: Mutex<Vec<LogEvent>>,
    /// What `/wait` and `/join` answer, set as the run ends.
    result: Mutex<Option<Value>>,
    /// (events so far, finished).
    changed: watch::Sender<(usize, bool)>,
}

impl RunLog {
    fn new() -> Arc<Self> {
        Arc::new(RunLog {
            events: Mutex::new(Vec::new()),
            result: Mutex::new(None),
            changed: watch::channel((0, false)).0,
        })
    }

    /// An empty log of a run that has ended.
    pub(crate) fn ended() -> Arc<Self> {
        let log = RunLog::new();
        log.finish();
        log
    }

    pub(crate) fn push(&self, event: impl Into<wire::Name>, data: &Value) {
        let event = event.into();
        let data: Arc<str> = Arc::from(serde_json::to_string(data).unwrap_or_default());
        let len = {
            let Ok(mut events) = self.events.lock() else {
                return;
            };
            let seq = events.len() as u64 + 1;
            events.push(LogEvent { seq, event, data });
            events.len()
        };
        self.changed.send_modify(|s| s.0 = len);
    }

    /// The run's final body for `/wait` and `/join`, once it ended here.
    pub(crate) fn result(&self) -> Option<Value> {
        self.result.lock().ok().and_then(|r| r.clone())
    }

    fn set_result(&self, value: Value) {
        if let Ok(mut r) = self.result.lock() {
            *r = Some(value);
        }
    }

    fn finish(&self) {
        self.changed.send_modify(|s| s.1 = true);
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.changed.borrow().1
    }

    /// Events after position `from` (0: all), and whether the run has finished.
    pub(crate) fn since(&self, from: usize) -> (Vec<LogEvent>, bool) {
        let done = self.changed.borrow().1;
        let events = self
            .events
            .lock()
            .map(|e| e.get(from..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default();
        (events, done)
    }

    pub(crate) fn len(&self) -> usize {
        self.changed.borrow().0
    }

    /// Waits until something is added or the run finishes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<(usize, bool)> {
        self.changed.subscribe()
    }
}

/// What a cancel asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelAction {
    Interrupt,
    Rollback,
    /// The run outlived `--run-timeout`.
    Timeout,
}

/// The queue and the runs in flight.
pub(crate) struct Runs {
    queue: Mutex<Queue>,
    wake: Notify,
    pool: Arc<Semaphore>,
    logs: Mutex<HashMap<String, Arc<RunLog>>>,
    cancels: Mutex<HashMap<String, (CancelToken, Option<CancelAction>)>>,
    /// Woken when any run ends (joins, waits, shutdown).
    ended: watch::Sender<u64>,
    stopping: watch::Sender<bool>,
}

#[derive(Default)]
struct Queue {
    /// Pending runs, oldest first.
    pending: Vec<RunRow>,
    busy_threads: HashSet<String>,
    running: usize,
}

impl Runs {
    pub(crate) fn new(max_concurrent: usize) -> Self {
        let max = max_concurrent.max(1);
        Runs {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            pool: Arc::new(Semaphore::new(max)),
            logs: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            ended: watch::channel(0).0,
            stopping: watch::channel(false).0,
        }
    }

    /// The log of a run (a new one when it has none in this process).
    pub(crate) fn log(&self, run_id: &str) -> Arc<RunLog> {
        match lock(&self.logs) {
            Some(mut logs) => logs
                .entry(run_id.to_string())
                .or_insert_with(RunLog::new)
                .clone(),
            None => RunLog::new(),
        }
    }

    /// Drops a finished run's log after `retention`: a stream can resume or replay it until
    /// then; afterwards a join answers from the stored run and thread.
    pub(crate) fn forget_later(self: &Arc<Self>, run_id: &str, retention: Duration) {
        let runs = Arc::clone(self);
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(retention).await;
            if let Some(mut logs) = lock(&runs.logs)
                && logs.get(&run_id).is_some_and(|l| l.is_finished())
            {
                logs.remove(&run_id);
            }
        });
    }

    /// The log of a run, if this process has one.
    pub(crate) fn existing_log(&self, run_id: &str) -> Option<Arc<RunLog>> {
        lock(&self.logs).and_then(|l| l.get(run_id).cloned())
    }

    /// Queues a pending run.
    pub(crate) fn enqueue(&self, row: RunRow) {
        if let Some(mut q) = lock(&self.queue) {
            q.pending.push(row);
        }
        self.wake.notify_one();
    }

    /// Takes a pending run off the queue (cancelled before it started); says whether it was
    /// there.
    pub(crate) fn dequeue(&self, run_id: &str) -> bool {
        let Some(mut q) = lock(&self.queue) else {
            return false;
        };
        let before = q.pending.len();
        q.pending.retain(|r| r.run_id != run_id);
        before != q.pending.len()
    }

    /// Ends the log of a run cancelled before it started, so its streams and waits end.
    pub(crate) fn finish_pending(&self, run_id: &str) {
        if let Some(log) = self.existing_log(run_id) {
            log.finish();
        }
        self.ended.send_modify(|n| *n += 1);
    }

    /// Cancels a running run; says whether it was running here.
    pub(crate) fn cancel(&self, run_id: &str, action: CancelAction) -> bool {
        let Some(mut cancels) = lock(&self.cancels) else {
            return false;
        };
        match cancels.get_mut(run_id) {
            Some((token, how)) => {
                *how = Some(action);
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// A receiver that changes whenever a run ends.
    pub(crate) fn ended(&self) -> watch::Receiver<u64> {
        self.ended.subscribe()
    }

    /// How many runs are executing.
    pub(crate) fn running(&self) -> usize {
        lock(&self.queue).map_or(0, |q| q.running)
    }

    /// Stop starting runs (shutdown); running ones go on to their end.
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
        self.wake.notify_one();
    }

    /// Takes the next run that may start: the oldest pending one whose thread has no
    /// active run and whose delay has passed. Otherwise how long to wait.
    fn next_ready(&self) -> Result<RunRow, Option<Duration>> {
        let Some(mut q) = lock(&self.queue) else {
            return Err(None);
        };
        let now = now_ms();
        let mut wait: Option<u64> = None;
        let mut blocked: HashSet<&str> = HashSet::new();
        let mut pick = None;
        for (i, row) in q.pending.iter().enumerate() {
            if q.busy_threads.contains(&row.thread_id) || blocked.contains(row.thread_id.as_str()) {
                continue;
            }
            if row.not_before_ms > now {
                // Later runs of this thread wait behind it.
                blocked.insert(&row.thread_id);
                let w = row.not_before_ms - now;
                wait = Some(wait.map_or(w, |x| x.min(w)));
                continue;
            }
            pick = Some(i);
            break;
        }
        match pick {
            Some(i) => {
                let row = q.pending.remove(i);
                q.busy_threads.insert(row.thread_id.clone());
                q.running += 1;
                Ok(row)
            }
            None => Err(wait.map(Duration::from_millis)),
        }
    }

    fn release(&self, thread_id: &str) {
        if let Some(mut q) = lock(&self.queue) {
            q.busy_threads.remove(thread_id);
            q.running = q.running.saturating_sub(1);
        }
        self.ended.send_modify(|n| *n += 1);
        self.wake.notify_one();
    }
}

/// Starts queued runs as the pool allows, until the server stops.
pub(crate) async fn dispatch(app: Arc<App>) {
    let runs = &app.runs;
    let mut stopping = runs.stopping.subscribe();
    loop {
        if *stopping.borrow() {
            return;
        }
        let Ok(permit) = runs.pool.clone().acquire_owned().await else {
            return;
        };
        let row = loop {
            if *stopping.borrow() {
                return;
            }
            match runs.next_ready() {
                Ok(row) => break row,
                Err(wait) => {
                    let wait = wait.unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = runs.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping.changed() => {}
                    }
                }
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let thread_id = row.thread_id.clone();
            execute(&app, row).await;
            app.runs.release(&thread_id);
            drop(permit);
        });
    }
}

/// The run's command, split: `(resume, update, goto)`.
fn command_parts(kwargs: &Value) -> (Option<Value>, Option<Value>, Option<Value>) {
    let Some(cmd) = kwargs.get("command").and_then(Value::as_object) else {
        return (None, None, None);
    };
    // RemoteGraph sends every field of its Command: `goto: []` means no goto.
    let get = |k: &str| {
        cmd.get(k)
            .filter(|v| !v.is_null() && !matches!(v, Value::Array(a) if a.is_empty()))
            .cloned()
    };
    (get("resume"), get("update"), get("goto"))
}

/// Runs one run to its end: status rows, events, thread bookkeeping, webhook.
async fn execute(app: &Arc<App>, mut row: RunRow) {
    let log = app.runs.log(&row.run_id);
    row.status = RunState::Running;
    row.attempt += 1;
    row.updated_at_ms = now_ms();
    if let Err(e) = app.control.put_run(&row).await {
        tracing::error!(run = %row.run_id, "cannot mark the run running: {e}");
    }
    if row.attempt > 1 || log.len() == 0 {
        log.push(
            "metadata",
            &json!({"run_id": row.run_id, "attempt": row.attempt}),
        );
    }
    let token = CancelToken::new();
    if let Some(mut c) = lock(&app.runs.cancels) {
        c.insert(row.run_id.clone(), (token.clone(), None));
    }
    let started_at = now_ms();
    if row.attempt == 1 {
        row.start_checkpoint = match app.checkpointer.thread(&row.thread_id).await {
            Ok(Some(t)) => t.last_checkpoint,
            _ => None,
        };
        if let Err(e) = app.control.put_run(&row).await {
            tracing::error!(run = %row.run_id, "cannot store the run's start: {e}");
        }
    }
    // A run longer than the limit is cancelled at its next await and ends `timeout`.
    let limit = app.options.run_timeout;
    let timer = {
        let runs = app.runs.clone();
        let run_id = row.run_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            runs.cancel(&run_id, CancelAction::Timeout);
        })
    };
    let outcome = run_graph(app, &row, &log, token.clone()).await;
    timer.abort();
    let action = lock(&app.runs.cancels)
        .and_then(|mut c| c.remove(&row.run_id))
        .and_then(|(_, how)| how);
    let (status, rolled_back) = match (&outcome, action) {
        (_, Some(CancelAction::Rollback)) => (RunState::Interrupted, true),
        (_, Some(CancelAction::Interrupt)) => (RunState::Interrupted, false),
        (_, Some(CancelAction::Timeout)) => (RunState::Timeout, false),
        (Ok(o), None) if o.status == RunStatus::Failed => (RunState::Error, false),
        (Ok(_), None) => (RunState::Success, false),
        (Err(_), None) => (RunState::Error, false),
    };
    let error = match &outcome {
        _ if action == Some(CancelAction::Timeout) => Some(json!({
            "error": "TimeoutError",
            "message": format!("the run took longer than {} s (BRAINOPS_RUN_TIMEOUT_SECS)", limit.as_secs()),
        })),
        Ok(o) if action.is_none() => wire::outcome_error(o),
        Ok(_) => None,
        Err(message) => Some(json!({"error": "ValueError", "message": message})),
    };
    // The engine's own failures reached the stream through the translator already.
    if let Some(e) = &error
        && (outcome.is_err() || status == RunState::Timeout)
    {
        log.push("error", e);
    }
    log.set_result(match (&outcome, &error) {
        (_, Some(e)) if matches!(status, RunState::Error | RunState::Timeout) => {
            json!({ "__error__": e })
        }
        (Ok(o), _) => final_values(&row.thread_id, o),
        (Err(_), _) => json!({}),
    });
    if rolled_back {
        rollback(app, &row).await;
    }
    // The thread's record: its graph, and why its last run failed.
    if let Ok(Some(mut thread)) = app.control.thread(&row.thread_id).await {
        thread.graph_id = Some(row.graph_id.clone());
        thread
            .metadata
            .insert("graph_id".into(), Value::String(row.graph_id.clone()));
        thread.metadata.insert(
            "assistant_id".into(),
            Value::String(row.assistant_id.clone()),
        );
        thread.error = if status == RunState::Error {
            error.clone()
        } else {
            None
        };
        thread.updated_at_ms = now_ms();
        if let Err(e) = app.control.put_thread(&thread).await {
            tracing::error!(thread = %thread.thread_id, "cannot update the thread: {e}");
        }
    }
    row.status = status;
    row.updated_at_ms = now_ms();
    // The run is marked finished before its stream closes: the SDK reconnects to a stream
    // that closed while the run still looked active.
    let stored = if rolled_back {
        app.control.delete_run(&row.run_id).await.map(|_| ())
    } else {
        app.control.put_run(&row).await
    };
    if let Err(e) = stored {
        tracing::error!(run = %row.run_id, "cannot store the run's end: {e}");
    }
    if let Some(url) = row.kwargs.get("webhook").and_then(Value::as_str) {
        let values = outcome.as_ref().ok().map(|o| o.state.clone());
        super::webhook::send(app, url, &row, status, started_at, values, error.clone());
    }
    if row.temporary && row.kwargs.get("on_completion").and_then(Value::as_str) != Some("keep") {
        delete_thread_everywhere(app, &row.thread_id).await;
    }
    log.finish();
    // A resumable run's events stay for `Last-Event-ID` and joins; any other run's only
    // long enough for the streams and waits already reading it to finish.
    let resumable = row.kwargs.get("stream_resumable").and_then(Value::as_bool) == Some(true);
    let keep = if resumable {
        app.options.stream_retention
    } else {
        Duration::from_secs(5)
    };
    app.runs.forget_later(&row.run_id, keep);
}

/// Runs the graph for `row`, streaming into `log`. `Err` is a run refused before it started
/// for a reason the engine does not report (a bad command).
async fn run_graph(
    app: &Arc<App>,
    row: &RunRow,
    log: &RunLog,
    token: CancelToken,
) -> Result<RunOutcome, String> {
    let assistant = app
        .assistant(&row.assistant_id)
        .ok_or_else(|| format!("assistant `{}` is gone", row.assistant_id))?;
    let runner = assistant.runner.clone();
    let kwargs = &row.kwargs;
    let (resume, update, goto) = command_parts(kwargs);
    if goto.is_some() {
        return Err("command.goto is not supported yet: this engine routes only along the graph's edges (issue #17)".into());
    }
    if let Some(cp) = kwargs.get("checkpoint_id").and_then(Value::as_str) {
        let id = wire::checkpoint_parse(cp)
            .ok_or_else(|| format!("checkpoint_id `{cp}` is not a checkpoint of this thread"))?;
        runner
            .rewind(&row.thread_id, id)
            .await
            .map_err(|e| e.to_string())?;
    }
    let has_state = matches!(
        app.checkpointer.thread(&row.thread_id).await,
        Ok(Some(t)) if t.last_checkpoint.is_some()
    );
    let mut input = kwargs.get("input").filter(|v| !v.is_null()).cloned();
    if let Some(update) = update {
        let update = update_object(update)?;
        if has_state {
            runner
                .update_state(&row.thread_id, &update)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            // No state yet: the update is the input.
            let mut merged = input
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            merged.extend(update.as_object().cloned().unwrap_or_default());
            input = Some(Value::Object(merged));
        }
    }
    let strings = |key: &str| -> Vec<String> {
        match kwargs.get(key) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    };
    let modes: Vec<String> = strings("stream_mode");
    let modes = Modes::parse(&modes).unwrap_or_default();
    let mut request = RunRequest::new().thread(row.thread_id.clone());
    // No input at a breakpoint (before or after a node) continues past it, as in LangGraph.
    let at_breakpoint = matches!(
        app.checkpointer.thread(&row.thread_id).await,
        Ok(Some(t)) if t.status == engine::ThreadStatus::Interrupted
            && t.interrupt.as_ref().is_some_and(|i| i.kind != engine::InterruptKind::Ask)
    );
    let resume = match (resume, &input) {
        (None, None) if at_breakpoint => Some(Value::Null),
        (resume, _) => resume,
    };
    // New input on a thread that waits drops the question and starts a new run on its
    // state, as LangGraph does.
    if input.is_some()
        && resume.is_none()
        && let Ok(Some(t)) = app.checkpointer.thread(&row.thread_id).await
        && t.status == engine::ThreadStatus::Interrupted
        && let Some(head) = t.last_checkpoint
    {
        runner
            .rewind(&row.thread_id, head)
            .await
            .map_err(|e| e.to_string())?;
    }
    request.input = input;
    request.resume = resume;
    request.cancel = Some(token);
    // A restarted server takes its own runs' threads over: the process that held them is gone.
    request.takeover = row.attempt > 1;
    let bus = app.buses.get(&row.thread_id);
    request.emit_values = modes.values || bus.is_some();
    request.stream_subgraphs =
        kwargs.get("stream_subgraphs").and_then(Value::as_bool) == Some(true);
    request.interrupt_before = strings("interrupt_before");
    request.interrupt_after = strings("interrupt_after");
    let mut translator = Translator::new(
        modes,
        &row.run_id,
        &row.thread_id,
        &row.graph_id,
        &row.assistant_id,
    );
    let mut stream = runner.stream(request);
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        if let Some(bus) = &bus {
            super::protocol::publish_event(bus, &event);
        }
        translator.translate(&event, &mut out);
        for (name, data) in out.drain(..) {
            log.push(name, &data);
        }
    }
    let outcome = stream.outcome().await;
    let cancelled = matches!(
        outcome.error.as_ref().map(|e| &e.detail),
        Some(engine::RunError::Cancelled)
    );
    translator.finish(&outcome, cancelled, &mut out);
    if let Some(bus) = &bus {
        super::protocol::publish_end(bus, &row.thread_id, &row.graph_id, &outcome, cancelled);
    }
    for (name, data) in out.drain(..) {
        log.push(name, &data);
    }
    Ok(outcome)
}

/// The final state as `/wait` answers it: the values, with `__interrupt__` when the run
/// stopped at a question.
fn final_values(thread_id: &str, outcome: &RunOutcome) -> Value {
    let mut state = outcome.state.as_object().cloned().unwrap_or_default();
    if let Some(i) = &outcome.interrupt
        && i.kind == engine::InterruptKind::Ask
    {
        state.insert(
            "__interrupt__".into(),
            Value::Array(wire::interrupts(thread_id, outcome.checkpoint_id, Some(i))),
        );
    }
    Value::Object(state)
}

/// `command.update` as an object: `{k: v}` or `[[k, v], ...]`.
fn update_object(update: Value) -> Result<Value, String> {
    match update {
        Value::Object(_) => Ok(update),
        Value::Array(pairs) => {
            let mut m = Map::new();
            for pair in pairs {
                match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(k), v]) => {
                        m.insert(k.clone(), v.clone());
                    }
                    _ => {
                        return Err(
                            "command.update: give an object or a list of [key, value] pairs".into(),
                        );
                    }
                }
            }
            Ok(Value::Object(m))
        }
        _ => Err("command.update: give an object or a list of [key, value] pairs".into()),
    }
}

/// Puts the thread back as it was before the run: its head moves back to the checkpoint
/// the run started from (or the thread is emptied if the run made the first one).
async fn rollback(app: &Arc<App>, row: &RunRow) {
    let Some(assistant) = app.assistant(&row.assistant_id) else {
        return;
    };
    match row.start_checkpoint {
        Some(id) => {
            if let Err(e) = assistant.runner.rewind(&row.thread_id, id).await {
                tracing::warn!(run = %row.run_id, "rollback: {e}");
            }
        }
        None => {
            if let Err(e) = app.checkpointer.delete_thread(&row.thread_id).await {
                tracing::warn!(run = %row.run_id, "rollback: {e}");
            }
        }
    }
}

/// Deletes a thread's checkpoints, record and runs.
pub(crate) async fn delete_thread_everywhere(app: &Arc<App>, thread_id: &str) {
    app.buses.remove(thread_id);
    if let Err(e) = app.checkpointer.delete_thread(thread_id).await {
        tracing::warn!(thread = %thread_id, "cannot delete checkpoints: {e}");
    }
    if let Err(e) = app.control.delete_thread(thread_id).await {
        tracing::warn!(thread = %thread_id, "cannot delete the thread: {e}");
    }
}

/// Puts the runs a previous process left pending or running back in the queue.
pub(crate) async fn recover(app: &Arc<App>) -> Result<usize, String> {
    let active = app.control.active_runs().await?;
    let n = active.len();
    for mut row in active {
        if row.status == RunState::Running {
            // It was running when its process died: it continues from its last checkpoint.
            row.status = RunState::Pending;
            app.control.put_run(&row).await?;
        }
        app.runs.enqueue(row);
    }
    Ok(n)
}

/// Makes a thread row with defaults.
pub(crate) fn new_thread_row(thread_id: &str, metadata: Map<String, Value>) -> ThreadRow {
    let now = now_ms();
    ThreadRow {
        thread_id: thread_id.into(),
        metadata,
        graph_id: None,
        error: None,
        owner: None,
        created_at_ms: now,
        updated_at_ms: now,
    }
}
