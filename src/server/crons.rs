//! Crons: runs started on a schedule (`/runs/crons`, `/threads/{id}/runs/crons`, and the
//! `brainops cron` CLI). A cron is a row with its next due time. Every process that executes
//! runs looks for due crons once a second; the one whose compare-and-set moves the due time
//! forward queues that tick's run, so each tick starts exactly one run however many
//! processes share the store, with no leader.
//!
//! Schedules are standard cron expressions (5 fields, or 6 with seconds first; `@hourly`,
//! names of days and months) in a time zone (IANA name, UTC by default). A tick that finds
//! the previous run of its cron still active follows the overlap policy: `skip` it,
//! `enqueue` behind it, or `cancel` the previous run. Ticks missed while no process ran are
//! caught up once, if the latest is younger than the catch-up window; older ones are
//! skipped. A cron with an `end_time` stops after it.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::App;
use super::api::{ApiError, ApiResult, body_object, paged, store_err};
use super::auth::{Identity, as_caller, caller, may_see};
use super::wire::{iso, now_ms};

type Shared = State<Arc<App>>;

/// A cron as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CronRow {
    pub(crate) cron_id: String,
    pub(crate) assistant_id: String,
    /// The thread every tick runs on; `None`: a new thread per tick.
    pub(crate) thread_id: Option<String>,
    /// The user that created it (its runs are that user's).
    pub(crate) user_id: Option<String>,
    /// The tenant of that user, for the store scoping of its runs.
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    pub(crate) schedule: String,
    pub(crate) timezone: Option<String>,
    /// The run request each tick sends (input, config, stream modes, webhook, …).
    pub(crate) payload: Map<String, Value>,
    pub(crate) end_time_ms: Option<u64>,
    pub(crate) enabled: bool,
    /// Per-tick threads: `delete` (default) or `keep` once the run ends.
    pub(crate) on_run_completed: Option<String>,
    pub(crate) metadata: Map<String, Value>,
    /// `skip`, `enqueue` or `cancel`: when the previous tick's run is still active.
    pub(crate) overlap: String,
    /// Missed ticks younger than this are caught up (once) after downtime.
    pub(crate) catchup_window_ms: u64,
    /// When it is next due; `None` once it ended or is disabled.
    pub(crate) next_run_ms: Option<u64>,
    pub(crate) created_at_ms: u64,
    pub(crate) updated_at_ms: u64,
}

/// Fields of a cron request that are the cron's own, not its runs'.
const CRON_FIELDS: &[&str] = &[
    "schedule",
    "timezone",
    "end_time",
    "enabled",
    "on_run_completed",
    "overlap",
    "catchup_window_seconds",
    "metadata",
];

/// Parses a schedule, naming what is wrong.
pub(crate) fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    croner::Cron::from_str(schedule).map_err(|e| {
        format!(
            "schedule `{schedule}`: {e}; use 5 fields (minute hour day-of-month month day-of-week, e.g. `*/5 * * * *`) or 6 with seconds first"
        )
    })
}

/// Parses an IANA time zone name (`None`: UTC).
fn parse_zone(name: Option<&str>) -> Result<jiff::tz::TimeZone, String> {
    match name {
        None | Some("UTC") | Some("utc") => Ok(jiff::tz::TimeZone::UTC),
        Some(n) => jiff::tz::TimeZone::get(n)
            .map_err(|e| format!("timezone `{n}`: {e}; give an IANA name such as America/Chicago")),
    }
}

/// The first tick of `cron` strictly after `after_ms`.
fn next_tick(row: &CronRow, after_ms: u64) -> Result<Option<u64>, String> {
    let cron = parse_schedule(&row.schedule)?;
    let zone = parse_zone(row.timezone.as_deref())?;
    let start = jiff::Timestamp::from_millisecond(after_ms as i64)
        .map_err(|e| e.to_string())?
        .to_zoned(zone);
    let next = cron
        .find_next_occurrence(&start, false)
        .map_err(|e| format!("schedule `{}`: {e}", row.schedule))?;
    let ms = u64::try_from(next.timestamp().as_millisecond()).unwrap_or(0);
    Ok(match row.end_time_ms {
        Some(end) if ms > end => None,
        _ => Some(ms),
    })
}

