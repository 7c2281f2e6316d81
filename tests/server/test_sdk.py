"""The official Python client, langgraph-sdk 0.4.14, against `brainops serve`.

The graphs are in tests/server/graphs: `simple` (a -> b), `hitl` (a -> ask -> record),
`slow` (sleeps `seconds`, then appends "slow"), `err` (fails), `chat` (a local-model agent),
`greet` (reads the run's context, loops five times).
"""

import asyncio
import threading
import time
import uuid

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import (
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)

NS = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


@pytest.fixture
def client(url):
    return get_sync_client(url=url)


def events(parts):
    return [(p.event, p.data) for p in parts]


def wait_status(client, tid, rid, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.runs.get(tid, rid)["status"]
        if status in want:
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {rid} never reached {want}: {status}")


# ------------------------------------------------------------------------- meta


def test_ok_and_info(url):
    assert httpx.get(url + "/ok").json() == {"ok": True, "services": {}}
    info = httpx.get(url + "/info").json()
    assert isinstance(info["flags"], dict)


# ------------------------------------------------------------------- assistants


def test_system_assistants_have_the_reference_ids(client):
    found = client.assistants.search(graph_id="simple", metadata={"created_by": "system"})
    assert [a["assistant_id"] for a in found] == [str(uuid.uuid5(NS, "simple"))]
    by_name = client.assistants.get("simple")
    by_id = client.assistants.get(str(uuid.uuid5(NS, "simple")))
    assert by_name == by_id
    assert by_id["graph_id"] == "simple" and by_id["version"] == 1
    names = {a["graph_id"] for a in client.assistants.search(limit=100)}
    assert {"simple", "hitl", "slow", "err", "chat", "parent"} <= names


def test_graph_drawing_and_schemas(client, url):
    graph = client.assistants.get_graph("simple")
    assert [n["id"] for n in graph["nodes"]] == ["__start__", "a", "b", "__end__"]
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert edges == {("__start__", "a"), ("a", "b"), ("b", "__end__")}
    schemas = client.assistants.get_schemas("simple")
    assert set(schemas["state_schema"]["properties"]) == {"log", "n"}
    # RemoteGraph draws from the same data.
    from langgraph.pregel.remote import RemoteGraph

    drawn = RemoteGraph("simple", url=url).get_graph()
    assert {"a", "b"} <= set(drawn.nodes)


def test_xray_draws_a_subgraph_from_inside_as_langgraph_does(client, url):
    # LangGraph's get_graph(xray=True) for the same shape gives nodes `sub:c1` in place of
    # `sub`, and edges a -> sub:c1 -> __end__.
    graph = client.assistants.get_graph("parent", xray=True)
    ids = [n["id"] for n in graph["nodes"]]
    assert "sub:c1" in ids and "sub" not in ids
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert edges == {("__start__", "a"), ("a", "sub:c1"), ("sub:c1", "__end__")}
    from langgraph.pregel.remote import RemoteGraph

    drawn = RemoteGraph("parent", url=url).get_graph(xray=True)
    assert "sub:c1" in drawn.nodes
    assert "sub" in [n["id"] for n in client.assistants.get_graph("parent")["nodes"]]


def test_unknown_assistant_is_422_naming_the_graphs(client):
    # The SDK's wait raises httpx's error (the typed errors subclass it).
    with pytest.raises(httpx.HTTPStatusError) as e:
        client.runs.wait(None, "nope", input={})
    assert e.value.response.status_code == 422
    with pytest.raises(UnprocessableEntityError):
        client.assistants.get("nope")
    assert "nope" in str(e.value.response.json()["detail"])
    assert "simple" in e.value.response.json()["detail"]


# ---------------------------------------------------------------------- threads


def test_thread_lifecycle(client):
    t = client.threads.create(metadata={"customer": "acme"})
    assert {"thread_id", "created_at", "updated_at", "metadata", "status", "values", "interrupts"} <= set(t)
    assert t["status"] == "idle" and t["metadata"] == {"customer": "acme"}
    tid = t["thread_id"]
    with pytest.raises(ConflictError):
        client.threads.create(thread_id=tid)
    same = client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert same["thread_id"] == tid
    updated = client.threads.update(tid, metadata={"stage": "quote"})
    assert updated["metadata"] == {"customer": "acme", "stage": "quote"}
    found = client.threads.search(metadata={"customer": "acme", "stage": "quote"})
    assert [x["thread_id"] for x in found] == [tid]
    assert client.threads.count(metadata={"stage": "quote"}) == 1
    client.runs.wait(tid, "simple", input={"n": 0})
    copy = client.threads.copy(tid)
    assert copy["thread_id"] != tid and "values" not in copy
    assert client.threads.get_state(copy["thread_id"])["values"] == {"log": ["a", "b"], "n": 1}
    client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        client.threads.get(tid)


def test_bad_ids_and_missing_fields(client, url):
    with pytest.raises(NotFoundError):
        client.threads.get(str(uuid.uuid4()))
    r = httpx.get(url + "/threads/not-a-uuid")
    assert r.status_code == 422 and r.json() == {"detail": "Invalid thread ID: must be a UUID"}
    r = httpx.post(url + "/runs/wait", json={"input": {}})
    assert r.status_code == 422 and "assistant_id" in r.json()["detail"]
    r = httpx.post(url + "/runs/wait", content=b'{"assistant_id": "simple", "input": ')
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = httpx.post(url + "/runs/wait", json={"assistant_id": "simple", "input": {}, "stream_mode": "nope"})
    assert r.status_code == 422 and "stream_mode" in r.json()["detail"]
    r = httpx.post(url + "/runs/wait", json={"assistant_id": "simple", "input": {}, "interrupt_before": ["zz"]})
    assert r.status_code == 422 and "zz" in r.json()["detail"]
    r = httpx.post(url + "/runs/wait", json={"assistant_id": "simple", "input": 5})
    assert r.status_code == 422 and "input" in r.json()["detail"]
    r = httpx.post(url + "/runs/wait", json={"assistant_id": "simple", "input": {}, "durability": "later"})
    assert r.status_code == 422 and r.json()["detail"] == "durability: `later` is not one of sync, async, exit"
    for durability in ("sync", "async", "exit", None):
        r = httpx.post(url + "/runs/wait", json={"assistant_id": "simple", "input": {}, "durability": durability})
        assert r.status_code == 200, r.text


# ------------------------------------------------------------------------- runs


def test_stream_events_match_the_reference_capture(client):
    tid = client.threads.create()["thread_id"]
    created = []
    parts = list(
        client.runs.stream(
            tid,
            "simple",
            input={"n": 0},
            stream_mode=["values", "updates", "custom"],
            on_run_created=lambda meta: created.append(meta),
        )
    )
    assert events(parts)[1:] == [
        ("values", {"log": [], "n": 0}),
        ("updates", {"a": {"log": ["a"], "n": 1}}),
        ("values", {"log": ["a"], "n": 1}),
        ("updates", {"b": {"log": ["b"]}}),
        ("values", {"log": ["a", "b"], "n": 1}),
    ]
    assert parts[0].event == "metadata"
    assert parts[0].data == {"run_id": created[0]["run_id"], "attempt": 1}
    assert created[0]["thread_id"] == tid
    assert client.runs.get(tid, created[0]["run_id"])["status"] == "success"
    assert client.threads.get(tid)["status"] == "idle"


def test_wait_bodies(client):
    tid = client.threads.create()["thread_id"]
    assert client.runs.wait(tid, "simple", input={"n": 0}) == {"log": ["a", "b"], "n": 1}
    # A second run on the thread folds into its state.
    assert client.runs.wait(tid, "simple", input={"n": 5}) == {"log": ["a", "b", "a", "b"], "n": 6}
    assert client.runs.wait(None, "simple", input={"n": 1}) == {"log": ["a", "b"], "n": 2}


def test_a_failing_run_reports_its_error(client):
    tid = client.threads.create()["thread_id"]
    with pytest.raises(Exception) as e:
        client.runs.wait(tid, "err", input={})
    assert "ExpressionError" in str(e.value) and "division by zero" in str(e.value).lower()
    body = client.runs.wait(tid, "err", input={}, raise_error=False)
    assert body["__error__"]["error"] == "ExpressionError"
    assert "division by zero" in body["__error__"]["message"].lower()
    parts = list(client.runs.stream(tid, "err", input={}))
    assert parts[-1].event == "error"
    assert parts[-1].data["error"] == "ExpressionError"
    thread = client.threads.get(tid)
    assert thread["status"] == "error"
    assert thread["error"]["error"] == "ExpressionError"
    runs = client.runs.list(tid)
    assert {r["status"] for r in runs} == {"error"}


def test_interrupt_and_resume(client):
    tid = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(tid, "hitl", input={"n": 0}, stream_mode="values"))
    last = parts[-1].data
    assert last["log"] == ["a"] and last["n"] == 1
    [interrupt] = last["__interrupt__"]
    assert interrupt["value"] == "approve?" and len(interrupt["id"]) == 32
    thread = client.threads.get(tid)
    assert thread["status"] == "interrupted"
    [(task_id, [pending])] = thread["interrupts"].items()
    assert pending["id"] == interrupt["id"]
    state = client.threads.get_state(tid)
    assert state["next"] == ["ask"]
    assert state["tasks"][0]["interrupts"][0]["id"] == interrupt["id"]
    assert state["tasks"][0]["id"] == task_id
    assert state["interrupts"][0]["id"] == interrupt["id"]
    # Resuming without a thread is refused; resuming the thread finishes it.
    with pytest.raises(httpx.HTTPStatusError) as e:
        client.runs.wait(None, "hitl", command={"resume": "yes"})
    assert e.value.response.status_code == 400
    assert e.value.response.json() == {"detail": "You must provide a thread_id when resuming."}
    done = client.runs.wait(tid, "hitl", command={"resume": "yes"})
    assert done["log"] == ["a", "answer:yes"]
    assert client.threads.get(tid)["status"] == "idle"
    # Resuming a thread that waits for nothing is a clear 400.
    with pytest.raises(httpx.HTTPStatusError) as e:
        client.runs.wait(tid, "hitl", command={"resume": "again"})
    assert e.value.response.status_code == 400
    assert "not interrupted" in e.value.response.json()["detail"]


