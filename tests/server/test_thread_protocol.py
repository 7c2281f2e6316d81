"""The v2 thread-centric protocol as langgraph-sdk 0.4.14's `client.threads.stream(...)`
speaks it, over WebSocket and over SSE: start a run, see its question, answer it, read
the output; and the raw frames."""

import asyncio
import json
import uuid

import httpx
import pytest
from langgraph_sdk import get_client


async def ask_and_answer(url, transport):
    client = get_client(url=url)
    async with client.threads.stream(assistant_id="hitl", transport=transport) as thread:
        await thread.run.start(input={"n": 0})
        for _ in range(200):
            if thread.interrupts:
                break
            await asyncio.sleep(0.05)
        assert [i["value"] for i in thread.interrupts] == ["approve?"]
        await thread.run.respond("fine")
        return await thread.output.with_timeout(20)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_sdk_thread_stream_with_an_interrupt_answered(url, transport):
    output = asyncio.run(ask_and_answer(url, transport))
    assert output["log"] == ["a", "answer:fine"] and output["n"] == 1


def test_raw_websocket_frames(url):
    from websockets.asyncio.client import connect

    async def go():
        tid = str(uuid.uuid4())
        ws_url = url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
        frames = []
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"id": 1, "method": "subscription.subscribe", "params": {"channels": ["lifecycle", "values", "input"]}}))
            frames.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"id": 2, "method": "run.start", "params": {"assistant_id": "hitl", "input": {"n": 0}}}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                frames.append(frame)
                if frame.get("method") == "lifecycle" and frame["params"]["data"]["event"] == "interrupted":
                    break
        return frames

    frames = asyncio.run(go())
    assert frames[0]["type"] == "success" and frames[0]["id"] == 1
    assert "subscription_id" in frames[0]["result"]
    events = [f for f in frames if f.get("type") == "event"]
    methods = [f["method"] for f in events]
    assert methods[0] == "lifecycle" and events[0]["params"]["data"]["event"] == "running"
    assert "values" in methods
    assert methods[-2:] == ["input.requested", "lifecycle"]
    assert events[-2]["params"]["data"]["value"] == "approve?"
    seqs = [f["seq"] for f in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    replies = [f for f in frames if f.get("type") == "success" and f["id"] == 2]
    assert replies and "run_id" in replies[0]["result"]


def test_unknown_command_and_foreign_origin(url):
    tid = str(uuid.uuid4())
    r = httpx.post(f"{url}/threads/{tid}/commands", json={"id": 9, "method": "agent.fly", "params": {}})
    assert r.json()["type"] == "error" and r.json()["error"] == "unknown_command"
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def evil():
        ws_url = url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
        async with connect(ws_url, origin="http://evil.test"):
            pass

    with pytest.raises(InvalidStatus) as e:
        asyncio.run(evil())
    assert e.value.response.status_code == 403
