"""Crons through the SDK's own `client.crons`: create on a thread and per tick, search,
count, update, delete, time zones, the overlap policy, and bad schedules refused with the
field named. (Crons across several processes: test_workers.py.)"""

import datetime
import time

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import UnprocessableEntityError


@pytest.fixture
def client(url):
    return get_sync_client(url=url)


def cron_runs(client, tid, cron_id):
    return [r for r in client.runs.list(tid, limit=100) if r["metadata"].get("cron_id") == cron_id]


def test_a_thread_cron_runs_on_its_schedule_until_deleted(client):
    tid = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(tid, "simple", schedule="*/1 * * * * *", input={"n": 0})
    assert cron["thread_id"] == tid and cron["enabled"] is True
    assert cron["schedule"] == "*/1 * * * * *"
    assert cron["next_run_date"] is not None
    deadline = time.time() + 10
    while len([r for r in cron_runs(client, tid, cron["cron_id"]) if r["status"] == "success"]) < 3:
        assert time.time() < deadline, "three ticks should have run"
        time.sleep(0.2)
    runs = cron_runs(client, tid, cron["cron_id"])
    ticks = [r["metadata"]["cron_tick"] for r in runs]
    assert len(ticks) == len(set(ticks)), "each tick runs once"
    # The runs went on the cron's thread: its state has every tick's writes.
    assert client.threads.get_state(tid)["values"]["log"][:6] == ["a", "b", "a", "b", "a", "b"]

    found = client.crons.search(thread_id=tid)
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    assert client.crons.count(thread_id=tid) == 1

    client.crons.delete(cron["cron_id"])
    time.sleep(0.5)
    before = len(cron_runs(client, tid, cron["cron_id"]))
    time.sleep(2.5)
    assert len(cron_runs(client, tid, cron["cron_id"])) == before, "a deleted cron runs no more"
    assert client.crons.count(thread_id=tid) == 0


def test_a_stateless_cron_makes_a_thread_per_tick_and_deletes_it(client):
    before = client.threads.count()
    cron = client.crons.create("simple", schedule="* * * * * *", input={"n": 1})
    assert cron["thread_id"] is None
    time.sleep(3.5)
    client.crons.delete(cron["cron_id"])
    time.sleep(1)
    # Every tick's thread was temporary (on_run_completed defaults to delete).
    assert client.threads.count() == before

    keep = client.crons.create("simple", schedule="* * * * * *", input={"n": 1}, on_run_completed="keep")
    time.sleep(3.5)
    client.crons.delete(keep["cron_id"])
    time.sleep(1)
    made = client.threads.count() - before
    assert 2 <= made <= 5, f"a new thread per tick, kept: {made}"


def test_update_time_zone_end_time_and_disable(client):
    tid = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(tid, "simple", schedule="0 9 * * *", timezone="America/Chicago")
    next_run = datetime.datetime.fromisoformat(cron["next_run_date"])
    chicago = next_run.astimezone(datetime.timezone(datetime.timedelta(hours=-6)))
    # 9:00 in Chicago: 15:00 UTC in winter (CST), 14:00 in summer (CDT).
    assert next_run.minute == 0 and next_run.hour in (14, 15) and chicago.hour in (8, 9)

    updated = client.crons.update(cron["cron_id"], schedule="30 10 * * 1", enabled=False)
    assert updated["schedule"] == "30 10 * * 1" and updated["enabled"] is False
    assert updated["next_run_date"] is None
    again = client.crons.update(
        cron["cron_id"], enabled=True,
        end_time=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc),
    )
    # Past its end: nothing is due.
    assert again["next_run_date"] is None
    assert client.crons.search(thread_id=tid)[0]["cron_id"] == cron["cron_id"]
    client.crons.delete(cron["cron_id"])


def test_overlap_skip_never_runs_two_ticks_at_once(client):
    tid = client.threads.create()["thread_id"]
    cron = client.crons.create_for_thread(tid, "slow", schedule="* * * * * *", input={"seconds": 2.2})
    assert cron["overlap"] == "skip"
    time.sleep(6)
    client.crons.delete(cron["cron_id"])
    runs = sorted(cron_runs(client, tid, cron["cron_id"]), key=lambda r: r["created_at"])
    # Ticks every second, runs of 2.2 s: the ticks in between were skipped, and no run was
    # ever queued behind another.
    assert 2 <= len(runs) <= 3, [r["metadata"]["cron_tick"] for r in runs]
    assert all(r["status"] in ("success", "running") for r in runs)


