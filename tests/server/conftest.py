"""Starts `brainops serve` for the black-box suite: a real server process, on a free
loopback port, with the graphs in tests/server/graphs and a fresh store per server."""

import os
import re
import signal
import subprocess
import tempfile
import time

import httpx
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


class Server:
    """One `brainops serve` process; `stop()` sends SIGTERM, `kill()` SIGKILL."""

    def __init__(self, home, extra_args=(), graphs=os.path.join(HERE, "graphs"), env=None):
        self.home = home
        self.env = env or {}
        self.args = [
            os.environ["BRAINOPS_BIN"],
            "--agent-dir", os.path.join(HERE, "agents"),
            "serve",
            "--graphs", graphs,
            "--port", "0",
            *extra_args,
        ]
        self.proc = None
        self.url = None

    def start(self):
        env = dict(os.environ, BRAINOPS_HOME=self.home, BRAINOPS_CORS_ORIGINS="http://frontend.test")
        env.update(self.env)
        self.proc = subprocess.Popen(
            self.args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        line = self.proc.stderr.readline()
        match = re.search(r"http://[0-9.:]+", line)
        assert match, f"the server did not start: {line}{self.proc.stderr.read()}"
        self.url = match.group(0)
        # /ok answers once it is ready to serve.
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/ok").status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("GET /ok never answered")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=40)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory() as home:
        s = Server(home).start()
        yield s
        s.stop()


@pytest.fixture
def url(server):
    return server.url


@pytest.fixture
def fresh_home():
    with tempfile.TemporaryDirectory() as home:
        yield home
