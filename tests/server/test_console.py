"""The console at /ui in a real browser: Debian's Chromium driven by Playwright for Python
(launched against /usr/bin/chromium; `playwright install` downloads a browser and cannot
work here). Each test starts from the page, as the business owner would, and checks what
the page shows; screenshots go to $BRAINOPS_ARTIFACTS (default target/console-artifacts)."""

import os
import shutil
import tempfile
import time

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import HERE, Server

REPO = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.environ.get("BRAINOPS_ARTIFACTS") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "console-artifacts"
)
CHROMIUM = os.environ.get("BRAINOPS_CHROMIUM", "/usr/bin/chromium")
# The machine's closed network refuses Chromium's background connections; these keep it
# from trying (see the machine notes).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LEAD = '{"name": "Ada Lovelace", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}'


@pytest.fixture(scope="module")
def console():
    """A server with the business's lead_intake and storm_response graphs, a local-model
    agent (chat), a slow one (slow), one with a subgraph (parent) and one that fails (err)."""
    with tempfile.TemporaryDirectory() as home:
        graphs = os.path.join(home, "graphs")
        os.mkdir(graphs)
        for name in ["lead_intake.toml", "storm_response.toml"]:
            shutil.copy(os.path.join(REPO, "graphs", name), graphs)
        for name in ["chat.toml", "slow.toml", "parent.toml", "err.toml"]:
            shutil.copy(os.path.join(HERE, "graphs", name), graphs)
        shutil.copytree(os.path.join(HERE, "graphs", "parts"), os.path.join(graphs, "parts"))
        s = Server(home, graphs=graphs).start()
        yield s
        s.stop()


@pytest.fixture(scope="module")
def browser():
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


class Tab:
    """A page with its console errors recorded (a test fails on any)."""

    def __init__(self, browser, **options):
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name):
        self.page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)

    def close(self):
        self.context.close()
        assert self.errors == [], f"the browser console reported errors: {self.errors}"


def node(page, name):
    return page.locator(f'#live-title ~ .graph [data-node="{name}"]')


def start_lead(page, url, lead=LEAD):
    page.goto(f"{url}/ui#/graphs/lead_intake")
    page.fill("#in-lead", lead)
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#question")).to_contain_text("Approve the proposal", timeout=20000)
    return page.url.split("#/threads/")[1]


def test_lead_intake_from_the_form_answered_in_the_page_seen_live_in_two_tabs(console, browser):
    one = Tab(browser, viewport={"width": 1280, "height": 900})
    page = one.page
    page.goto(f"{console.url}/ui")
    expect(page.get_by_role("link", name="lead_intake")).to_be_visible()
    page.get_by_role("link", name="lead_intake").click()
    # The drawing: every node, the join into estimate, the conditional edges out of approve.
    for n in ["__start__", "score_age", "score_damage", "estimate", "approve", "send_proposal", "archive", "__end__"]:
        expect(page.locator(f'[data-node="{n}"]')).to_have_count(1)
    expect(page.locator('.edge.join[data-to="estimate"]')).to_have_count(2)
    expect(page.locator('.edge.conditional[data-from="approve"]')).to_have_count(2)
    expect(page.locator("label[for=in-lead]")).to_contain_text("object")
    one.shot("graph")

    # A bad field is named, and nothing starts.
    page.fill("#in-lead", "{name: Ada")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#in-lead-error")).to_contain_text("lead: not valid JSON")
    expect(page.locator("#in-lead")).to_have_attribute("aria-invalid", "true")

    tid = start_lead(page, console.url)
    # The nodes that ran are lit; the question's node waits.
    expect(node(page, "score_age")).to_have_class("node done")
    expect(node(page, "score_damage")).to_have_class("node done")
    expect(node(page, "estimate")).to_have_class("node done")
    expect(node(page, "approve")).to_have_class("node ask waiting")
    expect(page.locator("#timeline")).to_contain_text("estimate")
    expect(page.locator("#thread-status")).to_have_text("interrupted")
    one.shot("question")

    # A second browser, on the same thread, sees the rest of the run as it happens.
    two = Tab(browser, viewport={"width": 1000, "height": 800})
    two.page.goto(f"{console.url}/ui#/threads/{tid}")
    expect(two.page.locator("#question")).to_contain_text("Approve the proposal")

    page.get_by_role("button", name="Fill “approve”").click()
    page.get_by_role("button", name="Send answer").click()
    for tab in (page, two.page):
        expect(tab.locator("#timeline")).to_contain_text("Run completed", timeout=20000)
        expect(node(tab, "send_proposal")).to_have_class("node done")
        expect(tab.locator("#thread-status")).to_have_text("idle")
        expect(tab.locator("#state")).to_contain_text('"total_usd": 11068.54')
        expect(tab.locator("#question")).to_be_empty()
    # The second tab saw the answered step live (it opened after the question was asked).
    expect(two.page.locator("#timeline")).to_contain_text("send_proposal")
    expect(two.page.locator("#timeline .task", has_text="send_proposal")).to_contain_text("done")
    one.shot("finished")
    two.shot("finished-second-tab")

    # What the page showed is what the server holds.
    state = httpx.get(f"{console.url}/threads/{tid}/state").json()
    assert state["values"]["proposal"]["total_usd"] == 11068.54
    assert state["values"]["approval"] == "approve"
    two.close()
    one.close()


