//! LangGraph's v2 thread-centric streaming protocol, as `client.threads.stream(...)` in
//! langgraph-sdk speaks it: commands (`run.start`, `input.respond`, `state.get`, …) POSTed to
//! `/threads/{id}/commands` or sent over the WebSocket, and every event of every run of the
//! thread on `/threads/{id}/stream/events` (SSE or WebSocket), filtered by channel, each with
//! a per-thread `seq` to resume from (`since`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::App;
use super::api::{ApiError, create_run};
use super::control::RunState;
use super::wire::now_ms;

/// One event on a thread's bus, stored as the frame clients receive.
#[derive(Debug, Clone)]
pub(crate) struct BusEvent {
    pub(crate) seq: u64,
    pub(crate) method: &'static str,
    pub(crate) frame: Arc<str>,
}

/// The most events a thread's bus keeps; older ones are dropped (the thread's state is
/// durable, the bus only feeds live subscribers and short reconnects).
const MAX_BUS_EVENTS: usize = 10_000;

/// The protocol events of a thread's recent runs while this process lives.
#[derive(Debug)]
pub(crate) struct ThreadBus {
    /// Consecutive events, oldest first.
    events: Mutex<std::collections::VecDeque<BusEvent>>,
    /// The seq of the latest run's first event: where a subscription without `since` starts.
    run_start: Mutex<u64>,
    changed: watch::Sender<u64>,
    /// Per node, the model message its tokens are streaming into: its id and text so far.
    open_messages: Mutex<HashMap<String, (String, String)>>,
    /// When a subscription to it last started (ms), for [`Buses::watched`].
    subscribed_ms: AtomicU64,
    /// Whether the latest run put a `values` frame on the bus (see [`publish_end`]).
    run_values: AtomicBool,
}

impl ThreadBus {
    fn new() -> Arc<Self> {
        Arc::new(ThreadBus {
            events: Mutex::new(std::collections::VecDeque::new()),
            run_start: Mutex::new(0),
            changed: watch::channel(0).0,
            open_messages: Mutex::new(HashMap::new()),
            subscribed_ms: AtomicU64::new(0),
            run_values: AtomicBool::new(false),
        })
    }

    /// Publishes `data` on `method`; `run_begins` marks the first event of a run.
    pub(crate) fn publish(&self, method: &'static str, data: Value, run_begins: bool) {
        let Ok(mut events) = self.events.lock() else {
            return;
        };
        let seq = *self.changed.borrow() + 1;
        let now = now_ms();
        let frame = json!({
            "type": "event",
            "event_id": format!("{now}-{seq}"),
            "seq": seq,
            "method": method,
            "params": {"namespace": [], "timestamp": now, "data": data},
        });
        events.push_back(BusEvent {
            seq,
            method,
            frame: Arc::from(frame.to_string()),
        });
        if events.len() > MAX_BUS_EVENTS {
            events.pop_front();
        }
        // Sent while the lock is held, so seqs stay in the order of the events.
        self.changed.send_replace(seq);
        drop(events);
        if run_begins || method == "values" {
            self.run_values.store(method == "values", Ordering::Relaxed);
        }
        if run_begins && let Ok(mut start) = self.run_start.lock() {
            *start = seq - 1;
        }
        // A message a cancelled or failed run left open is not continued by the next run.
        if run_begins && let Ok(mut open) = self.open_messages.lock() {
            open.clear();
        }
    }

    fn seq(&self) -> u64 {
        *self.changed.borrow()
    }

    /// The kept events after `seq`.
    fn after(&self, seq: u64) -> Vec<BusEvent> {
        let Ok(events) = self.events.lock() else {
            return Vec::new();
        };
        let first = events.front().map_or(seq + 1, |e| e.seq);
        let skip = (seq + 1).saturating_sub(first) as usize;
        events.iter().skip(skip).cloned().collect()
    }

    fn default_start(&self) -> u64 {
        self.run_start.lock().map_or(0, |s| *s)
    }
}

impl ThreadBus {
    /// The id of the message `node`'s model is streaming; a new message is announced
    /// (`message-start`, then, for text, `content-block-start`) when none is open.
    fn message_for(&self, node: &str, meta: &Value, text: bool) -> String {
        let Ok(mut open) = self.open_messages.lock() else {
            return String::new();
        };
        if let Some((id, _)) = open.get(node) {
            return id.clone();
        }
        let id = format!("msg-{}", uuid::Uuid::now_v7());
        open.insert(node.to_string(), (id.clone(), String::new()));
        drop(open);
        self.publish(
            "messages",
            json!({"event": "message-start", "role": "ai", "id": id, "metadata": meta}),
            false,
        );
        if text {
            self.publish(
                "messages",
                json!({"event": "content-block-start", "id": id, "index": 0,
                       "content": {"type": "text", "text": ""}, "metadata": meta}),
                false,
            );
        }
        id
    }
}

