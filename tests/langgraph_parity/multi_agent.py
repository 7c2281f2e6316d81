"""The LangGraph 1.2.24 side of engine/tests/{goto_and_send,deferred_nodes,reducers_bypass_remove_concat}*.rs:
the same graphs, built with LangGraph, printing the final states the Rust tests assert.

    ~/.cache/brainops/langgraph-1.2.24/bin/python tests/langgraph_parity/multi_agent.py
"""
import json
import operator
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.types import Command, Overwrite, Send, interrupt


def show(name, value):
    print(name, json.dumps(value, default=str, sort_keys=True))


# 1. Command(goto): triage routes by category (test_command_goto_with_static_breakpoints's shape).
class Ticket(TypedDict):
    category: str
    path: Annotated[list, operator.add]


def triage(s):
    return Command(update={"path": ["triage"]}, goto="billing" if s["category"] == "billing" else "support")


g = StateGraph(Ticket)
g.add_node("triage", triage)
g.add_node("billing", lambda s: {"path": ["billing"]})
g.add_node("support", lambda s: {"path": ["support"]})
g.add_edge(START, "triage")
g.add_edge("billing", END)
g.add_edge("support", END)
app = g.compile()
show("goto_billing", app.invoke({"category": "billing", "path": []}))
show("goto_support", app.invoke({"category": "refund", "path": []}))


# 1b. Send sequences (test_send_sequences): a node sends work items; each worker appends.
class Fan(TypedDict):
    items: list
    results: Annotated[list, operator.add]


def plan(s):
    return Command(goto=[Send("worker", {"n": n}) for n in s["items"]])


def worker(arg):
    return {"results": [arg["n"] * 10]}


g = StateGraph(Fan)
g.add_node("plan", plan)
g.add_node("worker", worker)
g.add_node("total", lambda s: {"results": [sum(s["results"])]})
g.add_edge(START, "plan")
g.add_edge("worker", "total")
g.add_edge("total", END)
show("send", g.compile().invoke({"items": [3, 1, 2], "results": []}))


# 1c. Resume with goto and update.
class Review(TypedDict):
    draft: str
    approved: bool
    path: Annotated[list, operator.add]


def review(s):
    answer = interrupt("approve?")
    return {"approved": answer, "path": ["review"]}


g = StateGraph(Review)
g.add_node("review", review)
g.add_node("publish", lambda s: {"path": ["publish:" + s["draft"]]})
g.add_node("escalate", lambda s: {"path": ["escalate:" + s["draft"]]})
g.add_edge(START, "review")
g.add_edge("review", END)
g.add_edge("publish", END)
g.add_edge("escalate", END)
app = g.compile(checkpointer=InMemorySaver())
cfg = {"configurable": {"thread_id": "r"}}
app.invoke({"draft": "v1", "path": []}, cfg)
show("resume_goto_update", app.invoke(Command(resume=True, update={"draft": "v2"}, goto="escalate"), cfg))


# 5. Deferred node (test_in_one_fan_out_state_graph_defer_node's shape): a fan-out of
# different lengths; the deferred join runs once, after all.
class Defer(TypedDict):
    log: Annotated[list, operator.add]


g = StateGraph(Defer)
g.add_node("a", lambda s: {"log": ["a"]})
g.add_node("b", lambda s: {"log": ["b"]})
g.add_node("b2", lambda s: {"log": ["b2"]})
g.add_node("c", lambda s: {"log": ["c"]})
g.add_node("join", lambda s: {"log": ["join"]}, defer=True)
g.add_edge(START, "a")
g.add_edge(START, "b")
g.add_edge("b", "b2")
g.add_edge("b2", "c")
g.add_edge("a", "join")
g.add_edge("c", "join")
g.add_edge("join", END)
show("defer", g.compile().invoke({"log": []}))


# 5b. Zero Sends: nothing after.
class Empty(TypedDict):
    items: list
    log: Annotated[list, operator.add]


g = StateGraph(Empty)
g.add_node("start", lambda s: {"log": ["start"]})
g.add_node("work", lambda s: {"log": ["work"]})
g.add_node("after", lambda s: {"log": ["after"]})
g.add_edge(START, "start")
g.add_conditional_edges("start", lambda s: [Send("work", i) for i in s["items"]], ["work"])
g.add_edge("work", "after")
g.add_edge("after", END)
show("zero_sends", g.compile().invoke({"items": [], "log": []}))


# 6. Overwrite (test_overwrite_sequential / test_overwrite_parallel).
class Ow(TypedDict):
    values: Annotated[list, operator.add]


g = StateGraph(Ow)
g.add_node("a", lambda s: {"values": ["a"]})
g.add_node("b", lambda s: {"values": Overwrite(["b"])})
g.add_node("c", lambda s: {"values": ["c"]})
g.add_edge(START, "a")
g.add_edge("a", "b")
g.add_edge("b", "c")
g.add_edge("c", END)
show("overwrite_sequential", g.compile().invoke({"values": ["start"]}))

g = StateGraph(Ow)
g.add_node("a", lambda s: {"values": ["a"]})
g.add_node("b", lambda s: {"values": Overwrite(["b"])})
g.add_node("c", lambda s: {"values": ["c"]})
g.add_node("d", lambda s: {"values": ["d"]})
g.add_edge(START, "a")
g.add_edge("a", "b")
g.add_edge("a", "c")
g.add_edge("b", "d")
g.add_edge("c", "d")
g.add_edge("d", END)
show("overwrite_parallel", g.compile().invoke({"values": ["start"]}))


# 6b. RemoveMessage (test_remove_message_from_node).
class Chat(TypedDict):
    messages: Annotated[list, add_messages]


