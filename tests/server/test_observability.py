"""Observability against real receivers: spans go to an OTLP/HTTP receiver that decodes
them with OpenTelemetry's own protobuf messages, /metrics is read with Prometheus' own text
parser, and error reports go to a server that reads them with Sentry's own envelope
parser. The model is `ScriptedOpenAI`, a local server speaking OpenAI's chat wire format
that records the headers it gets (so the test sees the trace context arrive)."""

import gzip
import http.server
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from sentry_sdk.envelope import Envelope

HERE = os.path.dirname(os.path.abspath(__file__))
GRAPHS = os.path.join(HERE, "observe_graphs")
AGENTS = os.path.join(HERE, "observe_agents")
DIRECT = os.environ.get("DATABASE_URL")
POOLER = os.environ.get("DATABASE_POOLER_URL")

# Fake credentials: none may appear in a span, a log line or an error report.
FAKE_KEYS = {
    "OPENAI_API_KEY": "sk-proj-FAKEopenaiKEY0000000000001",
    "OPENAI_COMPAT_API_KEY": "sk-FAKEcompatKEY00000000000002",
    "ANTHROPIC_API_KEY": "sk-ant-FAKEanthropicKEY000000003",
    "GEMINI_API_KEY": "AIzaFAKEgeminiKEY00000000000004",
    "STRIPE_SECRET_KEY": "sk_test_FAKEstripeKEY0000000005",
    "TWILIO_AUTH_TOKEN": "FAKEtwilioTOKEN00000000000006",
    "SUPABASE_SERVICE_ROLE_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiRkFLRSJ9.FAKEsignature0007",
}


def serve_in_thread(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Otlp(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver (protobuf, POST /v1/traces)."""

    spans = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        ok = self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf"
        if ok:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with Otlp.lock:
                for rs in request.resource_spans:
                    resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            Otlp.spans.append({
                                "name": s.name,
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent": s.parent_span_id.hex(),
                                "kind": s.kind,
                                "status": s.status.code,
                                "status_message": s.status.message,
                                "attributes": {a.key: value_of(a.value) for a in s.attributes},
                                "events": [
                                    {"name": e.name,
                                     "attributes": {a.key: value_of(a.value) for a in e.attributes}}
                                    for e in s.events
                                ],
                                "resource": resource,
                            })
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200 if ok else 400)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


class SentryIngest(http.server.BaseHTTPRequestHandler):
    """Sentry's ingestion endpoint (POST /api/{project}/envelope/)."""

    events = []
    raw = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        SentryIngest.raw.append(body.decode("utf-8", "replace"))
        ok = re.fullmatch(r"/api/42/envelope/", self.path) is not None
        if ok:
            for item in Envelope.deserialize(body).items:
                if item.type == "event":
                    SentryIngest.events.append(item.payload.json)
        self.send_response(200 if ok else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class ScriptedOpenAI(http.server.BaseHTTPRequestHandler):
    """A test double of an OpenAI-compatible server: answers every chat completion with a
    fixed reply and fixed usage, first calls the offered tool when the request offers tools
    and has no tool result yet, refuses model `refuse` with OpenAI's 401 (which echoes the
    key, as OpenAI's does), and keeps each request's headers."""

    headers_seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        ScriptedOpenAI.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        if body.get("model") == "refuse":
            key = self.headers.get("authorization", "").removeprefix("Bearer ")
            error = {"error": {
                "message": f"Incorrect API key provided: {key}. Account jane.doe@example.com.",
                "type": "invalid_request_error", "code": "invalid_api_key"}}
            self.reply(401, error)
            return
        usage = {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
        text = "Your 20-square shingle replacement is scheduled."
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            answered = any(m.get("role") == "tool" for m in body.get("messages", []))
            if body.get("tools") and not answered:
                tool = body["tools"][0]["function"]["name"]
                call = {"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": tool,
                                     "arguments": json.dumps({"area_sqft": 2000, "pitch": 6})}}
                chunks = [
                    {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]},
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
                    {"choices": [], "usage": usage},
                ]
            else:
                chunks = [
                    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]},
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    {"choices": [], "usage": usage},
                ]
            for c in chunks:
                c.update({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                          "created": 0, "model": "scripted-gpt"})
                self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        self.reply(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": "scripted-gpt",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": usage,
        })

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receivers():
    otlp, otlp_url = serve_in_thread(Otlp)
    sentry, sentry_url = serve_in_thread(SentryIngest)
    model, model_url = serve_in_thread(ScriptedOpenAI)
    yield {"otlp": otlp_url, "sentry": sentry_url, "model": model_url}
    for s in (otlp, sentry, model):
        s.shutdown()