/// The stored-event name of a protocol frame that a run's executor copied into the run's
/// events for the thread's subscribers on another process.
pub(crate) const RELAYED: &str = "protocol";

/// The protocol events of a run executing away from its thread's subscribers (the run's
/// `watched_from` names their process): published on a bus of the run's own and copied
/// into its log, which is stored and fanned out (Redis, or the store) like its other
/// events, and [`relay`]ed onto the subscribers' bus there.
pub(crate) struct BusMirror {
    pub(crate) bus: Arc<ThreadBus>,
}

impl BusMirror {
    pub(crate) fn new() -> Self {
        BusMirror {
            bus: ThreadBus::new(),
        }
    }

    /// Moves the frames published since the last call into `log`.
    pub(crate) fn copy_to(&mut self, log: &super::runs::RunLog) {
        let frames: Vec<BusEvent> = match self.bus.events.lock() {
            Ok(mut events) => events.drain(..).collect(),
            Err(_) => return,
        };
        for e in frames {
            log.push_text(RELAYED, e.frame);
        }
    }
}

/// The protocol's methods, as the bus keeps them.
fn known_method(method: &str) -> Option<&'static str> {
    [
        "lifecycle",
        "values",
        "updates",
        "tasks",
        "messages",
        "tools",
        "custom",
        "input.requested",
    ]
    .into_iter()
    .find(|m| *m == method)
}

