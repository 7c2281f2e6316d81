//! Scheduled cleanup inside the processes that execute runs: idle threads past their time
//! to live, checkpoints beyond the latest N of each thread, expired memories, and old run
//! events. It runs every `cleanup.every` (default hourly) in exactly one process across all
//! replicas: the one whose compare-and-set on the job's due time lands.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use super::control::{ThreadRow, TtlStrategy};
use super::wire::now_ms;

/// What scheduled cleanup removes (`BRAINOPS_CLEANUP_EVERY`, `BRAINOPS_THREAD_TTL`,
/// `BRAINOPS_KEEP_CHECKPOINTS`).
#[derive(Debug, Clone)]
pub struct Cleanup {
    /// How often it runs.
    pub every: Duration,
    /// Threads with no activity for this long (and no pending or running run) are deleted.
    pub thread_ttl: Option<Duration>,
    /// Each thread keeps only its latest N checkpoints (its history and forks beyond them go).
    pub keep_checkpoints: Option<usize>,
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup {
            every: Duration::from_secs(3600),
            thread_ttl: None,
            keep_checkpoints: None,
        }
    }
}

/// The job's name in the jobs table.
const JOB: &str = "cleanup";

/// Runs the cleanup if it is due and this process wins it. Called once a second.
pub(crate) async fn tick(app: &Arc<App>) {
    let now = now_ms();
    let next = now + app.options.cleanup.every.as_millis() as u64;
    match app.control.claim_job(JOB, now, next).await {
        Ok(true) => run(app, now).await,
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot schedule the cleanup: {e}"),
    }
}

/// Keeps the thread's latest `keep` checkpoints, through its graph's runner, which
/// snapshots the oldest kept one, so exactly `keep` remain. Returns how many went.
async fn prune(app: &Arc<App>, t: &ThreadRow, keep: usize) -> Result<u64, String> {
    match t.graph_id.as_deref().and_then(|g| app.assistant(g)) {
        Some(a) => a
            .runner
            .prune(&t.thread_id, keep)
            .await
            .map_err(|e| e.to_string()),
        None => app
            .checkpointer
            .prune(&t.thread_id, keep)
            .await
            .map_err(|e| e.to_string()),
    }
}

async fn run(app: &Arc<App>, now: u64) {
    let policy = &app.options.cleanup;
    let mut expired = 0;
    let mut pruned = 0;
    let last = now.saturating_sub(policy.every.as_millis() as u64);
    match app.control.threads().await {
        Ok(threads) => {
            for t in threads {
                let active = match app.control.runs_of(&t.thread_id).await {
                    Ok(runs) => runs.iter().any(|r| r.status.is_active()),
                    Err(_) => true,
                };
                if active {
                    continue;
                }
                // The thread's own ttl, else the policy's.
                if let Some(ttl) = &t.ttl
                    && ttl.expired(t.updated_at_ms, now)
                {
                    match ttl.strategy {
                        TtlStrategy::Delete => {
                            super::runs::delete_thread_everywhere(app, &t.thread_id).await;
                            expired += 1;
                            continue;
                        }
                        TtlStrategy::KeepLatest => match prune(app, &t, 1).await {
                            Ok(n) => pruned += n,
                            Err(e) => {
                                tracing::warn!(thread = %t.thread_id, "cleanup: cannot prune: {e}")
                            }
                        },
                    }
                } else if t.ttl.is_none()
                    && let Some(ttl) = policy.thread_ttl
                    && t.updated_at_ms + (ttl.as_millis() as u64) < now
                {
                    super::runs::delete_thread_everywhere(app, &t.thread_id).await;
                    expired += 1;
                    continue;
                }
                // Only threads that changed since the last cleanup can have new checkpoints.
                if let Some(keep) = policy.keep_checkpoints
                    && t.updated_at_ms >= last.saturating_sub(60_000)
                {
                    match prune(app, &t, keep).await {
                        Ok(n) => pruned += n,
                        Err(e) => {
                            tracing::warn!(thread = %t.thread_id, "cleanup: cannot prune: {e}")
                        }
                    }
                }
            }
        }
        Err(e) => tracing::warn!("cleanup: cannot list threads: {e}"),
    }
    let memories = match app.memory().await {
        Ok(store) => store.sweep_expired().await.unwrap_or_else(|e| {
            tracing::warn!("cleanup: cannot sweep expired memories: {e}");
            0
        }),
        Err(_) => 0,
    };
    let events = app
        .control
        .purge_events(now.saturating_sub(app.options.stream_retention.as_millis() as u64))
        .await
        .unwrap_or(0);
    tracing::info!(
        "cleanup: {expired} idle threads deleted, {pruned} checkpoints pruned, {memories} expired memories, {events} old run events"
    );
}