/// A cron as the API shows it (the reference server's fields).
pub(crate) fn cron_json(row: &CronRow) -> Value {
    let mut payload = row.payload.clone();
    payload.insert("schedule".into(), json!(row.schedule));
    payload.insert("assistant_id".into(), json!(row.assistant_id));
    json!({
        "cron_id": row.cron_id,
        "assistant_id": row.assistant_id,
        "thread_id": row.thread_id,
        "user_id": row.user_id,
        "end_time": row.end_time_ms.map(iso),
        "schedule": row.schedule,
        "timezone": row.timezone,
        "payload": payload,
        "next_run_date": row.next_run_ms.map(iso),
        "metadata": row.metadata,
        "on_run_completed": row.on_run_completed,
        "enabled": row.enabled,
        "overlap": row.overlap,
        "catchup_window_seconds": row.catchup_window_ms / 1000,
        "created_at": iso(row.created_at_ms),
        "updated_at": iso(row.updated_at_ms),
    })
}

fn unprocessable(e: String) -> ApiError {
    ApiError::unprocessable(e)
}

/// Applies the cron fields of `body` to `row` (creation and PATCH), checking each.
fn apply_fields(row: &mut CronRow, body: &Map<String, Value>) -> ApiResult<()> {
    if let Some(v) = body.get("schedule") {
        let s = v
            .as_str()
            .ok_or_else(|| ApiError::unprocessable("schedule: expected a cron expression"))?;
        parse_schedule(s).map_err(unprocessable)?;
        row.schedule = s.to_string();
    }
    if let Some(v) = body.get("timezone") {
        row.timezone = match v {
            Value::Null => None,
            Value::String(s) => {
                parse_zone(Some(s)).map_err(unprocessable)?;
                Some(s.clone())
            }
            _ => return Err(ApiError::unprocessable("timezone: expected an IANA name")),
        };
    }
    if let Some(v) = body.get("end_time") {
        row.end_time_ms = match v {
            Value::Null => None,
            Value::String(s) => Some(
                s.parse::<jiff::Timestamp>()
                    .map_err(|e| {
                        ApiError::unprocessable(format!(
                            "end_time `{s}`: {e}; give an ISO-8601 time with an offset"
                        ))
                    })?
                    .as_millisecond()
                    .max(0) as u64,
            ),
            _ => {
                return Err(ApiError::unprocessable(
                    "end_time: expected an ISO-8601 time",
                ));
            }
        };
    }
    if let Some(v) = body.get("enabled") {
        row.enabled = v
            .as_bool()
            .ok_or_else(|| ApiError::unprocessable("enabled: expected true or false"))?;
    }
    if let Some(v) = body.get("on_run_completed") {
        row.on_run_completed = match v.as_str() {
            None if v.is_null() => None,
            Some(s @ ("delete" | "keep")) => Some(s.to_string()),
            _ => {
                return Err(ApiError::unprocessable(
                    "on_run_completed: expected `delete` or `keep`",
                ));
            }
        };
    }
    if let Some(v) = body.get("overlap") {
        row.overlap = match v.as_str() {
            Some(s @ ("skip" | "enqueue" | "cancel")) => s.to_string(),
            _ => {
                return Err(ApiError::unprocessable(
                    "overlap: expected `skip`, `enqueue` or `cancel`",
                ));
            }
        };
    }
    if let Some(v) = body.get("catchup_window_seconds") {
        row.catchup_window_ms = v
            .as_f64()
            .filter(|s| *s >= 0.0)
            .map(|s| (s * 1000.0) as u64)
            .ok_or_else(|| {
                ApiError::unprocessable("catchup_window_seconds: expected a non-negative number")
            })?;
    }
    if let Some(v) = body.get("metadata") {
        row.metadata = match v {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            _ => return Err(ApiError::unprocessable("metadata: expected an object")),
        };
    }
    for (k, v) in body {
        if !CRON_FIELDS.contains(&k.as_str()) && k != "assistant_id" {
            row.payload.insert(k.clone(), v.clone());
        }
    }
    row.next_run_ms = if row.enabled {
        next_tick(row, now_ms()).map_err(unprocessable)?
    } else {
        None
    };
    Ok(())
}

