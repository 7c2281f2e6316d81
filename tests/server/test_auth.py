"""--auth api-key and --auth supabase: callers are identified, and each sees only its own
threads, runs and store items."""

import http.server
import json
import threading
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import NotFoundError

from conftest import Server

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdefgh"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("keyed"))
    s = Server(home, ["--auth", "api-key"], env={"BRAINOPS_API_KEYS": f"alice:{ALICE},bob:{BOB}"}).start()
    yield s
    s.stop()


def test_requests_without_a_valid_key_are_401(keyed):
    assert httpx.get(keyed.url + "/ok").status_code == 200
    r = httpx.post(keyed.url + "/threads", json={})
    assert r.status_code == 401 and "x-api-key" in r.json()["detail"]
    r = httpx.post(keyed.url + "/threads", json={}, headers={"x-api-key": "nope-nope-nope-nope"})
    assert r.status_code == 401 and r.json() == {"detail": "invalid API key"}
    r = httpx.post(keyed.url + "/threads", json={}, headers={"authorization": f"Bearer {ALICE}"})
    assert r.status_code == 200


def test_each_user_sees_only_its_own(keyed):
    alice = get_sync_client(url=keyed.url, api_key=ALICE)
    bob = get_sync_client(url=keyed.url, api_key=BOB)
    tid = alice.threads.create(metadata={"who": "alice"})["thread_id"]
    run = alice.runs.create(tid, "simple", input={"n": 0})
    alice.runs.join(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        bob.threads.get(tid)
    with pytest.raises(NotFoundError):
        bob.threads.get_state(tid)
    with pytest.raises(NotFoundError):
        bob.runs.get(tid, run["run_id"])
    with pytest.raises(httpx.HTTPStatusError) as e:
        bob.runs.wait(tid, "simple", input={"n": 5})
    assert e.value.response.status_code == 404
    assert bob.threads.search(metadata={"who": "alice"}) == []
    assert [t["thread_id"] for t in alice.threads.search(metadata={"who": "alice"})] == [tid]
    # The store: one namespace name, two tenants.
    alice.store.put_item(["prefs"], "call", {"text": "mornings"})
    assert bob.store.get_item(["prefs"], "call") is None
    assert alice.store.get_item(["prefs"], "call")["namespace"] == ["prefs"]
    assert alice.store.list_namespaces()["namespaces"] == [["prefs"]]
    assert bob.store.search_items(["prefs"])["items"] == []


class Jwks(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(Jwks.body)

    def log_message(self, *args):
        pass


def test_supabase_tokens_hs256_and_es256_from_the_projects_keys(fresh_home):
    secret = "super-secret-jwt-token-with-at-least-32-characters"
    private = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    public.update({"kid": "k1", "alg": "ES256", "use": "sig"})
    Jwks.body = json.dumps({"keys": [public]}).encode()
    jwks = http.server.HTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=jwks.serve_forever, daemon=True).start()
    server = Server(
        fresh_home,
        ["--auth", "supabase"],
        env={
            "SUPABASE_JWT_SECRET": secret,
            "SUPABASE_JWKS_URL": f"http://127.0.0.1:{jwks.server_port}/auth/v1/.well-known/jwks.json",
        },
    ).start()
    try:
        now = int(time.time())
        claims = {"sub": "user-1", "aud": "authenticated", "exp": now + 600, "app_metadata": {"tenant_id": "acme"}}
        hs = jwt.encode(claims, secret, algorithm="HS256")
        es = jwt.encode(dict(claims, sub="user-2"), private, algorithm="ES256", headers={"kid": "k1"})
        one = get_sync_client(url=server.url, headers={"authorization": f"Bearer {hs}"})
        two = get_sync_client(url=server.url, headers={"authorization": f"Bearer {es}"})
        tid = one.threads.create()["thread_id"]
        assert one.runs.wait(tid, "simple", input={"n": 0}) == {"log": ["a", "b"], "n": 1}
        with pytest.raises(NotFoundError):
            two.threads.get(tid)
        # One tenant (acme) for both users: they share store items.
        one.store.put_item(["notes"], "n1", {"text": "hi"})
        assert two.store.get_item(["notes"], "n1")["value"] == {"text": "hi"}

        def status(token):
            return httpx.post(server.url + "/threads/search", json={}, headers={"authorization": f"Bearer {token}"})

        expired = jwt.encode(dict(claims, exp=now - 60), secret, algorithm="HS256")
        assert status(expired).status_code == 401
        forged = jwt.encode(claims, "another-secret-of-at-least-32-characters!!", algorithm="HS256")
        r = status(forged)
        assert r.status_code == 401 and secret not in r.text
        wrong_aud = jwt.encode(dict(claims, aud="anon"), secret, algorithm="HS256")
        assert status(wrong_aud).status_code == 401
        assert status("not-a-jwt").status_code == 401
    finally:
        server.stop()
        jwks.shutdown()


def test_non_loopback_without_auth_is_refused(fresh_home):
    import os
    import subprocess

    done = subprocess.run(
        [os.environ["BRAINOPS_BIN"], "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--auth" in done.stderr and "--insecure" in done.stderr
    done = subprocess.run(
        [os.environ["BRAINOPS_BIN"], "serve", "--auth", "api-key"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "BRAINOPS_API_KEYS"},
    )
    assert done.returncode == 2 and "BRAINOPS_API_KEYS" in done.stderr


def test_websocket_sessions_run_as_their_caller(keyed):
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    alice = get_sync_client(url=keyed.url, api_key=ALICE)
    tid = alice.threads.create()["thread_id"]
    ws_url = keyed.url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"

    async def open_as(key):
        async with connect(ws_url, additional_headers={"x-api-key": key}) as ws:
            await ws.send(json.dumps({"id": 1, "method": "state.get", "params": {}}))
            return json.loads(await ws.recv())

    with pytest.raises(InvalidStatus) as e:
        asyncio.run(open_as(BOB))
    assert e.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as e:
        asyncio.run(open_as("wrong-key-0123456789abc"))
    assert e.value.response.status_code == 401
    assert asyncio.run(open_as(ALICE))["type"] == "success"
    # A thread Bob creates over his socket is his alone.
    other = str(__import__("uuid").uuid4())

    async def start_as_bob():
        url = keyed.url.replace("http://", "ws://") + f"/threads/{other}/stream/events"
        async with connect(url, additional_headers={"x-api-key": BOB}) as ws:
            await ws.send(json.dumps({"id": 1, "method": "run.start", "params": {"assistant_id": "simple", "input": {"n": 0}}}))
            return json.loads(await ws.recv())

    assert asyncio.run(start_as_bob())["type"] == "success"
    with pytest.raises(NotFoundError):
        alice.threads.get(other)