g = StateGraph(Chat)
g.add_node("reply", lambda s: {"messages": [AIMessage("hi", id="m2")]})
g.add_node("forget", lambda s: {"messages": [RemoveMessage(id="m1")]})
g.add_edge(START, "reply")
g.add_edge("reply", "forget")
g.add_edge("forget", END)
out = g.compile().invoke({"messages": [HumanMessage("hello", id="m1")]})
show("remove_message", [m.id for m in out["messages"]])


# 6c. String concatenation with add, several writes from one node (test_multiple_writes_same_channel_from_same_node).
class Text(TypedDict):
    text: Annotated[str, operator.add]
    log: Annotated[list, operator.add]


def two_writes(s):
    return [Command(update={"log": ["x1"]}), Command(update={"log": ["x2"]})]


g = StateGraph(Text)
g.add_node("a", lambda s: {"text": " world"})
g.add_node("b", two_writes)
g.add_edge(START, "a")
g.add_edge("a", "b")
g.add_edge("b", END)
show("concat_and_two_writes", g.compile().invoke({"text": "hello", "log": []}))


# 3. Interrupts: several questions from one node (test_interrupt_multiple).
class Two(TypedDict):
    my_key: Annotated[str, operator.add]


def two_questions(s):
    a = interrupt({"value": 1})
    b = interrupt({"value": 2})
    return {"my_key": f" {a} {b}"}


g = StateGraph(Two)
g.add_node("node", two_questions)
g.add_edge(START, "node")
g.add_edge("node", END)
app = g.compile(checkpointer=InMemorySaver())
cfg = {"configurable": {"thread_id": "m"}}
first = app.invoke({"my_key": "DE"}, cfg)
second = app.invoke(Command(resume="answer 1"), cfg)
show("interrupt_multiple_waits", [first["__interrupt__"][0].value, second["__interrupt__"][0].value])
show("interrupt_multiple", app.invoke(Command(resume="answer 2"), cfg))


# 3b. Ask until valid (test_interrupt_loop).
class Age(TypedDict):
    age: int


def ask_age(s):
    question = "How old are you?"
    while True:
        answer = interrupt(question)
        if isinstance(answer, int) and answer > 0:
            break
        question = f"'{answer}' is not a valid age. How old are you?"
    return {"age": answer}


g = StateGraph(Age)
g.add_node("node", ask_age)
g.add_edge(START, "node")
g.add_edge("node", END)
app = g.compile(checkpointer=InMemorySaver())
cfg = {"configurable": {"thread_id": "l"}}
waits = [app.invoke({"age": 0}, cfg)["__interrupt__"][0].value]
waits.append(app.invoke(Command(resume="foo"), cfg)["__interrupt__"][0].value)
waits.append(app.invoke(Command(resume=-5), cfg)["__interrupt__"][0].value)
show("interrupt_loop_waits", waits)
show("interrupt_loop", app.invoke(Command(resume=30), cfg))


# 3c. Parallel interrupts answered with one map (test_parallel_interrupts / test_multi_resume).
class Par(TypedDict):
    answers: Annotated[list, operator.add]


g = StateGraph(Par)
g.add_node("ask_a", lambda s: {"answers": ["a:" + interrupt("A?")]})
g.add_node("ask_b", lambda s: {"answers": ["b:" + interrupt("B?")]})
g.add_node("after", lambda s: {"answers": ["after"]})
g.add_edge(START, "ask_a")
g.add_edge(START, "ask_b")
g.add_edge(["ask_a", "ask_b"], "after")
g.add_edge("after", END)
app = g.compile(checkpointer=InMemorySaver())
cfg = {"configurable": {"thread_id": "p"}}
out = app.invoke({"answers": []}, cfg)
ints = out["__interrupt__"]
show("parallel_waiting", sorted(i.value for i in ints))
by_value = {i.value: i.id for i in ints}
show("parallel", app.invoke(Command(resume={by_value["A?"]: "yes", by_value["B?"]: "no"}), cfg))


# 4. Map over subgraphs (test_send_to_nested_graphs): one subgraph run per element, with
# the child's keys named differently from the parent's.
class Child(TypedDict):
    subject: str
    jokes: Annotated[list, operator.add]


child = StateGraph(Child)
child.add_node("write", lambda s: {"jokes": [f"joke about {s['subject']}"]})
child.add_edge(START, "write")
child.add_edge("write", END)
child = child.compile()


class Parent(TypedDict):
    subjects: list
    jokes: Annotated[list, operator.add]


g = StateGraph(Parent)
g.add_node("generate", child)
g.add_conditional_edges(START, lambda s: [Send("generate", {"subject": x}) for x in s["subjects"]], ["generate"])
g.add_edge("generate", END)
show("map_subgraphs", g.compile().invoke({"subjects": ["cats", "dogs"], "jokes": []}))


# 4b. A stateful subgraph keeps its state across calls on one thread (test_subgraph_checkpoint_true).
class Inner(TypedDict):
    seen: Annotated[list, operator.add]


inner = StateGraph(Inner)
inner.add_node("note", lambda s: {"seen": [len(s["seen"])]})
inner.add_edge(START, "note")
inner.add_edge("note", END)
inner = inner.compile(checkpointer=True)


class Outer(TypedDict):
    seen: Annotated[list, operator.add]


def call_inner(s):
    out = inner.invoke({"seen": []})
    return {"seen": [out["seen"][-1]]}


g = StateGraph(Outer)
g.add_node("call", call_inner)
g.add_edge(START, "call")
g.add_edge("call", END)
app = g.compile(checkpointer=InMemorySaver())
cfg = {"configurable": {"thread_id": "s"}}
app.invoke({"seen": []}, cfg)
app.invoke({"seen": []}, cfg)
show("stateful_subgraph", app.invoke({"seen": []}, cfg))
