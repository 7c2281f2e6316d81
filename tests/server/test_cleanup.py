"""Scheduled cleanup inside the server: idle threads past BRAINOPS_THREAD_TTL are deleted
(unless a run is pending on them), each thread keeps its latest BRAINOPS_KEEP_CHECKPOINTS
checkpoints, every BRAINOPS_CLEANUP_EVERY. (Once across replicas: test_workers.py.)"""

import time

import httpx
from langgraph_sdk import get_sync_client

from conftest import Server


def test_idle_threads_expire_and_histories_are_pruned(fresh_home):
    server = Server(fresh_home, env={
        "BRAINOPS_CLEANUP_EVERY": "1s", "BRAINOPS_THREAD_TTL": "3s", "BRAINOPS_KEEP_CHECKPOINTS": "2",
    }).start()
    try:
        client = get_sync_client(url=server.url)
        busy = client.threads.create()["thread_id"]
        client.runs.wait(busy, "simple", input={"n": 1})
        client.runs.create(busy, "simple", input={"n": 2}, after_seconds=60)  # pending
        idle = client.threads.create()["thread_id"]
        client.runs.wait(idle, "simple", input={"n": 1})
        assert len(client.threads.get_history(idle, limit=10)) > 2
        time.sleep(2)
        # Pruned to the latest two checkpoints; the state is the same.
        assert len(client.threads.get_history(idle, limit=10)) == 2
        assert client.threads.get_state(idle)["values"]["log"] == ["a", "b"]
        deadline = time.time() + 8
        while httpx.get(f"{server.url}/threads/{idle}").status_code != 404:
            assert time.time() < deadline, "the idle thread outlived its TTL"
            time.sleep(0.2)
        # The thread with a pending run is not idle, however old.
        assert client.threads.get(busy)["thread_id"] == busy
    finally:
        server.stop()


def test_a_bad_policy_is_refused_at_start(fresh_home):
    import os
    import subprocess
    out = subprocess.run(
        [os.environ["BRAINOPS_BIN"], "serve", "--port", "0", "--graphs", "tests/server/graphs"],
        env=dict(os.environ, BRAINOPS_HOME=fresh_home, BRAINOPS_THREAD_TTL="a week"),
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2
    assert "BRAINOPS_THREAD_TTL `a week` is not an age" in out.stderr


def test_expired_memories_are_swept_on_schedule(fresh_home):
    import os
    import sqlite3
    server = Server(fresh_home, env={"BRAINOPS_CLEANUP_EVERY": "1s"}).start()
    try:
        put = lambda key, **extra: httpx.put(f"{server.url}/store/items", json={
            "namespace": ["acme", "notes"], "key": key, "value": {"text": key}, "index": False, **extra,
        })
        assert put("brief", ttl=0.02).status_code == 204  # 1.2 s
        assert put("lasting").status_code == 204
        db = os.path.join(fresh_home, "memory.db")
        count = lambda: sqlite3.connect(db).execute("SELECT count(*) FROM memory_items").fetchone()[0]
        assert count() == 2
        deadline = time.time() + 8
        while count() != 1:
            assert time.time() < deadline, "the expired memory was never swept"
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/store/items", params={"namespace": "acme.notes", "key": "lasting"}).json()["value"] == {"text": "lasting"}
    finally:
        server.stop()


def test_a_threads_own_ttl_deletes_it_or_keeps_its_latest_state(fresh_home):
    server = Server(fresh_home, env={"BRAINOPS_CLEANUP_EVERY": "1s"}).start()
    try:
        client = get_sync_client(url=server.url)
        gone = client.threads.create(ttl=0.03)["thread_id"]  # 1.8 s, strategy delete
        assert client.threads.get(gone)["ttl"] == {"ttl": 0.03, "strategy": "delete"}
        kept = client.threads.create(ttl={"ttl": 0.03, "strategy": "keep_latest"})["thread_id"]
        client.runs.wait(kept, "simple", input={"n": 1})
        assert len(client.threads.get_history(kept, limit=10)) == 3
        lasting = client.threads.create()["thread_id"]
        client.runs.wait(lasting, "simple", input={"n": 1})
        # A later PATCH gives a thread a ttl (and `null` takes it away).
        patched = client.threads.create(ttl=0.03)["thread_id"]
        assert httpx.patch(f"{server.url}/threads/{patched}", json={"ttl": None}).status_code == 200
        assert "ttl" not in client.threads.get(patched)
        deadline = time.time() + 10
        while httpx.get(f"{server.url}/threads/{gone}").status_code != 404:
            assert time.time() < deadline, "the thread outlived its ttl"
            time.sleep(0.2)
        while len(client.threads.get_history(kept, limit=10)) != 1:
            assert time.time() < deadline, "the thread's history was not cut to its latest state"
            time.sleep(0.2)
        assert client.threads.get_state(kept)["values"] == {"log": ["a", "b"], "n": 2}
        assert len(client.threads.get_history(lasting, limit=10)) == 3
        assert client.threads.get(patched)["thread_id"] == patched
        for bad, field in [(0, "ttl.ttl"), ("soon", "ttl: expected minutes"), ({"ttl": 5, "strategy": "archive"}, "ttl.strategy")]:
            r = httpx.post(f"{server.url}/threads", json={"ttl": bad})
            assert r.status_code == 422 and field in r.json()["detail"], r.text
    finally:
        server.stop()
