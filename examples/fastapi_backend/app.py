"""The backend's path to the engine: a FastAPI app that calls `brainops serve` through the
official `langgraph-sdk`, unchanged from what it would send to LangGraph's own server.

    brainops serve --graphs graphs &                         # the engine, on :2024
    BRAINOPS_URL=http://127.0.0.1:2024 uvicorn app:app --port 8000

    curl -s localhost:8000/leads -H 'content-type: application/json' \
         -d '{"name": "Ada", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}'
    curl -s localhost:8000/leads/THREAD/decision -d '{"decision": "approve"}' -H 'content-type: application/json'
    curl -N localhost:8000/leads/THREAD/events       # server-sent events for a frontend
"""

import json
import os

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError
from pydantic import BaseModel

ENGINE = os.environ.get("BRAINOPS_URL", "http://127.0.0.1:2024")
GRAPH = os.environ.get("BRAINOPS_GRAPH", "lead_intake")

app = FastAPI(title="MyRoofGenius backend (example)")
engine = get_client(url=ENGINE)


class Lead(BaseModel):
    name: str
    area_sqft: float
    pitch: float
    roof_age_years: int | None = None
    storm_damage: bool = False


class Decision(BaseModel):
    decision: str


def summary(thread_id: str, state: dict) -> dict:
    """What the frontend shows: the thread, the question if one waits, the proposal if any."""
    question = state.get("__interrupt__")
    return {
        "thread_id": thread_id,
        "waiting_for": question[0]["value"] if question else None,
        "proposal": state.get("proposal"),
        "state": {k: v for k, v in state.items() if k != "__interrupt__"},
    }


@app.post("/leads")
async def new_lead(lead: Lead):
    """Starts the lead graph on a new thread and returns where it stopped."""
    thread = await engine.threads.create(metadata={"customer": lead.name})
    state = await engine.runs.wait(
        thread["thread_id"], GRAPH, input={"lead": lead.model_dump(exclude_none=True)}
    )
    return summary(thread["thread_id"], state)


@app.post("/leads/{thread_id}/decision")
async def decide(thread_id: str, decision: Decision):
    """Answers the question the graph asked (approve or reject the proposal)."""
    try:
        state = await engine.runs.wait(thread_id, GRAPH, command={"resume": decision.decision})
    except NotFoundError:
        raise HTTPException(404, f"no lead thread {thread_id}")
    return summary(thread_id, state)


@app.get("/leads/{thread_id}")
async def lead(thread_id: str):
    try:
        state = await engine.threads.get_state(thread_id)
    except NotFoundError:
        raise HTTPException(404, f"no lead thread {thread_id}")
    values = dict(state["values"])
    if state["interrupts"]:
        values["__interrupt__"] = state["interrupts"]
    return summary(thread_id, values)


@app.get("/leads/{thread_id}/events")
async def events(thread_id: str, decision: str | None = None):
    """Re-runs or resumes with live updates for a browser: one SSE event per node."""

    async def stream():
        kwargs = {"command": {"resume": decision}} if decision else {"input": None}
        async for part in engine.runs.stream(thread_id, GRAPH, stream_mode="updates", **kwargs):
            yield f"event: {part.event}\ndata: {json.dumps(part.data)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")