/// Feeds this process's bus of `thread_id` with the protocol events of `run_id` as the
/// process executing it copies them (see [`BusMirror`]), until the run ends. Its question
/// and its end wait until the run's end is stored, as they do on the executing process, so
/// a subscriber that reads the thread then finds it idle. Nothing is relayed when the run
/// executes here: it publishes on the bus itself.
pub(crate) async fn relay(app: Arc<App>, thread_id: String, run_id: String) {
    let log = super::runs::log(&app, &run_id);
    let mut rx = log.subscribe();
    let (mut cursor, mut ending) = (0, Vec::new());
    loop {
        if log.is_local() {
            return;
        }
        let (events, done) = log.since(cursor);
        cursor += events.len();
        let Some(bus) = app.buses.get(&thread_id) else {
            return;
        };
        for e in events.iter().filter(|e| e.is_relayed()) {
            let Ok(mut frame) = serde_json::from_str::<Value>(&e.data) else {
                continue;
            };
            let Some(method) = frame["method"].as_str().and_then(known_method) else {
                continue;
            };
            let data = frame["params"]["data"].take();
            let begins = method == "lifecycle" && data["event"] == "running";
            if method == "input.requested" || (method == "lifecycle" && !begins) {
                ending.push((method, data));
            } else {
                bus.publish(method, data, begins);
            }
        }
        if done {
            for (method, data) in ending {
                bus.publish(method, data, false);
            }
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// How long a thread stays watched after its last subscription started while nobody is
/// subscribed: a client between two requests (the SDK opens a stream per call) keeps
/// getting its runs relayed.
const WATCH_GRACE_MS: u64 = 30_000;
/// How often a process renews its watches and looks for new runs on the threads it watches.
const WATCH_TICK: Duration = Duration::from_secs(1);
/// The least time between two looks for runs on watched threads.
const WATCH_SPACING: Duration = Duration::from_millis(100);
/// How long a watch holds unless renewed (a process that stops renewing is soon ignored).
const WATCH_TTL_MS: u64 = 5_000;
/// How long a relayed run is remembered after it ended, so it is not relayed twice.
const RELAYED_KEEP_MS: u64 = 60_000;

/// The buses of threads that use the protocol, and the runs relayed onto them.
#[derive(Default)]
pub(crate) struct Buses {
    buses: Mutex<HashMap<String, Arc<ThreadBus>>>,
    /// Runs being relayed here (`None`) or relayed already (when they ended, ms).
    relays: Mutex<HashMap<String, Option<u64>>>,
    /// Per thread watched here, from when its runs are relayed (ms, by `now_ms`):
    /// when the watch began, then just after the newest ended run relayed.
    watch_from: Mutex<HashMap<String, u64>>,
    /// Wakes [`watch_threads`]: a subscription started, or a run was queued somewhere.
    pub(crate) nudge: tokio::sync::Notify,
}

impl Buses {
    /// The thread's bus, made on first use.
    pub(crate) fn get_or_make(&self, thread_id: &str) -> Option<Arc<ThreadBus>> {
        let mut map = self.buses.lock().ok()?;
        Some(
            map.entry(thread_id.to_string())
                .or_insert_with(ThreadBus::new)
                .clone(),
        )
    }

    /// Forgets a deleted thread's bus.
    pub(crate) fn remove(&self, thread_id: &str) {
        if let Ok(mut map) = self.buses.lock() {
            map.remove(thread_id);
        }
    }

    /// The thread's bus, if anything used the protocol on it.
    pub(crate) fn get(&self, thread_id: &str) -> Option<Arc<ThreadBus>> {
        self.buses.lock().ok()?.get(thread_id).cloned()
    }

    /// The threads with a subscriber here, or one that subscribed lately.
    fn watched(&self, now_ms: u64) -> Vec<String> {
        let Ok(map) = self.buses.lock() else {
            return Vec::new();
        };
        map.iter()
            .filter(|(_, bus)| {
                bus.changed.receiver_count() > 0
                    || now_ms.saturating_sub(bus.subscribed_ms.load(Ordering::Relaxed))
                        < WATCH_GRACE_MS
            })
            .map(|(thread, _)| thread.clone())
            .collect()
    }

    /// Whether `run_id` is to be relayed now: it never was here.
    fn begin_relay(&self, run_id: &str, now_ms: u64) -> bool {
        let Ok(mut relays) = self.relays.lock() else {
            return false;
        };
        relays.retain(|_, ended| ended.is_none_or(|t| now_ms.saturating_sub(t) < RELAYED_KEEP_MS));
        if relays.contains_key(run_id) {
            return false;
        }
        relays.insert(run_id.to_string(), None);
        true
    }

    fn end_relay(&self, run_id: &str) {
        if let Ok(mut relays) = self.relays.lock() {
            relays.insert(run_id.to_string(), Some(now_ms()));
        }
    }
}

/// Starts relaying `run_id`'s protocol events onto this process's bus of `thread_id`
/// (see [`relay`]), unless it is or was relayed here already.
pub(crate) fn spawn_relay(app: &Arc<App>, thread_id: String, run_id: String) {
    if !app.buses.begin_relay(&run_id, now_ms()) {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        relay(app.clone(), thread_id, run_id.clone()).await;
        app.buses.end_relay(&run_id);
    });
}

/// Relays the runs of `threads` (watched here) not relayed yet: those pending or running,
/// and those that ended since the thread's watch began (a quick run can start and end
/// between two looks). A run due later (a `wait` node's wake-up) waits until it is about to
/// start.
async fn relay_new_runs(app: &Arc<App>, threads: &[String], now: u64) {
    let from: HashMap<String, u64> = match app.buses.watch_from.lock() {
        Ok(mut from) => {
            from.retain(|t, _| threads.contains(t));
            for t in threads {
                from.entry(t.clone()).or_insert(now);
            }
            from.clone()
        }
        Err(_) => return,
    };
    let since = from.values().copied().min().unwrap_or(now);
    let due = now + 2 * WATCH_TICK.as_millis() as u64;
    let runs = match app.control.runs_on(threads, since, due).await {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!("cannot read the runs of subscribed threads: {e}");
            return;
        }
    };
    let mut ended_upto: HashMap<&str, u64> = HashMap::new();
    for run in &runs {
        let start = from.get(&run.thread_id).copied().unwrap_or(now);
        if run.later || (!run.active && run.created_at_ms < start) {
            continue;
        }
        if !run.active {
            let upto = ended_upto.entry(&run.thread_id).or_default();
            *upto = (*upto).max(run.created_at_ms + 1);
        }
        spawn_relay(app, run.thread_id.clone(), run.run_id.clone());
    }
    // An ended run is looked at once: the next look starts after it.
    if let Ok(mut from) = app.buses.watch_from.lock() {
        for (thread, upto) in ended_upto {
            if let Some(f) = from.get_mut(thread) {
                *f = (*f).max(upto);
            }
        }
    }
}

/// A subscription to `thread_id` starts here: with a shared store the watch is recorded
/// before the subscriber is answered, so every run the process claiming it finds watched
/// from then on, whichever replica queued it, copies its protocol events for this one.
pub(crate) async fn subscribed(app: &App, bus: &ThreadBus, thread_id: &str) {
    let now = now_ms();
    let before = bus.subscribed_ms.swap(now, Ordering::Relaxed);
    if !app.control.shared() {
        return;
    }
    if let Ok(mut from) = app.buses.watch_from.lock() {
        from.entry(thread_id.to_string()).or_insert(now);
    }
    // A subscription in the last few seconds was recorded and is renewed every tick.
    let recorded = now.saturating_sub(before) < WATCH_TTL_MS;
    if !recorded
        && let Err(e) = app
            .control
            .watch(
                &app.runs.worker_id,
                &[thread_id.to_string()],
                now,
                now + WATCH_TTL_MS,
            )
            .await
    {
        tracing::warn!(thread = %thread_id, "cannot record the thread's subscription: {e}");
    }
    // Runs queued before it started are relayed too.
    app.buses.nudge.notify_one();
}

/// With a shared store: keeps this process's watches of the threads it has subscribers on
/// (see [`ControlStore::watch`](super::control::ControlStore::watch)) and relays the runs of
/// those threads, wherever they were queued and execute.
pub(crate) async fn watch_threads(app: Arc<App>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(WATCH_TICK) => {}
            () = app.buses.nudge.notified() => {}
        }
        let now = now_ms();
        let threads = app.buses.watched(now);
        if threads.is_empty() {
            if let Ok(mut from) = app.buses.watch_from.lock() {
                from.clear();
            }
            continue;
        }
        let me = &app.runs.worker_id;
        if let Err(e) = app
            .control
            .watch(me, &threads, now, now + WATCH_TTL_MS)
            .await
        {
            tracing::warn!("cannot renew this process's thread subscriptions: {e}");
            continue;
        }
        relay_new_runs(&app, &threads, now).await;
        // Runs queued in a burst are looked for together.
        tokio::time::sleep(WATCH_SPACING).await;
    }
}

