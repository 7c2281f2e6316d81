"""Latency to the first SSE event, and resident memory with N idle SSE streams, for one
server at URL (its process id PID). Prints one JSON object."""

import asyncio
import json
import statistics
import sys
import time

import httpx

URL, PID, STREAMS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def first_event_ms(samples=200):
    out = []
    with httpx.Client(base_url=URL, timeout=30) as c:
        for _ in range(samples):
            t0 = time.perf_counter()
            with c.stream(
                "POST", "/runs/stream", json={"assistant_id": "simple", "input": {"n": 0}}
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        out.append((time.perf_counter() - t0) * 1000)
                        break
            # Closing after the first event leaves the run to finish on its own.
    return statistics.median(out), sorted(out)[int(len(out) * 0.99) - 1]


async def idle_streams(n):
    host, port = URL.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=URL, timeout=30) as c:
        thread = (await c.post("/threads", json={})).json()["thread_id"]
        run = (
            await c.post(
                f"/threads/{thread}/runs",
                json={"assistant_id": "slow", "input": {"seconds": 60}},
            )
        ).json()["run_id"]
    before = rss_mb(PID)
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /threads/{thread}/runs/{run}/stream HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        conns.append((reader, writer))
    for reader, _ in conns:
        await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(1)
    after = rss_mb(PID)
    for _, writer in conns:
        writer.close()
    async with httpx.AsyncClient(base_url=URL, timeout=30) as c:
        await c.post(f"/threads/{thread}/runs/{run}/cancel")
    return before, after


p50, p99 = first_event_ms()
before, after = asyncio.run(idle_streams(STREAMS))
print(json.dumps({
    "first_event_p50_ms": round(p50, 2),
    "first_event_p99_ms": round(p99, 2),
    "rss_before_mb": round(before, 1),
    "rss_with_streams_mb": round(after, 1),
    "streams": STREAMS,
}))
