//! One conformance suite for every checkpointer: in memory, SQLite, Postgres directly and
//! Postgres through PgBouncer in transaction mode. Each case gets a fresh store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pg as db;

use std::sync::Arc;

use engine::PostgresSaver;
use engine::checkpoint::{
    ChannelDelta, CheckpointError, CheckpointRecord, CheckpointSource, Checkpointer, Lease,
    TaskWrites, ThreadInfo, ThreadStatus,
};
use engine::{MemorySaver, SqliteSaver};
use serde_json::{Map, Value, json};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn thread(id: &str, updated_at_ms: u64) -> ThreadInfo {
    ThreadInfo {
        thread_id: id.into(),
        graph: "g".into(),
        status: ThreadStatus::Idle,
        last_checkpoint: None,
        interrupt: None,
        error: None,
        lease: None,
        created_at_ms: updated_at_ms,
        updated_at_ms,
    }
}

fn record(thread: &str, id: u64, deltas: Vec<ChannelDelta>) -> CheckpointRecord {
    CheckpointRecord {
        thread_id: thread.into(),
        id,
        parent: id.checked_sub(1),
        step: id,
        source: if id == 0 {
            CheckpointSource::Input
        } else {
            CheckpointSource::Loop
        },
        nodes: vec![format!("n{id}")],
        deltas,
        snapshot: None,
        next: vec![format!("n{}", id + 1)],
        sends: Vec::new(),
        joins: vec![],
        created_at_ms: 1_000 + id,
    }
}

fn set(channel: &str, value: Value) -> ChannelDelta {
    ChannelDelta::Set {
        channel: channel.into(),
        value,
    }
}

fn reduce(channel: &str, writes: Vec<Value>) -> ChannelDelta {
    ChannelDelta::Reduce {
        channel: channel.into(),
        writes,
    }
}