/// Whether an event's method is on one of the subscribed channels (`input` covers
/// `input.requested`; `custom:NAME` a custom event of that name).
fn wanted(method: &str, channels: &[String]) -> bool {
    channels.is_empty()
        || channels.iter().any(|c| {
            method == c
                || method
                    .strip_prefix(c.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
                || (c.starts_with("custom:") && method == "custom")
        })
}

fn success(id: &Value, result: Value, seq: u64) -> Value {
    json!({"type": "success", "id": id, "result": result, "meta": {"applied_through_seq": seq}})
}

fn failure(id: &Value, code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "id": id, "error": code, "message": message.into()})
}

/// Runs one command on a thread; the answer is the protocol's success or error envelope.
async fn command(app: &Arc<App>, thread_id: &str, cmd: &Value) -> Value {
    let id = cmd.get("id").cloned().unwrap_or(Value::Null);
    let method = cmd
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = cmd
        .get("params")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(bus) = app.buses.get_or_make(thread_id) else {
        return failure(&id, "internal", "the thread's event bus is unavailable");
    };
    let run = |body: Map<String, Value>| {
        let app = app.clone();
        let thread_id = thread_id.to_string();
        async move {
            let body = Bytes::from(Value::Object(body).to_string());
            create_run(&app, Some(thread_id), body).await
        }
    };
    match method {
        "run.start" => {
            let mut body = Map::new();
            for key in ["assistant_id", "input", "config", "metadata", "context"] {
                if let Some(v) = params.get(key) {
                    body.insert(key.into(), v.clone());
                }
            }
            body.insert("if_not_exists".into(), json!("create"));
            match run(body).await {
                Ok(row) => success(&id, json!({"run_id": row.run_id}), bus.seq()),
                Err(e) => failure(&id, "invalid_argument", e.detail()),
            }
        }
        "input.respond" => {
            let response = params.get("response").cloned().unwrap_or(Value::Null);
            let Some(assistant) = app.latest_assistant(thread_id).await else {
                return failure(&id, "no_such_run", "the thread has no run to answer");
            };
            let mut command = Map::new();
            command.insert("resume".into(), response);
            if let Some(update) = params.get("update") {
                command.insert("update".into(), update.clone());
            }
            let mut body = Map::new();
            body.insert("assistant_id".into(), json!(assistant));
            body.insert("command".into(), Value::Object(command));
            match run(body).await {
                Ok(_) => success(&id, json!({}), bus.seq()),
                Err(e) if e.status() == StatusCode::BAD_REQUEST => {
                    failure(&id, "no_such_interrupt", e.detail())
                }
                Err(e) => failure(&id, "invalid_argument", e.detail()),
            }
        }
        "state.get" => match super::api::thread_state_value(app, thread_id).await {
            Ok(state) => success(&id, state, bus.seq()),
            Err(e) => failure(&id, "invalid_argument", e.detail()),
        },
        "state.listCheckpoints" => {
            let limit = params
                .get("limit")
                .and_then(Value::as_u64)
                .map_or(10, |l| l as usize);
            let before = params.get("before").and_then(Value::as_str);
            match super::api::checkpoint_list(app, thread_id, limit, before).await {
                Ok(list) => success(&id, list, bus.seq()),
                Err(e) => failure(&id, "invalid_argument", e.detail()),
            }
        }
        "state.fork" => {
            let Some(checkpoint) = params.get("checkpoint_id").and_then(Value::as_str) else {
                return failure(
                    &id,
                    "invalid_argument",
                    "state.fork needs a `checkpoint_id`",
                );
            };
            let Some(assistant) = app.latest_assistant(thread_id).await else {
                return failure(&id, "no_such_checkpoint", "the thread has no checkpoints");
            };
            let mut body = Map::new();
            body.insert("assistant_id".into(), json!(assistant));
            body.insert("checkpoint_id".into(), json!(checkpoint));
            for key in ["input", "config"] {
                if let Some(v) = params.get(key) {
                    body.insert(key.into(), v.clone());
                }
            }
            match run(body).await {
                Ok(row) => success(
                    &id,
                    json!({"run_id": row.run_id, "thread_id": row.thread_id}),
                    bus.seq(),
                ),
                Err(e)
                    if e.status() == StatusCode::NOT_FOUND || e.detail().contains("checkpoint") =>
                {
                    failure(&id, "no_such_checkpoint", e.detail())
                }
                Err(e) => failure(&id, "invalid_argument", e.detail()),
            }
        }
        "agent.getTree" => {
            let Some(graph) = app.latest_assistant(thread_id).await else {
                return failure(&id, "no_such_run", "the thread has no run yet");
            };
            let runs = match app.control.runs_of(thread_id).await {
                Ok(runs) => runs,
                Err(e) => return failure(&id, "unknown_error", e),
            };
            let run = match params.get("run_id").and_then(Value::as_str) {
                Some(rid) => match runs.iter().find(|r| r.run_id == rid) {
                    Some(r) => Some(r),
                    None => {
                        return failure(&id, "no_such_run", format!("no run {rid} on this thread"));
                    }
                },
                // Newest first.
                None => runs.first(),
            };
            let status = match run.map(|r| r.status) {
                None => "started",
                Some(RunState::Pending | RunState::Running) => "running",
                Some(RunState::Success) => "completed",
                Some(RunState::Error | RunState::Timeout) => "failed",
                Some(RunState::Interrupted) => "interrupted",
            };
            // Subgraphs run as tasks of their parent's run and are not listed as children.
            success(
                &id,
                json!({"tree": {"namespace": [], "status": status, "graph_name": graph}}),
                bus.seq(),
            )
        }
        "subscription.subscribe" | "subscription.unsubscribe" | "subscription.reconnect" => {
            // Over HTTP each event stream is its own subscription.
            success(
                &id,
                json!({"subscription_id": uuid::Uuid::new_v4().to_string(), "replayed_events": 0}),
                bus.seq(),
            )
        }
        "" => failure(&id, "invalid_argument", "a command needs a `method`"),
        other => failure(
            &id,
            "unknown_command",
            format!(
                "`{other}` is not supported; supported: run.start, input.respond, state.get, state.listCheckpoints, state.fork, agent.getTree, subscription.subscribe"
            ),
        ),
    }
}

