"""Servers and workers on several processes sharing one Postgres through PgBouncer
(transaction mode, like Supabase's port 6543): each run is claimed by exactly one process,
streams (run streams and the v2 thread stream) follow a run executing elsewhere, a worker killed with SIGKILL or frozen with
SIGSTOP past its lease is replaced without losing or repeating anything. Each test runs
with Postgres alone (polling), with LISTEN on a direct connection, and with Redis (a
private redis-server per module, so it can be killed); Redis killed mid-run changes
nothing but latency."""

import asyncio
import datetime
import glob
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client

HERE = os.path.dirname(os.path.abspath(__file__))
GRAPHS = os.path.join(HERE, "worker_graphs")
DIRECT = os.environ.get("DATABASE_URL")
POOLER = os.environ.get("DATABASE_POOLER_URL")

pytestmark = pytest.mark.skipif(
    not (DIRECT and POOLER),
    reason="needs DATABASE_URL and DATABASE_POOLER_URL (eval \"$(scripts/postgres.sh)\")",
)


def psql(url, sql):
    out = subprocess.run(
        ["psql", url.split("?")[0], "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def with_db(url, name):
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


class Hook(http.server.BaseHTTPRequestHandler):
    """A Slack incoming webhook that counts the messages it gets."""

    posts = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Hook.posts.append(json.loads(body))
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/test"
    server.shutdown()


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server (installed by scripts/redis.sh) that a test may kill."""

    def __init__(self, tmp):
        self.port = free_port()
        self.tmp = tmp
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                        capture_output=True, text=True).stdout.strip() == "PONG",
                 what="redis-server")
        return self

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args],
                              capture_output=True, text=True).stdout.strip()

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.kill()


@pytest.fixture(params=["poll", "listen", "redis"])
def accel(request, redis_server):
    """How processes wake each other: Postgres polling, LISTEN/NOTIFY, or Redis."""
    if request.param == "redis":
        return {"REDIS_URL": redis_server.url}
    if request.param == "listen":
        return {"LISTEN": True}
    return {}


@pytest.fixture
def db():
    """A fresh database; processes reach it through PgBouncer."""
    name = "brainops_workers_" + uuid.uuid4().hex[:10]
    psql(DIRECT, f"CREATE DATABASE {name}")
    psql(with_db(DIRECT, name), "CREATE EXTENSION IF NOT EXISTS vector")
    yield with_db(POOLER, name), with_db(DIRECT, name)
    subprocess.run(
        ["psql", DIRECT.split("?")[0], "-XAtq", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
        capture_output=True,
    )


# Every process a test started, so a timed-out wait can show what they logged.
STARTED = []


class Proc:
    """One `brainops serve` or `brainops worker` process."""

    def __init__(self, home, command, store, hook, extra=(), lease=2, accel=None, direct=None):
        self.command = command
        self.args = [
            os.environ["BRAINOPS_BIN"], command, "--graphs", GRAPHS, "--checkpoint", store,
            *(["--port", "0"] if command == "serve" else []), *extra,
        ]
        self.env = dict(
            os.environ, BRAINOPS_HOME=home, SLACK_WEBHOOK_URL=hook,
            BRAINOPS_INTEGRATIONS="live", BRAINOPS_LEASE_SECS=str(lease), BRAINOPS_POLL_MS="200",
        )
        accel = dict(accel or {})
        if accel.pop("LISTEN", False):
            self.env["BRAINOPS_LISTEN_URL"] = direct
        self.env.update(accel)
        self.proc = None
        self.url = None
        self.err = []

    def start(self):
        STARTED.append(self)
        self.proc = subprocess.Popen(
            self.args, env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        # Warnings (a clock off the database's) may come before the banner.
        while True:
            line = self.proc.stderr.readline()
            self.err.append(line)
            if not line or line.startswith(f"brainops {self.command}"):
                break
        assert line, f"did not start: {''.join(self.err)}{self.proc.stderr.read()}"
        threading.Thread(target=self._drain, daemon=True).start()
        match = re.search(r"http://[0-9.:]+", line)
        if match:
            self.url = match.group(0)
            deadline = time.time() + 10
            while httpx.get(self.url + "/ok").status_code != 200:
                assert time.time() < deadline
                time.sleep(0.05)
        return self

    def _drain(self):
        for line in self.proc.stderr:
            self.err.append(line)

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        p.stop()


def spawn(procs, *args, **kwargs):
    p = Proc(*args, **kwargs).start()
    procs.append(p)
    return p


def run_row(direct, run_id):
    out = psql(direct, f"SELECT status, attempt, coalesce(worker, '') FROM brainops_server_runs WHERE run_id = '{run_id}'")
    status, attempt, worker = out.split("|")
    return status, int(attempt), worker


def wait_for(cond, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; the last processes logged:\n{tail_logs()}")


def tail_logs():
    """What the last engine processes started wrote to stderr (their last 15 lines each)."""
    procs = [p for p in STARTED if isinstance(p, Proc)][-4:]
    return "\n".join(
        f"--- {p.command} (pid {p.pid}, {'running' if p.proc.poll() is None else 'exited'}):\n"
        + "".join(p.err[-15:])
        for p in procs
    )


def history_shape(client, tid):
    return [(len(h["next"]), tuple(sorted(h["values"].get("log", [])))) for h in client.threads.get_history(tid, limit=50)]


def test_each_run_is_claimed_once_and_streams_cross_processes(db, procs, hook, tmp_path, accel):
    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api_a = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    api_b = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    w1 = spawn(procs, str(tmp_path), "worker", store, hook, ["--max-concurrent-runs", "2"], **kw)
    w2 = spawn(procs, str(tmp_path), "worker", store, hook, ["--max-concurrent-runs", "2"], **kw)
    a, b = get_sync_client(url=api_a.url), get_sync_client(url=api_b.url)

    runs = []
    for i in range(8):
        tid = a.threads.create()["thread_id"]
        runs.append((tid, a.runs.create(tid, "effect", input={"seconds": 0.4, "name": f"job{i}"})["run_id"]))
    for tid, rid in runs:
        # Joined through the other API process: the run ends in whichever worker took it.
        assert b.runs.join(tid, rid)["log"] == ["done"]
    rows = [run_row(direct, rid) for _, rid in runs]
    assert all(r[0] == "success" and r[1] == 1 for r in rows), rows
    workers = {r[2] for r in rows}
    assert len(workers) == 2, f"both workers should have taken runs: {workers}"
    assert {w.split("/")[1] for w in workers} == {str(w1.pid), str(w2.pid)}

    # A run streamed through an API process that executes nothing: every event arrives, in
    # order, from the worker, as it happens (the first update well before the run's 2 s
    # sleep ends).
    tid = b.threads.create()["thread_id"]
    started = time.time()
    parts, first_update = [], None
    for p in b.runs.stream(tid, "effect", input={"seconds": 2, "name": "streamed"}, stream_mode=["values", "updates"]):
        if p.event == "updates" and first_update is None:
            first_update = time.time() - started
        parts.append(p)
    assert first_update < 1.5, f"the first update came after {first_update:.2f} s"
    events = [p.event for p in parts]
    assert events[0] == "metadata"
    assert [list(p.data) for p in parts if p.event == "updates"] == [["notify"], ["wait"], ["mark"]]
    assert [p.data for p in parts if p.event == "updates"][-1] == {"mark": {"log": ["done"]}}
    assert parts[-1].event == "values" and parts[-1].data["log"] == ["done"]

    # Waiting through one API process for a run created through the other.
    tid = a.threads.create()["thread_id"]
    assert a.runs.wait(tid, "effect", input={"seconds": 0.1})["log"] == ["done"]

    # A cancel through an API process reaches the worker running the run.
    tid = a.threads.create()["thread_id"]
    rid = a.runs.create(tid, "effect", input={"seconds": 30})["run_id"]
    wait_for(lambda: run_row(direct, rid)[0] == "running", what="the run to start")
    started = time.time()
    b.runs.cancel(tid, rid)
    wait_for(lambda: run_row(direct, rid)[0] == "interrupted", what="the cancel")
    assert time.time() - started < 5


def test_a_thread_stream_on_an_api_process_follows_runs_on_a_worker(db, procs, hook, tmp_path, accel):
    # langgraph-sdk's thread stream over WebSocket, on an API process that executes nothing:
    # the run, its question and the run that answers it execute on the worker, and the
    # subscriber sees them as if they ran where it is connected.
    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    worker = spawn(procs, str(tmp_path), "worker", store, hook, **kw)

    async def go():
        client = get_client(url=api.url)
        async with client.threads.stream(assistant_id="hitl", transport="websocket") as thread:
            await thread.run.start(input={"n": 0})
            for _ in range(400):
                if thread.interrupts:
                    break
                await asyncio.sleep(0.05)
            asked = [i["value"] for i in thread.interrupts]
            await thread.run.respond("fine")
            return thread.thread_id, asked, await thread.output.with_timeout(30)

    tid, asked, output = asyncio.run(go())
    assert asked == ["approve?"]
    assert output["log"] == ["a", "answer:fine"] and output["n"] == 1
    workers = psql(direct, f"SELECT DISTINCT worker FROM brainops_server_runs WHERE thread_id = '{tid}'")
    assert workers.split("/")[1] == str(worker.pid), workers


def test_a_thread_stream_on_one_replica_follows_runs_queued_through_another(db, procs, hook, tmp_path, accel):
    # A console subscribed to a thread on replica A; the backend queues the thread's runs
    # through replica B; a worker executes them. A sees every run: the question, the run that
    # answers it, and the wake-up run of a durable `wait` node that no client started.
    from websockets.asyncio.client import connect

    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api_a = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    api_b = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    client_b = get_sync_client(url=api_b.url, timeout=60)

    def lifecycle(event):
        return lambda f: f["method"] == "lifecycle" and f["params"]["data"]["event"] == event

    async def watch(tid, steps):
        """Subscribes to `tid` on A, then for each (queue, done): queues through B and reads
        A's frames until `done`."""
        frames = []
        ws_url = api_a.url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"id": 1, "method": "subscription.subscribe",
                                      "params": {"channels": ["lifecycle", "values", "updates", "input"]}}))
            assert json.loads(await ws.recv())["type"] == "success"
            for queue, done in steps:
                queue()
                while True:
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    except TimeoutError:
                        raise AssertionError(f"no frame in 20 s after {frames}; logs:\n{tail_logs()}")
                    if frame.get("type") == "event":
                        frames.append(frame)
                        if done(frame):
                            break
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        return frames

    def of(frames, method):
        return [f["params"]["data"] for f in frames if f["method"] == method]

    tid = client_b.threads.create()["thread_id"]
    frames = asyncio.run(watch(tid, [
        (lambda: client_b.runs.create(tid, "hitl", input={"n": 0}), lifecycle("interrupted")),
        (lambda: client_b.runs.create(tid, "hitl", command={"resume": "fine"}), lifecycle("completed")),
    ]))
    assert [d["event"] for d in of(frames, "lifecycle")] == ["running", "interrupted", "running", "completed"]
    assert [d["value"] for d in of(frames, "input.requested")] == ["approve?"]
    assert of(frames, "values")[-1]["log"] == ["a", "answer:fine"]

    # nap parks its thread; the wake-up run, queued by the worker, finishes it.
    tid = client_b.threads.create()["thread_id"]
    frames = asyncio.run(watch(tid, [
        (lambda: client_b.runs.create(tid, "nap", input={"seconds": 1}),
         lambda f: f["method"] == "values" and f["params"]["data"].get("log") == ["dozing", "woke"]),
    ]))
    lifecycles = [d["event"] for d in of(frames, "lifecycle")]
    assert lifecycles[0] == "running" and lifecycles.count("running") == 2, lifecycles
    assert "failed" not in lifecycles, frames

    # A subscription that starts while a run executes sees it from its next step on.
    tid = client_b.threads.create()["thread_id"]
    Hook.posts.clear()
    client_b.runs.create(tid, "effect", input={"seconds": 3, "name": "midway"})
    wait_for(lambda: Hook.posts, what="the side effect")
    frames = asyncio.run(watch(tid, [(lambda: None, lifecycle("completed"))]))
    assert [d["event"] for d in of(frames, "lifecycle")] == ["running", "completed"], frames
    assert [list(d) for d in of(frames, "updates")] == [["mark"]], frames
    # Nobody asked for its values when it started; its end still brings its output.
    assert of(frames, "values")[-1]["log"] == ["done"], frames