def test_bad_cron_requests_name_the_field(client, url):
    tid = client.threads.create()["thread_id"]
    for body, field in [
        ({"assistant_id": "simple", "schedule": "every day"}, "schedule"),
        ({"assistant_id": "simple", "schedule": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"assistant_id": "simple", "schedule": "* * * * *", "end_time": "tomorrow"}, "end_time"),
        ({"assistant_id": "simple", "schedule": "* * * * *", "overlap": "sometimes"}, "overlap"),
        ({"assistant_id": "simple", "schedule": "* * * * *", "stream_mode": "sideways"}, "stream_mode"),
        ({"assistant_id": "simple"}, "schedule"),
    ]:
        r = httpx.post(f"{url}/threads/{tid}/runs/crons", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["detail"], (body, r.text)
    with pytest.raises(UnprocessableEntityError):
        client.crons.create("simple", schedule="61 * * * *")
    assert httpx.get(f"{url}/runs/crons/00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_cron_cli_talks_to_the_server(url, client):
    import json
    import os
    import subprocess

    def cli(*args):
        return subprocess.run([os.environ["BRAINOPS_BIN"], "cron", *args, "--url", url],
                              capture_output=True, text=True, timeout=30)

    tid = client.threads.create()["thread_id"]
    made = cli("create", "--assistant", "simple", "--schedule", "0 9 * * 1-5",
               "--timezone", "America/Chicago", "--thread", tid, "--input", '{"n": 2}')
    assert made.returncode == 0, made.stderr
    cron = json.loads(made.stdout)
    assert cron["thread_id"] == tid and cron["payload"]["input"] == {"n": 2}
    listed = json.loads(cli("list", "--thread", tid).stdout)
    assert [c["cron_id"] for c in listed] == [cron["cron_id"]]
    paused = cli("enable", cron["cron_id"], "--on", "false")
    assert json.loads(paused.stdout)["enabled"] is False
    assert cli("delete", cron["cron_id"]).returncode == 0
    assert json.loads(cli("list", "--thread", tid).stdout) == []

    bad = cli("create", "--assistant", "simple", "--schedule", "daily at nine")
    assert bad.returncode == 2
    assert "schedule `daily at nine`" in bad.stderr and "5 fields" in bad.stderr
    gone = subprocess.run([os.environ["BRAINOPS_BIN"], "cron", "list", "--url", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=30)
    assert gone.returncode != 0 and "cannot reach the server" in gone.stderr


def test_overlap_cancel_stops_the_previous_run(client, url):
    tid = client.threads.create()["thread_id"]
    # `overlap` is ours (the SDK's keyword is multitask_strategy, which maps onto it).
    cron = httpx.post(f"{url}/threads/{tid}/runs/crons", json={
        "assistant_id": "slow", "schedule": "*/2 * * * * *", "input": {"seconds": 30}, "overlap": "cancel",
    }).json()
    assert cron["overlap"] == "cancel"
    deadline = time.time() + 10
    while len(cron_runs(client, tid, cron["cron_id"])) < 2:
        assert time.time() < deadline
        time.sleep(0.2)
    client.crons.delete(cron["cron_id"])
    runs = sorted(cron_runs(client, tid, cron["cron_id"]), key=lambda r: r["created_at"])
    deadline = time.time() + 5
    while client.runs.get(tid, runs[0]["run_id"])["status"] != "interrupted":
        assert time.time() < deadline, "the next tick should cancel the previous run"
        time.sleep(0.1)
    client.runs.cancel(tid, runs[-1]["run_id"])


@pytest.mark.parametrize("window, expected", [(60, 1), (0, 0)])
def test_a_tick_missed_while_down_is_caught_up_within_the_window(fresh_home, window, expected):
    from conftest import Server
    server = Server(fresh_home).start()
    client = get_sync_client(url=server.url)
    tid = client.threads.create()["thread_id"]
    # Once a minute, at a second 3 s from now; the server is down then.
    second = (int(time.time()) + 3) % 60
    cron = httpx.post(f"{server.url}/threads/{tid}/runs/crons", json={
        "assistant_id": "simple", "schedule": f"{second} * * * * *", "input": {"n": 1},
        "catchup_window_seconds": window,
    }).json()
    server.stop()
    time.sleep(5)
    again = Server(fresh_home).start()
    try:
        client = get_sync_client(url=again.url)
        time.sleep(2)
        assert len(cron_runs(client, tid, cron["cron_id"])) == expected
        # Either way the next tick is a minute on, not a burst.
        nxt = datetime.datetime.fromisoformat(client.crons.search(thread_id=tid)[0]["next_run_date"])
        assert nxt.timestamp() > time.time() + 40
    finally:
        again.stop()


def test_a_tick_whose_run_was_queued_before_a_crash_is_not_queued_twice(fresh_home):
    import os
    import sqlite3
    from conftest import Server
    server = Server(fresh_home).start()
    client = get_sync_client(url=server.url)
    tid = client.threads.create()["thread_id"]
    cron = httpx.post(f"{server.url}/threads/{tid}/runs/crons", json={
        "assistant_id": "simple", "schedule": "* * * * * *", "input": {"n": 1},
    }).json()
    deadline = time.time() + 10
    while len(cron_runs(client, tid, cron["cron_id"])) < 2:
        assert time.time() < deadline, "the cron never ticked"
        time.sleep(0.2)
    server.stop()
    # What a process that stops between queueing a tick's run and moving the cron on leaves
    # behind: the run is there, and the cron is still due at that tick.
    db = sqlite3.connect(os.path.join(fresh_home, "threads.server.db"))
    tick = db.execute(
        "SELECT json_extract(doc, '$.metadata.cron_tick') FROM server_runs "
        "WHERE json_extract(doc, '$.metadata.cron_id') = ? ORDER BY created_at_ms LIMIT 1",
        (cron["cron_id"],),
    ).fetchone()[0]
    due_ms = int(datetime.datetime.fromisoformat(tick).timestamp() * 1000)
    db.execute(
        "UPDATE server_crons SET next_run_ms = ?, doc = json_set(doc, '$.next_run_ms', ?) WHERE cron_id = ?",
        (due_ms, due_ms, cron["cron_id"]),
    )
    db.commit()
    db.close()
    again = Server(fresh_home).start()
    try:
        client = get_sync_client(url=again.url)
        time.sleep(2)
        ticks = [r["metadata"]["cron_tick"] for r in cron_runs(client, tid, cron["cron_id"])]
        assert ticks.count(tick) == 1, ticks
        assert len(ticks) == len(set(ticks)), f"a tick was queued twice: {ticks}"
        # The cron went on from there, to the present.
        nxt = datetime.datetime.fromisoformat(client.crons.search(thread_id=tid)[0]["next_run_date"])
        assert nxt.timestamp() > time.time() - 2
    finally:
        again.stop()