def test_time_travel_diff_edit_and_fork(console, browser):
    tab = Tab(browser, viewport={"width": 1280, "height": 1000})
    page = tab.page
    tid = start_lead(page, console.url)
    page.fill("#question input[type=text]", "approve")
    page.get_by_role("button", name="Send answer").click()
    expect(page.locator("#thread-status")).to_have_text("idle", timeout=20000)

    rows = page.locator("#checkpoints tbody tr")
    expect(rows.first).to_contain_text("END")
    # Diff: the input checkpoint (last row) against the final one (first row).
    rows.last.locator("input[name=cp-a]").check()
    rows.first.locator("input[name=cp-b]").check()
    diff = page.locator("#diff")
    expect(diff.locator('tr[data-channel="score"]')).to_have_class("diff-changed")
    expect(diff.locator('tr[data-channel="proposal"]')).to_contain_text("11068.54")
    expect(diff.locator('tr[data-channel="lead"]')).to_have_count(0)

    # Fork from the checkpoint before the estimate, with a smaller roof.
    before_estimate = rows.filter(has_text="estimate").first
    before_estimate.get_by_role("button", name="Open").click()
    editor = page.locator("#fork-values")
    values = editor.input_value()
    assert '"area_sqft": 2000' in values
    editor.fill(values.replace('"area_sqft": 2000', '"area_sqft": 1000'))
    page.get_by_role("button", name="Fork a run from here").click()
    expect(page.locator("#question")).to_contain_text("Approve the proposal", timeout=20000)
    page.fill("#question input[type=text]", "approve")
    page.get_by_role("button", name="Send answer").click()
    expect(page.locator("#thread-status")).to_have_text("idle", timeout=20000)
    expect(page.locator("#state")).to_contain_text('"total_usd": 5534.27')
    tab.shot("forked")
    state = httpx.get(f"{console.url}/threads/{tid}/state").json()
    assert state["values"]["lead"]["area_sqft"] == 1000
    assert state["values"]["proposal"]["total_usd"] == 5534.27
    # The fork did not append a second copy of the reasons (edits are overwrites).
    assert len(state["values"]["reasons"]) == 2
    tab.close()


def test_tokens_and_usage_of_a_local_model_agent(console, browser):
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/graphs/chat")
    page.fill("#in-question", "Say hello to the roofer.")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#thread-status")).to_have_text("idle", timeout=120000)
    tokens = page.locator("#timeline .task .tokens")
    expect(tokens).to_have_count(1)
    assert len(tokens.inner_text().strip()) > 0
    expect(page.locator("#run-usage")).to_contain_text("chat:")
    expect(page.locator("#run-usage")).to_contain_text("out tokens")
    tab.shot("agent-tokens")
    # Reopened later, the page shows the run's usage from the server's record.
    page.reload()
    expect(page.locator("#run-usage")).to_contain_text("chat:")
    tab.close()