def test_a_worker_killed_mid_run_is_replaced_and_nothing_repeats(db, procs, hook, tmp_path, accel):
    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    client = get_sync_client(url=api.url, timeout=60)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    by_pid = {p.pid: p for p in procs}

    calm = client.threads.create()["thread_id"]
    expected = client.runs.wait(calm, "effect", input={"seconds": 2, "name": "calm"})
    calm_history = history_shape(client, calm)

    Hook.posts.clear()
    tid = client.threads.create()["thread_id"]
    rid = client.runs.create(tid, "effect", input={"seconds": 2, "name": "kill"}, stream_resumable=True)["run_id"]
    wait_for(lambda: Hook.posts, what="the side effect")
    time.sleep(0.5)  # inside the sleeping node
    status, attempt, worker = run_row(direct, rid)
    assert (status, attempt) == ("running", 1)
    victim = by_pid[int(worker.split("/")[1])]
    victim.signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)

    final = client.runs.join(tid, rid)
    assert {k: v for k, v in final.items() if k not in ("name", "posted", "slept")} == {
        k: v for k, v in expected.items() if k not in ("name", "posted", "slept")
    }
    status, attempt, worker = run_row(direct, rid)
    assert (status, attempt) == ("success", 2)
    assert str(victim.pid) not in worker
    assert len(Hook.posts) == 1, f"the message was sent {len(Hook.posts)} times"
    assert history_shape(client, tid) == calm_history
    # The resumable stream replays both attempts' events, numbered without a gap.
    replay = list(client.runs.join_stream(tid, rid, last_event_id="-1"))
    metas = [p.data for p in replay if p.event == "metadata"]
    assert [m["attempt"] for m in metas] == [1, 2]
    assert replay[-1].event == "values" and replay[-1].data["log"] == ["done"]