fn lease(name: &str) -> Lease {
    Lease {
        owner: format!("test-host/{name}/{}", uuid::Uuid::new_v4().simple()),
        until_ms: now() + 60_000,
    }
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, CheckpointError>) -> String {
    match r {
        Err(CheckpointError::Conflict { message, .. }) => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Puts records 0..n on a fresh thread `id`, without a lease.
async fn linear(store: &dyn Checkpointer, id: &str, n: u64) -> Vec<CheckpointRecord> {
    store.put_thread(&thread(id, now()), None).await.unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let r = record(
            id,
            i,
            vec![
                set("stage", json!(format!("s{i}"))),
                reduce("log", vec![json!({"i": i})]),
            ],
        );
        store.put(&r, None).await.unwrap();
        out.push(r);
    }
    out
}

async fn put_needs_the_thread_and_its_head(store: Arc<dyn Checkpointer>) {
    let msg = is_conflict(store.put(&record("t", 0, vec![]), None).await);
    assert!(msg.contains("does not exist"), "{msg}");
    store.put_thread(&thread("t", now()), None).await.unwrap();
    let first = record("t", 0, vec![set("x", json!(1))]);
    store.put(&first, None).await.unwrap();
    // Without a lease a second checkpoint 0 is a conflict, even an identical one.
    is_conflict(store.put(&first, None).await);
    assert_eq!(store.list("t").await.unwrap().len(), 1);
    let other = CheckpointRecord {
        parent: None,
        ..record("t", 5, vec![])
    };
    let msg = is_conflict(store.put(&other, None).await);
    assert!(msg.contains("moved on"), "{msg}");
    store
        .put(&record("t", 1, vec![set("x", json!(2))]), None)
        .await
        .unwrap();
    let info = store.thread("t").await.unwrap().unwrap();
    assert_eq!(info.last_checkpoint, Some(1));
    let ids: Vec<u64> = store
        .list("t")
        .await
        .unwrap()
        .iter()
        .map(|s| s.checkpoint_id)
        .collect();
    assert_eq!(ids, vec![0, 1]);
}

async fn records_round_trip_exactly(store: Arc<dyn Checkpointer>) {
    store.put_thread(&thread("rt", now()), None).await.unwrap();
    let mut r0 = record(
        "rt",
        0,
        vec![
            set(
                "lead",
                json!({"name": "Zoë \"Q\" O'Neil", "area": 2150.5, "tags": ["hail", null, true], "n": 9007199254740991i64}),
            ),
            reduce(
                "messages",
                vec![json!({"role": "user", "content": "¿hola?\n"})],
            ),
            set("empty", json!({})),
        ],
    );
    r0.joins = vec![engine::checkpoint::JoinProgress {
        join: 2,
        seen: vec!["a".into(), "b".into()],
    }];
    store.put(&r0, None).await.unwrap();
    let mut r1 = record("rt", 1, vec![]);
    r1.snapshot = Some(
        [
            ("lead".to_string(), json!({"name": "x"})),
            ("messages".to_string(), json!([1, 2, 3])),
        ]
        .into_iter()
        .collect::<Map<String, Value>>(),
    );
    store.put(&r1, None).await.unwrap();
    let r2 = record("rt", 2, vec![reduce("messages", vec![json!(4), json!(5)])]);
    store.put(&r2, None).await.unwrap();

    assert_eq!(store.chain("rt", Some(0)).await.unwrap(), vec![r0.clone()]);
    // Byte for byte, so object keys keep the order they were written in.
    assert_eq!(
        serde_json::to_string(&store.chain("rt", Some(0)).await.unwrap()).unwrap(),
        serde_json::to_string(&vec![r0.clone()]).unwrap()
    );
    assert_eq!(
        store.chain("rt", None).await.unwrap(),
        vec![r1.clone(), r2.clone()]
    );
    assert_eq!(store.chain("rt", Some(1)).await.unwrap(), vec![r1.clone()]);
    assert!(store.chain("nope", None).await.unwrap().is_empty());
    let list = store.list("rt").await.unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].bytes, r0.stored_bytes());
    assert_eq!(list[2].parent, Some(1));
    assert_eq!(list[0].source, CheckpointSource::Input);
    assert_eq!(list[1].nodes, vec!["n1".to_string()]);
}

async fn leases_fence_every_write(store: Arc<dyn Checkpointer>) {
    let a = lease("a");
    let b = lease("b");
    let info = store.claim("f", "g", None, &a).await.unwrap();
    assert_eq!(info.status, ThreadStatus::Idle);
    assert_eq!(info.lease.as_ref().map(|l| &l.owner), Some(&a.owner));
    // Nobody else writes while `a` holds it.
    is_conflict(store.put(&record("f", 0, vec![]), None).await);
    is_conflict(store.put(&record("f", 0, vec![]), Some(&b)).await);
    is_conflict(store.claim("f", "g", None, &b).await);
    is_conflict(store.renew("f", &b).await);
    let msg = is_conflict(store.put_thread(&thread("f", now()), None).await);
    assert!(msg.contains(&a.owner), "{msg}");
    store.put(&record("f", 0, vec![]), Some(&a)).await.unwrap();
    // The owner replaying a put whose reply it lost is accepted, and stores nothing new.
    store.put(&record("f", 0, vec![]), Some(&a)).await.unwrap();
    assert_eq!(store.list("f").await.unwrap().len(), 1);
    store
        .put_writes(
            "f",
            0,
            &TaskWrites {
                task_id: "t0".into(),
                node: "n".into(),
                writes: vec![],
            },
            Some(&a),
        )
        .await
        .unwrap();
    store.renew("f", &a).await.unwrap();
    // `b` takes over (as after `a` died): from now on `a` is refused everywhere.
    store.claim("f", "g", Some(&a.owner), &b).await.unwrap();
    let msg = is_conflict(store.put(&record("f", 1, vec![]), Some(&a)).await);
    assert!(msg.contains("taken over"), "{msg}");
    is_conflict(
        store
            .put_writes(
                "f",
                0,
                &TaskWrites {
                    task_id: "t1".into(),
                    node: "n".into(),
                    writes: vec![],
                },
                Some(&a),
            )
            .await,
    );
    is_conflict(store.renew("f", &a).await);
    let mut done = thread("f", now());
    done.status = ThreadStatus::Done;
    is_conflict(store.put_thread(&done, Some(&a)).await);
    store.put(&record("f", 1, vec![]), Some(&b)).await.unwrap();
    // Releasing: the owner writes a status with no lease; then anyone may claim.
    store.put_thread(&done, Some(&b)).await.unwrap();
    let info = store.thread("f").await.unwrap().unwrap();
    assert_eq!(info.lease, None);
    assert_eq!(info.status, ThreadStatus::Done);
    assert_eq!(
        info.last_checkpoint,
        Some(1),
        "put_thread never moves the head"
    );
    store.claim("f", "g", None, &a).await.unwrap();
}

