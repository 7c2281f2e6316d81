"""Runs the JS client's tests (tests/server/js, `node --test`) against this suite's server;
scripts/server-tests.sh installs the pinned @langchain/langgraph-sdk first."""

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def test_js_client(url):
    js = os.path.join(HERE, "js")
    done = subprocess.run(
        ["node", "--test", "sdk.test.mjs"],
        cwd=js,
        env=dict(os.environ, BRAINOPS_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