def test_resume_by_interrupt_id_and_input_with_resume_is_refused(client, url):
    tid = client.threads.create()["thread_id"]
    body = client.runs.wait(tid, "hitl", input={})
    iid = body["__interrupt__"][0]["id"]
    r = httpx.post(
        f"{url}/threads/{tid}/runs/wait",
        json={"assistant_id": "hitl", "input": {}, "command": {"resume": "x"}},
    )
    assert r.status_code == 422 and "resume" in r.json()["detail"]
    done = client.runs.wait(tid, "hitl", command={"resume": {iid: "ok"}})
    assert done["log"] == ["a", "answer:ok"]


def test_static_breakpoint_per_run(client):
    tid = client.threads.create()["thread_id"]
    parts = list(
        client.runs.stream(tid, "simple", input={"n": 0}, stream_mode=["values", "updates"], interrupt_before=["b"])
    )
    assert parts[-1].event == "updates" and parts[-1].data == {"__interrupt__": []}
    thread = client.threads.get(tid)
    assert thread["status"] == "interrupted" and thread["interrupts"] == {}
    assert client.threads.get_state(tid)["next"] == ["b"]
    assert client.runs.wait(tid, "simple", input=None) == {"log": ["a", "b"], "n": 1}


def test_background_run_get_list_join(client):
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "slow", input={"seconds": 0.5})
    assert run["status"] == "pending" and run["thread_id"] == tid
    assert client.threads.get(tid)["status"] == "busy"
    assert client.runs.join(tid, run["run_id"]) == {"log": ["slow"], "seconds": 0.5, "slept": {"seconds": 0.5}}
    assert client.runs.get(tid, run["run_id"])["status"] == "success"
    second = client.runs.create(tid, "slow", input={"seconds": 0})
    client.runs.join(tid, second["run_id"])
    listed = client.runs.list(tid)
    assert [r["run_id"] for r in listed] == [second["run_id"], run["run_id"]]
    client.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        client.runs.get(tid, run["run_id"])