async fn pending_writes_belong_to_the_head(store: Arc<dyn Checkpointer>) {
    linear(store.as_ref(), "w", 2).await;
    let w = |task: &str, v: i64| TaskWrites {
        task_id: task.into(),
        node: "n".into(),
        writes: vec![("x".into(), json!(v)), ("log".into(), json!({"v": v}))],
    };
    store.put_writes("w", 1, &w("b", 1), None).await.unwrap();
    store.put_writes("w", 1, &w("a", 2), None).await.unwrap();
    store.put_writes("w", 1, &w("b", 3), None).await.unwrap();
    let got = store.writes("w", 1).await.unwrap();
    assert_eq!(got, vec![w("a", 2), w("b", 3)]);
    let msg = is_conflict(store.put_writes("w", 0, &w("c", 4), None).await);
    assert!(msg.contains("moved on"), "{msg}");
    store.put(&record("w", 2, vec![]), None).await.unwrap();
    assert!(store.writes("w", 1).await.unwrap().is_empty());
}

async fn threads_list_and_delete(store: Arc<dyn Checkpointer>) {
    linear(store.as_ref(), "old", 2).await;
    store.put_thread(&thread("older", 5), None).await.unwrap();
    linear(store.as_ref(), "new", 1).await;
    let ids: Vec<String> = store
        .threads()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.thread_id)
        .collect();
    assert_eq!(ids.last().map(String::as_str), Some("older"));
    assert_eq!(ids.len(), 3);
    store
        .put_writes(
            "old",
            1,
            &TaskWrites {
                task_id: "t".into(),
                node: "n".into(),
                writes: vec![],
            },
            None,
        )
        .await
        .unwrap();
    store.delete_thread("old").await.unwrap();
    assert!(store.thread("old").await.unwrap().is_none());
    assert!(store.chain("old", None).await.unwrap().is_empty());
    assert!(store.list("old").await.unwrap().is_empty());
    assert!(store.writes("old", 1).await.unwrap().is_empty());
    assert!(store.thread("new").await.unwrap().is_some());
}

