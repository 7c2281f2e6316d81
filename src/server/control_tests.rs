//! The queue's statements on both stores: claim order, one running run per thread,
//! delays, fencing after a sweep, and (Postgres) concurrent claimers never sharing a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

#[path = "../../engine/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

fn run(id: &str, thread: &str, created: u64, not_before: u64) -> RunRow {
    RunRow {
        run_id: id.into(),
        thread_id: thread.into(),
        assistant_id: "a".into(),
        graph_id: "g".into(),
        status: RunState::Pending,
        metadata: Map::new(),
        kwargs: Value::Null,
        multitask_strategy: "enqueue".into(),
        temporary: false,
        attempt: 0,
        not_before_ms: not_before,
        owner: None,
        worker: None,
        error: None,
        started_at_ms: None,
        start_checkpoint: None,
        usage: None,
        trace: None,
        watched_from: None,
        watchers: Vec::new(),
        created_at_ms: created,
        updated_at_ms: created,
    }
}

async fn claim_order_and_fencing(store: &dyn ControlStore) {
    let now = 1_000_000;
    store.put_run(&run("r1", "t1", 1, 0)).await.unwrap();
    store.put_run(&run("r2", "t1", 2, 0)).await.unwrap();
    store
        .put_run(&run("r3", "t2", 3, now + 5_000))
        .await
        .unwrap();
    store.put_run(&run("r4", "t2", 4, 0)).await.unwrap();
    store.put_run(&run("r5", "t3", 5, 0)).await.unwrap();

    // Oldest first; r2 waits behind r1 (same thread); r3 is not due, and r4 waits behind
    // it; so r5.
    let a = store.claim("A", now, now + 100).await.unwrap().unwrap();
    assert_eq!(
        (a.run_id.as_str(), a.attempt, a.status),
        ("r1", 1, RunState::Running)
    );
    assert_eq!(a.worker.as_deref(), Some("A"));
    let b = store.claim("B", now, now + 100).await.unwrap().unwrap();
    assert_eq!(b.run_id, "r5");
    assert!(store.claim("B", now, now + 100).await.unwrap().is_none());
    assert_eq!(store.next_due(now).await.unwrap(), Some(now + 5_000));

    // The heartbeat extends only what the worker holds, and reports a cancel request.
    assert!(store.request_cancel("r1", "interrupt").await.unwrap());
    let held = store
        .heartbeat("A", &["r1".into(), "r5".into()], now, now + 200)
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![Held {
            run_id: "r1".into(),
            cancel: Some("interrupt".into()),
            watched: false
        }]
    );

    // B stops renewing: after its lease, a sweep queues r5 again, and B's writes are
    // refused from then on.
    assert_eq!(
        store.sweep("A", now + 150).await.unwrap(),
        vec!["r5".to_string()]
    );
    let mut stale = b.clone();
    stale.status = RunState::Success;
    assert!(!store.update_claimed(&stale).await.unwrap());
    let again = store
        .claim("A", now + 150, now + 300)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.run_id.as_str(), again.attempt), ("r5", 2));
    let mut done = again.clone();
    done.status = RunState::Success;
    assert!(store.update_claimed(&done).await.unwrap());

    // r1 ends; r2 (same thread) may start. A pending run cancelled before its start
    // never runs; a running one cannot be cancelled as pending.
    let mut first = a.clone();
    first.status = RunState::Interrupted;
    assert!(store.update_claimed(&first).await.unwrap());
    assert!(!store.cancel_pending("r1", false, now).await.unwrap());
    assert!(store.cancel_pending("r2", false, now).await.unwrap());
    assert_eq!(
        store.run("r2").await.unwrap().unwrap().status,
        RunState::Interrupted
    );
    assert!(store.claim("A", now, now + 100).await.unwrap().is_none());
    let later = store
        .claim("A", now + 5_000, now + 5_100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.run_id, "r3");
}