def test_a_frozen_worker_past_its_lease_cannot_write(db, procs, hook, tmp_path, accel):
    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    client = get_sync_client(url=api.url, timeout=60)
    frozen = spawn(procs, str(tmp_path), "worker", store, hook, **kw)

    Hook.posts.clear()
    tid = client.threads.create()["thread_id"]
    rid = client.runs.create(tid, "effect", input={"seconds": 3, "name": "frozen"})["run_id"]
    wait_for(lambda: Hook.posts, what="the side effect")
    time.sleep(0.3)
    frozen.signal(signal.SIGSTOP)
    spare = spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    # The spare takes the run over once the frozen worker's lease (2 s) runs out.
    wait_for(lambda: run_row(direct, rid)[1] == 2, timeout=15, what="the takeover")
    assert str(spare.pid) in run_row(direct, rid)[2]
    final = client.runs.join(tid, rid)
    assert final["log"] == ["done"]
    history = history_shape(client, tid)

    # The frozen worker wakes after the run ended elsewhere: whatever it had in flight is
    # refused, so the thread keeps one line of checkpoints and one "done".
    frozen.signal(signal.SIGCONT)
    time.sleep(4)
    assert client.threads.get_state(tid)["values"]["log"] == ["done"]
    assert history_shape(client, tid) == history
    assert run_row(direct, rid)[:2] == ("success", 2)
    assert len(Hook.posts) == 1
    assert any("took this run over" in line or "taken over" in line for line in frozen.err), frozen.err


FAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)


@pytest.mark.skipif(not FAKETIME, reason="needs libfaketime (scripts/server-tests.sh installs it)")
def test_a_worker_whose_clock_is_behind_keeps_its_runs(db, procs, hook, tmp_path):
    # The worker's machine is 10 s behind. Its leases (2 s) are timed by the database's
    # clock, so the other worker's sweep does not see them as long expired and take the run.
    store, direct = db
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"])
    client = get_sync_client(url=api.url, timeout=60)
    behind = spawn(procs, str(tmp_path), "worker", store, hook, accel={
        "LD_PRELOAD": FAKETIME, "FAKETIME": "-10s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    Hook.posts.clear()
    tid = client.threads.create()["thread_id"]
    rid = client.runs.create(tid, "effect", input={"seconds": 4, "name": "skewed"})["run_id"]
    wait_for(lambda: Hook.posts, what="the side effect")
    assert str(behind.pid) in run_row(direct, rid)[2]
    spawn(procs, str(tmp_path), "worker", store, hook)
    assert client.runs.join(tid, rid)["log"] == ["done"]
    assert run_row(direct, rid)[:2] == ("success", 1)
    assert len(Hook.posts) == 1
    assert any("ms off the database's" in line for line in behind.err), behind.err


def test_redis_killed_mid_run_changes_nothing_but_latency(db, procs, hook, tmp_path, redis_server):
    store, direct = db
    kw = dict(accel={"REDIS_URL": redis_server.url})
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    client = get_sync_client(url=api.url, timeout=60)
    # Idle processes only hold their subscriptions: no polling commands.
    before = int(redis_server.cli("INFO", "stats").split("total_commands_processed:")[1].split()[0])
    time.sleep(3)
    after = int(redis_server.cli("INFO", "stats").split("total_commands_processed:")[1].split()[0])
    assert after - before <= 2, f"idle processes sent {after - before} commands in 3 s"  # the INFO itself

    tid = client.threads.create()["thread_id"]
    parts = []
    for p in client.runs.stream(tid, "effect", input={"seconds": 2, "name": "redis"}, stream_mode="updates"):
        parts.append(p)
        if p.event == "updates" and "notify" in p.data:
            redis_server.kill()  # mid-run, while the API process streams it
    seen = [(p.event, p.data) for p in parts]
    assert [list(p.data) for p in parts if p.event == "updates"] == [["notify"], ["wait"], ["mark"]], \
        (seen, tail_logs())
    assert client.threads.get_state(tid)["values"]["log"] == ["done"]

    # Without Redis, runs still start and cancels still land (through Postgres).
    tid = client.threads.create()["thread_id"]
    assert client.runs.wait(tid, "effect", input={"seconds": 0.1})["log"] == ["done"]
    rid = client.runs.create(tid, "effect", input={"seconds": 30})["run_id"]
    wait_for(lambda: run_row(direct, rid)[0] == "running", what="the run to start")
    client.runs.cancel(tid, rid)
    wait_for(lambda: run_row(direct, rid)[0] == "interrupted", timeout=5, what="the cancel")

    # Redis back on the same port: the processes resubscribe and use it again.
    redis_server.start()
    wait_for(lambda: int(redis_server.cli("PUBSUB", "NUMSUB", "brainops:control").split()[-1]) == 2,
             timeout=20, what="both processes to resubscribe")
    tid = client.threads.create()["thread_id"]
    assert client.runs.wait(tid, "effect", input={"seconds": 0.1})["log"] == ["done"]
    # The wake-up and the run's events went through Redis: run queued, event frames, end.
    stats = redis_server.cli("INFO", "commandstats")
    assert "cmdstat_publish:calls=" in stats, stats
    publishes = int(stats.split("cmdstat_publish:calls=")[1].split(",")[0])
    assert publishes >= 3, stats


def test_a_cron_ticks_once_per_tick_across_three_replicas(db, procs, hook, tmp_path, accel):
    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api = spawn(procs, str(tmp_path), "serve", store, hook, **kw)  # a replica that also works
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    client = get_sync_client(url=api.url)
    cron = client.crons.create("effect", schedule="* * * * * *", input={"seconds": 0}, on_run_completed="keep")
    time.sleep(6)
    client.crons.delete(cron["cron_id"])
    time.sleep(1)
    ticks = psql(direct, f"SELECT doc->'metadata'->>'cron_tick' FROM brainops_server_runs WHERE doc->'metadata'->>'cron_id' = '{cron['cron_id']}' ORDER BY 1").split()
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    seconds = sorted(datetime.datetime.fromisoformat(t).timestamp() for t in ticks)
    assert 4 <= len(seconds) <= 7, ticks
    assert all(b - a == 1 for a, b in zip(seconds, seconds[1:])), f"a tick was missed: {ticks}"


def test_a_parked_thread_wakes_on_another_process_even_after_a_full_outage(db, procs, hook, tmp_path, accel):
    store, direct = db
    kw = dict(accel=accel, direct=direct)
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    worker = spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    client = get_sync_client(url=api.url)
    # Woken on time by whichever worker is free, holding none meanwhile.
    tid = client.threads.create()["thread_id"]
    started = time.time()
    assert client.runs.wait(tid, "nap", input={"seconds": 1})["log"] == ["dozing"]
    wait_for(lambda: client.threads.get_state(tid)["values"]["log"][-1] == "woke", timeout=5, what="the wake-up")
    assert time.time() - started < 2.5

    # Every process down when it falls due: it runs when one comes back.
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "nap", input={"seconds": 1})
    worker.stop()
    api.stop()
    time.sleep(2)
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    client = get_sync_client(url=api.url)
    wait_for(lambda: client.threads.get_state(tid)["values"]["log"][-1] == "woke", timeout=5, what="the overdue wake-up")


def test_scheduled_cleanup_runs_once_per_interval_across_workers(db, procs, hook, tmp_path, accel):
    store, direct = db
    env = dict(accel, BRAINOPS_LOG="warn,brainops=info", BRAINOPS_CLEANUP_EVERY="1s")
    workers = [spawn(procs, str(tmp_path), "worker", store, hook, accel=env, direct=direct) for _ in range(2)]
    time.sleep(5)
    runs = sum(1 for w in workers for line in w.err if "cleanup:" in line)
    # One per second in all (not one per second in each).
    assert 3 <= runs <= 7, [line for w in workers for line in w.err if "cleanup:" in line]


def restart_postgres():
    root = os.environ.get("BRAINOPS_PG_ROOT", "/var/tmp/brainops-postgres")
    cmd = ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", f"{root}/data", "-l", f"{root}/postgres.log",
           "-m", "fast", "-w", "-s", "restart"]
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_postgres_restarted_mid_run_loses_nothing(db, procs, hook, tmp_path, accel):
    store, direct = db
    kw = dict(accel=accel, direct=direct, lease=10)
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"], **kw)
    spawn(procs, str(tmp_path), "worker", store, hook, **kw)
    client = get_sync_client(url=api.url, timeout=60)
    Hook.posts.clear()
    tid = client.threads.create()["thread_id"]
    rid = client.runs.create(tid, "effect", input={"seconds": 2, "name": "pg"}, stream_resumable=True)["run_id"]
    wait_for(lambda: Hook.posts, what="the side effect")
    restart_postgres()  # while the run sleeps, and the API process follows it
    final = client.runs.join(tid, rid)
    assert final["log"] == ["done"]
    assert run_row(direct, rid)[:2] == ("success", 1)
    assert len(Hook.posts) == 1
    # The queue works after it, too.
    tid = client.threads.create()["thread_id"]
    assert client.runs.wait(tid, "effect", input={"seconds": 0})["log"] == ["done"]