async fn create_cron(app: &Arc<App>, thread: Option<String>, body: Bytes) -> ApiResult<CronRow> {
    let body = body_object(&body)?;
    let assistant_id = body
        .get("assistant_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::unprocessable("assistant_id: required"))?;
    let assistant = app
        .assistant(assistant_id)
        .ok_or_else(|| ApiError::not_found(format!("Assistant {assistant_id} not found")))?;
    if !body.contains_key("schedule") {
        return Err(ApiError::unprocessable("schedule: required"));
    }
    if let Some(tid) = &thread {
        match app.control.thread(tid).await.map_err(store_err)? {
            Some(t) if may_see(t.owner.as_deref()) => {}
            _ => {
                return Err(ApiError::not_found(format!(
                    "Thread with ID {tid} not found"
                )));
            }
        }
    }
    // Double texting on the cron's own thread maps to the overlap policy.
    let overlap = match body.get("multitask_strategy").and_then(Value::as_str) {
        Some("enqueue") => "enqueue",
        Some("interrupt" | "rollback") => "cancel",
        _ => "skip",
    };
    let now = now_ms();
    let who = caller();
    let mut row = CronRow {
        cron_id: uuid::Uuid::now_v7().to_string(),
        assistant_id: assistant.assistant_id.clone(),
        thread_id: thread,
        user_id: who.as_ref().map(|c| c.user.clone()),
        tenant: who.map(|c| c.tenant),
        schedule: String::new(),
        timezone: None,
        payload: Map::new(),
        end_time_ms: None,
        enabled: true,
        on_run_completed: None,
        metadata: Map::new(),
        overlap: overlap.into(),
        catchup_window_ms: 3_600_000,
        next_run_ms: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    row.payload.remove("multitask_strategy");
    apply_fields(&mut row, &body)?;
    row.payload.remove("multitask_strategy");
    // The run part is checked as a run request would be, so a bad cron fails now and not at
    // its first tick.
    super::api::check_run_body(app, &run_body(&row, 0)).map_err(|e| {
        ApiError::unprocessable(format!("{} (in the cron's run request)", e.detail()))
    })?;
    app.control.put_cron(&row).await.map_err(store_err)?;
    Ok(row)
}

pub(crate) async fn create_for_thread(
    State(app): Shared,
    Path(tid): Path<String>,
    body: Bytes,
) -> ApiResult {
    super::api::check_thread_id(&tid)?;
    let row = create_cron(&app, Some(tid), body).await?;
    Ok(axum::Json(cron_json(&row)).into_response())
}

pub(crate) async fn create(State(app): Shared, body: Bytes) -> ApiResult {
    let row = create_cron(&app, None, body).await?;
    Ok(axum::Json(cron_json(&row)).into_response())
}

async fn load(app: &App, id: &str) -> ApiResult<CronRow> {
    app.control
        .cron(id)
        .await
        .map_err(store_err)?
        .filter(|c| may_see(c.user_id.as_deref()))
        .ok_or_else(|| ApiError::not_found(format!("Cron with ID {id} not found")))
}

pub(crate) async fn get(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    Ok(axum::Json(cron_json(&load(&app, &id).await?)).into_response())
}

pub(crate) async fn update(State(app): Shared, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let mut row = load(&app, &id).await?;
    let body = body_object(&body)?;
    if let Some(a) = body.get("assistant_id").and_then(Value::as_str) {
        row.assistant_id = app
            .assistant(a)
            .ok_or_else(|| ApiError::not_found(format!("Assistant {a} not found")))?
            .assistant_id
            .clone();
    }
    apply_fields(&mut row, &body)?;
    row.updated_at_ms = now_ms();
    app.control.put_cron(&row).await.map_err(store_err)?;
    Ok(axum::Json(cron_json(&row)).into_response())
}

pub(crate) async fn delete(State(app): Shared, Path(id): Path<String>) -> ApiResult {
    load(&app, &id).await?;
    app.control.delete_cron(&id).await.map_err(store_err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn matching(app: &App, body: &Map<String, Value>) -> ApiResult<Vec<CronRow>> {
    let want_assistant = body.get("assistant_id").and_then(Value::as_str).map(|a| {
        app.assistant(a)
            .map_or(a.to_string(), |x| x.assistant_id.clone())
    });
    let want_thread = body.get("thread_id").and_then(Value::as_str);
    let want_enabled = body.get("enabled").and_then(Value::as_bool);
    let metadata = body.get("metadata").and_then(Value::as_object);
    let mut rows: Vec<CronRow> = app
        .control
        .crons()
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|c| may_see(c.user_id.as_deref()))
        .filter(|c| want_assistant.as_ref().is_none_or(|a| &c.assistant_id == a))
        .filter(|c| want_thread.is_none_or(|t| c.thread_id.as_deref() == Some(t)))
        .filter(|c| want_enabled.is_none_or(|e| c.enabled == e))
        .filter(|c| metadata.is_none_or(|m| m.iter().all(|(k, v)| c.metadata.get(k) == Some(v))))
        .collect();
    let key = body
        .get("sort_by")
        .and_then(Value::as_str)
        .unwrap_or("created_at");
    match key {
        "next_run_date" => rows.sort_by_key(|c| c.next_run_ms),
        "updated_at" => rows.sort_by_key(|c| c.updated_at_ms),
        _ => rows.sort_by_key(|c| c.created_at_ms),
    }
    if body.get("sort_order").and_then(Value::as_str) != Some("asc") {
        rows.reverse();
    }
    Ok(rows)
}

pub(crate) async fn search(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    let rows = matching(&app, &body).await?;
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
    let offset = body.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let select = body.get("select").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    });
    Ok(paged(
        rows.iter().map(cron_json).collect(),
        limit,
        offset,
        select,
    ))
}

pub(crate) async fn count(State(app): Shared, body: Bytes) -> ApiResult {
    let body = body_object(&body)?;
    Ok(axum::Json(json!(matching(&app, &body).await?.len())).into_response())
}

/// The run request a tick (due at `tick_ms`; 0 when only checking) sends.
fn run_body(row: &CronRow, tick_ms: u64) -> Map<String, Value> {
    let mut body = row.payload.clone();
    body.insert("assistant_id".into(), json!(row.assistant_id));
    let mut metadata = body
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    metadata.insert("cron_id".into(), json!(row.cron_id));
    if tick_ms > 0 {
        metadata.insert("cron_tick".into(), json!(iso(tick_ms)));
    }
    body.insert("metadata".into(), Value::Object(metadata));
    // The overlap policy was applied before the run is made.
    body.insert("multitask_strategy".into(), json!("enqueue"));
    if row.thread_id.is_none() {
        body.insert(
            "on_completion".into(),
            json!(row.on_run_completed.as_deref().unwrap_or("delete")),
        );
    }
    body
}

/// Starts the runs of the crons that are due. Called once a second by every process that
/// executes runs.
pub(crate) async fn tick(app: &Arc<App>) {
    let now = now_ms();
    let due = match app.control.due_crons(now).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!("cannot read the due crons: {e}");
            return;
        }
    };
    for cron in due {
        if let Err(e) = fire(app, cron, now).await {
            tracing::warn!("cron: {e}");
        }
    }
}