def test_cancel_a_running_run(client):
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "slow", input={"seconds": 5})
    wait_status(client, tid, run["run_id"], {"running"})
    client.runs.cancel(tid, run["run_id"])
    assert wait_status(client, tid, run["run_id"], {"interrupted", "success", "error"}) == "interrupted"
    assert client.threads.get(tid)["status"] != "busy"


def test_after_seconds_delays_the_start(client):
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "simple", input={"n": 0}, after_seconds=1.5)
    time.sleep(0.7)
    assert client.runs.get(tid, run["run_id"])["status"] == "pending"
    assert wait_status(client, tid, run["run_id"], {"success"}, timeout=5) == "success"


@pytest.mark.parametrize("strategy", ["reject", "enqueue", "interrupt", "rollback"])
def test_double_texting(client, strategy):
    tid = client.threads.create()["thread_id"]
    first = client.runs.create(tid, "slow", input={"seconds": 1.5})
    wait_status(client, tid, first["run_id"], {"running"})
    if strategy == "reject":
        with pytest.raises(ConflictError):
            client.runs.create(tid, "slow", input={"seconds": 0}, multitask_strategy="reject")
        client.runs.join(tid, first["run_id"])
        assert client.threads.get_state(tid)["values"]["log"] == ["slow"]
        return
    second = client.runs.create(tid, "slow", input={"seconds": 0.2}, multitask_strategy=strategy)
    assert client.threads.get(tid)["status"] == "busy"
    client.runs.join(tid, second["run_id"])
    assert client.runs.get(tid, second["run_id"])["status"] == "success"
    log = client.threads.get_state(tid)["values"]["log"]
    if strategy == "enqueue":
        assert client.runs.get(tid, first["run_id"])["status"] == "success"
        assert log == ["slow", "slow"]
    elif strategy == "interrupt":
        assert client.runs.get(tid, first["run_id"])["status"] == "interrupted"
        assert log == ["slow"]
    else:
        with pytest.raises(NotFoundError):
            client.runs.get(tid, first["run_id"])
        assert log == ["slow"]


def test_if_not_exists(client):
    tid = str(uuid.uuid4())
    with pytest.raises(httpx.HTTPStatusError) as e:
        client.runs.wait(tid, "simple", input={"n": 0})
    assert e.value.response.status_code == 404
    assert client.runs.wait(tid, "simple", input={"n": 0}, if_not_exists="create") == {"log": ["a", "b"], "n": 1}
    assert client.threads.get(tid)["metadata"]["graph_id"] == "simple"


def test_resumable_join_stream_has_no_gap_and_no_duplicate(client):
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(
        tid, "slow", input={"seconds": 0.3}, stream_resumable=True, stream_mode=["values", "updates"]
    )
    first = next(iter(client.runs.join_stream(tid, run["run_id"], last_event_id="-1")))
    assert first.event == "metadata" and first.id == "1"
    rest = list(client.runs.join_stream(tid, run["run_id"], last_event_id=first.id))
    ids = [int(p.id) for p in rest]
    assert ids == list(range(2, 2 + len(ids)))
    assert [p.event for p in rest] == ["values", "updates", "values", "updates", "values"]
    # The whole log again, filtered to one mode.
    only = list(client.runs.join_stream(tid, run["run_id"], last_event_id="-1", stream_mode="updates"))
    assert [p.event for p in only] == ["metadata", "updates", "updates"]