def can_unshare():
    return os.getuid() == 0 and subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True
    ).returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root and unshare (util-linux) for a second 'machine'")
def test_a_worker_on_another_machine_killed_mid_run_is_replaced_after_its_lease(db, procs, hook, tmp_path):
    """The victim runs in its own UTS and PID namespaces with another host name, as on another
    machine: the dead-process shortcut cannot apply, so only its lease running out (2 s) lets
    the surviving worker take the run over."""
    store, direct = db
    api = spawn(procs, str(tmp_path), "serve", store, hook, ["--no-worker"])
    client = get_sync_client(url=api.url, timeout=60)
    remote = Proc(str(tmp_path), "worker", store, hook)
    inner = " ".join(f"'{a}'" for a in remote.args)
    remote.args = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c",
                   f"hostname other-machine && exec {inner}"]
    remote.proc = subprocess.Popen(remote.args, env=remote.env, stderr=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    assert "brainops worker" in remote.proc.stderr.readline()
    procs.append(remote)

    Hook.posts.clear()
    tid = client.threads.create()["thread_id"]
    rid = client.runs.create(tid, "effect", input={"seconds": 3, "name": "remote"})["run_id"]
    wait_for(lambda: Hook.posts, what="the side effect")
    assert run_row(direct, rid)[2].startswith("other-machine/")
    local = spawn(procs, str(tmp_path), "worker", store, hook)
    time.sleep(0.3)
    os.killpg(remote.proc.pid, signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: run_row(direct, rid)[1] == 2, timeout=15, what="the takeover")
    waited = time.time() - killed
    assert waited >= 1.0, f"taken over after {waited:.2f} s: before the lease could expire"
    assert client.runs.join(tid, rid)["log"] == ["done"]
    status, attempt, worker = run_row(direct, rid)
    assert (status, attempt) == ("success", 2) and worker.split("/")[1] == str(local.pid)
    assert len(Hook.posts) == 1