/// The id of the run a cron's tick queues: the same in every process and on every retry,
/// so a tick is queued at most once.
fn tick_run_id(cron_id: &str, due_ms: u64) -> String {
    const TICKS: uuid::Uuid = uuid::Uuid::from_u128(0x6b72_6f6e_5f74_6963_6b5f_7275_6e5f_6964);
    uuid::Uuid::new_v5(&TICKS, format!("{cron_id}@{due_ms}").as_bytes()).to_string()
}

/// Queues the run of the cron's due tick, then moves the cron to its next tick. In that
/// order, so a process that stops in between loses nothing: the cron is still due, and the
/// next process to look finds the tick's run by its id and only moves the cron on. Exactly
/// one process moves it (a compare-and-set on the due time).
async fn fire(app: &Arc<App>, cron: CronRow, now: u64) -> Result<(), String> {
    let Some(due) = cron.next_run_ms else {
        return Ok(());
    };
    // The next tick after now: missed ticks collapse into this one.
    let mut next = cron.clone();
    next.next_run_ms = next_tick(&cron, now.max(due))?;
    next.enabled = next.next_run_ms.is_some();
    next.updated_at_ms = now;
    let queued = if now.saturating_sub(due) > cron.catchup_window_ms {
        tracing::warn!(
            cron = %cron.cron_id,
            "skipped ticks missed since {} (older than the catch-up window)",
            iso(due)
        );
        Ok(())
    } else {
        // Read again: another process may have queued this tick and moved on since the
        // due crons were read.
        let current = app.control.cron(&cron.cron_id).await?;
        if current.and_then(|c| c.next_run_ms) != Some(due) {
            return Ok(());
        }
        queue(app, &cron, due).await
    };
    match queued {
        Err(Failure::Store(e)) => {
            // Tried again at the next tick of the clock (every second).
            return Err(format!(
                "cron {}: cannot queue its tick yet: {e}",
                cron.cron_id
            ));
        }
        Err(Failure::Refused(e)) => tracing::warn!(cron = %cron.cron_id, "{e}"),
        Ok(()) => {}
    }
    app.control.advance_cron(&cron.cron_id, due, &next).await?;
    Ok(())
}