class Proc:
    """A `brainops serve` or `brainops worker` process whose stderr is kept."""

    def __init__(self, command, env, extra=()):
        self.home = tempfile.mkdtemp()
        self.args = [os.environ["BRAINOPS_BIN"], "--agent-dir", AGENTS, command, "--graphs", GRAPHS,
                     *(["--port", "0"] if command == "serve" else []), *extra]
        self.env = dict(os.environ, BRAINOPS_HOME=self.home, OTEL_BSP_SCHEDULE_DELAY="100",
                        **env)
        self.lines = []
        self.url = None

    def start(self):
        self.proc = subprocess.Popen(self.args, env=self.env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        deadline = time.time() + 30
        while self.url is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            assert line, f"exited: {''.join(self.lines)}"
            self.lines.append(line)
            m = re.search(r"on (http://[0-9.:]+)", line)
            if m:
                self.url = m.group(1)
            elif "brainops worker" in line:
                break
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=40)


def base_env(receivers, **extra):
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receivers["otlp"], "OTEL_SERVICE_NAME": "brainops-test",
            **extra}


def model(receivers, name="scripted-gpt"):
    return f"openai-compat:{receivers['model']}/v1#{name}"


def traceparent():
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def spans_of(trace_id, until, timeout=20):
    """The spans of a trace, once `until(spans)` holds."""
    deadline = time.time() + timeout
    while True:
        with Otlp.lock:
            spans = [s for s in Otlp.spans if s["trace_id"] == trace_id]
        if until(spans):
            return spans
        assert time.time() < deadline, f"spans so far: {[s['name'] for s in spans]}"
        time.sleep(0.1)


def one(spans, name):
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, f"{name}: {[s['name'] for s in spans]}"
    return found[0]


def child_of(spans, parent, name):
    found = [s for s in spans if s["parent"] == parent["span_id"] and s["name"] == name]
    assert found, f"no {name} under {parent['name']}: " + str(
        [(s["name"], s["parent"]) for s in spans])
    return found


