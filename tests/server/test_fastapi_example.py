"""examples/fastapi_backend against a real server serving the business graphs in graphs/:
a lead comes in through the FastAPI app, waits for approval, and is approved."""

import importlib.util
import os

from fastapi.testclient import TestClient

from conftest import Server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fastapi_backend_example(fresh_home, monkeypatch):
    server = Server(fresh_home, extra_args=["--dry-run"], graphs=os.path.join(ROOT, "graphs")).start()
    try:
        monkeypatch.setenv("BRAINOPS_URL", server.url)
        spec = importlib.util.spec_from_file_location(
            "fastapi_backend", os.path.join(ROOT, "examples", "fastapi_backend", "app.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with TestClient(module.app) as http:
            lead = {"name": "Ada", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": True}
            first = http.post("/leads", json=lead).json()
            assert first["waiting_for"].startswith("Approve the proposal")
            tid = first["thread_id"]
            assert http.get(f"/leads/{tid}").json()["waiting_for"].startswith("Approve")
            done = http.post(f"/leads/{tid}/decision", json={"decision": "approve"}).json()
            assert done["waiting_for"] is None
            assert done["proposal"]["to"] == "Ada"
            assert http.get("/leads/00000000-0000-0000-0000-000000000000").status_code == 404
    finally:
        server.stop()
