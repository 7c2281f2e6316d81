//! Redis as an optional accelerator (`REDIS_URL`, `redis://` or `rediss://`): it wakes
//! workers when a run is queued, carries cancels to the process running a run at once, and
//! fans a run's events out to the API processes whose clients stream it, as they happen.
//!
//! Redis holds nothing Postgres does not: every message here is also in the runs table or
//! its events, so a lost message, a Redis restart or no Redis at all only costs latency
//! (workers poll, cancels land at the next heartbeat, streams read the events table). An
//! idle process sends Redis no commands: it only keeps its subscription open, which Upstash
//! does not bill.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::App;
use super::control::StoredEvent;

/// Where queue wake-ups and cancels are published (the same payloads as `NOTIFY`).
const CONTROL: &str = "brainops:control";

fn run_channel(run_id: &str) -> String {
    format!("brainops:run:{run_id}")
}

/// What a process following a run hears on its channel.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    /// Events, in order.
    Events(Vec<StoredEvent>),
    /// The run's end is stored.
    End,
    /// The subscription was lost and is back: messages in between may be missing.
    Gap,
}

/// This process's Redis: one connection for commands, one for subscriptions.
pub(crate) struct Redis {
    publisher: redis::aio::ConnectionManager,
    sink: tokio::sync::Mutex<Option<redis::aio::PubSubSink>>,
    followed: Mutex<HashMap<String, broadcast::Sender<Frame>>>,
    failing: AtomicBool,
}

impl Redis {
    /// Prepares the connections; nothing is sent until needed, and an unreachable Redis
    /// only means slower wake-ups.
    pub(crate) fn open(url: &str) -> Result<(Arc<Self>, redis::Client), String> {
        // rustls (for rediss://) runs on ring, installed once per process.
        let _ = agents::llm::http_client_builder();
        let client = redis::Client::open(url)
            .map_err(|e| format!("REDIS_URL: {e} (expected redis://HOST:PORT or rediss://…)"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let publisher = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        Ok((
            Arc::new(Redis {
                publisher,
                sink: tokio::sync::Mutex::new(None),
                followed: Mutex::new(HashMap::new()),
                failing: AtomicBool::new(false),
            }),
            client,
        ))
    }

    async fn publish(&self, channel: String, payload: String) {
        let mut conn = self.publisher.clone();
        match conn.publish::<_, _, i64>(channel, payload).await {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!("Redis is reachable again");
                }
            }
            Err(e) => {
                // Once per outage: everything still goes through Postgres.
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("Redis publish failed ({e}); falling back to Postgres polling");
                }
            }
        }
    }

    /// Tells every process: `run` (one was queued) or `cancel:ACTION:RUN_ID`.
    pub(crate) async fn control(&self, payload: &str) {
        self.publish(CONTROL.into(), payload.into()).await;
    }

    /// Publishes a run's new events to the processes streaming it.
    pub(crate) async fn events(&self, run_id: &str, events: &[StoredEvent]) {
        if events.is_empty() {
            return;
        }
        let frame = json!({ "events": events });
        self.publish(run_channel(run_id), frame.to_string()).await;
    }

    /// Tells the processes streaming a run that its end is stored.
    pub(crate) async fn ended(&self, run_id: &str) {
        self.publish(run_channel(run_id), r#"{"end":true}"#.into())
            .await;
    }

    /// Starts hearing a run's channel; pair with [`Redis::unfollow`].
    pub(crate) async fn follow(&self, run_id: &str) -> broadcast::Receiver<Frame> {
        let channel = run_channel(run_id);
        let (rx, new) = match self.followed.lock() {
            Ok(mut f) => match f.get(&channel) {
                Some(tx) => (tx.subscribe(), false),
                None => {
                    let (tx, rx) = broadcast::channel(1024);
                    f.insert(channel.clone(), tx);
                    (rx, true)
                }
            },
            Err(_) => (broadcast::channel(1).1, false),
        };
        if new
            && let Some(sink) = self.sink.lock().await.as_mut()
            && let Err(e) = sink.subscribe(&channel).await
        {
            tracing::warn!("Redis subscribe failed: {e}");
        }
        rx
    }

    /// Stops hearing a run's channel once nobody here follows it.
    pub(crate) async fn unfollow(&self, run_id: &str) {
        let channel = run_channel(run_id);
        let gone = match self.followed.lock() {
            Ok(mut f) => {
                let idle = f.get(&channel).is_some_and(|tx| tx.receiver_count() == 0);
                if idle {
                    f.remove(&channel);
                }
                idle
            }
            Err(_) => false,
        };
        if gone && let Some(sink) = self.sink.lock().await.as_mut() {
            let _ = sink.unsubscribe(&channel).await;
        }
    }

    fn deliver(&self, channel: &str, frame: Frame) {
        if let Ok(f) = self.followed.lock()
            && let Some(tx) = f.get(channel)
        {
            let _ = tx.send(frame);
        }
    }

    fn deliver_all(&self, frame: Frame) {
        if let Ok(f) = self.followed.lock() {
            for tx in f.values() {
                let _ = tx.send(frame.clone());
            }
        }
    }
}

/// Keeps this process subscribed (control channel, and the runs it follows), reconnecting
/// with backoff; after each reconnect the dispatcher and the followers look in Postgres for
/// what they may have missed.
pub(crate) async fn subscribe(app: Arc<App>, redis: Arc<Redis>, client: redis::Client) {
    let mut delay = Duration::from_millis(200);
    let mut down = false;
    loop {
        let failure =
            match tokio::time::timeout(Duration::from_secs(3), client.get_async_pubsub()).await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in 3 s".to_string()),
            };
        let pubsub = match failure {
            Ok(p) => p,
            Err(e) => {
                // Once per outage, then quietly with backoff up to 10 s.
                if !down {
                    tracing::warn!("cannot subscribe to Redis ({e}); retrying until it is back");
                    down = true;
                } else {
                    tracing::debug!("cannot subscribe to Redis ({e}); retrying in {delay:?}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut channels = vec![CONTROL.to_string()];
        if let Ok(f) = redis.followed.lock() {
            channels.extend(f.keys().cloned());
        }
        let mut ok = true;
        for ch in &channels {
            if let Err(e) = sink.subscribe(ch).await {
                tracing::warn!("Redis subscribe failed: {e}");
                ok = false;
                break;
            }
        }
        if !ok {
            tokio::time::sleep(delay).await;
            continue;
        }
        delay = Duration::from_millis(200);
        if std::mem::take(&mut down) {
            tracing::warn!("subscribed to Redis again");
        }
        *redis.sink.lock().await = Some(sink);
        // Anything published while we were away is in Postgres.
        app.runs.poke();
        redis.deliver_all(Frame::Gap);
        while let Some(msg) = stream.next().await {
            let channel = msg.get_channel_name().to_string();
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if channel == CONTROL {
                super::runs::on_notice(&app, &payload);
            } else if let Some(frame) = parse_frame(&payload) {
                redis.deliver(&channel, frame);
            }
        }
        *redis.sink.lock().await = None;
        tracing::warn!("the Redis subscription was lost; polling Postgres until it is back");
        redis.deliver_all(Frame::Gap);
    }
}

fn parse_frame(payload: &str) -> Option<Frame> {
    let v: Value = serde_json::from_str(payload).ok()?;
    if v.get("end").is_some() {
        return Some(Frame::End);
    }
    let events = serde_json::from_value::<Vec<StoredEvent>>(v.get("events")?.clone()).ok()?;
    Some(Frame::Events(events))
}