def test_memory_search_shows_scores_and_similarity(console, browser):
    for key, text in [
        ("hail", "Hail cracked three shingles on the north slope."),
        ("invoice", "Invoice 1042 was paid by card."),
    ]:
        r = httpx.put(
            f"{console.url}/store/items",
            json={"namespace": ["acme", "notes"], "key": key, "value": {"text": text}, "index": ["text"]},
        )
        assert r.status_code in (200, 204), r.text
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/memory")
    page.get_by_label("Namespace").select_option(label="acme / notes")
    page.get_by_label("Query").fill("storm damage on the roof")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#memory-results tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("hail")
    score = float(rows.first.locator(".score").inner_text())
    similarity = float(rows.first.locator(".similarity").inner_text())
    assert score > 0 and 0 < similarity <= 1
    assert similarity > float(rows.nth(1).locator(".similarity").inner_text())
    tab.shot("memory")
    tab.close()


def test_agents_runs_and_threads_pages(console, browser):
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/agents")
    for category in ["revenue", "operations", "technical", "customer", "financial", "marketing", "security", "industry"]:
        expect(page.locator(f"#cat-{category}")).to_be_visible()
    page.get_by_role("link", name="customer.supervisor").click()
    expect(page.locator("#agent-instructions")).to_contain_text("WeatherCraft")
    expect(page.locator("main")).to_contain_text("Hands off to")

    page.goto(f"{console.url}/ui#/runs")
    expect(page.locator("#recent-runs tbody tr").first).to_be_visible()
    expect(page.locator("#recent-runs")).to_contain_text("lead_intake")
    expect(page.locator("#queue")).to_contain_text("Nothing queued or running")
    tab.shot("runs")

    page.goto(f"{console.url}/ui#/threads")
    expect(page.locator("main tbody tr").first).to_be_visible()
    page.get_by_label("Metadata").fill("graph_id=chat")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("main tbody tr")).to_have_count(1)
    expect(page.locator("main tbody tr")).to_contain_text("idle")
    tab.shot("threads")
    tab.close()


def test_drawings_show_maps_and_subgraphs(console, browser):
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/graphs/storm_response")
    expect(page.locator('[data-node="text_customers"]')).to_contain_text("for_each state.schedule.assignments")
    expect(page.locator("main")).to_contain_text("1 map over lists (for_each)")
    tab.shot("storm-response")
    # A subgraph is drawn from inside, as LangGraph's `xray` gives it: `sub:c1` in place of
    # `sub`, reached from `a` and leading to the end.
    drawing = httpx.get(f"{console.url}/assistants/parent/graph", params={"xray": "true"}).json()
    ids = [n["id"] for n in drawing["nodes"]]
    assert "sub:c1" in ids and "sub" not in ids, ids
    pairs = {(e["source"], e["target"]) for e in drawing["edges"]}
    assert pairs == {("__start__", "a"), ("a", "sub:c1"), ("sub:c1", "__end__")}, pairs
    plain = httpx.get(f"{console.url}/assistants/parent/graph").json()
    assert "sub" in [n["id"] for n in plain["nodes"]]
    page.goto(f"{console.url}/ui#/graphs/parent")
    expect(page.locator('[data-node="sub:c1"]')).to_have_class("node inner")
    expect(page.locator('.edge[data-from="a"][data-to="sub:c1"]')).to_have_count(1)
    expect(page.locator("main")).to_contain_text("1 subgraph(s)")
    tab.shot("subgraph")
    # Run it: the subgraph's task lights every node inside it.
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#thread-status")).to_have_text("idle", timeout=20000)
    expect(page.locator('#live-title ~ .graph [data-node="sub:c1"]')).to_have_class("node inner done")
    tab.close()


