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


def test_checkpoints_fork_and_tree_commands(url):
    tid = str(uuid.uuid4())

    def command(method, **params):
        r = httpx.post(f"{url}/threads/{tid}/commands", json={"id": 1, "method": method, "params": params})
        assert r.status_code == 200, r.text
        return r.json()

    run = command("run.start", assistant_id="simple", input={"n": 0})["result"]["run_id"]
    httpx.get(f"{url}/threads/{tid}/runs/{run}/join", timeout=20)
    listed = command("state.listCheckpoints", limit=10)["result"]["checkpoints"]
    history = httpx.post(f"{url}/threads/{tid}/history", json={"limit": 10}).json()
    # Newest first, the history's checkpoints, numbered as its metadata is.
    assert [c["id"] for c in listed] == [h["checkpoint_id"] for h in history]
    assert [c["step"] for c in listed] == [h["metadata"]["step"] for h in history] == [1, 0, -1]
    assert [c.get("node_name") for c in listed] == ["b", "a", None]
    assert [c["metadata"]["source"] for c in listed] == ["loop", "loop", "input"]
    assert listed[0]["metadata"]["parent_id"] == listed[1]["id"] and listed[0]["timestamp"]
    page = command("state.listCheckpoints", limit=1, before=listed[0]["id"])["result"]["checkpoints"]
    assert [c["id"] for c in page] == [listed[1]["id"]]
    tree = command("agent.getTree")["result"]["tree"]
    assert tree == {"namespace": [], "status": "completed", "graph_name": "simple"}
    # A fork from the checkpoint after `a` runs `b` again from there, on the same thread.
    forked = command("state.fork", checkpoint_id=listed[1]["id"])["result"]
    assert forked["thread_id"] == tid and forked["run_id"] != run
    values = httpx.get(f"{url}/threads/{tid}/runs/{forked['run_id']}/join", timeout=20).json()
    assert values == {"log": ["a", "b"], "n": 1}
    bad = command("state.fork", checkpoint_id="nope")
    assert bad["type"] == "error" and bad["error"] == "no_such_checkpoint", bad
    assert command("state.fork")["error"] == "invalid_argument"


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_sdk_reads_an_agents_reply_as_a_chat_model_stream(url, transport):
    # langgraph-sdk's `thread.messages` needs langchain-protocol's framing: message-start,
    # content blocks, message-finish with the usage.
    async def go():
        client = get_client(url=url)
        async with client.threads.stream(assistant_id="chat", transport=transport) as thread:
            await thread.run.start(input={"question": "Say hello."})
            streams = []

            async def collect():
                async for stream in thread.messages:
                    streams.append(stream)

            # The projection feeds its streams while it is iterated.
            task = asyncio.create_task(collect())
            output = await thread.output.with_timeout(60)
            for _ in range(100):
                if streams:
                    break
                await asyncio.sleep(0.05)
            message = await asyncio.wait_for(streams[0], 10)
            text = await asyncio.wait_for(streams[0].text, 10)
            task.cancel()
            return len(streams), message, text, output

    count, message, text, output = asyncio.run(go())
    assert count == 1
    assert message.content == [{"type": "text", "text": text, "index": 0}]
    assert text.strip() and text.strip() in output["reply"]
    assert message.usage_metadata["output_tokens"] > 0
    assert message.usage_metadata["total_tokens"] == (
        message.usage_metadata["input_tokens"] + message.usage_metadata["output_tokens"]
    )
