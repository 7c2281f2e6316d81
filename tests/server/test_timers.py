"""Durable timers: a `wait` node parks its thread (no worker, no connection held) and a
run queued for the due time continues it, also when the server was down at that time;
`after_seconds` delays a run the same way."""

import datetime
import time

import pytest
from langgraph_sdk import get_sync_client

from conftest import Server


def woke(client, tid):
    return client.threads.get_state(tid)["values"].get("log", [])[-1:] == ["woke"]


def test_a_wait_node_parks_the_thread_and_wakes_it_on_time(url):
    client = get_sync_client(url=url)
    tid = client.threads.create()["thread_id"]
    started = time.time()
    first = client.runs.wait(tid, "nap", input={"seconds": 1.5})
    # The run that reached the wait ends at once; the thread is parked, not a worker.
    assert time.time() - started < 1.2
    assert first["log"] == ["dozing"]
    state = client.threads.get_state(tid)
    assert state["next"] == ["nap"]
    assert state["interrupts"] == []  # nobody is asked anything
    assert client.threads.get(tid)["status"] == "busy"  # its wake-up is queued
    runs = client.runs.list(tid)
    wake = [r for r in runs if r["metadata"].get("wakes")]
    assert len(runs) == 2 and len(wake) == 1 and wake[0]["status"] == "pending"

    deadline = time.time() + 5
    while not woke(client, tid):
        assert time.time() < deadline, "the thread never woke"
        time.sleep(0.05)
    late = time.time() - (started + 1.5)
    assert late < 1.0, f"woke {late:.2f} s after its due time"
    values = client.threads.get_state(tid)["values"]
    assert values["log"] == ["dozing", "woke"]
    due = datetime.datetime.fromisoformat(values["woke_at"].replace("Z", "+00:00")).timestamp()
    assert abs(due - (started + 1.5)) < 1.0
    assert client.runs.get(tid, wake[0]["run_id"])["status"] == "success"
    assert client.threads.get(tid)["status"] == "idle"


def test_a_timer_due_while_the_server_was_down_runs_at_start(fresh_home):
    server = Server(fresh_home).start()
    client = get_sync_client(url=server.url)
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "nap", input={"seconds": 1})
    server.stop()
    time.sleep(2)  # the due time passes with no server
    again = Server(fresh_home).start()
    try:
        client = get_sync_client(url=again.url)
        deadline = time.time() + 3
        while not woke(client, tid):
            assert time.time() < deadline, "the overdue timer did not run at start"
            time.sleep(0.05)
    finally:
        again.stop()


def test_after_seconds_is_a_durable_delay(fresh_home):
    server = Server(fresh_home).start()
    client = get_sync_client(url=server.url)
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "simple", input={"n": 1}, after_seconds=1.5)
    server.kill()  # gone before it is due
    again = Server(fresh_home).start()
    try:
        client = get_sync_client(url=again.url)
        assert client.runs.get(tid, run["run_id"])["status"] == "pending"
        final = client.runs.join(tid, run["run_id"])
        assert final["log"] == ["a", "b"]
    finally:
        again.stop()


def test_bad_wait_values_fail_the_run_naming_the_node(url):
    client = get_sync_client(url=url)
    tid = client.threads.create()["thread_id"]
    with pytest.raises(Exception, match="node `nap`: wait.seconds: expected a non-negative number"):
        client.runs.wait(tid, "nap", input={"seconds": -3})