def test_on_disconnect_cancel(url, client):
    tid = client.threads.create()["thread_id"]
    with httpx.stream(
        "POST",
        f"{url}/threads/{tid}/runs/stream",
        json={"assistant_id": "slow", "input": {"seconds": 3}, "on_disconnect": "cancel"},
        timeout=10,
    ) as r:
        loc = r.headers["content-location"]
        for line in r.iter_lines():
            if line.startswith("data:"):
                break
    rid = loc.rsplit("/", 1)[1]
    assert wait_status(client, tid, rid, {"interrupted", "success"}) == "interrupted"


def test_heartbeats_keep_a_quiet_stream_alive(url, client):
    tid = client.threads.create()["thread_id"]
    seen = []
    started = time.time()
    with httpx.stream(
        "POST",
        f"{url}/threads/{tid}/runs/stream",
        json={"assistant_id": "slow", "input": {"seconds": 6}},
        timeout=20,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(": heartbeat") or line == ":heartbeat":
                seen.append(time.time() - started)
                break
    assert seen and seen[0] < 6.5


def test_state_history_update_and_fork(client):
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "simple", input={"n": 0})
    history = client.threads.get_history(tid, limit=3)
    steps = [h["metadata"]["step"] for h in history]
    assert len(history) == 3 and steps == sorted(steps, reverse=True)
    assert history[0]["values"] == {"log": ["a", "b"], "n": 1}
    past = history[1]
    assert client.threads.get_state(tid, checkpoint_id=past["checkpoint_id"])["values"] == past["values"]
    at = client.threads.get_state(tid, checkpoint={"thread_id": tid, "checkpoint_ns": "", "checkpoint_id": past["checkpoint_id"]})
    assert at["values"] == past["values"] == {"log": ["a"], "n": 1}
    updated = client.threads.update_state(tid, {"n": 42}, as_node="b")
    assert updated["checkpoint"]["checkpoint_ns"] == "" and updated["checkpoint"]["thread_id"] == tid
    state = client.threads.get_state(tid)
    assert state["values"]["n"] == 42 and state["metadata"]["source"] == "update"
    # A run from a past checkpoint replays from there.
    replay = client.runs.wait(tid, "simple", input=None, checkpoint_id=past["checkpoint_id"])
    assert replay == {"log": ["a", "b"], "n": 1}


def test_update_state_on_an_empty_thread_writes_without_running(client):
    # As LangGraph 1.2.24: the values become the first checkpoint, nothing runs, and the
    # thread goes on where START leads (or from `as_node`'s edges).
    tid = client.threads.create(graph_id="simple")["thread_id"]
    client.threads.update_state(tid, {"n": 5, "log": ["x"]})
    state = client.threads.get_state(tid)
    assert state["values"] == {"log": ["x"], "n": 5}
    assert state["next"] == ["a"] and state["metadata"]["source"] == "update"
    assert client.threads.get(tid)["status"] == "idle"
    assert client.runs.wait(tid, "simple", input=None) == {"log": ["x", "a", "b"], "n": 6}
    tid = client.threads.create(graph_id="simple")["thread_id"]
    client.threads.update_state(tid, {"n": 5}, as_node="a")
    assert client.threads.get_state(tid)["next"] == ["b"]


def test_supersteps_seed_a_new_threads_history(client, url):
    tid = client.threads.create(
        graph_id="simple",
        supersteps=[
            {"updates": [{"values": {"n": 5, "log": ["x"]}, "as_node": "__start__"}]},
            {"updates": [{"values": {"n": 7}, "as_node": "a"}]},
        ],
    )["thread_id"]
    state = client.threads.get_state(tid)
    assert state["values"] == {"log": ["x"], "n": 7} and state["next"] == ["b"]
    assert len(client.threads.get_history(tid)) == 2
    assert client.runs.wait(tid, "simple", input=None) == {"log": ["x", "b"], "n": 7}
    # A bad update is refused before anything is written, naming where it is.
    bad = {"supersteps": [{"updates": [{"values": {"n": 1}, "as_node": "nosuch"}]}], "metadata": {"graph_id": "simple"}}
    r = httpx.post(f"{url}/threads", json=bad)
    assert r.status_code == 422 and "supersteps[0].updates[0].as_node" in r.json()["detail"]
    r = httpx.post(f"{url}/threads", json={"supersteps": [{"updates": [{"values": {"n": 1}, "as_node": "a"}]}]})
    assert r.status_code == 422 and "graph_id" in r.json()["detail"]
    before = client.threads.count()
    r = httpx.post(f"{url}/threads", json={**bad, "supersteps": [{"updates": [{"values": {"nosuch": 1}, "as_node": "a"}]}]})
    assert r.status_code == 422 and "nosuch" in r.json()["detail"], r.text
    assert client.threads.count() == before