/// Why a tick's run was not queued.
enum Failure {
    /// The store failed: worth trying again.
    Store(String),
    /// The run was refused (its thread is gone, a bad payload): trying again cannot help.
    Refused(String),
}

/// Queues the run of the tick due at `due`, unless it exists (queued before a crash, or by
/// another process) or the overlap policy skips it.
async fn queue(app: &Arc<App>, cron: &CronRow, due: u64) -> Result<(), Failure> {
    let run_id = tick_run_id(&cron.cron_id, due);
    if app
        .control
        .run(&run_id)
        .await
        .map_err(Failure::Store)?
        .is_some()
    {
        return Ok(());
    }
    // The previous runs of this cron that are still active.
    let active: Vec<_> = app
        .control
        .active_runs()
        .await
        .map_err(Failure::Store)?
        .into_iter()
        .filter(|r| r.metadata.get("cron_id").and_then(Value::as_str) == Some(&cron.cron_id))
        .collect();
    if !active.is_empty() {
        match cron.overlap.as_str() {
            "skip" => {
                tracing::info!(cron = %cron.cron_id, "tick skipped: the previous run is still active");
                return Ok(());
            }
            "cancel" => {
                for r in active {
                    super::api::cancel_active(app, r).await;
                }
            }
            _ => {}
        }
    }
    let identity = cron.user_id.clone().map(|user| Identity {
        tenant: cron.tenant.clone().unwrap_or_else(|| user.clone()),
        user,
    });
    let body = serde_json::to_vec(&run_body(cron, due))
        .map(Bytes::from)
        .map_err(|e| Failure::Refused(e.to_string()))?;
    let made = as_caller(
        identity,
        super::api::create_run_with_id(app, cron.thread_id.clone(), body, Some(run_id)),
    )
    .await;
    match made {
        Ok(run) => {
            tracing::info!(cron = %cron.cron_id, run = %run.run_id, "cron tick queued a run");
            Ok(())
        }
        Err(e) => {
            let message = format!(
                "cron {}: its tick could not queue a run: {}",
                cron.cron_id,
                e.detail()
            );
            if e.status().is_server_error() {
                Err(Failure::Store(message))
            } else {
                Err(Failure::Refused(message))
            }
        }
    }
}
