//! `GET /threads/{id}/stream`: LangGraph's thread stream (`client.threads.join_stream`).
//! Every run of the thread, the one under way and each one after it, in the order they
//! were created, until the client leaves or the thread is deleted. A run's events are its
//! own stream's (from its start), and its end is a synthetic
//! `metadata {"status": "run_done", "run_id"}`. Every event has an id, `RUN_ID:SEQ` (or
//! `RUN_ID:done`), that `Last-Event-ID` resumes after.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::Event as SseEvent;
use serde_json::json;
use tokio::sync::watch;

use super::App;
use super::api::{
    ApiError, ApiResult, join_modes, joined_log, load_thread, query_pairs, store_err,
};
use super::control::RunRow;
use super::runs::{LogEvent, RunLog};
use super::wire::now_ms;

/// How often the thread's runs are looked up while no run of it is streaming.
const NEXT_RUN_POLL: Duration = Duration::from_millis(200);

/// What the client asked for (`stream_modes`, or `stream_mode` as the SDK sends it).
#[derive(Clone, Copy)]
struct Modes {
    /// Each run's own events (`run_modes`, the default).
    run_events: bool,
}

/// A run's place in the thread's order.
type RunKey = (u64, String);

fn key(row: &RunRow) -> RunKey {
    (row.created_at_ms, row.run_id.clone())
}

/// The run being streamed.
struct Current {
    row: RunRow,
    log: Arc<RunLog>,
    rx: watch::Receiver<(usize, bool)>,
    cursor: usize,
}

struct Follow {
    app: Arc<App>,
    thread_id: String,
    modes: Modes,
    current: Option<Current>,
    /// The last run streamed to its end; the next one comes after it.
    after: RunKey,
    batch: std::vec::IntoIter<LogEvent>,
}

pub(super) async fn thread_stream(
    State(app): State<Arc<App>>,
    Path(tid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let thread = load_thread(&app, &tid).await?;
    let mut modes = Modes { run_events: false };
    let asked = join_modes(&query_pairs(&q)).unwrap_or_else(|| vec!["run_modes".into()]);
    for mode in &asked {
        match mode.as_str() {
            "run_modes" => modes.run_events = true,
            // Runs' start and end only: the `metadata` events.
            "lifecycle" => {}
            // Sent by the reference when the state is updated outside a run; not sent here.
            "state_update" => {}
            other => {
                return Err(ApiError::unprocessable(format!(
                    "stream_mode: `{other}` is not one of run_modes, lifecycle, state_update"
                )));
            }
        }
    }
    let runs = app
        .control
        .runs_of(&thread.thread_id)
        .await
        .map_err(store_err)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once(':'))
        .and_then(|(rid, at)| Some((runs.iter().find(|r| r.run_id == rid)?, at)));
    let mut follow = Follow {
        app: app.clone(),
        thread_id: thread.thread_id.clone(),
        modes,
        current: None,
        after: (now_ms(), String::new()),
        batch: Vec::new().into_iter(),
    };
    match resume {
        Some((row, "done")) => follow.after = key(row),
        Some((row, seq)) => {
            let cursor = seq.parse::<usize>().unwrap_or(0);
            follow.start(row.clone(), cursor);
        }
        // The run under way (or the first waiting), from its start; else the next one.
        None => {
            if let Some(row) = runs
                .iter()
                .filter(|r| r.status.is_active())
                .min_by_key(|r| key(r))
            {
                follow.start(row.clone(), 0);
            }
        }
    }
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    Ok(super::api::sse_response(&app, events, HeaderMap::new()))
}

impl Follow {
    fn start(&mut self, row: RunRow, cursor: usize) {
        let log = joined_log(&self.app, &row);
        let rx = log.subscribe();
        self.current = Some(Current {
            row,
            log,
            rx,
            cursor,
        });
    }

    /// The next event to send; `None` ends the stream (the thread is gone).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(current) = &self.current
                && let Some(e) = self.batch.next()
            {
                if e.is_relayed() || (!self.modes.run_events && &*e.event != "metadata") {
                    continue;
                }
                return Some(
                    SseEvent::default()
                        .event(&*e.event)
                        .data(&*e.data)
                        .id(format!("{}:{}", current.row.run_id, e.seq)),
                );
            }
            let Some(current) = &mut self.current else {
                self.find_next_run().await?;
                continue;
            };
            let (events, done) = current.log.since(current.cursor);
            if !events.is_empty() {
                current.cursor += events.len();
                self.batch = events.into_iter();
                continue;
            }
            if done {
                let run_id = current.row.run_id.clone();
                self.after = key(&current.row);
                self.current = None;
                return Some(
                    SseEvent::default()
                        .event("metadata")
                        .data(json!({"status": "run_done", "run_id": run_id}).to_string())
                        .id(format!("{run_id}:done")),
                );
            }
            if current.rx.changed().await.is_err() {
                // The log was dropped without finishing: look the run up again.
                self.current = None;
            }
        }
    }

    /// Waits for the thread's next run after `self.after` and starts it; `None` when the
    /// thread was deleted (or its store fails).
    async fn find_next_run(&mut self) -> Option<()> {
        loop {
            let runs = self.app.control.runs_of(&self.thread_id).await.ok()?;
            if let Some(row) = runs
                .into_iter()
                .filter(|r| key(r) > self.after)
                .min_by_key(key)
            {
                self.start(row, 0);
                return Some(());
            }
            self.app.control.thread(&self.thread_id).await.ok()??;
            tokio::time::sleep(NEXT_RUN_POLL).await;
        }
    }
}
