//! Runs in the background. The queue is the runs table: each process that executes runs
//! claims the oldest one that may start (at most one active run per thread), up to
//! `--max-concurrent-runs`, holds it with a lease it renews, and gives it up if another
//! process took it over. Cancels, run ends and events travel through the table when several
//! processes share it, and each run's event log is what streams read, join and resume from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::{CancelToken, RunOutcome, RunRequest, RunStatus};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore, watch};

use super::control::{RunRow, RunState, StoredEvent, ThreadRow};
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

impl LogEvent {
    /// Whether it is a v2-protocol frame copied for another process's thread subscribers
    /// (`protocol::RELAYED`), which no run stream sends.
    pub(crate) fn is_relayed(&self) -> bool {
        &*self.event == super::protocol::RELAYED
    }
}

/// Everything a run streamed, kept while the process lives so a dropped stream can resume
/// (`Last-Event-ID`) and a join can replay it. The process executing the run writes it (and,
/// with a shared store, copies it there); any other process mirrors it from the store.
#[derive(Debug)]
pub(crate) struct RunLog {
    events: Mutex<Vec<LogEvent>>,
    /// What `/wait` and `/join` answer, set as the run ends.
    result: Mutex<Option<Value>>,
    /// (events so far, finished).
    changed: watch::Sender<(usize, bool)>,
    /// How many events are in the shared store already.
    stored: AtomicUsize,
    /// Whether this process executes the run (its mirror, if any, stops).
    local: AtomicBool,
    /// Executing here: whether another process's v2 subscribers watch the run's thread
    /// (found by a heartbeat after the claim), so its protocol events are copied for them.
    watched: AtomicBool,
}

impl RunLog {
    fn new() -> Arc<Self> {
        Arc::new(RunLog {
            events: Mutex::new(Vec::new()),
            result: Mutex::new(None),
            changed: watch::channel((0, false)).0,
            stored: AtomicUsize::new(0),
            local: AtomicBool::new(false),
            watched: AtomicBool::new(false),
        })
    }

    /// An empty log of a run that has ended.
    pub(crate) fn ended() -> Arc<Self> {
        let log = RunLog::new();
        log.finish();
        log
    }

    pub(crate) fn push(&self, event: impl Into<wire::Name>, data: &Value) {
        let data: Arc<str> = Arc::from(serde_json::to_string(data).unwrap_or_default());
        self.append(None, event.into(), data);
    }

    /// Adds an event copied from the store, unless the log has it already.
    fn push_stored(&self, seq: u64, event: String, data: String) {
        self.append(Some(seq), event.into(), Arc::from(data));
    }

    fn append(&self, seq: Option<u64>, event: wire::Name, data: Arc<str>) {
        let len = {
            let Ok(mut events) = self.events.lock() else {
                return;
            };
            let next = events.len() as u64 + 1;
            if seq.is_some_and(|s| s != next) {
                return;
            }
            events.push(LogEvent {
                seq: next,
                event,
                data,
            });
            events.len()
        };
        self.changed.send_modify(|s| s.0 = len);
    }

    /// Events not yet copied to the shared store; marks them copied.
    fn take_unstored(&self) -> Vec<StoredEvent> {
        let Ok(events) = self.events.lock() else {
            return Vec::new();
        };
        let from = self.stored.swap(events.len(), Ordering::AcqRel);
        events
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|e| (e.seq, e.event.to_string(), e.data.to_string()))
            .collect()
    }

    /// Marks `batch` (from [`RunLog::take_unstored`]) as not copied after all, so the next
    /// copy takes it again.
    fn unstore(&self, batch: &[StoredEvent]) {
        if let Some((seq, ..)) = batch.first() {
            self.stored
                .fetch_min(usize::try_from(seq - 1).unwrap_or(0), Ordering::AcqRel);
        }
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

    /// Adds an event whose data is JSON text already.
    pub(crate) fn push_text(&self, event: &'static str, data: Arc<str>) {
        self.append(None, wire::Name::Borrowed(event), data);
    }

    /// Whether this process executes the run.
    pub(crate) fn is_local(&self) -> bool {
        self.local.load(Ordering::Acquire)
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
    /// Another process took the run over (this one stopped renewing its lease in time):
    /// this process must stop and write nothing more of it.
    Lost,
}

impl CancelAction {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "interrupt" => Some(CancelAction::Interrupt),
            "rollback" => Some(CancelAction::Rollback),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CancelAction::Interrupt => "interrupt",
            CancelAction::Rollback => "rollback",
            CancelAction::Timeout => "timeout",
            CancelAction::Lost => "lost",
        }
    }
}

/// How often a process renews its runs' leases, reads cancel requests and sweeps.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How often a mirrored run's log is read from the shared store.
const MIRROR_POLL: Duration = Duration::from_millis(100);