def test_update_state_as_node_stands_for_it_and_moves_next(client):
    # The expected `next` values are LangGraph 1.2.24's for the same graph and calls.
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "hitl", input={"n": 0})
    assert client.threads.get_state(tid)["next"] == ["ask"]
    # Written as the `ask` node, the update is its answer: the question is gone.
    client.threads.update_state(tid, {"answer": "by hand"}, as_node="ask")
    state = client.threads.get_state(tid)
    assert state["next"] == ["record"]
    assert client.threads.get(tid)["status"] == "idle"
    assert client.runs.wait(tid, "hitl", input=None)["log"] == ["a", "answer:by hand"]
    # At a breakpoint before `b`, written as `b`: `b` is skipped.
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "simple", input={"n": 0}, interrupt_before=["b"])
    client.threads.update_state(tid, {"log": ["b by hand"]}, as_node="b")
    assert client.threads.get_state(tid)["next"] == []
    with pytest.raises(UnprocessableEntityError):
        client.threads.update_state(tid, {"n": 1}, as_node="nosuch")


def test_checkpoints_stream_mode_sends_each_checkpoint_as_history_shows_it(client):
    tid = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(tid, "simple", input={"n": 0}, stream_mode="checkpoints"))
    sent = [p.data for p in parts if p.event == "checkpoints"]
    # Oldest first, as the reference streams them: input, a, b.
    history = list(reversed(client.threads.get_history(tid, limit=10)))
    assert [c["config"]["configurable"]["checkpoint_id"] for c in sent] == [
        h["checkpoint_id"] for h in history
    ]
    assert [c["values"] for c in sent] == [h["values"] for h in history]
    assert [c["next"] for c in sent] == [h["next"] for h in history] == [["a"], ["b"], []]
    assert [c["metadata"]["step"] for c in sent] == [-1, 0, 1]
    assert [c["metadata"]["source"] for c in sent] == ["input", "loop", "loop"]
    assert sent[0]["parent_config"] is None
    assert (
        sent[1]["parent_config"]["configurable"]["checkpoint_id"]
        == sent[0]["config"]["configurable"]["checkpoint_id"]
    )
    assert [t["name"] for t in sent[0]["tasks"]] == ["a"]
    assert {p.event for p in parts} == {"metadata", "checkpoints"}


def test_debug_stream_mode_has_checkpoint_task_and_result_events(client):
    tid = client.threads.create()["thread_id"]
    parts = [p.data for p in client.runs.stream(tid, "simple", input={"n": 0}, stream_mode="debug") if p.event == "debug"]
    # As LangGraph 1.2.24 orders them: each checkpoint, then the tasks it leads to.
    assert [(d["type"], d["payload"].get("name")) for d in parts] == [
        ("checkpoint", None), ("task", "a"), ("task_result", "a"),
        ("checkpoint", None), ("task", "b"), ("task_result", "b"), ("checkpoint", None),
    ]
    checkpoints = [d for d in parts if d["type"] == "checkpoint"]
    # Numbered by the checkpoint's metadata step, carrying what the checkpoints mode sends.
    assert [d["step"] for d in checkpoints] == [-1, 0, 1]
    history = list(reversed(client.threads.get_history(tid, limit=10)))
    assert [d["payload"]["config"]["configurable"]["checkpoint_id"] for d in checkpoints] == [
        h["checkpoint_id"] for h in history
    ]
    assert [d["payload"]["next"] for d in checkpoints] == [["a"], ["b"], []]
    assert checkpoints[-1]["payload"]["values"] == client.threads.get_state(tid)["values"]


def test_events_stream_mode_is_langchains_astream_events_v2(client):
    tid = client.threads.create()["thread_id"]
    parts = [p.data for p in client.runs.stream(tid, "simple", input={"n": 0}, stream_mode="events") if p.event == "events"]
    # The shape LangGraph 1.2.24's astream_events(version="v2") gives the same graph: the
    # graph as the root chain, each node a chain under it.
    assert [(e["event"], e["name"]) for e in parts] == [
        ("on_chain_start", "simple"),
        ("on_chain_start", "a"), ("on_chain_stream", "a"), ("on_chain_end", "a"), ("on_chain_stream", "simple"),
        ("on_chain_start", "b"), ("on_chain_stream", "b"), ("on_chain_end", "b"), ("on_chain_stream", "simple"),
        ("on_chain_end", "simple"),
    ]
    root = parts[0]["run_id"]
    assert parts[0]["data"] == {"input": {"n": 0}} and parts[0]["parent_ids"] == []
    assert parts[1]["data"] == {"input": {"log": [], "n": 0}} and parts[1]["parent_ids"] == [root]
    assert parts[1]["tags"] == ["graph:step:1"] and parts[1]["metadata"]["langgraph_node"] == "a"
    assert parts[3]["data"] == {"output": {"log": ["a"], "n": 1}, "input": {"log": [], "n": 0}}
    assert parts[4]["data"] == {"chunk": {"a": {"log": ["a"], "n": 1}}}
    assert parts[-1]["data"] == {"output": {"log": ["a", "b"], "n": 1}} and parts[-1]["run_id"] == root