def test_a_business_run_is_one_trace_from_the_callers_request_to_the_model_vendor(receivers):
    server = Proc("serve", base_env(receivers)).start()
    try:
        trace_id, caller_span, header = traceparent()
        thread = httpx.post(server.url + "/threads", json={}).json()["thread_id"]
        r = httpx.post(
            f"{server.url}/threads/{thread}/runs/wait",
            json={"assistant_id": "quote", "input": {"model": model(receivers)}},
            headers={"traceparent": header}, timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["reply"] == "Your 20-square shingle replacement is scheduled."

        spans = spans_of(trace_id, lambda s: any(x["name"] == "run quote" for x in s)
                         and any(x["name"] == "enqueue quote" for x in s)
                         and len([x for x in s if x["name"].startswith("step ")]) >= 3)
        # The tree: the caller's span → the request → enqueue → execute → run → steps → nodes.
        request = one(spans, "POST /threads/{tid}/runs/wait")
        assert request["parent"] == caller_span and request["kind"] == 2  # SERVER
        enqueue = child_of(spans, request, "enqueue quote")[0]
        assert enqueue["kind"] == 4  # PRODUCER
        execute = child_of(spans, enqueue, "execute quote")[0]
        assert execute["kind"] == 5  # CONSUMER
        assert execute["attributes"]["thread"] == thread
        run = child_of(spans, execute, "run quote")[0]
        assert run["attributes"]["graph"] == "quote" and run["attributes"]["status"] == "done"
        steps = child_of(spans, run, "step 1") + child_of(spans, run, "step 2") + child_of(
            spans, run, "step 3")
        nodes = {s["attributes"]["node"]: s for s in spans if s["name"].startswith("node ")}
        assert set(nodes) == {"size", "draft", "notify"}
        assert {n["parent"] for n in nodes.values()} <= {s["span_id"] for s in steps}
        # A checkpoint write in every step.
        writes = [s for s in spans if s["name"] == "checkpoint.write"]
        assert {w["parent"] for w in writes} >= {s["span_id"] for s in steps}
        # And the input's, under the run, before the first step.
        assert [w["attributes"]["step"] for w in writes if w["parent"] == run["span_id"]] == [0]

        # The model call, with OpenTelemetry's GenAI attributes; no prompt by default.
        chat = child_of(spans, nodes["draft"], "chat scripted-gpt")[0]
        a = chat["attributes"]
        assert chat["kind"] == 3  # CLIENT
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.system"] == "openai_compatible"
        assert a["gen_ai.request.model"] == "scripted-gpt"
        assert a["gen_ai.response.model"] == "scripted-gpt"
        assert a["gen_ai.usage.input_tokens"] == 21
        assert a["gen_ai.usage.output_tokens"] == 9
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
        assert receivers["model"] not in json.dumps(a)

        # The integration call: vendor, mode and idempotency key.
        integration = child_of(spans, nodes["notify"], "integration slack.post_message")[0]
        ia = integration["attributes"]
        assert ia["brainops.vendor"] == "Slack"
        assert ia["brainops.mode"] == "dry-run" and ia["brainops.outcome"] == "recorded"
        assert ia["brainops.idempotency_key"]

        # The vendor got the trace: its request's parent is the model-call span.
        sent = [h["traceparent"] for h in ScriptedOpenAI.headers_seen if "traceparent" in h]
        assert f"00-{trace_id}-{chat['span_id']}-01" in sent
        assert all(s["resource"]["service.name"] == "brainops-test" for s in spans)
    finally:
        server.stop()


def test_an_agents_model_turns_and_tool_call_are_spans_of_its_node(receivers):
    env = base_env(receivers, OPENAI_BASE_URL=receivers["model"] + "/v1", **FAKE_KEYS)
    server = Proc("serve", env).start()
    try:
        trace_id, _, header = traceparent()
        r = httpx.post(f"{server.url}/runs/wait", json={"assistant_id": "estimate", "input": {}},
                       headers={"traceparent": header}, timeout=60)
        assert r.status_code == 200, r.text
        assert "scheduled" in json.dumps(r.json()["estimate"])
        spans = spans_of(trace_id, lambda s: any(x["name"] == "run estimate" for x in s))
        node = one(spans, "node estimate")
        turns = child_of(spans, node, "chat scripted-gpt")
        assert len(turns) == 2
        assert all(t["attributes"]["gen_ai.agent.name"] == "industry.estimator" for t in turns)
        assert all(t["attributes"]["gen_ai.system"] == "openai" for t in turns)
        assert sorted(t["attributes"]["gen_ai.response.finish_reasons"] for t in turns) == [
            "stop", "tool_calls"]
        tool = child_of(spans, node, "execute_tool roofing.estimate")[0]
        a = tool["attributes"]
        assert a["gen_ai.tool.name"] == "roofing.estimate"
        assert a["gen_ai.tool.call.id"] == "call_1"
        assert "gen_ai.tool.call.arguments" not in a and "gen_ai.tool.call.result" not in a
        assert tool["status"] != 2  # not ERROR
    finally:
        server.stop()


def test_brainops_run_exports_its_trace_before_it_exits(receivers, tmp_path):
    env = dict(os.environ, BRAINOPS_HOME=str(tmp_path), **base_env(receivers))
    out = subprocess.run(
        [os.environ["BRAINOPS_BIN"], "run", os.path.join(GRAPHS, "quote.toml"),
         "--input", json.dumps({"model": model(receivers)})],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    thread = json.loads(out.stdout)["thread_id"]
    with Otlp.lock:
        runs = [s for s in Otlp.spans
                if s["name"] == "run quote" and s["attributes"].get("thread") == thread]
    # Sent by the time the command returned.
    assert len(runs) == 1
    spans = spans_of(runs[0]["trace_id"], lambda s: True)
    root = one(spans, "brainops run quote")
    assert root["parent"] == "" and runs[0]["parent"] == root["span_id"]
    # The step of the `set` node alone is counted, not a span of its own (a step that runs
    # a tool is): BRAINOPS_TRACE_EXPRESSIONS=1 makes it one.
    assert runs[0]["attributes"]["expression_steps"] == 1
    assert sorted(s["name"] for s in spans if s["name"].startswith("step ")) == ["step 2", "step 3"]
    assert one(spans, "chat scripted-gpt")["attributes"]["gen_ai.usage.output_tokens"] == 9


def test_trace_content_is_recorded_only_when_asked(receivers):
    server = Proc("serve", base_env(receivers, BRAINOPS_TRACE_CONTENT="1")).start()
    try:
        trace_id, _, header = traceparent()
        r = httpx.post(f"{server.url}/runs/wait",
                       json={"assistant_id": "quote", "input": {"model": model(receivers)}},
                       headers={"traceparent": header}, timeout=60)
        assert r.status_code == 200, r.text
        spans = spans_of(trace_id, lambda s: any(x["name"] == "chat scripted-gpt" for x in s))
        a = one(spans, "chat scripted-gpt")["attributes"]
        assert "replace 20 squares of shingles" in a["gen_ai.input.messages"]
        assert "scheduled" in a["gen_ai.output.messages"]
    finally:
        server.stop()


@pytest.mark.skipif(not (DIRECT and POOLER), reason="needs Postgres (scripts/postgres.sh)")
def test_the_trace_follows_a_run_from_the_api_server_to_a_worker_process(receivers):
    name = "brainops_observe_" + uuid.uuid4().hex[:10]
    admin = DIRECT.split("?")[0]
    subprocess.run(["psql", admin, "-XAtq", "-c", f"CREATE DATABASE {name}"], check=True)
    db = POOLER.split("?")[0].rsplit("/", 1)[0] + "/" + name
    if "?" in POOLER:
        db += "?" + POOLER.split("?", 1)[1]
    env = base_env(receivers, BRAINOPS_POLL_MS="100")
    api = Proc("serve", env, ["--no-worker", "--checkpoint", db]).start()
    worker = Proc("worker", dict(env, BRAINOPS_METRICS_ADDR="127.0.0.1:0"),
                  ["--checkpoint", db]).start()
    assert worker.url, worker.lines
    try:
        trace_id, caller_span, header = traceparent()
        thread = httpx.post(api.url + "/threads", json={}).json()["thread_id"]
        r = httpx.post(f"{api.url}/threads/{thread}/runs",
                       json={"assistant_id": "quote", "input": {"model": model(receivers)}},
                       headers={"traceparent": header})
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        joined = httpx.get(f"{api.url}/threads/{thread}/runs/{run_id}/join", timeout=60)
        assert joined.json()["reply"].startswith("Your 20-square")

        spans = spans_of(trace_id, lambda s: any(x["name"] == "run quote" for x in s)
                         and any(x["name"] == "enqueue quote" for x in s))
        enqueue = one(spans, "enqueue quote")
        execute = one(spans, "execute quote")
        assert execute["parent"] == enqueue["span_id"]
        # Queued by the API process, executed by the worker, in one trace.
        assert enqueue["resource"]["process.pid"] == api.proc.pid
        assert execute["resource"]["process.pid"] == worker.proc.pid
        assert one(spans, "chat scripted-gpt")["resource"]["process.pid"] == worker.proc.pid
        assert one(spans, "POST /threads/{tid}/runs")["parent"] == caller_span

        # The worker counts what it executed; the API server, which only queued it, does not.
        at_worker, at_api = scrape(worker.url), scrape(api.url)
        assert sample(at_worker, "brainops_runs_total", graph="quote", status="success") == 1
        assert sample(at_worker, "brainops_model_calls_total", model="openai-compat:scripted-gpt",
                      status="ok") == 1
        assert sample(at_api, "brainops_runs_total", graph="quote", status="success") == 0
        assert sample(at_api, "brainops_run_queue_depth") == 0
    finally:
        worker.stop()
        api.stop()
        subprocess.run(["psql", admin, "-XAtq", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                       capture_output=True)


def scrape(url):
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_as_prometheus_text_and_move_as_runs_happen(receivers):
    server = Proc("serve", {}).start()
    try:
        before = scrape(server.url)
        assert sample(before, "brainops_open_streams") == 0
        for _ in range(2):
            r = httpx.post(f"{server.url}/runs/wait",
                           json={"assistant_id": "quote", "input": {"model": model(receivers)}},
                           timeout=60)
            assert r.status_code == 200, r.text
        r = httpx.post(f"{server.url}/runs/wait",
                       json={"assistant_id": "fails", "input": {"model": model(receivers, "refuse")}},
                       timeout=60)
        assert r.status_code == 200, r.text
        after = scrape(server.url)

        def moved(name, **labels):
            return sample(after, name, **labels) - sample(before, name, **labels)

        assert moved("brainops_runs_total", graph="quote", status="success") == 2
        assert moved("brainops_runs_total", graph="fails", status="error") == 1
        assert moved("brainops_node_duration_seconds_count", graph="quote", node="draft",
                     status="ok") == 2
        assert moved("brainops_node_duration_seconds_count", graph="fails", node="draft",
                     status="error") == 1
        assert moved("brainops_step_duration_seconds_count", graph="quote") == 6
        assert moved("brainops_checkpoint_write_duration_seconds_count") >= 6
        assert moved("brainops_model_calls_total", model="openai-compat:scripted-gpt",
                     status="ok") == 2
        assert moved("brainops_model_calls_total", model="openai-compat:refuse",
                     status="error") == 1
        assert moved("brainops_model_tokens_total", model="openai-compat:scripted-gpt",
                     kind="input") == 42
        assert moved("brainops_model_tokens_total", model="openai-compat:scripted-gpt",
                     kind="output") == 18
        assert moved("brainops_integration_calls_total", vendor="Slack",
                     integration="slack.post_message", mode="dry-run", outcome="recorded") == 2
        assert moved("brainops_run_queue_wait_seconds_count") == 3
        assert sample(after, "brainops_run_queue_depth") == 0

        # An open stream is counted while it is open.
        thread = httpx.post(server.url + "/threads", json={}).json()["thread_id"]
        with httpx.stream("GET", f"{server.url}/threads/{thread}/stream/events", timeout=10):
            deadline = time.time() + 5
            while sample(scrape(server.url), "brainops_open_streams") != 1:
                assert time.time() < deadline
                time.sleep(0.05)
        deadline = time.time() + 5
        while sample(scrape(server.url), "brainops_open_streams") != 0:
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        server.stop()


def test_failures_reach_sentry_tagged_linked_and_scrubbed_and_no_key_leaks(receivers):
    dsn = receivers["sentry"].replace("http://", "http://public0key@") + "/42"
    env = base_env(receivers, SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="test",
                   RUST_LOG="debug", BRAINOPS_LOG_FORMAT="json", **FAKE_KEYS)
    server = Proc("serve", env).start()
    try:
        trace_id, _, header = traceparent()
        thread = httpx.post(server.url + "/threads", json={}).json()["thread_id"]
        r = httpx.post(f"{server.url}/threads/{thread}/runs/wait",
                       json={"assistant_id": "fails",
                             "input": {"model": model(receivers, "refuse")}},
                       headers={"traceparent": header}, timeout=60)
        assert r.status_code == 200
        ok = httpx.post(f"{server.url}/runs/wait",
                        json={"assistant_id": "quote", "input": {"model": model(receivers)}},
                        timeout=60)
        assert ok.status_code == 200, ok.text
        deadline = time.time() + 15
        while len([e for e in SentryIngest.events if e.get("tags", {}).get("thread") == thread]) < 2:
            assert time.time() < deadline, SentryIngest.raw
            time.sleep(0.1)
        events = [e for e in SentryIngest.events if e.get("tags", {}).get("thread") == thread]
        node = next(e for e in events if "node" in e["tags"])
        run = next(e for e in events if "node" not in e["tags"])
        for e in (node, run):
            assert e.get("level", "error") == "error"  # Sentry omits its default, error
            assert e["environment"] == "test"
            assert e["tags"]["graph"] == "fails"
            assert e["tags"]["trace_id"] == trace_id
            assert e["contexts"]["trace"]["trace_id"] == trace_id
            assert re.fullmatch(r"[0-9a-f-]{36}", e["tags"]["run"])
        assert node["tags"]["node"] == "draft"
        assert "401" in node["message"] or "key" in node["message"].lower()
        # The customer's e-mail in the vendor's error is masked.
        assert "jane.doe@example.com" not in json.dumps(events)
        assert "[email]" in node["message"]

        spans = spans_of(trace_id, lambda s: any(x["name"] == "run fails" for x in s))
        assert one(spans, "run fails")["status"] == 2  # ERROR
        assert one(spans, "node draft")["status"] == 2
    finally:
        server.stop()
    # Nothing anywhere holds a key: spans, logs (debug, JSON), error reports.
    with Otlp.lock:
        exported = json.dumps(Otlp.spans)
    logs = "".join(server.lines)
    assert '"level":"DEBUG"' in logs.replace(" ", "")
    for name, key in FAKE_KEYS.items():
        for where, text in (("spans", exported), ("logs", logs),
                            ("sentry", "".join(SentryIngest.raw))):
            assert key not in text, f"{name} leaked into {where}"