/// `POST /threads/{id}/commands`.
pub(crate) async fn commands(
    State(app): State<Arc<App>>,
    Path(tid): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    super::api::check_thread_id(&tid)?;
    let cmd: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::unprocessable(format!("the command is not valid JSON: {e}")))?;
    Ok(axum::Json(command(&app, &tid, &cmd).await).into_response())
}

/// What a subscription asks for.
struct Filter {
    channels: Vec<String>,
    since: Option<u64>,
}

fn filter_of(params: &Value) -> Filter {
    Filter {
        channels: params
            .get("channels")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        since: params.get("since").and_then(Value::as_u64),
    }
}

/// `/threads/{id}/stream/events`: a WebSocket upgrade, or SSE for a POST.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path(tid): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    super::api::check_thread_id(&tid)?;
    let (mut parts, body) = request.into_parts();
    if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &app).await {
        check_origin(&app, &headers)?;
        // The thread may not exist yet (`run.start` creates it), but another user's is hidden.
        if let Some(t) = app.control.thread(&tid).await.map_err(ApiError::internal)?
            && !super::auth::may_see(t.owner.as_deref())
        {
            return Err(ApiError::not_found(format!(
                "Thread with ID {tid} not found"
            )));
        }
        let caller = super::auth::caller();
        let open = app.options.metrics.as_ref().map(|m| m.stream_opened());
        return Ok(upgrade.on_upgrade(move |socket| async move {
            let _open = open;
            super::auth::as_caller(caller, websocket(app, tid, socket)).await
        }));
    }
    if !super::api::thread_exists(&app, &tid).await? {
        return Err(ApiError::not_found(format!(
            "Thread with ID {tid} not found"
        )));
    }
    let body = axum::body::to_bytes(body, app.options.body_limit)
        .await
        .map_err(|e| ApiError::unprocessable(format!("cannot read the body: {e}")))?;
    let params: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::unprocessable(format!("the body is not valid JSON: {e}")))?
    };
    let filter = filter_of(&params);
    let bus = app
        .buses
        .get_or_make(&tid)
        .ok_or_else(|| ApiError::internal("the thread's event bus is unavailable"))?;
    let start = filter.since.unwrap_or_else(|| bus.default_start());
    let rx = bus.changed.subscribe();
    subscribed(&app, &bus, &tid).await;
    let state = (
        bus,
        rx,
        start,
        Vec::<BusEvent>::new().into_iter(),
        filter.channels,
    );
    let stream = futures_util::stream::unfold(
        state,
        |(bus, mut rx, mut cursor, mut batch, channels)| async move {
            loop {
                if let Some(e) = batch.next() {
                    if !wanted(e.method, &channels) {
                        continue;
                    }
                    let ev = SseEvent::default()
                        .event(e.method)
                        .data(&*e.frame)
                        .id(e.seq.to_string());
                    return Some((Ok::<_, Infallible>(ev), (bus, rx, cursor, batch, channels)));
                }
                let more = bus.after(cursor);
                if !more.is_empty() {
                    cursor = more.last().map_or(cursor, |e| e.seq);
                    batch = more.into_iter();
                    continue;
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    let open = app.options.metrics.as_ref().map(|m| m.stream_opened());
    let stream = futures_util::StreamExt::map(stream, move |e| {
        let _open = &open;
        e
    });
    Ok(Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(5))
                .text("heartbeat"),
        )
        .into_response())
}

/// Browsers send `Origin` on a WebSocket handshake: it must be an allowed origin (or the
/// server's own host), so another site's page cannot drive a user's agents.
fn check_origin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let same_host = origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host);
    if same_host || app.options.cors_origins.iter().any(|o| o == origin) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("origin {origin} is not allowed; add it to BRAINOPS_CORS_ORIGINS"),
        ))
    }
}

