"""A server killed with SIGKILL during a background run finishes it after a restart, with
the same final state as an undisturbed run; SIGTERM lets a running run finish first."""

import time

import httpx
from langgraph_sdk import get_sync_client

from conftest import Server


def run_status(url, tid, rid):
    return httpx.get(f"{url}/threads/{tid}/runs/{rid}").json()["status"]


def test_sigkill_mid_run_is_finished_after_restart(fresh_home):
    # The undisturbed run, for comparison.
    server = Server(fresh_home).start()
    client = get_sync_client(url=server.url)
    calm = client.threads.create()["thread_id"]
    expected = client.runs.wait(calm, "slow", input={"seconds": 1.5})
    assert expected["log"] == ["slow"]

    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "slow", input={"seconds": 1.5})
    deadline = time.time() + 5
    while run_status(server.url, tid, run["run_id"]) != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # inside the sleeping node
    server.kill()

    again = Server(fresh_home).start()
    try:
        client = get_sync_client(url=again.url, timeout=30)
        final = client.runs.join(tid, run["run_id"])
        assert final == expected
        row = client.runs.get(tid, run["run_id"])
        assert row["status"] == "success"
        assert client.threads.get_state(tid)["values"] == expected
        assert client.threads.get(tid)["status"] == "idle"
        # Its events were in the killed process: a join of the finished run is empty, not stuck.
        assert list(client.runs.join_stream(tid, run["run_id"])) == []
    finally:
        again.stop()


def test_sigterm_lets_the_running_run_finish(fresh_home):
    server = Server(fresh_home).start()
    client = get_sync_client(url=server.url)
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "slow", input={"seconds": 1})
    deadline = time.time() + 5
    while run_status(server.url, tid, run["run_id"]) != "running":
        assert time.time() < deadline
        time.sleep(0.05)
    server.stop()
    assert server.proc.returncode == 0
    again = Server(fresh_home).start()
    try:
        client = get_sync_client(url=again.url, timeout=30)
        assert client.runs.get(tid, run["run_id"])["status"] == "success"
        assert client.threads.get_state(tid)["values"]["log"] == ["slow"]
    finally:
        again.stop()


def test_a_run_past_the_time_limit_ends_timeout(fresh_home):
    server = Server(fresh_home, env={"BRAINOPS_RUN_TIMEOUT_SECS": "0.5"}).start()
    try:
        client = get_sync_client(url=server.url, timeout=30)
        tid = client.threads.create()["thread_id"]
        body = client.runs.wait(tid, "slow", input={"seconds": 5}, raise_error=False)
        assert body["__error__"]["error"] == "TimeoutError"
        [run] = client.runs.list(tid)
        assert run["status"] == "timeout"
        assert client.threads.get(tid)["status"] != "busy"
    finally:
        server.stop()
