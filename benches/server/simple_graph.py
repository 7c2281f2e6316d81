"""The reference server's side of the comparison: the same two-node graph as
tests/server/graphs/simple.toml (a appends "a" and counts, b appends "b")."""

import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    log: Annotated[list, operator.add]
    n: int


def a(state: State):
    return {"log": ["a"], "n": state.get("n", 0) + 1}


def b(state: State):
    return {"log": ["b"]}


builder = StateGraph(State)
builder.add_node("a", a)
builder.add_node("b", b)
builder.add_edge(START, "a")
builder.add_edge("a", "b")
builder.add_edge("b", END)
graph = builder.compile()