/// A WebSocket: every inbound frame is a command; `subscription.subscribe` starts (or
/// widens) the event flow on this socket.
async fn websocket(app: Arc<App>, tid: String, mut socket: WebSocket) {
    let Some(bus) = app.buses.get_or_make(&tid) else {
        return;
    };
    let mut rx = bus.changed.subscribe();
    subscribed(&app, &bus, &tid).await;
    let mut channels: Option<Vec<String>> = None;
    let mut cursor = 0u64;
    loop {
        // Send what is due, then wait for a frame or a new event.
        if let Some(ch) = &channels {
            for e in bus.after(cursor) {
                cursor = e.seq;
                if wanted(e.method, ch)
                    && socket
                        .send(Message::Text(e.frame.to_string().into()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = match serde_json::from_str::<Value>(&text) {
                    Ok(cmd) if cmd.get("method").and_then(Value::as_str) == Some("subscription.subscribe") => {
                        let params = cmd.get("params").cloned().unwrap_or(Value::Null);
                        let filter = filter_of(&params);
                        cursor = filter.since.unwrap_or_else(|| bus.default_start());
                        let replayed = bus
                            .after(cursor)
                            .iter()
                            .filter(|e| wanted(e.method, &filter.channels))
                            .count();
                        channels = Some(filter.channels);
                        success(
                            cmd.get("id").unwrap_or(&Value::Null),
                            json!({"subscription_id": uuid::Uuid::new_v4().to_string(), "replayed_events": replayed}),
                            bus.seq(),
                        )
                    }
                    Ok(cmd) => command(&app, &tid, &cmd).await,
                    Err(e) => failure(&Value::Null, "invalid_argument", format!("the frame is not valid JSON: {e}")),
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Puts an engine event on the bus as the protocol's channels carry it: `values`,
/// `updates`, `tasks` (each task's start and result), `messages` (an agent's tokens as
/// text deltas, and each model call's usage as `message-finish`), `tools` (calls and
/// their results) and `custom` (nodes' own events and agents' progress, as before).
pub(crate) fn publish_event(bus: &ThreadBus, event: &engine::Event) {
    use engine::{AgentStep, Event, Progress};
    match event {
        Event::Values { state, .. } => bus.publish("values", state.clone(), false),
        Event::NodeStarted { step, node, task } => bus.publish(
            "tasks",
            json!({"id": task, "name": node, "step": step, "triggers": []}),
            false,
        ),
        Event::NodeFinished {
            step,
            node,
            task,
            update,
        } => {
            bus.publish(
                "tasks",
                json!({"id": task, "name": node, "step": step, "result": update,
                       "error": null, "interrupts": []}),
                false,
            );
            bus.publish("updates", json!({ node.clone(): update }), false)
        }
        Event::Interrupt { node, task, .. } => bus.publish(
            "tasks",
            json!({"id": task, "name": node, "result": null, "error": null,
                   "interrupts": [{"node": node}]}),
            false,
        ),
        Event::Custom { data, .. } => bus.publish("custom", data.clone(), false),
        Event::Progress { node, progress } => {
            if let Progress::Agent { agent, step } = progress {
                let meta = json!({"langgraph_node": node, "agent": agent});
                match step {
                    AgentStep::Token(text) => {
                        let id = bus.message_for(node, &meta, true);
                        bus.publish(
                            "messages",
                            json!({"event": "content-block-delta", "id": id, "index": 0,
                                   "delta": {"type": "text-delta", "text": text},
                                   "metadata": meta}),
                            false,
                        );
                        if let Ok(mut open) = bus.open_messages.lock()
                            && let Some((_, so_far)) = open.get_mut(node.as_str())
                        {
                            so_far.push_str(text);
                        }
                    }
                    AgentStep::ToolCall {
                        id,
                        name,
                        arguments,
                    } => bus.publish(
                        "tools",
                        json!({"event": "tool-started", "tool_call_id": id, "tool_name": name,
                               "input": arguments, "metadata": meta}),
                        false,
                    ),
                    AgentStep::ToolResult {
                        id,
                        name,
                        output,
                        error,
                    } => bus.publish(
                        "tools",
                        match error {
                            Some(message) => json!({"event": "tool-error", "tool_call_id": id,
                                "tool_name": name, "message": message, "metadata": meta}),
                            None => json!({"event": "tool-finished", "tool_call_id": id,
                                "tool_name": name, "output": output, "metadata": meta}),
                        },
                        false,
                    ),
                    _ => {}
                }
            }
            bus.publish(
                "custom",
                serde_json::to_value(progress).unwrap_or(Value::Null),
                false,
            )
        }
        Event::Usage {
            node,
            model,
            input_tokens,
            output_tokens,
            cost_usd,
            ..
        } => {
            // The model call is over: its message (opened by its first token, or now when
            // it streamed none) gets its text block closed and its usage.
            let meta = json!({"langgraph_node": node, "model": model});
            let id = bus.message_for(node, &meta, false);
            let text = bus
                .open_messages
                .lock()
                .ok()
                .and_then(|mut open| open.remove(node.as_str()))
                .map(|(_, text)| text);
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                bus.publish(
                    "messages",
                    json!({"event": "content-block-finish", "id": id, "index": 0,
                           "content": {"type": "text", "text": text}, "metadata": meta}),
                    false,
                );
            }
            bus.publish(
                "messages",
                json!({"event": "message-finish", "id": id, "model": model,
                       "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                 "total_tokens": input_tokens + output_tokens,
                                 "cost_usd": cost_usd},
                       "metadata": meta}),
                false,
            )
        }
        _ => {}
    }
}

/// The events that end a run on the bus: its question (`input.requested`) and lifecycle.
pub(crate) fn publish_end(
    bus: &ThreadBus,
    thread_id: &str,
    graph: &str,
    outcome: &engine::RunOutcome,
    cancelled: bool,
) {
    if let Some(error) = super::wire::outcome_error(outcome) {
        let message = if cancelled {
            "cancelled".to_string()
        } else {
            error["message"].as_str().unwrap_or_default().to_string()
        };
        bus.publish(
            "lifecycle",
            json!({"event": "failed", "graph_name": graph, "error": message}),
            false,
        );
        return;
    }
    // A subscriber who joined mid-run, when nobody had asked for the run's values, still
    // reads its output: the state it ended with.
    if !bus.run_values.load(Ordering::Relaxed) {
        bus.publish("values", outcome.state.clone(), false);
    }
    if let Some(info) = &outcome.interrupt {
        for i in super::wire::interrupts(thread_id, outcome.checkpoint_id, Some(info)) {
            bus.publish(
                "input.requested",
                json!({"interrupt_id": i["id"], "value": i["value"], "payload": i["value"]}),
                false,
            );
        }
        bus.publish(
            "lifecycle",
            json!({"event": "interrupted", "graph_name": graph}),
            false,
        );
        return;
    }
    bus.publish(
        "lifecycle",
        json!({"event": "completed", "graph_name": graph}),
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{AgentStep, Event, Progress};

    fn frames(events: &[Event]) -> Vec<(&'static str, Value)> {
        let bus = ThreadBus::new();
        for e in events {
            publish_event(&bus, e);
        }
        bus.after(0)
            .into_iter()
            .map(|e| {
                let frame: Value = serde_json::from_str(&e.frame).unwrap_or(Value::Null);
                (e.method, frame["params"]["data"].clone())
            })
            .collect()
    }

    fn agent(step: AgentStep) -> Event {
        Event::Progress {
            node: "reply".into(),
            progress: Progress::Agent {
                agent: "customer.chat_replier".into(),
                step,
            },
        }
    }

    #[test]
    fn tasks_tokens_tools_and_usage_reach_their_channels() {
        let got = frames(&[
            Event::NodeStarted {
                step: 1,
                node: "reply".into(),
                task: "reply".into(),
            },
            agent(AgentStep::Token("Hel".into())),
            agent(AgentStep::ToolCall {
                id: "c1".into(),
                name: "roofing.estimate".into(),
                arguments: json!({"area_sqft": 2000}),
            }),
            agent(AgentStep::ToolResult {
                id: "c1".into(),
                name: "roofing.estimate".into(),
                output: Some(json!({"total_usd": 11068.54})),
                error: None,
            }),
            agent(AgentStep::ToolResult {
                id: "c2".into(),
                name: "roofing.estimate".into(),
                output: None,
                error: Some("pitch must be positive".into()),
            }),
            Event::Usage {
                node: "reply".into(),
                task: "reply".into(),
                model: "local:smollm2-135m".into(),
                input_tokens: 42,
                output_tokens: 12,
                cost_usd: None,
            },
            Event::NodeFinished {
                step: 1,
                node: "reply".into(),
                task: "reply".into(),
                update: json!({"reply": "Hello"}),
            },
        ]);
        let on = |ch: &str| -> Vec<&Value> {
            got.iter()
                .filter(|(m, _)| *m == ch)
                .map(|(_, d)| d)
                .collect()
        };
        let tasks = on("tasks");
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0]["name"], "reply");
        assert!(tasks[0].get("result").is_none(), "a start has no result");
        assert_eq!(tasks[1]["result"], json!({"reply": "Hello"}));
        let messages = on("messages");
        // langchain-protocol 0.0.20's framing: start, a text block, its deltas, its end,
        // the message's end with the usage; every event names the message.
        let events: Vec<&str> = messages
            .iter()
            .map(|m| m["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            [
                "message-start",
                "content-block-start",
                "content-block-delta",
                "content-block-finish",
                "message-finish"
            ]
        );
        assert_eq!(messages[0]["role"], "ai");
        assert!(messages.iter().all(|m| m["id"] == messages[0]["id"]));
        assert_eq!(
            messages[2]["delta"],
            json!({"type": "text-delta", "text": "Hel"})
        );
        assert_eq!(messages[2]["metadata"]["langgraph_node"], "reply");
        assert_eq!(
            messages[3]["content"],
            json!({"type": "text", "text": "Hel"})
        );
        assert_eq!(messages[4]["usage"]["output_tokens"], 12);
        let tools = on("tools");
        assert_eq!(tools[0]["event"], "tool-started");
        assert_eq!(tools[0]["input"]["area_sqft"], 2000);
        assert_eq!(tools[1]["event"], "tool-finished");
        assert_eq!(tools[1]["output"]["total_usd"], 11068.54);
        assert_eq!(tools[2]["event"], "tool-error");
        assert_eq!(tools[2]["message"], "pitch must be positive");
        // Agents' progress stays on `custom` too, as before.
        assert_eq!(on("custom").len(), 4);
        assert_eq!(on("updates"), vec![&json!({"reply": {"reply": "Hello"}})]);
    }
}
