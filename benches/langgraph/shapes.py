"""The executor benchmark's four graph shapes (benches/executor.rs), built in LangGraph.

Run by scripts/compare-langgraph.sh, which installs the pinned LangGraph into a virtualenv.
Prints one JSON object: {"<shape>/<store>": seconds per run (median), ...}, the same names
criterion gives our runs, so the script can set them side by side. Checkpointed cases run
with durability "sync" (each checkpoint is stored before the next step starts, as ours are)
and again with LangGraph's default "async" (stored while the next step runs), as
"<shape>/<store>@async".
"""

import json
import operator
import os
import statistics
import sys
import tempfile
import time
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send


class Count(TypedDict):
    n: int


def chain(n):
    """`n` nodes in a line, each adding one to `n`."""
    g = StateGraph(Count)
    for i in range(n):
        g.add_node(f"n{i}", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "n0")
    for i in range(1, n):
        g.add_edge(f"n{i - 1}", f"n{i}")
    g.add_edge(f"n{n - 1}", END)
    return g, {"n": 0}


def looping(n):
    """One node that loops on itself through a conditional edge until `n` reaches `n`."""
    g = StateGraph(Count)
    g.add_node("bump", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "bump")
    g.add_conditional_edges("bump", lambda s: "bump" if s["n"] < n else END, ["bump", END])
    return g, {"n": 0}


class Fan(TypedDict):
    items: list
    squares: Annotated[list, operator.add]
    count: int


class Item(TypedDict):
    item: int


def fanout(n):
    """One task per item (Send), squares appended, then a join counts them."""
    g = StateGraph(Fan)
    g.add_node("square", lambda s: {"squares": [s["item"] * s["item"]]}, input_schema=Item)
    g.add_node("join", lambda s: {"count": len(s["squares"])})
    g.add_conditional_edges(START, lambda s: [Send("square", {"item": i}) for i in s["items"]], ["square"])
    g.add_edge("square", "join")
    g.add_edge("join", END)
    return g, {"items": list(range(n)), "squares": [], "count": 0}


def merge(a, b):
    return {**a, **b}


class Profile(TypedDict):
    profile: Annotated[dict, merge]
    i: int


def big_object(entries, updates):
    """A 10,000-entry object merged into, one key per step, 100 steps."""
    g = StateGraph(Profile)
    g.add_node("touch", lambda s: {"i": s["i"] + 1, "profile": {f"k{s['i']}": s["i"]}})
    g.add_edge(START, "touch")
    g.add_conditional_edges("touch", lambda s: "touch" if s["i"] < updates else END, ["touch", END])
    return g, {"profile": {f"key{i}": i for i in range(entries)}, "i": 0}


def supervisor(n):
    """A supervisor routing with Command(goto) to a worker until `n` handoffs are done."""
    from langgraph.types import Command

    g = StateGraph(Count)
    g.add_node("supervisor", lambda s: Command(goto="worker" if s["n"] < n else END), destinations=("worker", END))
    g.add_node("worker", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "supervisor")
    g.add_edge("worker", "supervisor")
    return g, {"n": 0}


class Square(TypedDict):
    x: int
    squares: Annotated[list, operator.add]


class MapState(TypedDict):
    items: list
    squares: Annotated[list, operator.add]
    count: int


def map_subgraphs(n):
    """One subgraph run per item (Send to a compiled subgraph), squares collected, counted."""
    child = StateGraph(Square)
    child.add_node("square", lambda s: {"squares": [s["x"] * s["x"]]})
    child.add_edge(START, "square")
    child.add_edge("square", END)
    child = child.compile()
    g = StateGraph(MapState)
    g.add_node("map", child)
    g.add_node("join", lambda s: {"count": len(s["squares"])})
    g.add_conditional_edges(START, lambda s: [Send("map", {"x": i, "squares": []}) for i in s["items"]], ["map"])
    g.add_edge("map", "join")
    g.add_edge("join", END)
    return g, {"items": list(range(n)), "squares": [], "count": 0}


SHAPES = {
    "chain_1000_nodes": lambda: chain(1000),
    "loop_1000_iterations": lambda: looping(1000),
    "fanout_1000_and_join": lambda: fanout(1000),
    "object_10000_entries_100_updates": lambda: big_object(10_000, 100),
    "supervisor_1000_handoffs": lambda: supervisor(1000),
    "map_1000_subgraphs": lambda: map_subgraphs(1000),
}

# What each run must end with, the same results the Rust runs give.
EXPECTED = {
    "chain_1000_nodes": lambda out: out["n"] == 1000,
    "loop_1000_iterations": lambda out: out["n"] == 1000,
    "fanout_1000_and_join": lambda out: out["count"] == 1000,
    "object_10000_entries_100_updates": lambda out: out["i"] == 100 and len(out["profile"]) == 10_100,
    "supervisor_1000_handoffs": lambda out: out["n"] == 1000,
    "map_1000_subgraphs": lambda out: out["count"] == 1000,
}