/// The side-effect outbox: pending, then sent with the reply; per thread; gone with the
/// thread and its subgraph threads.
async fn side_effects_round_trip_and_go_with_their_thread(store: Arc<dyn Checkpointer>) {
    use engine::checkpoint::{EffectStatus, SideEffect};
    linear(store.as_ref(), "fx", 1).await;
    linear(store.as_ref(), "fx/sub@1", 1).await;
    linear(store.as_ref(), "other", 1).await;
    assert_eq!(store.side_effect("fx", "k/0").await.unwrap(), None);
    let pending = SideEffect {
        status: EffectStatus::Pending,
        result: None,
        updated_at_ms: 1,
    };
    store.put_side_effect("fx", "k/0", &pending).await.unwrap();
    assert_eq!(store.side_effect("fx", "k/0").await.unwrap(), Some(pending));
    let sent = SideEffect {
        status: EffectStatus::Sent,
        result: Some(json!({"id": "SM1", "n": [1, 2]})),
        updated_at_ms: 2,
    };
    store.put_side_effect("fx", "k/0", &sent).await.unwrap();
    store
        .put_side_effect("fx/sub@1", "k/0", &sent)
        .await
        .unwrap();
    store.put_side_effect("other", "k/0", &sent).await.unwrap();
    assert_eq!(
        store.side_effect("fx", "k/0").await.unwrap(),
        Some(sent.clone())
    );
    assert_eq!(store.side_effect("fx", "k/1").await.unwrap(), None);
    store.delete_thread("fx").await.unwrap();
    assert_eq!(store.side_effect("fx", "k/0").await.unwrap(), None);
    assert_eq!(store.side_effect("fx/sub@1", "k/0").await.unwrap(), None);
    assert!(store.thread("fx/sub@1").await.unwrap().is_none());
    assert_eq!(store.side_effect("other", "k/0").await.unwrap(), Some(sent));
}