#[tokio::test]
async fn sqlite_queue() {
    let store = SqliteControl::open(None).unwrap();
    claim_order_and_fencing(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_through_the_pooler() {
    let db = pg::fresh_database().await;
    let store = PgControl::connect(&pg::with_database(&pg::pooler_url(), &db))
        .await
        .unwrap();
    claim_order_and_fencing(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_share_a_run() {
    let db = pg::fresh_database().await;
    let url = pg::with_database(&pg::pooler_url(), &db);
    let store = Arc::new(PgControl::connect(&url).await.unwrap());
    for i in 0..200u64 {
        // 50 threads, 4 runs each: at most one of a thread's runs may run at a time.
        store
            .put_run(&run(&format!("r{i:03}"), &format!("t{}", i % 50), i, 0))
            .await
            .unwrap();
    }
    let mut claimers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let me = format!("w{w}");
            let mut mine = Vec::new();
            let mut idle = 0;
            while idle < 20 {
                match store.claim(&me, 10, 1_000_000).await.unwrap() {
                    Some(mut row) => {
                        idle = 0;
                        row.status = RunState::Success;
                        assert!(store.update_claimed(&row).await.unwrap());
                        mine.push(row.run_id);
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    all.sort();
    let unique: std::collections::BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 200, "every run claimed");
    assert_eq!(unique.len(), 200, "no run claimed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_threads_reach_the_claim_and_their_runs_are_found() {
    let db = pg::fresh_database().await;
    let store = PgControl::connect(&pg::with_database(&pg::pooler_url(), &db))
        .await
        .unwrap();
    let now = 1_000_000;
    // API process A watches t1 until now + 5 s; B watched t1 but its watch lapsed.
    store
        .watch("A", &["t1".into()], now, now + 5_000)
        .await
        .unwrap();
    store
        .watch("B", &["t1".into()], now - 10_000, now - 1)
        .await
        .unwrap();
    store.put_run(&run("r1", "t1", now, 0)).await.unwrap();
    store.put_run(&run("r2", "t2", now + 1, 0)).await.unwrap();
    let r1 = store.claim("W", now, now + 100).await.unwrap().unwrap();
    assert_eq!(
        (r1.run_id.as_str(), r1.watchers.clone()),
        ("r1", vec!["A".to_string()])
    );
    // The watcher's own claim does not copy events for itself; an unwatched thread, nobody.
    let r2 = store.claim("A", now, now + 100).await.unwrap().unwrap();
    assert_eq!((r2.run_id.as_str(), r2.watchers.len()), ("r2", 0));
    // C starts watching t2 after A claimed r2: A's next heartbeat says so.
    store
        .watch("C", &["t2".into()], now, now + 5_000)
        .await
        .unwrap();
    let held = store
        .heartbeat("A", &["r2".into()], now, now + 100)
        .await
        .unwrap();
    assert!(held[0].watched, "{held:?}");
    let held = store
        .heartbeat("A", &["r2".into()], now + 6_000, now + 6_100)
        .await
        .unwrap();
    assert!(!held[0].watched, "a lapsed watch: {held:?}");
    // Renewing moves the watch on; it is never stored in the run's document.
    store
        .watch("A", &["t1".into()], now, now + 9_000)
        .await
        .unwrap();
    assert!(store.run("r1").await.unwrap().unwrap().watchers.is_empty());

    // r1 ends; r3 waits for a wake-up 10 s away; r4 was created before `since` and ended.
    let mut done = r1.clone();
    done.status = RunState::Success;
    assert!(store.update_claimed(&done).await.unwrap());
    store
        .put_run(&run("r3", "t1", now + 2, now + 10_000))
        .await
        .unwrap();
    let found = |runs: Vec<ThreadRun>| {
        runs.into_iter()
            .map(|r| (r.run_id, r.active, r.later))
            .collect::<Vec<_>>()
    };
    let runs = store
        .runs_on(&["t1".into()], now, now + 2_000)
        .await
        .unwrap();
    assert_eq!(
        found(runs),
        vec![("r1".into(), false, false), ("r3".into(), true, true)]
    );
    // After the ended run: only the pending one, due by then.
    let runs = store
        .runs_on(&["t1".into()], now + 1, now + 10_000)
        .await
        .unwrap();
    assert_eq!(found(runs), vec![("r3".into(), true, false)]);
}