def time_runs(shape, store, runs, workdir, durability="sync"):
    graph, state = SHAPES[shape]()
    times = []
    for r in range(runs):
        config = {"recursion_limit": 5000, "configurable": {"thread_id": f"t{r}"}}
        if store == "no_checkpoint":
            app = graph.compile()
        elif store == "memory":
            app = graph.compile(checkpointer=InMemorySaver())
        else:
            # A new file per run, as the Rust benchmark does.
            saver_cm = SqliteSaver.from_conn_string(os.path.join(workdir, f"{shape}-{durability}-{r}.db"))
            saver = saver_cm.__enter__()
            app = graph.compile(checkpointer=saver)
        started = time.perf_counter()
        if store == "no_checkpoint":
            # (LangGraph 1.2.24 fails on `durability` without a checkpointer.)
            out = app.invoke(dict(state), config)
        else:
            out = app.invoke(dict(state), config, durability=durability)
        times.append(time.perf_counter() - started)
        if store == "sqlite":
            saver_cm.__exit__(None, None, None)
        if not EXPECTED[shape](out):
            sys.exit(f"{shape}/{store} ({durability}): LangGraph's run ended with an unexpected state")
    return statistics.median(times)


class Chat(TypedDict):
    messages: Annotated[list, add_messages]
    turn: int


def chat(turns):
    """A chat loop: each turn appends a user and an assistant message (as the Rust bench)."""
    g = StateGraph(Chat)

    def turn(s):
        t = s["turn"]
        return {
            "turn": t + 1,
            "messages": [
                {"role": "user", "content": f"Turn {t}: when can the crew re-shingle the north slope?"},
                {"role": "assistant", "content": f"Turn {t}: Thursday 8am, weather permitting; 24 squares of architectural shingles are in stock."},
            ],
        }

    g.add_node("turn", turn)
    g.add_edge(START, "turn")
    g.add_conditional_edges("turn", lambda s: "turn" if s["turn"] < turns else END, ["turn", END])
    return g, {"messages": [], "turn": 0}


def postgres(url, runs, results):
    """`checkpoint_postgres`'s runner case (a 100-node chain, a checkpoint per step) and the
    stored size of a 200-turn messages thread, in a fresh database `langgraph_bench`."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS langgraph_bench WITH (FORCE)")
        admin.execute("CREATE DATABASE langgraph_bench")
    bench_url = url.rsplit("/", 1)[0] + "/langgraph_bench"
    with PostgresSaver.from_conn_string(bench_url) as saver:
        saver.setup()
        graph, state = chain(100)
        app = graph.compile(checkpointer=saver)
        for durability in ("sync", "async"):
            times = []
            for r in range(max(runs, 10)):
                config = {"recursion_limit": 500, "configurable": {"thread_id": f"chain-{durability}-{r}"}}
                started = time.perf_counter()
                out = app.invoke(dict(state), config, durability=durability)
                times.append(time.perf_counter() - started)
                if out["n"] != 100:
                    sys.exit("chain_100_postgres: LangGraph's run ended with an unexpected state")
            case = "runner/chain_100_postgres" + ("@async" if durability == "async" else "")
            results[case] = statistics.median(times)
            print(f"langgraph {case}: {results[case] * 1000:.1f} ms", file=sys.stderr)

        graph, state = chat(200)
        out = graph.compile(checkpointer=saver).invoke(
            dict(state),
            {"recursion_limit": 500, "configurable": {"thread_id": "size-chat"}},
            durability="sync",
        )
        if len(out["messages"]) != 400:
            sys.exit("chat_200: LangGraph's run ended with an unexpected state")
    with psycopg.connect(bench_url) as conn:
        stored = 0
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            row = conn.execute(
                f"SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM {table} t WHERE thread_id = 'size-chat'"
            ).fetchone()
            stored += int(row[0])
    results["stored_bytes/chat_200_turns"] = stored
    print(f"langgraph stored: 200-turn messages thread: {stored} bytes", file=sys.stderr)


def main():
    runs = int(os.environ.get("LANGGRAPH_RUNS", "5"))
    results = {}
    only = [s for s in os.environ.get("LANGGRAPH_SHAPES", "").split(",") if s]
    with tempfile.TemporaryDirectory() as workdir:
        for shape in only or SHAPES:
            for store, durability in (
                ("no_checkpoint", "sync"),
                ("memory", "sync"),
                ("memory", "async"),
                ("sqlite", "sync"),
                ("sqlite", "async"),
            ):
                seconds = time_runs(shape, store, runs, workdir, durability)
                case = f"{shape}/{store}" + ("@async" if durability == "async" else "")
                results[case] = seconds
                print(f"langgraph {case}: {seconds * 1000:.1f} ms", file=sys.stderr)
    if os.environ.get("DATABASE_URL") and not only:
        postgres(os.environ["DATABASE_URL"], runs, results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
