"""LangGraph's side of the cold-start comparison: a whole Python process that builds,
compiles and invokes the 1,000-node `count + 1` chain with the in-memory saver, as
`brainops run chain.toml --checkpoint memory` does from TOML."""

import operator
from typing import TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph


class Count(TypedDict):
    count: int


N = 1000
g = StateGraph(Count)
for i in range(N):
    g.add_node(f"n{i}", lambda s: {"count": s["count"] + 1})
g.add_edge(START, "n0")
for i in range(1, N):
    g.add_edge(f"n{i - 1}", f"n{i}")
g.add_edge(f"n{N - 1}", END)
app = g.compile(checkpointer=InMemorySaver())
out = app.invoke({"count": 0}, {"configurable": {"thread_id": "t"}, "recursion_limit": N + 1})
assert out["count"] == N, out