async fn prune_keeps_what_rebuilds_the_kept(store: Arc<dyn Checkpointer>) {
    let records = linear(store.as_ref(), "p", 10).await;
    // Without a snapshot nothing can go: every kept checkpoint needs the whole chain.
    assert_eq!(store.prune("p", 3).await.unwrap(), 0);
    let snapshot: Map<String, Value> = [
        ("stage".to_string(), json!("s4")),
        ("log".to_string(), json!([0, 1, 2, 3, 4])),
    ]
    .into_iter()
    .collect();
    store.put_snapshot("p", 4, &snapshot).await.unwrap();
    let tail = store.chain("p", None).await.unwrap();
    assert_eq!(tail.first().map(|r| r.id), Some(4));
    assert_eq!(
        tail.first().and_then(|r| r.snapshot.clone()),
        Some(snapshot)
    );
    assert_eq!(&tail[1..], &records[5..]);
    assert_eq!(
        store.prune("p", 3).await.unwrap(),
        4,
        "0..=3 go, 4 is the base of 7"
    );
    let ids: Vec<u64> = store
        .list("p")
        .await
        .unwrap()
        .iter()
        .map(|s| s.checkpoint_id)
        .collect();
    assert_eq!(ids, vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(store.chain("p", None).await.unwrap(), tail);
    assert_eq!(store.prune("p", 100).await.unwrap(), 0);
    // Pruning never touches other threads.
    linear(store.as_ref(), "q", 3).await;
    store.put_snapshot("p", 9, &Map::new()).await.unwrap();
    assert_eq!(store.prune("p", 1).await.unwrap(), 5);
    assert_eq!(store.list("q").await.unwrap().len(), 3);
    assert!(
        store.put_snapshot("p", 2, &Map::new()).await.is_err(),
        "a pruned checkpoint cannot take a snapshot"
    );
}

async fn expire_removes_old_unowned_threads(store: Arc<dyn Checkpointer>) {
    store
        .put_thread(&thread("stale", 1_000), None)
        .await
        .unwrap();
    store
        .put_thread(&thread("owned", 1_000), None)
        .await
        .unwrap();
    store
        .claim("owned", "g", None, &lease("live"))
        .await
        .unwrap();
    store
        .put_thread(&thread("lapsed", 1_000), None)
        .await
        .unwrap();
    let lapsed = Lease {
        owner: "other-host/1/x".into(),
        until_ms: 2_000,
    };
    store.claim("lapsed", "g", None, &lapsed).await.unwrap();
    linear(store.as_ref(), "fresh", 1).await;
    let mut gone = store.expire(now() - 60_000).await.unwrap();
    gone.sort();
    assert_eq!(gone, vec!["lapsed".to_string(), "stale".to_string()]);
    assert!(store.thread("owned").await.unwrap().is_some());
    assert!(store.thread("fresh").await.unwrap().is_some());
    assert!(store.thread("stale").await.unwrap().is_none());
}

async fn one_of_many_claimants_wins(store: Arc<dyn Checkpointer>) {
    store
        .put_thread(&thread("race", now()), None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let l = lease(&format!("c{i}"));
            store.claim("race", "g", None, &l).await.map(|_| l)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(l) => winners.push(l),
            Err(CheckpointError::Conflict { .. }) => {}
            Err(e) => panic!("claim failed: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claimant wins");
    let info = store.thread("race").await.unwrap().unwrap();
    assert_eq!(info.lease.map(|l| l.owner), Some(winners[0].owner.clone()));
}

async fn many_threads_advance_at_once(store: Arc<dyn Checkpointer>) {
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let id = format!("par-{t}");
            let l = lease(&id);
            store.claim(&id, "g", None, &l).await.unwrap();
            for i in 0..20 {
                let r = record(
                    &id,
                    i,
                    vec![set("i", json!(i)), reduce("log", vec![json!(t)])],
                );
                store.put(&r, Some(&l)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..16 {
        let id = format!("par-{t}");
        let chain = store.chain(&id, None).await.unwrap();
        assert_eq!(chain.len(), 20);
        assert_eq!(chain[19].deltas[0], set("i", json!(19)));
        assert_eq!(
            store.thread(&id).await.unwrap().unwrap().last_checkpoint,
            Some(19)
        );
    }
}

/// Two writers advancing the same head: one checkpoint lands, the other is a conflict.
async fn racing_puts_never_fork_history(store: Arc<dyn Checkpointer>) {
    linear(store.as_ref(), "fork", 3).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let r = record("fork", 3, vec![set("writer", json!(i))]);
            store.put(&r, None).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(CheckpointError::Conflict { .. }) => {}
            Err(CheckpointError::Store(e)) => {
                // A unique-key violation is also a refusal, never a second checkpoint 3.
                assert!(e.contains("duplicate") || e.contains("UNIQUE"), "{e}");
            }
        }
    }
    assert_eq!(ok, 1);
    let ids: Vec<u64> = store
        .list("fork")
        .await
        .unwrap()
        .iter()
        .map(|s| s.checkpoint_id)
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            conformance!(@cases $make;
                put_needs_the_thread_and_its_head,
                records_round_trip_exactly,
                leases_fence_every_write,
                pending_writes_belong_to_the_head,
                threads_list_and_delete,
                side_effects_round_trip_and_go_with_their_thread,
                prune_keeps_what_rebuilds_the_kept,
                expire_removes_old_unowned_threads,
                one_of_many_claimants_wins,
                many_threads_advance_at_once,
                racing_puts_never_fork_history
            );
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store: Arc<dyn Checkpointer> = $make.await;
                super::$case(store).await;
            }
        )*
    };
}

async fn memory() -> Arc<dyn Checkpointer> {
    Arc::new(MemorySaver::new())
}

async fn sqlite() -> Arc<dyn Checkpointer> {
    let dir = tempfile::tempdir().unwrap();
    let saver = SqliteSaver::open(dir.path().join("threads.db")).unwrap();
    // The directory must outlive the test; it is removed at process exit by the OS tmp policy.
    std::mem::forget(dir);
    Arc::new(saver)
}

async fn postgres_direct() -> Arc<dyn Checkpointer> {
    let db = db::fresh_database().await;
    let url = db::with_database(&db::admin_url(), &db);
    Arc::new(PostgresSaver::connect(&url).await.unwrap())
}

async fn postgres_pooler() -> Arc<dyn Checkpointer> {
    let db = db::fresh_database().await;
    let url = db::with_database(&db::pooler_url(), &db);
    let saver = PostgresSaver::connect(&url).await.unwrap();
    assert_eq!(saver.store().pooling(), engine::pg::Pooling::Transaction);
    Arc::new(saver)
}

conformance!(in_memory, memory());
conformance!(embedded_sqlite, sqlite());
conformance!(postgres, postgres_direct());
conformance!(postgres_through_pgbouncer, postgres_pooler());
