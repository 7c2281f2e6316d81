"""The run queue across processes on one Postgres (through PgBouncer): throughput of 10,000
tiny background runs through 1 and 2 worker processes, time from a run's creation to its
start (p50/p99) with polling, LISTEN and Redis, and Redis commands per idle hour.

Run by scripts/bench-queue.sh, which sets BRAINOPS_BIN, DATABASE_URL, DATABASE_POOLER_URL
and REDIS_URL."""

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

BIN = os.environ["BRAINOPS_BIN"]
DIRECT = os.environ["DATABASE_URL"]
POOLER = os.environ["DATABASE_POOLER_URL"]
REDIS = os.environ["REDIS_URL"]
GRAPHS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "queue_graphs")
RUNS = int(os.environ.get("RUNS", "10000"))
SAMPLES = int(os.environ.get("SAMPLES", "300"))


def psql(url, sql):
    return subprocess.run(["psql", url.split("?")[0], "-XAtq", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def with_db(url, name):
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def fresh_db():
    name = "brainops_bench_" + uuid.uuid4().hex[:8]
    psql(DIRECT, f"CREATE DATABASE {name}")
    return name


def start(command, store, env, home):
    args = [BIN, command, "--graphs", GRAPHS, "--checkpoint", store]
    if command == "serve":
        args += ["--port", "0", "--no-worker"]
    # REDIS_URL only where a measurement asks for it.
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "BRAINOPS_LISTEN_URL")}
    proc = subprocess.Popen(args, env=dict(base, BRAINOPS_HOME=home, **env),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    line = proc.stderr.readline()
    url = re.search(r"http://[0-9.:]+", line)
    return proc, url.group(0) if url else None


def stop(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def throughput(workers):
    name = fresh_db()
    store, direct = with_db(POOLER, name), with_db(DIRECT, name)
    with tempfile.TemporaryDirectory() as home:
        api, url = start("serve", store, {}, home)
        client = httpx.Client(base_url=url, timeout=120)
        # Queue first, then start the workers: the queue is measured, not the client.
        for i in range(0, RUNS, 500):
            batch = [{"assistant_id": "tiny", "input": {"n": i + j}, "on_completion": "keep"}
                     for j in range(min(500, RUNS - i))]
            r = client.post("/runs/batch", json=batch)
            r.raise_for_status()
        started = time.time()
        procs = [start("worker", store, {}, home)[0] for _ in range(workers)]
        while True:
            done = int(psql(direct, "SELECT count(*) FROM brainops_server_runs WHERE status = 'success'"))
            if done >= RUNS:
                break
            time.sleep(0.2)
        elapsed = time.time() - started
        stop(procs + [api])
    psql(DIRECT, f"DROP DATABASE {name} WITH (FORCE)")
    return RUNS / elapsed


def create_to_start(mode):
    name = fresh_db()
    store, direct = with_db(POOLER, name), with_db(DIRECT, name)
    env = {}
    if mode == "redis":
        env["REDIS_URL"] = REDIS
    if mode == "listen":
        env["BRAINOPS_LISTEN_URL"] = with_db(DIRECT, name)
    with tempfile.TemporaryDirectory() as home:
        api, url = start("serve", store, env, home)
        worker, _ = start("worker", store, env, home)
        client = httpx.Client(base_url=url, timeout=60)
        time.sleep(1)
        for _ in range(SAMPLES):
            client.post("/runs", json={"assistant_id": "tiny", "input": {}, "on_completion": "keep"}).raise_for_status()
            time.sleep(0.05)
        time.sleep(2)
        rows = psql(direct, "SELECT (doc->>'started_at_ms')::bigint - created_at_ms FROM brainops_server_runs WHERE doc ? 'started_at_ms'")
        stop([worker, api])
    psql(DIRECT, f"DROP DATABASE {name} WITH (FORCE)")
    ms = sorted(int(x) for x in rows.split())
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1], len(ms)


def redis_idle_commands():
    name = fresh_db()
    store = with_db(POOLER, name)
    port = REDIS.rsplit(":", 1)[1]

    def total():
        out = subprocess.run(["redis-cli", "-p", port, "INFO", "stats"], capture_output=True, text=True).stdout
        return int(out.split("total_commands_processed:")[1].split()[0])

    with tempfile.TemporaryDirectory() as home:
        procs = [start("serve", store, {"REDIS_URL": REDIS}, home)[0]] + [
            start("worker", store, {"REDIS_URL": REDIS}, home)[0] for _ in range(2)]
        time.sleep(3)
        before = total()
        time.sleep(60)
        after = total()
        stop(procs)
    psql(DIRECT, f"DROP DATABASE {name} WITH (FORCE)")
    # Minus the INFO command that read `after`.
    return (after - before - 1) * 60


def main():
    parts = sys.argv[1:] or ["throughput", "latency", "idle"]
    if "throughput" in parts:
        print(f"queue throughput, {RUNS} tiny background runs (queued first, then drained):")
    for workers in (1, 2) if "throughput" in parts else ():
        print(f"  {workers} worker process(es), 10 concurrent runs each: {throughput(workers):.0f} runs/s", flush=True)
    if "latency" in parts:
        print(f"create -> start, {SAMPLES} runs created one at a time (20/s) with an idle worker:")
    for mode in ("poll", "listen", "redis") if "latency" in parts else ():
        p50, p99, n = create_to_start(mode)
        print(f"  {mode:6}: p50 {p50} ms, p99 {p99} ms ({n} runs)", flush=True)
    if "idle" in parts:
        print(f"Redis commands per idle hour, 1 server + 2 workers: {redis_idle_commands()}")


if __name__ == "__main__":
    sys.exit(main())