def test_events_carry_the_runs_config_tags(client):
    # LangGraph 1.2.24, astream_events(version="v2") with config tags ["crm", "nightly"]:
    # the root chain has them, a task's chain has its step tag first, then them.
    tid = client.threads.create()["thread_id"]
    parts = [p.data for p in client.runs.stream(
        tid, "simple", input={"n": 0}, stream_mode="events", config={"tags": ["crm", "nightly"]},
    ) if p.event == "events"]
    assert parts[0]["tags"] == ["crm", "nightly"] and parts[-1]["tags"] == ["crm", "nightly"]
    assert parts[1]["name"] == "a" and parts[1]["tags"] == ["graph:step:1", "crm", "nightly"]
    with pytest.raises(UnprocessableEntityError) as e:
        client.runs.create(tid, "simple", input={"n": 0}, config={"tags": "crm"})
    assert "config.tags: expected a list of strings" in e.value.response.text


def test_store_round_trip(client):
    ns = ["users", "u1"]
    client.store.put_item(ns, "prefs", {"text": "prefers morning calls", "kind": "fact"})
    item = client.store.get_item(ns, "prefs")
    assert item["value"] == {"text": "prefers morning calls", "kind": "fact"}
    assert item["namespace"] == ns and item["key"] == "prefs"
    found = client.store.search_items(["users"], query="when to call?")
    assert [i["key"] for i in found["items"]] == ["prefs"]
    assert found["items"][0]["score"] is not None
    assert client.store.search_items(["users"], filter={"kind": "fact"})["items"][0]["key"] == "prefs"
    assert ["users", "u1"] in client.store.list_namespaces(prefix=["users"])["namespaces"]
    client.store.delete_item(ns, "prefs")
    assert client.store.get_item(ns, "prefs") is None


def test_messages_tuple_streams_agent_tokens(client):
    parts = list(client.runs.stream(None, "chat", input={"question": "Say hello."}, stream_mode="messages-tuple"))
    messages = [p.data for p in parts if p.event == "messages"]
    assert messages, [p.event for p in parts]
    for chunk, meta in messages:
        assert chunk["type"] == "AIMessageChunk"
        assert meta["langgraph_node"] == "chat"
    assert len({chunk["id"] for chunk, _ in messages}) == 1
    assert "".join(chunk["content"] for chunk, _ in messages).strip()
    # The same tokens as `events` mode's chat-model stream chunks, under the node's chain.
    parts = list(client.runs.stream(None, "chat", input={"question": "Say hello."}, stream_mode=["events", "messages-tuple"]))
    tokens = [p.data for p in parts if p.event == "events" and p.data["event"] == "on_chat_model_stream"]
    assert [t["data"]["chunk"]["content"] for t in tokens] == [
        p.data[0]["content"] for p in parts if p.event == "messages"
    ]
    node = next(p.data for p in parts if p.event == "events" and p.data["event"] == "on_chain_start" and p.data["parent_ids"])
    assert all(t["parent_ids"][-1] == node["run_id"] and t["metadata"]["langgraph_node"] == "chat" for t in tokens)


def test_async_client_streams_too(url):
    async def go():
        client = get_client(url=url)
        seen = []
        async for part in client.runs.stream(None, "simple", input={"n": 0}, stream_mode="updates"):
            seen.append(part.event)
        return seen

    assert asyncio.run(go()) == ["metadata", "updates", "updates"]


def test_remote_graph_invoke_interrupt_resume_and_state(url):
    from langgraph.pregel.remote import RemoteGraph
    from langgraph.types import Command

    remote = RemoteGraph("hitl", url=url)
    tid = str(uuid.uuid4())
    config = {"configurable": {"thread_id": tid}}
    first = remote.invoke({"n": 0}, config)
    # RemoteGraph passes the values chunk through: the interrupt as the server sent it.
    assert first["__interrupt__"][0]["value"] == "approve?"
    snapshot = remote.get_state(config)
    assert snapshot.next == ("ask",)
    assert snapshot.values["log"] == ["a"]
    done = remote.invoke(Command(resume="fine"), config)
    assert done["log"] == ["a", "answer:fine"]
    history = list(remote.get_state_history(config))
    assert history[0].values["log"] == ["a", "answer:fine"]
    remote.update_state(config, {"n": 7})
    assert remote.get_state(config).values["n"] == 7
    streamed = [c for c in RemoteGraph("simple", url=url).stream({"n": 0}, stream_mode="updates")]
    assert streamed == [{"a": {"log": ["a"], "n": 1}}, {"b": {"log": ["b"]}}]


def test_context_configurable_and_recursion_limit_reach_the_run(client, url):
    from langgraph.pregel.remote import RemoteGraph

    # LangGraph 0.6's `context`, from the SDK.
    out = client.runs.wait(None, "greet", input={}, context={"user_name": "Ada"})
    assert out == {"greeting": "Hello Ada", "n": 5}
    # The older `config.configurable`, from RemoteGraph; its addressing keys are not context.
    remote = RemoteGraph("greet", url=url)
    assert remote.invoke({}, {"configurable": {"user_name": "Cy"}})["greeting"] == "Hello Cy"
    assert client.runs.wait(None, "greet", input={})["greeting"] == "Hello stranger"
    # The graph allows 50 steps; this run 3.
    body = client.runs.wait(
        None, "greet", input={}, config={"recursion_limit": 3}, raise_error=False
    )
    assert body["__error__"]["error"] == "GraphRecursionError", body
    assert "3" in body["__error__"]["message"]
    # Six steps need a limit of 7: LangGraph counts the step that reads the input.
    assert client.runs.wait(None, "greet", input={}, config={"recursion_limit": 7})["n"] == 5
    # Both ways at once is refused, as LangGraph's server does; bad values name the field.
    both = httpx.post(
        f"{url}/runs/wait",
        json={
            "assistant_id": "greet",
            "input": {},
            "context": {"user_name": "A"},
            "config": {"configurable": {"user_name": "B"}},
        },
    )
    assert both.status_code == 400 and "configurable" in both.json()["detail"]
    for config, field in [
        ({"recursion_limit": 0}, "config.recursion_limit"),
        ({"recursion_limit": "ten"}, "config.recursion_limit"),
        ({"configurable": [1]}, "config.configurable"),
    ]:
        bad = httpx.post(
            f"{url}/runs/wait", json={"assistant_id": "greet", "input": {}, "config": config}
        )
        assert bad.status_code == 422 and field in bad.json()["detail"], bad.text


