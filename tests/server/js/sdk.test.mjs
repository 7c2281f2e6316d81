// The JS client, @langchain/langgraph-sdk (pinned in package.json), against `brainops serve`
// at $BRAINOPS_URL. Run by tests/server/test_js_client.py with `node --test`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.BRAINOPS_URL, defaultHeaders: {} });

async function collect(gen) {
  const out = [];
  for await (const part of gen) out.push(part);
  return out;
}

test("assistants and threads", async () => {
  const found = await client.assistants.search({ graphId: "simple" });
  assert.equal(found.length, 1);
  assert.equal((await client.assistants.get("simple")).assistant_id, found[0].assistant_id);
  const graph = await client.assistants.getGraph("simple");
  assert.deepEqual(graph.nodes.map((n) => n.id), ["__start__", "a", "b", "__end__"]);
  const thread = await client.threads.create({ metadata: { app: "js" } });
  assert.equal(thread.status, "idle");
  const updated = await client.threads.update(thread.thread_id, { metadata: { more: 1 } });
  assert.deepEqual(updated.metadata, { app: "js", more: 1 });
  const searched = await client.threads.search({ metadata: { app: "js" } });
  assert.deepEqual(searched.map((t) => t.thread_id), [thread.thread_id]);
});

test("stream reports the run it created and the reference events", async () => {
  const thread = await client.threads.create();
  let created;
  const parts = await collect(
    client.runs.stream(thread.thread_id, "simple", {
      input: { n: 0 },
      streamMode: ["values", "updates"],
      onRunCreated: (meta) => (created = meta),
    }),
  );
  assert.equal(created.thread_id, thread.thread_id);
  assert.deepEqual(parts.map((p) => p.event), ["metadata", "values", "updates", "values", "updates", "values"]);
  assert.equal(parts[0].data.run_id, created.run_id);
  assert.deepEqual(parts.at(-1).data, { log: ["a", "b"], n: 1 });
});

test("wait, interrupt and resume", async () => {
  const thread = await client.threads.create();
  const asked = await client.runs.wait(thread.thread_id, "hitl", { input: { n: 0 } });
  assert.equal(asked.__interrupt__[0].value, "approve?");
  assert.equal((await client.threads.get(thread.thread_id)).status, "interrupted");
  const done = await client.runs.wait(thread.thread_id, "hitl", { command: { resume: "yes" } });
  assert.deepEqual(done.log, ["a", "answer:yes"]);
});

test("a failed run's error carries error and message", async () => {
  const body = await client.runs.wait(null, "err", { input: {}, raiseError: false });
  assert.equal(body.__error__.error, "ExpressionError");
  assert.match(body.__error__.message, /division by zero/i);
});

test("joinStream replays from Last-Event-ID -1 with modes as one JSON array", async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "simple", {
    input: { n: 0 },
    streamMode: ["values", "updates"],
    streamResumable: true,
  });
  await client.runs.join(thread.thread_id, run.run_id);
  const all = await collect(client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1" }));
  assert.deepEqual(all.map((p) => p.event), ["metadata", "values", "updates", "values", "updates", "values"]);
  const updates = await collect(
    client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: "-1", streamMode: ["updates"] }),
  );
  assert.deepEqual(updates.map((p) => p.event), ["metadata", "updates", "updates"]);
});

test("store: a missing item is null, a stored one round-trips", async () => {
  assert.equal(await client.store.getItem(["js", "u1"], "nothing"), null);
  await client.store.putItem(["js", "u1"], "k", { text: "hello" });
  const item = await client.store.getItem(["js", "u1"], "k");
  assert.deepEqual(item.value, { text: "hello" });
  await client.store.deleteItem(["js", "u1"], "k");
});

test("cancel a background run and delete it", async () => {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, "slow", { input: { seconds: 5 } });
  for (let i = 0; i < 100 && (await client.runs.get(thread.thread_id, run.run_id)).status !== "running"; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  await client.runs.cancel(thread.thread_id, run.run_id, true);
  assert.equal((await client.runs.get(thread.thread_id, run.run_id)).status, "interrupted");
  await client.runs.delete(thread.thread_id, run.run_id);
  await assert.rejects(client.runs.get(thread.thread_id, run.run_id));
});
