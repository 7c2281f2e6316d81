// BrainOps console: a page of `brainops serve`, built only on the server's public API
// (docs/server.md) and the thread event stream (`POST /threads/{id}/stream/events`, read
// with fetch so the API key travels in a header). No framework: DOM helpers, a hash
// router, and dagre for graph layout (vendor/, see LICENSES.txt).
'use strict';

// ------------------------------------------------------------------ helpers

const KEY_STORE = 'brainops.console.key';
const main = document.getElementById('main');
const notice = document.getElementById('notice');

/** Builds an element: attributes (on* are listeners), then children (strings are text). */
function el(tag, attrs, ...children) {
  const svg = ['svg', 'g', 'rect', 'path', 'text', 'title', 'defs', 'marker', 'polygon'].includes(tag);
  const node = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const pretty = (v) => JSON.stringify(v, null, 2);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');
const badge = (status) => el('span', { class: `badge status-${status}` }, status || 'unknown');
// Ids are UUIDv7: their first digits are a timestamp, so the end tells them apart.
const short = (id) => (id ? `…${id.slice(-12)}` : '');
const money = (usd) => (usd === null || usd === undefined ? 'n/a' : `$${Number(usd).toFixed(4)}`);

/** Replaces the page's content; lists are flattened and empty parts skipped. */
function show(...children) {
  main.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function say(message, kind) {
  notice.className = kind || '';
  notice.textContent = message || '';
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers() {
  const h = { 'content-type': 'application/json' };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) h['x-api-key'] = key;
  return h;
}

/** Calls the API; answers the parsed JSON (and the response, for paging headers). */
async function api(method, path, body) {
  const r = await fetch(path, {
    method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) {
    askKey();
    throw new ApiError(401, 'This server wants an API key: enter it with the “API key” button.');
  }
  const text = await r.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (!r.ok) {
    const detail = data && data.detail ? data.detail : text;
    throw new ApiError(r.status, `${method} ${path} failed (${r.status}): ${detail}`);
  }
  return { data, response: r };
}
const get = async (path) => (await api('GET', path)).data;
const post = async (path, body) => (await api('POST', path, body || {})).data;

function askKey() {
  const dialog = document.getElementById('key-dialog');
  if (!dialog.open) dialog.showModal();
}
document.getElementById('key-button').addEventListener('click', askKey);
document.getElementById('key-dialog').addEventListener('close', (e) => {
  const dialog = e.target;
  const input = document.getElementById('key-input');
  if (dialog.returnValue === 'save' && input.value) {
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    input.value = '';
    route();
  }
});

/** Parses a form field: JSON when it is JSON, else the text itself. */
function loose(text) {
  const t = text.trim();
  if (t === '') return undefined;
  try { return JSON.parse(t); } catch { return t; }
}

// ------------------------------------------------------------------ router

let leaving = []; // what the current page stops when another opens (streams, timers)

const pages = [
  [/^#\/graphs\/(.+)$/, (m) => graphPage(decodeURIComponent(m[1]))],
  [/^#\/graphs$/, () => graphsPage()],
  [/^#\/threads\/([0-9a-f-]+)$/, (m) => threadPage(m[1])],
  [/^#\/threads$/, () => threadsPage()],
  [/^#\/runs$/, () => runsPage()],
  [/^#\/memory$/, () => memoryPage()],
  [/^#\/agents\/(.+)$/, (m) => agentPage(decodeURIComponent(m[1]))],
  [/^#\/agents$/, () => agentsPage()],
];

async function route() {
  const hash = location.hash.startsWith('#/') ? location.hash : '#/graphs';
  for (const stop of leaving.splice(0)) stop();
  say('');
  for (const a of document.querySelectorAll('.top nav a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const found = pages.find(([re]) => re.test(hash));
  show(el('p', {}, 'Loading…'));
  try {
    if (found) await found[1](hash.match(found[0]));
    else show(el('h1', {}, 'Not found'), el('p', {}, `No page ${hash}.`));
  } catch (e) {
    show(el('h1', {}, 'Something went wrong'), el('p', {}, e.message));
  }
  // After a move within the console, reading starts at the new content (the first page
  // load leaves focus at the top, where the skip link is).
  if (moved) main.focus({ preventScroll: true });
  moved = true;
}
let moved = false;

window.addEventListener('hashchange', (e) => {
  if (location.hash.startsWith('#/') || location.hash === '') route();
  else e.preventDefault();
});
window.addEventListener('unhandledrejection', (e) => say(String(e.reason && e.reason.message || e.reason)));

// ------------------------------------------------------------------ graph drawing

const WIRE_END = { __start__: 'START', __end__: 'END' };

/** Draws an assistant's graph (GET /assistants/{id}/graph) as SVG, laid out by dagre. */
function drawGraph(graph) {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: 'TB', nodesep: 28, ranksep: 44, edgesep: 12, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes) {
    const name = WIRE_END[n.id] || n.id;
    const meta = n.metadata || {};
    const sub = meta.for_each ? `for_each ${meta.for_each}`
      : meta.agent ? `agent ${meta.agent}`
      : meta.subgraph ? `subgraph ${meta.subgraph}`
      : meta.kind || '';
    const chars = Math.max(name.length, Math.min(sub.length, 34) * 0.85);
    if (name.includes(':')) meta.inside = name.slice(0, name.lastIndexOf(':'));
    g.setNode(n.id, { name, sub: sub.length > 34 ? `${sub.slice(0, 33)}…` : sub, fullSub: sub, meta,
      width: Math.max(80, chars * 7.6 + 26), height: sub ? 46 : 34 });
  }
  graph.edges.forEach((e, i) => {
    const label = e.conditional && e.data && e.data !== 'default' ? String(e.data) : (e.data === 'default' ? 'default' : '');
    const short = label.length > 28 ? `${label.slice(0, 27)}…` : label;
    g.setEdge(e.source, e.target, { label: short, full: label, conditional: !!e.conditional, join: !!e.join,
      width: short ? short.length * 6 + 8 : 0, height: short ? 16 : 0, labelpos: 'c' }, `e${i}`);
  });
  dagre.layout(g);
  const { width, height } = g.graph();
  const svg = el('svg', { viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}`, width: Math.ceil(width),
    role: 'img', 'aria-label': `Graph with ${graph.nodes.length - 2} nodes` });
  svg.append(el('defs', {}, el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#5f6b7a' }))));
  for (const id of g.edges()) {
    const e = g.edge(id);
    const d = e.points.map((p, i) => `${i ? 'L' : 'M'} ${p.x.toFixed(1)} ${p.y.toFixed(1)}`).join(' ');
    const group = el('g', { class: `edge${e.conditional ? ' conditional' : ''}${e.join ? ' join' : ''}`,
      'data-from': id.v, 'data-to': id.w },
      el('title', {}, `${id.v} → ${id.w}${e.full ? ` when ${e.full}` : ''}${e.join ? ' (join: waits for every source)' : ''}`),
      el('path', { d, 'marker-end': 'url(#arrow)' }));
    if (e.label) {
      group.append(el('rect', { x: e.x - e.width / 2, y: e.y - 9, width: e.width, height: 16, rx: 3 }),
        el('text', { x: e.x, y: e.y + 3 }, e.label));
    }
    svg.append(group);
  }
  for (const id of g.nodes()) {
    const n = g.node(id);
    const terminal = id === '__start__' || id === '__end__';
    const cls = ['node', terminal && 'terminal', n.meta.subgraph && 'subgraph', n.meta.inside && 'inner', n.meta.kind === 'ask' && 'ask']
      .filter(Boolean).join(' ');
    const group = el('g', { class: cls, 'data-node': id, id: `node-${id}` },
      el('title', {}, `${n.name}${n.fullSub ? ` (${n.fullSub})` : ''}`),
      el('rect', { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, rx: terminal ? n.height / 2 : 7 }),
      el('text', { x: n.x, y: n.y + (n.sub ? -3 : 4) }, n.name));
    if (n.sub) group.append(el('text', { class: 'sub', x: n.x, y: n.y + 13 }, n.sub));
    svg.append(group);
  }
  return el('div', { class: 'graph' }, svg);
}

/** Marks a node; a subgraph drawn from inside (`xray`) marks every node within it. */
function markNode(container, name, state) {
  const node = container.querySelector(`[data-node="${CSS.escape(name)}"]`);
  const marked = node ? [node] : container.querySelectorAll(`[data-node^="${CSS.escape(`${name}:`)}"]`);
  for (const n of marked) {
    n.classList.remove('running', 'done', 'waiting', 'failed');
    if (state) n.classList.add(state);
    n.setAttribute('aria-label', `${n.dataset.node}${state ? `: ${state}` : ''}`);
  }
}

function clearMarks(container) {
  for (const n of container.querySelectorAll('.node')) n.classList.remove('running', 'done', 'waiting', 'failed');
}

// ------------------------------------------------------------------ graphs

async function graphsPage() {
  const list = await post('/assistants/search', { limit: 100 });
  show(
    el('h1', {}, 'Graphs'),
    el('p', { class: 'muted' }, 'Every graph this server runs. Open one to see its drawing and start a run.'),
    el('div', { class: 'cards' }, list.map((a) => el('section', { class: 'card' },
      el('h2', {}, el('a', { href: `#/graphs/${encodeURIComponent(a.graph_id)}` }, a.graph_id)),
      el('p', {}, a.description || '')))));
}

/** A form field for one input channel, by its JSON schema. */
function channelField(name, schema, required) {
  const id = `in-${name}`;
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  let input;
  if (type === 'boolean') {
    input = el('select', { id, name }, el('option', { value: '' }, '(not set)'), el('option', { value: 'true' }, 'true'), el('option', { value: 'false' }, 'false'));
  } else if (type === 'integer' || type === 'number') {
    input = el('input', { id, name, type: 'number', step: type === 'integer' ? '1' : 'any' });
  } else if (type === 'string') {
    input = el('input', { id, name, type: 'text' });
  } else {
    const skeleton = type === 'array' ? [] : Object.fromEntries((schema.required || []).map((k) => [k, null]));
    input = el('textarea', { id, name, rows: type === 'array' ? 2 : Math.min(10, 2 + (schema.required || []).length) });
    input.value = type === 'array' ? '' : pretty(skeleton);
    input.dataset.json = '1';
    input.dataset.initial = input.value;
  }
  input.dataset.type = type || 'any';
  const help = `${type || 'any'}${schema.description ? ` · ${schema.description}` : ''}${required ? ' · required' : ''}`;
  return el('div', { class: 'field' },
    el('label', { for: id }, name, ' ', el('span', { class: 'hint' }, help)),
    input, el('div', { class: 'field-error', id: `${id}-error`, 'aria-live': 'polite' }));
}

/** Reads the run form into an input object; marks and names the fields that are wrong. */
function readInput(form) {
  const input = {};
  let ok = true;
  for (const f of form.querySelectorAll('input, textarea, select')) {
    const error = form.querySelector(`#${CSS.escape(f.id)}-error`);
    f.removeAttribute('aria-invalid');
    if (error) error.textContent = '';
    const raw = f.value.trim();
    // Empty, or a JSON skeleton left as it was: not given.
    if (raw === '' || (f.dataset.initial !== undefined && f.value === f.dataset.initial)) continue;
    let value;
    try {
      if (f.dataset.json) value = JSON.parse(raw);
      else if (f.dataset.type === 'integer' || f.dataset.type === 'number') value = Number(raw);
      else if (f.dataset.type === 'boolean') value = raw === 'true';
      else value = raw;
    } catch (e) {
      ok = false;
      f.setAttribute('aria-invalid', 'true');
      if (error) error.textContent = `${f.name}: not valid JSON (${e.message}). Fix it, or clear the field.`;
      continue;
    }
    input[f.name] = value;
  }
  return ok ? input : null;
}

async function graphPage(id) {
  const [assistant, graph, schemas] = await Promise.all([
    get(`/assistants/${encodeURIComponent(id)}`),
    get(`/assistants/${encodeURIComponent(id)}/graph?xray=true`),
    get(`/assistants/${encodeURIComponent(id)}/schemas`),
  ]);
  const input = schemas.input_schema || { properties: {} };
  const required = new Set(input.required || []);
  const names = Object.keys(input.properties || {});
  const form = el('form', { id: 'run-form', 'aria-label': 'Start a run' },
    names.map((n) => channelField(n, input.properties[n], required.has(n))),
    el('div', { class: 'row' }, el('button', { type: 'submit' }, 'Start run')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = readInput(form);
    if (!values) { say('Some fields need fixing before the run can start.'); return; }
    const thread = await post('/threads', { metadata: { graph_id: assistant.graph_id, started_from: 'console' } });
    pendingStart = { thread_id: thread.thread_id, graph_id: assistant.graph_id, input: values };
    location.hash = `#/threads/${thread.thread_id}`;
  });
  const kinds = graph.nodes.filter((n) => n.metadata).map((n) => n.metadata);
  show(
    el('h1', {}, assistant.graph_id),
    el('p', {}, assistant.description || ''),
    el('div', { class: 'grid2' },
      el('section', { 'aria-labelledby': 'drawing-title' },
        el('h2', { id: 'drawing-title' }, 'Drawing'),
        drawGraph(graph),
        el('p', { class: 'legend' }, 'Solid: always. Dashed: chosen at run time (condition or goto). Purple dotted: a join, which waits for every source. Purple nodes named SUB:node: the inside of subgraph SUB. Dashed border: asks a person.'),
        el('p', { class: 'legend' }, `${kinds.length} nodes; ${kinds.filter((k) => k.for_each).length} map over lists (for_each), ${new Set(graph.nodes.filter((n) => n.id.includes(':')).map((n) => n.id.slice(0, n.id.lastIndexOf(':')))).size} subgraph(s), ${graph.edges.filter((e) => e.join).length} join edges.`)),
      el('section', { 'aria-labelledby': 'start-title' },
        el('h2', { id: 'start-title' }, 'Start a run'),
        el('p', { class: 'hint' }, `Input channels: ${names.join(', ') || 'none'}. Objects and lists are JSON.`),
        form)));
}

// ------------------------------------------------------------------ threads

const PAGE = 20;

async function threadsPage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  let offset = 0;
  const filter = el('input', { id: 'thread-filter', type: 'search', placeholder: 'graph_id=lead_intake' });
  const status = el('select', { id: 'thread-status' }, ['', 'idle', 'busy', 'interrupted', 'error'].map((s) => el('option', { value: s }, s || 'any')));
  filter.value = params.get('q') || '';
  const table = el('div', { class: 'scroll' });
  const pager = el('div', { class: 'pager' });
  let shown = '';
  async function load() {
    const metadata = {};
    for (const pair of filter.value.split(/\s+/).filter(Boolean)) {
      const [k, ...rest] = pair.split('=');
      metadata[k] = loose(rest.join('='));
    }
    const body = { limit: PAGE, offset, sort_by: 'created_at', sort_order: 'desc', metadata };
    if (status.value) body.status = status.value;
    const { data, response } = await api('POST', '/threads/search', body);
    const total = Number(response.headers.get('x-pagination-total') || data.length);
    // Redrawn only when something changed, so a refresh does not take the keyboard's place.
    const seen = JSON.stringify([data, total, offset]);
    if (seen === shown) return;
    shown = seen;
    table.replaceChildren(el('table', {},
      el('thead', {}, el('tr', {}, ['Thread', 'Status', 'Graph', 'Created', 'Updated', 'Metadata'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, data.map((t) => el('tr', {},
        el('td', {}, el('a', { href: `#/threads/${t.thread_id}` }, short(t.thread_id))),
        el('td', {}, badge(t.status)),
        el('td', {}, t.metadata && t.metadata.graph_id || ''),
        el('td', {}, when(t.created_at)),
        el('td', {}, when(t.updated_at)),
        el('td', {}, el('code', {}, JSON.stringify(t.metadata || {}))))))));
    if (!data.length) table.append(el('p', {}, 'No threads match.'));
    pager.replaceChildren(
      el('button', { type: 'button', class: 'quiet', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, 'Newer'),
      el('span', {}, `${total ? offset + 1 : 0}–${offset + data.length} of ${total}`),
      el('button', { type: 'button', class: 'quiet', disabled: offset + data.length >= total, onclick: () => { offset += PAGE; load(); } }, 'Older'));
  }
  const form = el('form', { class: 'row', role: 'search' },
    el('label', { for: 'thread-filter' }, 'Metadata'), filter,
    el('label', { for: 'thread-status' }, 'Status'), status,
    el('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => { e.preventDefault(); offset = 0; load(); });
  show(el('h1', {}, 'Threads'), el('p', { class: 'muted' }, 'Statuses refresh every 3 seconds.'), form, table, pager);
  await load();
  const timer = setInterval(() => load().catch((e) => say(e.message)), 3000);
  leaving.push(() => clearInterval(timer));
}

let pendingStart = null; // a run the graph form asked for, started once its thread's stream is open

const CHANNELS = ['lifecycle', 'input', 'tasks', 'updates', 'messages', 'tools', 'values', 'custom'];

/** Follows a thread's events (SSE over fetch); reconnects from the last seq it saw. */
function follow(threadId, onEvent, onOpen) {
  const control = new AbortController();
  let since = null;
  (async () => {
    while (!control.signal.aborted) {
      try {
        const body = { channels: CHANNELS };
        if (since !== null) body.since = since;
        const r = await fetch(`/threads/${threadId}/stream/events`, {
          method: 'POST', headers: headers(), body: JSON.stringify(body), signal: control.signal,
        });
        if (!r.ok) throw new ApiError(r.status, `the thread's event stream answered ${r.status}`);
        onOpen();
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, '\n');
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
            if (!data) continue;
            let frame;
            try { frame = JSON.parse(data); } catch { continue; }
            if (typeof frame.seq === 'number') since = frame.seq;
            onEvent(frame.method, frame.params && frame.params.data, frame);
          }
        }
      } catch (e) {
        if (control.signal.aborted) return;
        if (e.status === 401 || e.status === 404) { say(e.message); return; }
      }
      await new Promise((ok) => setTimeout(ok, 1000));
    }
  })();
  return () => control.abort();
}

async function threadPage(tid) {
  const thread = await get(`/threads/${tid}`);
  const assistantId = pendingStart && pendingStart.thread_id === tid
    ? pendingStart.graph_id : (thread.metadata && thread.metadata.graph_id) || null;
  const graph = assistantId ? await get(`/assistants/${encodeURIComponent(assistantId)}/graph?xray=true`) : null;
  const statusEl = el('span', { id: 'thread-status' }, badge(thread.status));
  const drawing = graph ? drawGraph(graph) : el('p', {}, 'This thread has not run a graph yet.');
  const timeline = el('ol', { class: 'timeline', id: 'timeline', 'aria-live': 'polite' });
  const usageEl = el('p', { class: 'usage', id: 'run-usage' }, 'No model calls yet.');
  const questionEl = el('section', { id: 'question', 'aria-live': 'assertive' });
  const errorEl = el('p', { id: 'thread-error', class: 'field-error', 'aria-live': 'polite' });
  const stateEl = el('pre', { id: 'state', tabindex: 0 });
  const history = el('section', { id: 'history', 'aria-labelledby': 'history-title' });
  const usage = { byNode: {}, total: { input: 0, output: 0, cost: null } };
  const entries = new Map(); // task id -> its timeline entry
  const steps = new Map(); // step -> its timeline item
  const latestOf = new Map(); // node -> its latest entry (where tokens and tools go)

  show(
    el('h1', {}, 'Thread ', el('code', {}, short(tid)), ' ', statusEl),
    el('p', { class: 'muted' }, `Graph ${assistantId || 'none yet'} · created ${when(thread.created_at)} · `, el('code', {}, tid)),
    errorEl,
    questionEl,
    el('div', { class: 'grid2' },
      el('section', { 'aria-labelledby': 'live-title' },
        el('h2', { id: 'live-title' }, 'Live'), drawing,
        el('p', { class: 'legend' }, 'Blue: running. Green: finished. Amber: waiting for a person. Red: failed.'),
        el('h2', {}, 'Usage and cost'), usageEl,
        el('h2', {}, 'Timeline'), timeline),
      el('section', { 'aria-labelledby': 'state-title' },
        el('h2', { id: 'state-title' }, 'State'), stateEl, history)));

  // The engine counts the first step as 1; checkpoints (as LangGraph's) call it step 0.
  function stepItem(engineStep) {
    const key = engineStep === undefined ? 'x' : engineStep - 1;
    if (!steps.has(key)) {
      const item = el('li', { 'data-step': key }, el('strong', {}, key === 'x' ? 'Step' : `Step ${key}`));
      steps.set(key, item);
      timeline.append(item);
    }
    return steps.get(key);
  }
  function showUsage() {
    const rows = Object.entries(usage.byNode).map(([n, u]) => `${n}: ${u.input} in / ${u.output} out tokens, ${money(u.cost)}`);
    usageEl.textContent = rows.length
      ? `This run: ${usage.total.input} in / ${usage.total.output} out tokens, ${money(usage.total.cost)}. ${rows.join('; ')}.`
      : 'No model calls yet.';
  }
  function entryFor(node) {
    const entry = latestOf.get(node);
    if (entry) return entry;
    const made = el('div', { class: 'task' }, el('strong', {}, node));
    stepItem(undefined).append(made);
    latestOf.set(node, made);
    return made;
  }

  async function refresh() {
    const [t, state] = await Promise.all([get(`/threads/${tid}`), get(`/threads/${tid}/state`).catch(() => null)]);
    statusEl.replaceChildren(badge(t.status));
    errorEl.textContent = t.status === 'error' && t.error
      ? `The last run failed: ${t.error.message || JSON.stringify(t.error)}` : '';
    if (state) {
      stateEl.textContent = pretty(state.values);
      // Amber is "waiting for a person": only the next nodes of a thread that asked.
      if (graph && t.status === 'interrupted') {
        for (const n of state.next || []) markNode(drawing, n, 'waiting');
      }
      showQuestion(state, t);
    }
    await showHistory();
  }

  let askedIds = '';
  function showQuestion(state, t) {
    const asks = (state.tasks || []).flatMap((task) => (task.interrupts || []).map((i) => ({ ...i, node: task.name })));
    if (t.status !== 'interrupted' || !asks.length) { questionEl.replaceChildren(); askedIds = ''; return; }
    // The same questions are already on the page: keep the form, and what is typed in it.
    const ids = asks.map((a) => a.id).join(' ');
    if (ids === askedIds && questionEl.querySelector('form')) return;
    askedIds = ids;
    const form = el('form', { class: 'question', 'aria-labelledby': 'question-title' },
      el('h2', { id: 'question-title' }, asks.length > 1 ? `${asks.length} questions are waiting` : 'A question is waiting'));
    asks.forEach((ask, i) => {
      const text = typeof ask.value === 'string' ? ask.value : pretty(ask.value);
      const id = `answer-${i}`;
      const field = el('input', { id, type: 'text', name: ask.id, required: true, autocomplete: 'off' });
      const options = typeof ask.value === 'string' ? [...ask.value.matchAll(/"([^"]{1,30})"/g)].map((m) => m[1]) : [];
      form.append(
        el('label', { for: id }, `${ask.node} asks: `, el('span', { class: 'q' }, text)),
        field,
        options.length ? el('div', { class: 'row' }, options.map((o) => el('button', { type: 'button', class: 'quiet', onclick: () => { field.value = o; } }, `Fill “${o}”`))) : null);
    });
    form.append(el('p', { class: 'hint' }, 'An answer that is JSON is sent as JSON; anything else as text.'),
      el('div', { class: 'row' }, el('button', { type: 'submit' }, 'Send answer')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const fields = [...form.querySelectorAll('input[type=text]')];
      const resume = fields.length === 1 ? loose(fields[0].value) : Object.fromEntries(fields.map((f) => [f.name, loose(f.value)]));
      form.querySelector('button[type=submit]').disabled = true;
      try {
        await post(`/threads/${tid}/runs`, { assistant_id: assistantId, command: { resume } });
        questionEl.replaceChildren(el('p', { class: 'muted' }, 'Answer sent; the run continues.'));
      } catch (err) {
        say(err.message);
        form.querySelector('button[type=submit]').disabled = false;
      }
    });
    questionEl.replaceChildren(form);
  }

  let picked = { a: null, b: null };
  async function showHistory() {
    const list = await post(`/threads/${tid}/history`, { limit: 100 }).catch(() => []);
    const view = el('div', { id: 'checkpoint-view' });
    const rows = list.map((c, i) => el('tr', {},
      el('td', {}, c.metadata ? c.metadata.step : ''),
      el('td', {}, c.metadata ? c.metadata.source : ''),
      el('td', {}, (c.next || []).join(', ') || 'END'),
      el('td', {}, when(c.created_at)),
      el('td', {},
        el('input', { type: 'radio', name: 'cp-a', id: `cp-a-${i}`, 'aria-label': `Compare from step ${c.metadata && c.metadata.step}`, checked: picked.a === c.checkpoint_id, onchange: () => { picked.a = c.checkpoint_id; showDiff(list, view); } }),
        el('input', { type: 'radio', name: 'cp-b', id: `cp-b-${i}`, 'aria-label': `Compare to step ${c.metadata && c.metadata.step}`, checked: picked.b === c.checkpoint_id, onchange: () => { picked.b = c.checkpoint_id; showDiff(list, view); } })),
      el('td', {}, el('button', { type: 'button', class: 'quiet', 'data-checkpoint': c.checkpoint_id, onclick: () => showCheckpoint(c, view) }, 'Open'))));
    history.replaceChildren(
      el('h2', { id: 'history-title' }, 'Time travel'),
      el('p', { class: 'hint' }, 'Every step is a checkpoint. Open one to see its state, edit it and fork a new run from there; pick two (A and B) to compare them.'),
      el('div', { class: 'scroll' }, el('table', { id: 'checkpoints' },
        el('thead', {}, el('tr', {}, ['Step', 'Source', 'Next', 'Saved', 'A / B', ''].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, rows))),
      view);
  }

  function showDiff(list, view) {
    const a = list.find((c) => c.checkpoint_id === picked.a);
    const b = list.find((c) => c.checkpoint_id === picked.b);
    if (!a || !b) return;
    const keys = [...new Set([...Object.keys(a.values || {}), ...Object.keys(b.values || {})])].sort();
    const rows = keys.map((k) => {
      const x = (a.values || {})[k];
      const y = (b.values || {})[k];
      const kind = x === undefined ? 'added' : y === undefined ? 'removed' : JSON.stringify(x) === JSON.stringify(y) ? null : 'changed';
      return kind && el('tr', { class: `diff-${kind}`, 'data-channel': k }, el('th', { scope: 'row' }, k), el('td', {}, kind),
        el('td', {}, el('pre', {}, x === undefined ? '' : pretty(x))), el('td', {}, el('pre', {}, y === undefined ? '' : pretty(y))));
    }).filter(Boolean);
    view.replaceChildren(el('h3', {}, `Diff: step ${a.metadata.step} → step ${b.metadata.step}`),
      rows.length ? el('div', { class: 'scroll' }, el('table', { id: 'diff' },
        el('thead', {}, el('tr', {}, ['Channel', 'Change', 'A', 'B'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, rows))) : el('p', {}, 'The two checkpoints hold the same state.'));
  }

  function showCheckpoint(c, view) {
    const editor = el('textarea', { id: 'fork-values', rows: 14 });
    editor.value = pretty(c.values);
    const error = el('div', { class: 'field-error', 'aria-live': 'polite' });
    const fork = el('button', { type: 'button', id: 'fork-button' }, 'Fork a run from here');
    fork.addEventListener('click', async () => {
      let edited;
      try { edited = JSON.parse(editor.value); } catch (e) {
        editor.setAttribute('aria-invalid', 'true');
        error.textContent = `The state is not valid JSON (${e.message}).`;
        return;
      }
      editor.removeAttribute('aria-invalid');
      error.textContent = '';
      // Only what changed is written, each as an overwrite (a list channel's reducer would
      // otherwise append the edited list to the old one).
      const update = {};
      for (const [k, v] of Object.entries(edited)) {
        if (JSON.stringify(v) !== JSON.stringify((c.values || {})[k])) update[k] = { __overwrite__: v };
      }
      const body = { assistant_id: assistantId, checkpoint_id: c.checkpoint_id, input: null };
      if (Object.keys(update).length) body.command = { update };
      fork.disabled = true;
      try {
        await post(`/threads/${tid}/runs`, body);
        say(`Forked from step ${c.metadata.step}${Object.keys(update).length ? ` with ${Object.keys(update).join(', ')} changed` : ''}.`, 'info');
      } catch (e) { say(e.message); }
      fork.disabled = false;
    });
    view.replaceChildren(
      el('h3', {}, `Checkpoint at step ${c.metadata.step} (next: ${(c.next || []).join(', ') || 'END'})`),
      el('label', { for: 'fork-values' }, 'State at this checkpoint ', el('span', { class: 'hint' }, 'edit it to fork with changes')),
      editor, error, el('div', { class: 'row' }, fork));
    editor.focus();
  }

  function onEvent(method, data) {
    if (method === 'lifecycle') {
      if (data.event === 'running') {
        if (graph) clearMarks(drawing);
        Object.assign(usage, { byNode: {}, total: { input: 0, output: 0, cost: null } });
        showUsage();
        latestOf.clear();
        steps.clear();
        timeline.append(el('li', { class: 'run-mark' }, `Run started${data.run_id ? ` (${short(data.run_id)})` : ''}`));
        statusEl.replaceChildren(badge('busy'));
      } else {
        if (data.event === 'failed' && graph) {
          // The tasks still running when the run failed are where it went wrong.
          for (const n of drawing.querySelectorAll('.node.running')) {
            n.classList.replace('running', 'failed');
            n.setAttribute('aria-label', `${n.dataset.node}: failed`);
          }
          for (const entry of timeline.querySelectorAll('.task.running')) {
            entry.classList.remove('running');
            const label = entry.querySelector('.muted');
            if (label) label.textContent = 'failed';
          }
        }
        timeline.append(el('li', { class: `run-mark${data.event === 'failed' ? ' failed' : ''}` },
          `Run ${data.event}${data.error ? `: ${data.error}` : ''}`));
        refresh();
      }
    } else if (method === 'tasks') {
      if (data.result === undefined && !data.interrupts) {
        if (graph) markNode(drawing, data.name, 'running');
        const entry = el('div', { class: 'task running', 'data-task': data.id }, el('strong', {}, data.name), ' ', el('span', { class: 'muted' }, 'running…'));
        entries.set(data.id, entry);
        latestOf.set(data.name, entry);
        stepItem(data.step).append(entry);
      } else {
        const asked = data.interrupts && data.interrupts.length;
        if (graph) markNode(drawing, data.name, asked ? 'waiting' : 'done');
        const entry = entries.get(data.id) || entryFor(data.name);
        entry.classList.remove('running');
        if (asked) entry.classList.add('waiting');
        const label = entry.querySelector('.muted');
        if (label) label.textContent = asked ? 'waiting for an answer' : 'done';
        if (!asked && data.result !== undefined) {
          entry.append(el('details', {}, el('summary', {}, 'update'), el('pre', {}, pretty(data.result))));
        }
      }
    } else if (method === 'messages') {
      const node = data.metadata && data.metadata.langgraph_node;
      if (data.event === 'content-block-delta' && node) {
        const entry = entryFor(node);
        let tokens = entry.querySelector('.tokens');
        if (!tokens) { tokens = el('div', { class: 'tokens' }); entry.append(tokens); }
        tokens.textContent += (data.delta && data.delta.text) || '';
      } else if (data.event === 'message-finish' && data.usage) {
        const u = usage.byNode[node] || (usage.byNode[node] = { input: 0, output: 0, cost: null });
        u.input += data.usage.input_tokens || 0;
        u.output += data.usage.output_tokens || 0;
        usage.total.input += data.usage.input_tokens || 0;
        usage.total.output += data.usage.output_tokens || 0;
        if (typeof data.usage.cost_usd === 'number') {
          u.cost = (u.cost || 0) + data.usage.cost_usd;
          usage.total.cost = (usage.total.cost || 0) + data.usage.cost_usd;
        }
        showUsage();
        if (node) entryFor(node).append(el('div', { class: 'usage' }, `${data.model}: ${data.usage.input_tokens} in / ${data.usage.output_tokens} out, ${money(data.usage.cost_usd)}`));
      }
    } else if (method === 'tools') {
      const node = data.metadata && data.metadata.langgraph_node;
      const entry = entryFor(node || 'tools');
      const text = data.event === 'tool-started' ? `→ ${data.tool_name}(${JSON.stringify(data.input)})`
        : data.event === 'tool-finished' ? `← ${data.tool_name}: ${JSON.stringify(data.output)}`
        : `✗ ${data.tool_name}: ${data.message}`;
      entry.append(el('div', { class: 'tool' }, el('code', {}, text)));
    } else if (method === 'values') {
      stateEl.textContent = pretty(data);
    } else if (method === 'input.requested') {
      refresh();
    }
  }

  // The stream opens before a run the graph page asked for starts, so no event is missed.
  let started = false;
  leaving.push(follow(tid, onEvent, async () => {
    if (started || !pendingStart || pendingStart.thread_id !== tid) return;
    started = true;
    const { graph_id, input } = pendingStart;
    pendingStart = null;
    try { await post(`/threads/${tid}/runs`, { assistant_id: graph_id, input }); } catch (e) { say(e.message); }
  }));
  const usageRun = await get(`/threads/${tid}/runs?limit=1`).catch(() => []);
  if (usageRun.length && usageRun[0].usage) {
    const u = usageRun[0].usage;
    usage.total = { input: u.input_tokens, output: u.output_tokens, cost: u.cost_usd };
    for (const [n, x] of Object.entries(u.by_node || {})) usage.byNode[n] = { input: x.input_tokens, output: x.output_tokens, cost: x.cost_usd };
    showUsage();
  }
  await refresh();
}

// ------------------------------------------------------------------ runs and crons

async function runsPage() {
  const queue = el('div', { class: 'scroll', id: 'queue' });
  const recent = el('div', { class: 'scroll', id: 'recent-runs' });
  const crons = el('div', { class: 'scroll', id: 'crons' });
  let shown = '';
  const runRows = (runs, cancel) => el('table', {},
    el('thead', {}, el('tr', {}, ['Run', 'Thread', 'Graph', 'Status', 'Attempt', 'Worker', 'Created', 'Usage', ''].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, runs.map((r) => el('tr', {},
      el('td', {}, el('code', {}, short(r.run_id))),
      el('td', {}, el('a', { href: `#/threads/${r.thread_id}` }, short(r.thread_id))),
      el('td', {}, r.graph_id),
      el('td', {}, badge(r.status), r.error ? el('div', { class: 'field-error' }, r.error.message || '') : null),
      el('td', {}, r.attempt),
      el('td', {}, el('code', {}, r.worker || '')),
      el('td', {}, when(r.created_at)),
      el('td', { class: 'usage' }, r.usage ? `${r.usage.input_tokens}/${r.usage.output_tokens} tokens, ${money(r.usage.cost_usd)}` : ''),
      el('td', {}, cancel && ['pending', 'running'].includes(r.status)
        ? el('button', { type: 'button', class: 'danger', onclick: async () => {
          try { await post(`/threads/${r.thread_id}/runs/${r.run_id}/cancel`); say('Cancel sent.', 'info'); load(); } catch (e) { say(e.message); }
        } }, 'Cancel') : null)))));
  async function load() {
    const fetched = await Promise.all([
      post('/runs/search', { status: ['pending', 'running'], limit: 100 }),
      post('/runs/search', { limit: 25 }),
      post('/runs/crons/search', { limit: 100 }),
    ]);
    const seen = JSON.stringify(fetched);
    if (seen === shown) return;
    shown = seen;
    const [active, latest, cronList] = fetched;
    queue.replaceChildren(active.length ? runRows(active, true) : el('p', {}, 'Nothing queued or running.'));
    recent.replaceChildren(latest.length ? runRows(latest, true) : el('p', {}, 'No runs yet.'));
    crons.replaceChildren(cronList.length ? el('table', {},
      el('thead', {}, el('tr', {}, ['Cron', 'Graph', 'Schedule', 'Thread', 'Next run', ''].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, cronList.map((c) => el('tr', {},
        el('td', {}, el('code', {}, short(c.cron_id))),
        el('td', {}, c.assistant_id),
        el('td', {}, el('code', {}, c.schedule)),
        el('td', {}, c.thread_id ? el('a', { href: `#/threads/${c.thread_id}` }, short(c.thread_id)) : 'new each time'),
        el('td', {}, when(c.next_run_date)),
        el('td', {}, el('button', { type: 'button', class: 'danger', onclick: async () => {
          try { await api('DELETE', `/runs/crons/${c.cron_id}`); load(); } catch (e) { say(e.message); }
        } }, 'Delete')))))) : el('p', {}, 'No crons.'));
  }
  show(el('h1', {}, 'Runs and crons'),
    el('p', { class: 'muted' }, 'Refreshes every 2 seconds.'),
    el('h2', {}, 'Queue (pending and running)'), queue,
    el('h2', {}, 'Latest runs'), recent,
    el('h2', {}, 'Crons'), crons);
  await load();
  const timer = setInterval(() => load().catch((e) => say(e.message)), 2000);
  leaving.push(() => clearInterval(timer));
}

// ------------------------------------------------------------------ memory

async function memoryPage() {
  const { namespaces } = await post('/store/namespaces', { limit: 200 });
  const prefix = el('select', { id: 'memory-namespace' }, el('option', { value: '' }, '(all)'),
    namespaces.map((n) => el('option', { value: JSON.stringify(n) }, n.join(' / '))));
  const query = el('input', { id: 'memory-query', type: 'search', placeholder: 'leaking skylight after hail' });
  const results = el('div', { class: 'scroll', id: 'memory-results', 'aria-live': 'polite' });
  async function search() {
    const body = { namespace_prefix: prefix.value ? JSON.parse(prefix.value) : [], limit: 25 };
    if (query.value.trim()) body.query = query.value.trim();
    const { items } = await post('/store/items/search', body);
    results.replaceChildren(items.length ? el('table', {},
      el('thead', {}, el('tr', {}, ['Namespace', 'Key', 'Score', 'Similarity', 'Value', 'Updated'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, items.map((i) => el('tr', {},
        el('td', {}, i.namespace.join(' / ')),
        el('td', {}, el('code', {}, i.key)),
        el('td', { class: 'score' }, i.score === null || i.score === undefined ? '' : Number(i.score).toFixed(3)),
        el('td', { class: 'similarity' }, i.similarity === undefined ? '' : Number(i.similarity).toFixed(3)),
        el('td', {}, el('pre', {}, pretty(i.value))),
        el('td', {}, when(i.updated_at)))))) : el('p', {}, 'Nothing found.'));
  }
  const form = el('form', { class: 'row', role: 'search' },
    el('label', { for: 'memory-namespace' }, 'Namespace'), prefix,
    el('label', { for: 'memory-query' }, 'Query'), query,
    el('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => { e.preventDefault(); search().catch((err) => say(err.message)); });
  show(el('h1', {}, 'Memory'),
    el('p', { class: 'muted' }, `${namespaces.length} namespaces under your tenant. Search ranks by meaning and words; the score is the rank, the similarity is the cosine to the closest field.`),
    form, results);
  await search();
}

// ------------------------------------------------------------------ agents

async function agentsPage() {
  const { agents } = await get('/agents');
  const byCategory = new Map();
  for (const a of agents) {
    if (!byCategory.has(a.category)) byCategory.set(a.category, []);
    byCategory.get(a.category).push(a);
  }
  show(el('h1', {}, 'Agents'),
    el('p', { class: 'muted' }, `${agents.length} agents in ${byCategory.size} categories.`),
    [...byCategory.entries()].map(([category, list]) => el('section', { 'aria-labelledby': `cat-${category}` },
      el('h2', { id: `cat-${category}` }, `${category} (${list.length})`),
      el('ul', {}, list.map((a) => el('li', {},
        el('a', { href: `#/agents/${encodeURIComponent(a.name)}` }, a.name), ' — ', a.description))))));
}

async function agentPage(name) {
  const a = await get(`/agents/${encodeURIComponent(name)}`);
  show(el('h1', {}, a.name), el('p', {}, a.description),
    el('p', {}, 'Category ', el('strong', {}, a.category), ' · models ', el('code', {}, (a.models || []).join(' → ') || 'the server default'),
      a.temperature !== null && a.temperature !== undefined ? ` · temperature ${a.temperature}` : '', a.max_tokens ? ` · up to ${a.max_tokens} tokens` : ''),
    el('h2', {}, 'Instructions'), el('pre', { id: 'agent-instructions' }, a.instructions),
    el('h2', {}, 'Tools'), (a.tools || []).length ? el('ul', {}, a.tools.map((t) => el('li', {}, el('code', {}, t.name), t.description ? ` — ${t.description}` : '',
      t.parameters ? el('details', {}, el('summary', {}, 'arguments'), el('pre', {}, pretty(t.parameters))) : null))) : el('p', {}, 'None.'),
    (a.handoffs || []).length ? [el('h2', {}, 'Hands off to'), el('p', {}, a.handoffs.join(', '))] : null,
    el('h2', {}, 'Output schema'), el('pre', {}, a.output ? pretty(a.output) : 'free text'),
    a.memory ? [el('h2', {}, 'Memory'), el('pre', {}, pretty(a.memory))] : null,
    el('h2', {}, 'Worked example'), el('pre', {}, a.example ? pretty(a.example) : 'none'),
    el('p', { class: 'muted' }, a.file ? `Defined in ${a.file}` : ''),
    el('p', {}, el('a', { href: '#/agents' }, '← all agents')));
}

route();