def test_webhook_is_posted_on_completion_and_retried(client):
    import http.server
    import json as jsonlib
    import queue

    received = queue.Queue()
    failures = {"left": 1}

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            if failures["left"] > 0:
                failures["left"] -= 1
                self.send_response(503)
                self.end_headers()
                return
            received.put(jsonlib.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        tid = client.threads.create()["thread_id"]
        run = client.runs.create(
            tid, "simple", input={"n": 0}, webhook=f"http://127.0.0.1:{hook.server_port}/hook"
        )
        body = received.get(timeout=10)
        assert body["run_id"] == run["run_id"] and body["thread_id"] == tid
        assert body["status"] == "success"
        assert body["values"] == {"log": ["a", "b"], "n": 1}
        assert body["error"] is None and body["run_started_at"] <= body["run_ended_at"]
    finally:
        hook.shutdown()


def test_cors_preflight_echoes_headers_and_exposes_locations(url):
    r = httpx.options(
        url + "/threads/search",
        headers={
            "Origin": "http://frontend.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key,content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://frontend.test"
    assert r.headers["access-control-allow-headers"] == "x-api-key,content-type"
    stranger = httpx.options(
        url + "/threads/search",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in stranger.headers
    r = httpx.post(url + "/threads/search", json={}, headers={"Origin": "http://frontend.test"})
    exposed = r.headers["access-control-expose-headers"]
    assert "content-location" in exposed and "x-pagination-total" in exposed


def test_request_bodies_over_the_limit_are_413(url):
    big = b'{"metadata": {"x": "' + b"a" * (11 * 1024 * 1024) + b'"}}'
    r = httpx.post(url + "/threads", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_new_input_on_a_waiting_thread_drops_the_question(client):
    tid = client.threads.create()["thread_id"]
    client.runs.wait(tid, "hitl", input={"n": 0})
    assert client.threads.get(tid)["status"] == "interrupted"
    again = client.runs.wait(tid, "hitl", input={"n": 10})
    assert again["n"] == 11 and again["log"] == ["a", "a"]
    assert again["__interrupt__"][0]["value"] == "approve?"


def test_batch_of_thread_less_runs_and_prune(client, url):
    runs = client.runs.create_batch(
        [{"assistant_id": "simple", "input": {"n": i}} for i in range(3)]
    )
    assert len(runs) == 3 and {r["status"] for r in runs} == {"pending"}
    r = httpx.post(url + "/runs/batch", json=[{"assistant_id": "simple"}, {"assistant_id": "nope"}])
    assert r.status_code == 422 and r.json()["detail"].startswith("[1].assistant_id")
    keep = client.threads.create()["thread_id"]
    gone = client.threads.create()["thread_id"]
    for tid in (keep, gone):
        client.runs.wait(tid, "simple", input={"n": 0})
    assert len(client.threads.get_history(keep, limit=10)) == 3
    assert client.threads.prune([keep], strategy="keep_latest") == {"pruned_count": 1}
    history = client.threads.get_history(keep, limit=10)
    assert len(history) == 1 and history[0]["values"] == {"log": ["a", "b"], "n": 1}
    assert client.threads.prune([gone]) == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        client.threads.get(gone)


def test_stream_subgraphs_names_events_by_namespace(client):
    parts = list(
        client.runs.stream(None, "parent", input={"n": 0}, stream_mode="updates", stream_subgraphs=True)
    )
    assert [p.event for p in parts] == ["metadata", "updates", "updates|sub:sub", "updates"]
    assert parts[2].data == {"c1": {"log": ["b"]}}
    assert parts[3].data == {"sub": {"log": ["b"]}}
    plain = list(client.runs.stream(None, "parent", input={"n": 0}, stream_mode="updates"))
    assert [p.event for p in plain] == ["metadata", "updates", "updates"]
    v2 = list(
        client.runs.stream(
            None, "parent", input={"n": 0}, stream_mode="updates", stream_subgraphs=True, version="v2"
        )
    )
    assert [part["ns"] for part in v2 if part["type"] == "updates"] == [[], ["sub:sub"], []]


def test_command_goto_send_and_update_through_the_sdk(client):
    """Issue #17: LangGraph's Command(goto, update) and Send from the official client."""
    tid = client.threads.create()["thread_id"]
    done = client.runs.wait(tid, "triage", input={"category": "billing"})
    assert done["path"] == ["triage", "billing"]
    # A command on the finished thread: the update, then the run goes where goto says.
    done = client.runs.wait(tid, "triage", command={"update": {"category": "x"}, "goto": "support"})
    assert done["path"] == ["triage", "billing", "support"] and done["category"] == "x"
    # Sends, as the SDK serialises them.
    done = client.runs.wait(
        tid, "triage", command={"goto": [{"node": "support", "arg": {"n": 1}}, {"node": "support", "arg": {"n": 2}}]}
    )
    assert done["path"][-2:] == ["support 1", "support 2"]
    # A node outside the graph is refused with the reason.
    with pytest.raises(httpx.HTTPStatusError) as e:
        client.runs.wait(tid, "triage", command={"goto": 7})
    assert e.value.response.status_code == 422
    assert "command.goto" in e.value.response.json()["detail"]


def test_parallel_interrupts_listed_and_answered_with_one_map(client):
    """Issue #17: two questions in one step; LangGraph's Command(resume={id: value})."""
    tid = client.threads.create()["thread_id"]
    body = client.runs.wait(tid, "triage", input={"category": "both"})
    waiting = body["__interrupt__"]
    assert [i["value"] for i in waiting] == ["A?", "B?"]
    assert len({i["id"] for i in waiting}) == 2
    thread = client.threads.get(tid)
    assert thread["status"] == "interrupted"
    # One entry per waiting task, each with its own question.
    assert sorted(i[0]["value"] for i in thread["interrupts"].values()) == ["A?", "B?"]
    state = client.threads.get_state(tid)
    assert [(t["name"], [i["value"] for i in t["interrupts"]]) for t in state["tasks"]] == [
        ("ask_a", ["A?"]),
        ("ask_b", ["B?"]),
    ]
    assert [i["value"] for i in state["interrupts"]] == ["A?", "B?"]
    done = client.runs.wait(
        tid, "triage", command={"resume": {waiting[0]["id"]: "yes", waiting[1]["id"]: "no"}}
    )
    assert done["path"] == ["triage", "a:yes", "b:no"]
    assert client.threads.get(tid)["status"] == "idle"


def test_thread_join_stream_follows_every_run_of_the_thread(client):
    tid = client.threads.create()["thread_id"]
    first = client.runs.create(tid, "slow", input={"seconds": 0.4}, stream_mode=["updates"])
    wait_status(client, tid, first["run_id"], {"running"})
    seen = []

    def follow():
        for part in client.threads.join_stream(tid):
            seen.append(part)
            if part.event == "metadata" and part.data.get("status") == "run_done" and len(
                [p for p in seen if p.event == "metadata" and p.data.get("status") == "run_done"]
            ) == 2:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    # A run queued behind the first one is followed once the first is done.
    second = client.runs.create(tid, "slow", input={"seconds": 0}, stream_mode=["values"], multitask_strategy="enqueue")
    reader.join(timeout=15)
    assert not reader.is_alive(), [(p.event, p.data) for p in seen]
    r1, r2 = first["run_id"], second["run_id"]
    assert [(p.event, p.data.get("run_id")) for p in seen if p.event == "metadata"] == [
        ("metadata", r1), ("metadata", r1), ("metadata", r2), ("metadata", r2)
    ]
    done = [i for i, p in enumerate(seen) if p.event == "metadata" and p.data.get("status") == "run_done"]
    # Each run streams its own modes, from its start: the first its updates, the second
    # its values.
    assert [p.event for p in seen[: done[0] + 1]] == ["metadata", "updates", "updates", "metadata"]
    assert {p.event for p in seen[done[0] + 1 : done[1]]} == {"metadata", "values"}
    assert seen[-2].data == {"log": ["slow", "slow"], "seconds": 0, "slept": {"seconds": 0}}
    assert all(p.id for p in seen) and len({p.id for p in seen}) == len(seen)
    # Resuming after the first run's end starts at the second run.
    resumed = []
    for part in client.threads.join_stream(tid, last_event_id=seen[done[0]].id):
        resumed.append(part)
        if part.event == "metadata" and part.data.get("status") == "run_done":
            break
    assert [(p.event, p.data) for p in resumed] == [(p.event, p.data) for p in seen[done[0] + 1 :]]


def test_thread_join_stream_lifecycle_mode_and_errors(client, url):
    tid = client.threads.create()["thread_id"]
    run = client.runs.create(tid, "simple", input={"n": 0})
    wait_status(client, tid, run["run_id"], {"running", "success"})
    parts = []
    for part in client.threads.join_stream(tid, stream_mode="lifecycle", last_event_id=f"{run['run_id']}:0"):
        parts.append((part.event, part.data))
        if part.data.get("status") == "run_done":
            break
    assert parts == [("metadata", {"run_id": run["run_id"], "attempt": 1}), ("metadata", {"status": "run_done", "run_id": run["run_id"]})]
    with pytest.raises(NotFoundError):
        next(iter(client.threads.join_stream(str(uuid.uuid4()))))
    r = httpx.get(f"{url}/threads/{tid}/stream", params={"stream_mode": "values"})
    assert r.status_code == 422 and "run_modes, lifecycle, state_update" in r.json()["detail"]