/// This process's side of the run queue: the runs it executes, their cancels, and the logs
/// its streams read.
pub(crate) struct Runs {
    /// This process in the runs table (`HOST/PID/UUID`).
    pub(crate) worker_id: String,
    wake: Notify,
    pool: Arc<Semaphore>,
    logs: Mutex<HashMap<String, Arc<RunLog>>>,
    /// The runs executing here.
    cancels: Mutex<HashMap<String, (CancelToken, Option<CancelAction>)>>,
    running: AtomicUsize,
    /// Woken when any run ends (joins, waits, shutdown).
    ended: watch::Sender<u64>,
    stopping: watch::Sender<bool>,
}

impl Runs {
    pub(crate) fn new(max_concurrent: usize) -> Self {
        let max = max_concurrent.max(1);
        Runs {
            worker_id: engine::checkpoint::Lease::new(0).owner,
            wake: Notify::new(),
            pool: Arc::new(Semaphore::new(max)),
            logs: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            ended: watch::channel(0).0,
            stopping: watch::channel(false).0,
        }
    }

    /// The log of a run (a new one when it has none in this process).
    fn local_log(&self, run_id: &str) -> (Arc<RunLog>, bool) {
        match lock(&self.logs) {
            Some(mut logs) => match logs.get(run_id) {
                Some(l) => (l.clone(), false),
                None => {
                    let l = RunLog::new();
                    logs.insert(run_id.to_string(), l.clone());
                    (l, true)
                }
            },
            None => (RunLog::new(), true),
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

    /// Look for work: a run was queued, or a wake-up may have been missed (a reconnect).
    pub(crate) fn poke(&self) {
        self.wake.notify_one();
    }

    /// Ends the log of a run cancelled before it started, so its streams and waits end.
    pub(crate) fn finish_pending(&self, run_id: &str) {
        if let Some(log) = self.existing_log(run_id) {
            log.finish();
        }
        self.ended.send_modify(|n| *n += 1);
    }

    /// Cancels a run executing here; says whether it was.
    pub(crate) fn cancel(&self, run_id: &str, action: CancelAction) -> bool {
        let Some(mut cancels) = lock(&self.cancels) else {
            return false;
        };
        match cancels.get_mut(run_id) {
            Some((token, how)) => {
                // A takeover outranks any cancel: nothing more may be written.
                if *how != Some(CancelAction::Lost) {
                    *how = Some(action);
                }
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

    /// How many runs are executing here.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The runs executing here.
    fn running_ids(&self) -> Vec<String> {
        lock(&self.cancels).map_or_else(Vec::new, |c| c.keys().cloned().collect())
    }

    /// Stop starting runs (shutdown); running ones go on to their end.
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
        self.wake.notify_one();
    }

    fn release(&self, run_id: &str) {
        if let Some(mut c) = lock(&self.cancels) {
            c.remove(run_id);
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.ended.send_modify(|n| *n += 1);
        self.wake.notify_one();
    }
}

/// The log streams of `run_id` read. With a shared store, a run that does not execute here
/// is mirrored from the store until it ends.
pub(crate) fn log(app: &Arc<App>, run_id: &str) -> Arc<RunLog> {
    let (log, created) = app.runs.local_log(run_id);
    if created && app.control.shared() {
        tokio::spawn(mirror(app.clone(), run_id.to_string(), log.clone()));
    }
    log
}

/// How often a mirrored run is read from the store when Redis brings its events.
const MIRROR_SAFETY_POLL: Duration = Duration::from_secs(2);

/// Copies the events of a run executing in another process into `log` until it ends: as
/// Redis delivers them when there is Redis, otherwise by reading the store every 100 ms.
async fn mirror(app: Arc<App>, run_id: String, log: Arc<RunLog>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut frames = match &app.redis {
        Some(r) => Some(r.follow(&run_id).await),
        None => None,
    };
    // Without Redis the store is read every 100 ms while the run streams, backing off to
    // 1 s while nothing comes (a run waiting in the queue).
    let mut poll = if frames.is_some() {
        MIRROR_SAFETY_POLL
    } else {
        MIRROR_POLL
    };
    let mut end_hint = false;
    'catch_up: loop {
        if log.local.load(Ordering::Acquire) || log.is_finished() {
            break;
        }
        let found = copy_stored(&app, &run_id, &log).await;
        if (!found || end_hint) && mirror_ended(&app, &run_id, &log).await {
            break;
        }
        if frames.is_none() {
            poll = if found {
                MIRROR_POLL
            } else {
                (poll * 2).min(Duration::from_secs(1))
            };
        }
        end_hint = false;
        loop {
            let Some(rx) = frames.as_mut() else {
                tokio::time::sleep(poll).await;
                continue 'catch_up;
            };
            tokio::select! {
                frame = rx.recv() => match frame {
                    Ok(super::fanout::Frame::Events(events)) => {
                        let next = log.len() as u64 + 1;
                        let contiguous = events.first().is_none_or(|e| e.0 <= next);
                        if log.local.load(Ordering::Acquire) {
                            break 'catch_up;
                        }
                        for (seq, event, data) in events {
                            log.push_stored(seq, event, data);
                        }
                        if !contiguous {
                            continue 'catch_up;
                        }
                    }
                    Ok(super::fanout::Frame::End) => {
                        end_hint = true;
                        continue 'catch_up;
                    }
                    Ok(super::fanout::Frame::Gap) | Err(RecvError::Lagged(_)) => continue 'catch_up,
                    Err(RecvError::Closed) => {
                        frames = None;
                        continue 'catch_up;
                    }
                },
                _ = tokio::time::sleep(poll) => continue 'catch_up,
            }
        }
    }
    if let Some(r) = &app.redis {
        drop(frames);
        r.unfollow(&run_id).await;
    }
}

/// Copies the run's events the log lacks from the store; says whether there were any.
async fn copy_stored(app: &App, run_id: &str, log: &RunLog) -> bool {
    match app.control.events_since(run_id, log.len() as u64).await {
        Ok(events) => {
            let found = !events.is_empty();
            if !log.local.load(Ordering::Acquire) {
                for (seq, event, data) in events {
                    log.push_stored(seq, event, data);
                }
            }
            found
        }
        Err(e) => {
            tracing::warn!(run = %run_id, "cannot read the run's events: {e}");
            false
        }
    }
}

/// Ends a mirrored log if the run's end is stored (its events are stored before it).
async fn mirror_ended(app: &Arc<App>, run_id: &str, log: &RunLog) -> bool {
    let row = match app.control.run(run_id).await {
        Ok(row) => row,
        Err(_) => return false,
    };
    if row.as_ref().is_some_and(|r| r.status.is_active()) || log.local.load(Ordering::Acquire) {
        return false;
    }
    copy_stored(app, run_id, log).await;
    if let Some(e) = row.and_then(|r| r.error) {
        log.set_result(json!({ "__error__": e }));
    }
    log.finish();
    app.runs.ended.send_modify(|n| *n += 1);
    app.runs.forget_later(run_id, app.options.stream_retention);
    true
}

/// Claims runs from the store and starts them as the pool allows, until the process stops.
pub(crate) async fn dispatch(app: Arc<App>) {
    let runs = &app.runs;
    let lease = app.options.lease;
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
            let now = now_ms();
            let wait = match app
                .control
                .claim(&runs.worker_id, now, now + lease.as_millis() as u64)
                .await
            {
                Ok(Some(row)) => break row,
                Ok(None) => {
                    // Nothing to start: sleep until woken, the next delayed run is due, or
                    // (shared) the next poll, since other processes add runs too.
                    let due = app.control.next_due(now).await.ok().flatten();
                    let idle = if app.control.shared() {
                        app.options.poll
                    } else {
                        Duration::from_secs(3600)
                    };
                    due.map_or(idle, |d| {
                        Duration::from_millis(d.saturating_sub(now)).min(idle)
                    })
                }
                Err(e) => {
                    tracing::warn!("cannot claim a run: {e}");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = runs.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => {}
            }
        };
        let token = CancelToken::new();
        if let Some(mut c) = lock(&runs.cancels) {
            c.insert(row.run_id.clone(), (token.clone(), None));
        }
        runs.running.fetch_add(1, Ordering::AcqRel);
        let app = app.clone();
        tokio::spawn(async move {
            let run_id = row.run_id.clone();
            execute(&app, row, token).await;
            app.runs.release(&run_id);
            drop(permit);
        });
    }
}

/// Renews the leases of the runs executing here, applies cancels other processes asked for,
/// stops runs another process took over, and returns abandoned runs to the queue.
pub(crate) async fn heartbeat(app: Arc<App>) {
    let runs = &app.runs;
    let lease = app.options.lease.as_millis() as u64;
    let period = HEARTBEAT.min(app.options.lease / 3);
    loop {
        tokio::time::sleep(period).await;
        let ids = runs.running_ids();
        if !ids.is_empty() {
            let now = now_ms();
            match app
                .control
                .heartbeat(&runs.worker_id, &ids, now, now + lease)
                .await
            {
                Ok(held) => {
                    for id in &ids {
                        let Some(h) = held.iter().find(|h| h.run_id == *id) else {
                            tracing::warn!(run = %id, "another process took this run over; stopping it here");
                            runs.cancel(id, CancelAction::Lost);
                            continue;
                        };
                        if let Some(action) = h.cancel.as_deref().and_then(CancelAction::parse) {
                            runs.cancel(id, action);
                        }
                        // A subscriber arrived elsewhere after the claim: from the next
                        // step on, the run copies its protocol events for it.
                        if h.watched
                            && let Some(log) = runs.existing_log(id)
                        {
                            log.watched.store(true, Ordering::Release);
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot renew the runs' leases: {e}"),
            }
        }
        super::crons::tick(&app).await;
        super::cleanup::tick(&app).await;
        if app.control.shared() {
            match app.control.sweep(&runs.worker_id, now_ms()).await {
                Ok(swept) if !swept.is_empty() => {
                    tracing::warn!(
                        "{} runs whose process stopped renewing its lease are queued again: {}",
                        swept.len(),
                        swept.join(", ")
                    );
                    runs.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot sweep abandoned runs: {e}"),
            }
        }
    }
}

/// Hands the runs still executing here at shutdown to the next process: their leases end
/// now, so a sweep anywhere queues them again and they continue from their last checkpoint.
pub(crate) async fn hand_over(app: &Arc<App>) {
    let ids = app.runs.running_ids();
    if ids.is_empty() {
        return;
    }
    if let Err(e) = app.control.heartbeat(&app.runs.worker_id, &ids, 0, 0).await {
        tracing::warn!("cannot hand the running runs over: {e}");
    }
}

/// Wakes the dispatcher on `NOTIFY` from other processes (`BRAINOPS_LISTEN_URL`: a direct
/// or session-mode connection, since a transaction pooler cannot hold a LISTEN).
pub(crate) async fn listen(app: Arc<App>, url: String) {
    use sqlx::postgres::PgListener;
    let mut delay = Duration::from_millis(200);
    loop {
        let listener = match PgListener::connect(&url).await {
            Ok(mut l) => match l.listen(super::control::PG_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!("LISTEN failed: {}", engine::pg::describe(&e));
                    None
                }
            },
            Err(e) => {
                tracing::warn!(
                    "cannot connect to BRAINOPS_LISTEN_URL: {}",
                    engine::pg::describe(&e)
                );
                None
            }
        };
        let Some(mut listener) = listener else {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            continue;
        };
        delay = Duration::from_millis(200);
        // Notifications sent while disconnected are lost: look for work once.
        app.runs.wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => on_notice(&app, n.payload()),
                Ok(None) => {
                    app.runs.wake.notify_one();
                }
                Err(e) => {
                    tracing::warn!("LISTEN connection lost: {}", engine::pg::describe(&e));
                    break;
                }
            }
        }
    }
}

/// A wake-up from another process: `run` (a run was queued) or `cancel:ACTION:RUN_ID`.
pub(crate) fn on_notice(app: &App, payload: &str) {
    match payload.split_once(':') {
        Some(("cancel", rest)) => {
            if let Some((how, run_id)) = rest.split_once(':')
                && let Some(action) = CancelAction::parse(how)
            {
                app.runs.cancel(run_id, action);
            }
        }
        _ => {
            app.runs.wake.notify_one();
            // A run queued on a thread subscribed here is relayed as soon as it is found.
            app.buses.nudge.notify_one();
        }
    }
}

/// A command's `goto`, as LangGraph's clients send it: a node name, a `Send`
/// (`{"node", "arg"}`), or a list of those.
pub(crate) fn gotos(goto: &Value) -> Result<Vec<engine::Goto>, String> {
    let one = |v: &Value| -> Result<engine::Goto, String> {
        serde_json::from_value(v.clone()).map_err(|_| {
            format!("expected a node name or a Send ({{\"node\": ..., \"arg\": ...}}), got {v}")
        })
    };
    match goto {
        Value::Null => Ok(Vec::new()),
        Value::Array(list) => list.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
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

/// Copies a run's new events to the shared store every few milliseconds while it runs, so
/// streams on other processes follow it and another process can continue its log.
fn store_events(app: &Arc<App>, run_id: &str, log: &Arc<RunLog>) -> Option<Flusher> {
    if !app.control.shared() {
        return None;
    }
    let (app, run_id, log) = (app.clone(), run_id.to_string(), log.clone());
    let (stop, mut stopping) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut rx = log.subscribe();
        loop {
            store_batch(&app, &run_id, &log).await;
            if *stopping.borrow() {
                return;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() || log.is_finished() {
                    return;
                },
                _ = stopping.changed() => return,
            }
            // Coalesce: one insert (and one publish) for what a burst of tokens adds.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopping.changed() => return,
            }
        }
    });
    Some(Flusher { stop, task })
}

/// Copies the run's new events to the store and publishes them (Redis). A batch the store
/// refused (after its retries) is taken again by the next copy.
async fn store_batch(app: &App, run_id: &str, log: &RunLog) {
    let batch = log.take_unstored();
    if let Err(e) = app.control.append_events(run_id, &batch).await {
        tracing::warn!(run = %run_id, "cannot store the run's events: {e}");
        log.unstore(&batch);
        return;
    }
    if let Some(r) = &app.redis {
        r.events(run_id, &batch).await;
    }
}

/// The task copying a run's events to the shared store while it executes.
struct Flusher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Flusher {
    /// Lets the batch in flight land, then stops: an aborted insert would leave a gap in
    /// the stored events, and a process following the run stops at a gap.
    async fn finish(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Runs one claimed run to its end: status rows, events, thread bookkeeping, webhook.
async fn execute(app: &Arc<App>, mut row: RunRow, token: CancelToken) {
    let log = app.runs.local_log(&row.run_id).0;
    log.local.store(true, Ordering::Release);
    if app.control.shared() {
        // What earlier attempts, or the process that queued it, streamed already.
        match app
            .control
            .events_since(&row.run_id, log.len() as u64)
            .await
        {
            Ok(events) => {
                for (seq, event, data) in events {
                    log.push_stored(seq, event, data);
                }
            }
            Err(e) => tracing::warn!(run = %row.run_id, "cannot read the run's events: {e}"),
        }
    }
    let flusher = store_events(app, &row.run_id, &log);
    row.updated_at_ms = now_ms();
    row.started_at_ms = Some(row.updated_at_ms);
    if row.attempt > 1 || log.len() == 0 {
        log.push(
            "metadata",
            &json!({"run_id": row.run_id, "attempt": row.attempt}),
        );
    }
    let started_at = now_ms();
    // The thread as the run finds it, read once (each read is a round trip to the store).
    let thread = app.checkpointer.thread(&row.thread_id).await.ok().flatten();
    if row.attempt == 1 {
        row.start_checkpoint = thread.as_ref().and_then(|t| t.last_checkpoint);
    }
    match app.control.update_claimed(&row).await {
        Ok(true) => {}
        Ok(false) => {
            app.runs.cancel(&row.run_id, CancelAction::Lost);
        }
        Err(e) => tracing::error!(run = %row.run_id, "cannot store the run's start: {e}"),
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
    if row.attempt == 1
        && let Some(metrics) = &app.options.metrics
    {
        let queued_at = row.created_at_ms.max(row.not_before_ms);
        metrics.run_waited(started_at.saturating_sub(queued_at) as f64 / 1000.0);
    }
    let span = tracing::info_span!(
        target: "brainops",
        "server.run",
        otel.name = %format_args!("execute {}", row.graph_id),
        otel.kind = "consumer",
        run_id = %row.run_id,
        thread = %row.thread_id,
        assistant_id = %row.assistant_id,
        graph = %row.graph_id,
        attempt = i64::from(row.attempt),
        worker = row.worker.as_deref().unwrap_or_default(),
        status = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if let Some(carrier) = &row.trace {
        crate::telemetry::continue_trace(&span, carrier);
    }
    let mut usage = RunUsage::default();
    // The thread's v2 subscribers are on the process that queued the run, or on those the
    // claim found watching the thread.
    let watched_elsewhere = !row.watchers.is_empty()
        || row
            .watched_from
            .as_ref()
            .is_some_and(|w| *w != app.runs.worker_id);
    let mut mirror = watched_elsewhere.then(super::protocol::BusMirror::new);
    let outcome = if token.is_cancelled() {
        Err("the run was taken over by another process".to_string())
    } else {
        use tracing::Instrument;
        run_graph(
            app,
            &row,
            &log,
            token.clone(),
            thread,
            &mut usage,
            &mut mirror,
        )
        .instrument(span.clone())
        .await
    };
    timer.abort();
    // From here the run is ending: the heartbeat stops renewing it (its row may be deleted
    // with a temporary thread), and a late cancel finds nothing to stop.
    let action = lock(&app.runs.cancels)
        .and_then(|mut c| c.remove(&row.run_id))
        .and_then(|(_, how)| how);
    if action == Some(CancelAction::Lost) {
        // Another process continues it: this one leaves the run, its thread and its
        // stored events alone.
        if let Some(f) = flusher {
            f.task.abort();
        }
        log.finish();
        app.runs.forget_later(&row.run_id, Duration::from_secs(5));
        return;
    }
    let (status, rolled_back) = match (&outcome, action) {
        (_, Some(CancelAction::Rollback)) => (RunState::Interrupted, true),
        (_, Some(CancelAction::Interrupt | CancelAction::Lost)) => (RunState::Interrupted, false),
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
    span.record("status", status.as_str());
    if let Some(metrics) = &app.options.metrics {
        metrics.run_ended(&row.graph_id, status.as_str());
    }
    if let Some(e) = &error
        && matches!(status, RunState::Error | RunState::Timeout)
    {
        let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
        engine::trace::fail(&span, message);
        // For error trackers (Sentry), tagged by the run, thread and graph, and linked to
        // the trace of the span entered here.
        let _in_run = span.enter();
        tracing::error!(
            target: "brainops::failure",
            graph = %row.graph_id,
            thread = %row.thread_id,
            run = %row.run_id,
            "run {}: {message}", status.as_str()
        );
    }
    drop(span);
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
    let cancelled = action.is_some()
        || matches!(
            outcome
                .as_ref()
                .ok()
                .and_then(|o| o.error.as_ref())
                .map(|e| &e.detail),
            Some(engine::RunError::Cancelled)
        );
    if let Some(m) = &mut mirror {
        publish_end(&m.bus, &row, &outcome, cancelled);
        m.copy_to(&log);
    }
    // Every event is stored before the run is marked ended: a process mirroring the run
    // reads its end as "nothing more will come".
    if let Some(f) = flusher {
        f.finish().await;
        store_batch(app, &row.run_id, &log).await;
    }
    row.status = status;
    row.updated_at_ms = now_ms();
    if let Some(spent) = usage.to_json() {
        row.usage = Some(spent);
    }
    row.error = error
        .clone()
        .filter(|_| matches!(status, RunState::Error | RunState::Timeout));
    // The run is marked finished before its stream closes: the SDK reconnects to a stream
    // that closed while the run still looked active.
    let stored = if rolled_back {
        app.control.delete_run(&row.run_id).await.map(|_| true)
    } else {
        app.control.update_claimed(&row).await
    };
    if let Some(r) = &app.redis {
        r.ended(&row.run_id).await;
    }
    match stored {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(run = %row.run_id, "the run was taken over as it ended; its end is not stored here")
        }
        Err(e) => tracing::error!(run = %row.run_id, "cannot store the run's end: {e}"),
    }
    // The end goes on the thread's bus once it is stored: a subscriber that reads the thread
    // on `interrupted` or `completed` finds it so, not still busy.
    if let Some(bus) = app.buses.get(&row.thread_id) {
        publish_end(&bus, &row, &outcome, cancelled);
    }
    // A run that reached a `wait` node parks its thread: a run due at the wake-up time
    // continues it, and that one reports (webhook) and cleans up.
    let wake_at = match (&outcome, action) {
        (Ok(o), None) => o
            .interrupt
            .as_ref()
            .filter(|i| i.kind == engine::InterruptKind::Wait)
            .map(|i| i.value.get("until_ms").and_then(Value::as_u64).unwrap_or(0)),
        _ => None,
    };
    match wake_at {
        Some(at) => queue_wake_up(app, &row, at).await,
        None => {
            if let Some(url) = row.kwargs.get("webhook").and_then(Value::as_str) {
                let values = outcome.as_ref().ok().map(|o| o.state.clone());
                super::webhook::send(app, url, &row, status, started_at, values, error.clone());
            }
            if row.temporary
                && row.kwargs.get("on_completion").and_then(Value::as_str) != Some("keep")
            {
                delete_thread_everywhere(app, &row.thread_id).await;
            }
        }
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

/// Queues the run that continues `row`'s parked thread at `at_ms` (a `wait` node's due
/// time). It is a row like any other: it survives restarts, and the first process free
/// when it is due takes it.
async fn queue_wake_up(app: &Arc<App>, row: &RunRow, at_ms: u64) {
    let now = now_ms();
    let mut kwargs = Map::new();
    for key in [
        "stream_mode",
        "stream_resumable",
        "webhook",
        "on_completion",
        "stream_subgraphs",
    ] {
        if let Some(v) = row.kwargs.get(key) {
            kwargs.insert(key.into(), v.clone());
        }
    }
    let mut metadata = row.metadata.clone();
    metadata.insert("wakes".into(), json!(row.run_id));
    let wake = RunRow {
        run_id: uuid::Uuid::now_v7().to_string(),
        status: RunState::Pending,
        metadata,
        kwargs: Value::Object(kwargs),
        multitask_strategy: "enqueue".into(),
        attempt: 0,
        not_before_ms: at_ms,
        worker: None,
        error: None,
        started_at_ms: None,
        start_checkpoint: None,
        usage: None,
        trace: None,
        created_at_ms: now,
        updated_at_ms: now,
        ..row.clone()
    };
    match app.control.put_run(&wake).await {
        Ok(()) => {
            tracing::info!(run = %wake.run_id, thread = %wake.thread_id, "the thread sleeps until {}", wire::iso(at_ms));
            app.runs.poke();
            if app.control.shared() {
                app.tell("run").await;
            }
        }
        Err(e) => {
            tracing::error!(thread = %row.thread_id, "cannot queue the wake-up of a waiting thread: {e}")
        }
    }
}

/// Puts the end of `row`'s run on a thread's bus: its question or how it ended.
fn publish_end(
    bus: &super::protocol::ThreadBus,
    row: &RunRow,
    outcome: &Result<RunOutcome, String>,
    cancelled: bool,
) {
    match outcome {
        Ok(o) => super::protocol::publish_end(bus, &row.thread_id, &row.graph_id, o, cancelled),
        Err(message) => bus.publish(
            "lifecycle",
            json!({"event": "failed", "graph_name": row.graph_id, "error": message}),
            false,
        ),
    }
}

/// Runs the graph for `row`, streaming into `log`. `Err` is a run refused before it started
/// for a reason the engine does not report (a bad command).
/// What a run's model calls used and cost, in all and by node: kept on the run's record so
/// a console shows it after the run.
#[derive(Default)]
pub(crate) struct RunUsage {
    by_node: std::collections::BTreeMap<String, Spent>,
}

/// Tokens, cost (when priced) and calls of some model calls.
#[derive(Default, Clone, Copy)]
struct Spent {
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: Option<f64>,
    calls: u64,
}

impl Spent {
    fn add(&mut self, other: Spent) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        if let Some(c) = other.cost_usd {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
        }
        self.calls += other.calls;
    }

    fn to_json(self) -> Value {
        json!({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
               "cost_usd": self.cost_usd, "calls": self.calls})
    }
}

impl RunUsage {
    fn add(&mut self, event: &engine::Event) {
        if let engine::Event::Usage {
            node,
            input_tokens,
            output_tokens,
            cost_usd,
            ..
        } = event
        {
            self.by_node.entry(node.clone()).or_default().add(Spent {
                input_tokens: *input_tokens,
                output_tokens: *output_tokens,
                cost_usd: *cost_usd,
                calls: 1,
            });
        }
    }

    /// `{input_tokens, output_tokens, cost_usd, calls, by_node: {...}}`; `None` when no
    /// model was called (in the attempt that finished the run).
    fn to_json(&self) -> Option<Value> {
        if self.by_node.is_empty() {
            return None;
        }
        let mut total = Spent::default();
        let mut by_node = Map::new();
        for (node, spent) in &self.by_node {
            total.add(*spent);
            by_node.insert(node.clone(), spent.to_json());
        }
        let mut all = total.to_json();
        all["by_node"] = Value::Object(by_node);
        Some(all)
    }
}

async fn run_graph(
    app: &Arc<App>,
    row: &RunRow,
    log: &RunLog,
    token: CancelToken,
    mut thread: Option<engine::checkpoint::ThreadInfo>,
    usage: &mut RunUsage,
    mirror: &mut Option<super::protocol::BusMirror>,
) -> Result<RunOutcome, String> {
    let assistant = app
        .assistant(&row.assistant_id)
        .ok_or_else(|| format!("assistant `{}` is gone", row.assistant_id))?;
    let runner = assistant.runner.clone();
    // A later attempt of a run whose earlier attempt checkpointed progress continues from
    // its last checkpoint: applying the input (or answer, update, rewind) again would
    // repeat the finished steps and their side effects.
    let continuing = row.attempt > 1
        && thread.as_ref().is_some_and(|t| {
            t.last_checkpoint.is_some() && t.last_checkpoint != row.start_checkpoint
        });
    let kwargs = if continuing {
        let mut options = row.kwargs.clone();
        if let Some(o) = options.as_object_mut() {
            for key in ["input", "command", "checkpoint_id"] {
                o.remove(key);
            }
        }
        std::borrow::Cow::Owned(options)
    } else {
        std::borrow::Cow::Borrowed(&row.kwargs)
    };
    let kwargs = kwargs.as_ref();
    let (resume, update, goto) = command_parts(kwargs);
    let goto = goto.as_ref().map(gotos).transpose()?.unwrap_or_default();
    if let Some(cp) = kwargs.get("checkpoint_id").and_then(Value::as_str) {
        let id = wire::checkpoint_parse(cp)
            .ok_or_else(|| format!("checkpoint_id `{cp}` is not a checkpoint of this thread"))?;
        runner
            .rewind(&row.thread_id, id)
            .await
            .map_err(|e| e.to_string())?;
        thread = app.checkpointer.thread(&row.thread_id).await.ok().flatten();
    }
    let has_state = thread.as_ref().is_some_and(|t| t.last_checkpoint.is_some());
    let mut input = kwargs.get("input").filter(|v| !v.is_null()).cloned();
    // With a resume or a goto, the engine applies the update itself, with the step it
    // resumes (so the step's pending writes stay with it).
    let mut engine_update = None;
    if let Some(update) = update {
        let update = update_object(update)?;
        if has_state && (resume.is_some() || !goto.is_empty()) {
            engine_update = Some(update);
        } else if has_state {
            runner
                .update_state(&row.thread_id, &update)
                .await
                .map_err(|e| e.to_string())?;
            thread = app.checkpointer.thread(&row.thread_id).await.ok().flatten();
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
    let at_breakpoint = thread.as_ref().is_some_and(|t| {
        t.status == engine::ThreadStatus::Interrupted
            && t.interrupt
                .as_ref()
                .is_some_and(|i| i.kind != engine::InterruptKind::Ask)
    });
    let resume = match (resume, &input) {
        (None, None) if at_breakpoint => Some(Value::Null),
        (resume, _) => resume,
    };
    // New input on a thread that waits drops the question and starts a new run on its
    // state, as LangGraph does.
    if input.is_some()
        && resume.is_none()
        && let Some(t) = &thread
        && t.status == engine::ThreadStatus::Interrupted
        && let Some(head) = t.last_checkpoint
    {
        runner
            .rewind(&row.thread_id, head)
            .await
            .map_err(|e| e.to_string())?;
    }
    // `resume = {interrupt_id: value, ...}` answers several waiting questions at once.
    let waiting: Vec<(String, String)> = thread
        .as_ref()
        .filter(|t| t.status == engine::ThreadStatus::Interrupted)
        .and_then(|t| t.interrupt.as_ref().map(|i| (t, i)))
        .map(|(t, i)| {
            i.all()
                .map(|i| {
                    (
                        wire::interrupt_id(&row.thread_id, t.last_checkpoint, &i.task),
                        i.task.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let resume = match resume {
        Some(Value::Object(map))
            if !map.is_empty() && map.keys().all(|k| waiting.iter().any(|(id, _)| id == k)) =>
        {
            request.resume_each = map
                .into_iter()
                .filter_map(|(k, v)| {
                    waiting
                        .iter()
                        .find(|(id, _)| *id == k)
                        .map(|(_, task)| (task.clone(), v))
                })
                .collect();
            None
        }
        other => other,
    };
    request.input = input;
    request.resume = resume;
    request.goto = goto;
    request.update = engine_update;
    request.cancel = Some(token);
    // A restarted server takes its own runs' threads over: the process that held them is gone.
    request.takeover = row.attempt > 1;
    let mut bus = app.buses.get(&row.thread_id);
    // Published as the run starts executing, not when it is queued: a process may claim a
    // queued run before the request that made it returns, and the bus must not show a
    // run's steps before its start.
    let running = json!({"event": "running", "graph_name": row.graph_id, "run_id": row.run_id});
    if let Some(bus) = &bus {
        bus.publish("lifecycle", running.clone(), true);
    }
    if let Some(m) = mirror.as_mut() {
        m.bus.publish("lifecycle", running.clone(), true);
        m.copy_to(log);
    }
    request.emit_values = modes.values
        || modes.checkpoints
        || modes.debug
        || modes.events
        || bus.is_some()
        || mirror.is_some();
    request.stream_subgraphs =
        kwargs.get("stream_subgraphs").and_then(Value::as_bool) == Some(true);
    request.interrupt_before = strings("interrupt_before");
    request.interrupt_after = strings("interrupt_after");
    (request.recursion_limit, request.context) = run_config(kwargs);
    let mut translator = Translator::new(
        modes,
        &row.run_id,
        &row.thread_id,
        &row.graph_id,
        &row.assistant_id,
    )
    .with_input(request.input.as_ref())
    .with_tags(
        kwargs
            .pointer("/config/tags")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
    );
    let mut stream = runner.stream(request);
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        // A subscriber who arrives mid-run (a console opening a busy thread) gets the
        // events from the next step on.
        if bus.is_none() && matches!(event, engine::Event::StepStarted { .. }) {
            bus = app.buses.get(&row.thread_id);
            if let Some(bus) = &bus {
                bus.publish("lifecycle", running.clone(), true);
            }
        }
        // Likewise a subscriber on another process (see `heartbeat`).
        if mirror.is_none()
            && matches!(event, engine::Event::StepStarted { .. })
            && log.watched.load(Ordering::Acquire)
        {
            let m = super::protocol::BusMirror::new();
            m.bus.publish("lifecycle", running.clone(), true);
            *mirror = Some(m);
        }
        if let Some(bus) = &bus {
            super::protocol::publish_event(bus, &event);
        }
        if let Some(m) = mirror.as_mut() {
            super::protocol::publish_event(&m.bus, &event);
            m.copy_to(log);
        }
        if let engine::Event::Usage { .. } = &event {
            usage.add(&event);
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
    for (name, data) in out.drain(..) {
        log.push(name, &data);
    }
    Ok(outcome)
}

/// A run's `config.recursion_limit`, and its context: `context`, else
/// `config.configurable` (LangGraph's two ways to pass one; the API refuses both at once).
fn run_config(kwargs: &Value) -> (Option<u32>, Option<Value>) {
    let config = kwargs.get("config");
    let limit = config
        .and_then(|c| c.get("recursion_limit"))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok());
    let context = match kwargs.get("context") {
        Some(Value::Object(m)) if !m.is_empty() => Some(Value::Object(m.clone())),
        _ => config
            .and_then(|c| c.get("configurable"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !reserved_configurable(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<String, Value>>()
            })
            .filter(|m| !m.is_empty())
            .map(Value::Object),
    };
    (limit, context)
}

/// `configurable` keys that address the run (set by clients such as `RemoteGraph` or by
/// the server itself), not values for the graph.
pub(crate) fn reserved_configurable(key: &str) -> bool {
    matches!(
        key,
        "thread_id"
            | "checkpoint_id"
            | "checkpoint_ns"
            | "checkpoint_map"
            | "run_id"
            | "assistant_id"
            | "graph_id"
    ) || key.starts_with("__")
        || key.starts_with("langgraph_")
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

/// At start with a private store (SQLite, memory): the runs a previous process left
/// running are queued again at once, since no other process can hold them; they continue
/// from their last checkpoint. A shared store leaves that to the sweep (leases).
pub(crate) async fn recover(app: &Arc<App>) -> Result<usize, String> {
    if app.control.shared() {
        app.runs.wake.notify_one();
        return Ok(0);
    }
    // Any worker id but this process's: every run left running is from the last one.
    let n = app.control.sweep("", u64::MAX).await?.len();
    app.runs.wake.notify_one();
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
        ttl: None,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(batch: &[StoredEvent]) -> Vec<u64> {
        batch.iter().map(|e| e.0).collect()
    }

    #[test]
    fn a_batch_the_store_refused_is_taken_again_with_what_came_after() {
        let log = RunLog::new();
        log.push("metadata", &json!({"run_id": "r"}));
        assert_eq!(seqs(&log.take_unstored()), [1]);
        log.push("updates", &json!({"a": 1}));
        log.push("updates", &json!({"b": 2}));
        let refused = log.take_unstored();
        assert_eq!(seqs(&refused), [2, 3]);
        log.push("values", &json!({"n": 1}));
        log.unstore(&refused);
        // Nothing before the refused batch again, nothing of it lost.
        assert_eq!(seqs(&log.take_unstored()), [2, 3, 4]);
        assert!(log.take_unstored().is_empty());
        log.unstore(&[]);
        assert!(log.take_unstored().is_empty());
    }
}
