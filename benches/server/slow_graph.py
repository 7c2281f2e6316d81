"""A one-node graph that sleeps `seconds`: holds SSE streams open for the memory measurement."""

import asyncio
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    log: Annotated[list, operator.add]
    seconds: float


async def wait(state: State):
    await asyncio.sleep(state.get("seconds", 3))
    return {"log": ["slow"]}


builder = StateGraph(State)
builder.add_node("wait", wait)
builder.add_edge(START, "wait")
builder.add_edge("wait", END)
graph = builder.compile()