def test_a_failed_run_shows_where_and_why(console, browser):
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/graphs/err")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#thread-status")).to_have_text("error", timeout=20000)
    expect(node(page, "boom")).to_have_class("node failed")
    failed = page.locator("#timeline .run-mark.failed")
    expect(failed).to_contain_text("boom")
    expect(failed).to_contain_text("1 / state.n")
    tab.shot("failed")
    # Opened later, the page still says why.
    page.reload()
    expect(page.locator("#thread-error")).to_contain_text("The last run failed: node `boom`")
    tab.close()


def test_threads_are_paged_newest_first(console, browser):
    made = []
    for i in range(21):
        r = httpx.post(f"{console.url}/threads", json={"metadata": {"batch": "paging", "i": i}})
        made.append(r.json()["thread_id"])
        time.sleep(0.003)  # distinct creation times, so "newest first" has one answer
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/threads")
    page.get_by_label("Metadata").fill("batch=paging")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("main tbody tr")
    expect(rows).to_have_count(20)
    expect(page.locator(".pager")).to_contain_text("1–20 of 21")
    # Newest first: the last one made heads the list; the first one made is on page two.
    expect(rows.first).to_contain_text(made[-1][-12:])
    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(made[0][-12:])
    page.get_by_role("button", name="Newer").click()
    expect(rows).to_have_count(20)
    tab.close()


def test_cancel_a_running_run_from_the_queue(console, browser):
    tid = httpx.post(f"{console.url}/threads", json={}).json()["thread_id"]
    run = httpx.post(
        f"{console.url}/threads/{tid}/runs", json={"assistant_id": "slow", "input": {"seconds": 60}}
    ).json()
    tab = Tab(browser, viewport={"width": 1280, "height": 900})
    page = tab.page
    page.goto(f"{console.url}/ui#/runs")
    row = page.locator("#queue tbody tr", has_text=run["run_id"][-12:])
    expect(row).to_contain_text("running", timeout=10000)
    expect(row).to_contain_text("slow")
    row.get_by_role("button", name="Cancel").click()
    expect(page.locator("#queue")).to_contain_text("Nothing queued or running", timeout=15000)
    expect(page.locator("#recent-runs tbody tr", has_text=run["run_id"][-12:])).to_contain_text("interrupted")
    got = httpx.get(f"{console.url}/threads/{tid}/runs/{run['run_id']}").json()
    assert got["status"] == "interrupted"
    tab.close()


def test_phone_sized_and_keyboard_only(console, browser):
    tab = Tab(browser, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = tab.page
    page.goto(f"{console.url}/ui#/graphs/lead_intake")
    expect(page.locator("#run-form")).to_be_visible()
    # Nothing is wider than the screen.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"
    # Every field has a label.
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')].filter(e => e.closest('main') && !e.labels.length && !e.getAttribute('aria-label')).length"
    )
    assert unlabelled == 0
    tab.shot("phone")
    # Keyboard only: the skip link, then the sections, reachable with Tab and Enter.
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Graphs")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Threads")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Threads")
    tab.close()


def test_with_api_keys_the_page_asks_for_one(browser):
    key = "console-test-key-0123456789"
    with tempfile.TemporaryDirectory() as home:
        s = Server(home, extra_args=["--auth", "api-key"], env={"BRAINOPS_API_KEYS": f"owner:{key}"}).start()
        try:
            assert httpx.post(f"{s.url}/assistants/search", json={}).status_code == 401
            assert httpx.get(f"{s.url}/ui").status_code == 200
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{s.url}/ui#/graphs")
            expect(page.locator("#key-dialog")).to_be_visible()
            page.get_by_label("Key or token").fill(key)
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_role("link", name="hitl")).to_be_visible()
            # The key stays in the tab: the API calls that follow carry it.
            page.get_by_role("link", name="Threads").click()
            expect(page.locator("h1")).to_have_text("Threads")
            context.close()
        finally:
            s.stop()
