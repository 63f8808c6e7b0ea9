#!/usr/bin/env node
// AW-1 (shared/WORKLOAD.md) run through Mastra's own storage adapters:
//   --store pg      @mastra/pg      PostgresStore  (PostgreSQL)
//   --store libsql  @mastra/libsql  LibSQLStore    (SQLite file through libSQL)
// Same data, steps, order, warm-ups and statistics as composite_store/benchmark.py.
//
//   node bench/peers/aw1.mjs --store pg --url postgresql://postgres@127.0.0.1:5432/<db> [--scale 1] [--json]
//   node bench/peers/aw1.mjs --store libsql --url file:/tmp/aw1.db [--scale 1] [--json]
//
// The database must be fresh and empty; the script calls the store's init() and closes the
// store (its pool / client) at the end.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const HERE = dirname(fileURLToPath(import.meta.url));
const START_MS = Date.UTC(2026, 0, 1); // fixed start, as in composite_store/benchmark.py
const WARMUP = 20;
const MESSAGE_BATCH = 20;
const SPAN_BATCH = 500;
const SPANS_PER_TRACE = 10;

// -- command line ----------------------------------------------------------------------------
function parseArgs(argv) {
  const opts = { store: null, url: null, scale: 1, json: false, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const eq = a.indexOf('=');
      if (eq !== -1) return a.slice(eq + 1);
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--json') opts.json = true;
    else if (a.startsWith('--store')) opts.store = value();
    else if (a.startsWith('--url')) opts.url = value();
    else if (a.startsWith('--scale')) opts.scale = Number(value());
    else if (a.startsWith('--seed')) opts.seed = Number(value());
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!['pg', 'libsql'].includes(opts.store)) usage('--store must be pg or libsql');
  if (!opts.url) usage('--url is required');
  if (!(opts.scale > 0)) usage('--scale must be a positive number');
  return opts;
}

function usage(error) {
  const text =
    'usage: node aw1.mjs --store pg|libsql --url URL [--scale 1] [--seed 1] [--json]\n' +
    '  pg:     --url postgresql://postgres@127.0.0.1:5432/<fresh db>\n' +
    '  libsql: --url file:/tmp/aw1.db (a file that does not exist yet)\n';
  process.stderr.write((error ? `error: ${error}\n` : '') + text);
  process.exit(error ? 2 : 0);
}

function sizesFor(scale) {
  const n = (full, min) => Math.max(Math.floor(full * scale), min);
  return {
    messages: n(10_000, MESSAGE_BATCH), // M1, in calls of 20
    m2Calls: n(300, 20),
    m3Calls: n(300, 20),
    runs: n(1_000, 1), // W1
    loads: n(1_000, 20), // W2
    traces: n(5_000, 1), // O1, 10 spans each, in batches of 500 spans
    traceReads: n(300, 20), // O2
  };
}

// -- deterministic data ----------------------------------------------------------------------
function rngFrom(seed) {
  // mulberry32: a small seeded PRNG so every run writes the same data
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const hex = (digits) => {
    const codes = new Array(digits);
    for (let i = 0; i < digits; i++) codes[i] = '0123456789abcdef'.charCodeAt(int(16));
    return String.fromCharCode(...codes);
  };
  return { next, int, hex, choice: (xs) => xs[int(xs.length)] };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ';
function text(rng, n) {
  // one flat string (not a rope of n one-char concatenations, which bloats the heap)
  const codes = new Array(n);
  for (let i = 0; i < n; i++) codes[i] = LETTERS.charCodeAt(rng.int(LETTERS.length));
  return String.fromCharCode(...codes);
}

function uuid4(rng) {
  const h = rng.hex(32).split('');
  h[12] = '4';
  h[16] = '89ab'[rng.int(4)];
  const s = h.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

/** Messages as Mastra stores them (MastraDBMessage, content format 2 = "v2"). */
function makeMessages(threadId, count, rng, firstMs = 0) {
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push({
      id: uuid4(rng),
      threadId,
      resourceId: 'user-1',
      role: i % 2 === 0 ? 'user' : 'assistant',
      type: 'v2',
      content: { format: 2, parts: [{ type: 'text', text: text(rng, 360) }] },
      createdAt: new Date(START_MS + firstMs + i), // strictly increasing by 1 ms
    });
  }
  return out;
}

/** About 10 KB: 40 steps of 200 chars of output. */
function makeSnapshot(rng) {
  const context = {};
  for (let i = 0; i < 40; i++) {
    context[`step-${i}`] = { status: 'success', output: { text: text(rng, 200) } };
  }
  return { status: 'running', context, activePaths: [0, 1, 2] };
}

/** 10 spans a trace: a root and nine children (Mastra's span record fields). */
function makeSpans(traces, rng, first = 0) {
  const rows = [];
  for (let t = first; t < first + traces; t++) {
    const traceId = rng.hex(32);
    const root = rng.hex(16);
    const startedMs = START_MS + t;
    for (let i = 0; i < SPANS_PER_TRACE; i++) {
      rows.push({
        traceId,
        spanId: i === 0 ? root : rng.hex(16),
        parentSpanId: i === 0 ? null : root,
        name: `llm-call-${i}`,
        spanType: 'model_generation',
        isEvent: false,
        // started/ended: the same microsecond offsets as the Python bench, in ms resolution
        startedAt: new Date(startedMs),
        endedAt: new Date(startedMs + 1),
        attributes: { model: 'gpt-x', tokens: 123 },
        input: text(rng, 200),
        output: text(rng, 200),
      });
    }
  }
  return rows;
}

// -- measuring -------------------------------------------------------------------------------
/** Runs the calls one after the other; `check` (not timed) validates each result. */
async function timed(calls, check) {
  const durations = [];
  for (const call of calls) {
    const started = performance.now();
    const result = await call();
    durations.push(performance.now() - started);
    if (check) check(result);
  }
  return durations;
}

function latency(durations) {
  const xs = [...durations].sort((a, b) => a - b);
  const mid = xs.length >> 1;
  const p50 = xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
  const p95 = xs[Math.min(xs.length - 1, Math.round(0.95 * (xs.length - 1)))];
  const r = (v) => Math.round(v * 10_000) / 10_000;
  return { p50_ms: r(p50), p95_ms: r(p95) };
}

function chunks(xs, size) {
  const out = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

function fail(step, message) {
  throw new Error(`${step}: ${message}`);
}

// -- peak RSS --------------------------------------------------------------------------------
function vmHwmMb() {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

let sampledPeak = 0;
const sampleRss = () => {
  sampledPeak = Math.max(sampledPeak, process.memoryUsage.rss());
};

// -- versions --------------------------------------------------------------------------------
function versionOf(name) {
  try {
    return JSON.parse(readFileSync(join(HERE, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

// -- the run ---------------------------------------------------------------------------------
async function openStore(opts) {
  if (opts.store === 'pg') {
    const { PostgresStore } = await import('@mastra/pg');
    return {
      system: 'mastra-pg',
      backend: 'postgresql',
      packages: ['@mastra/pg', '@mastra/core', 'pg'],
      store: new PostgresStore({ id: 'aw1-pg', connectionString: opts.url }),
    };
  }
  const { LibSQLStore } = await import('@mastra/libsql');
  return {
    system: 'mastra-libsql',
    backend: 'sqlite',
    packages: ['@mastra/libsql', '@mastra/core', '@libsql/client'],
    store: new LibSQLStore({ id: 'aw1-libsql', url: opts.url }),
  };
}

async function run(opts) {
  const sizes = sizesFor(opts.scale);
  const rng = rngFrom(opts.seed);
  const opened = await openStore(opts);
  const { store } = opened;
  const result = {
    system: opened.system,
    backend: opened.backend,
    versions: Object.fromEntries(opened.packages.map((p) => [p, versionOf(p)])),
    node: process.version,
    scale: opts.scale,
    peak_rss_mb: 0,
    steps: {},
  };
  const missing = {};
  const wall = performance.now();
  try {
    await store.init();
    const memory = await store.getStore('memory');
    const workflows = await store.getStore('workflows');
    const observability = await store.getStore('observability');

    // ---- M1 save_messages: MemoryStorage.saveMessages({ messages }) ----------------------
    const threadId = `aw1-${rng.hex(8)}`;
    const warmThread = `${threadId}-warm`;
    const now = new Date();
    for (const id of [threadId, warmThread]) {
      await memory.saveThread({
        thread: { id, resourceId: 'user-1', title: 'aw1', createdAt: now, updatedAt: now, metadata: {} },
      });
    }
    const data = makeMessages(threadId, sizes.messages, rng);
    const warm = makeMessages(warmThread, WARMUP * MESSAGE_BATCH, rng);
    for (const batch of chunks(warm, MESSAGE_BATCH)) await memory.saveMessages({ messages: batch });
    const batches = chunks(data, MESSAGE_BATCH);
    let started = performance.now();
    for (const batch of batches) await memory.saveMessages({ messages: batch });
    let elapsed = (performance.now() - started) / 1000;
    result.steps.M1 = { messages_per_s: Math.round((data.length / elapsed) * 10) / 10 };

    // ---- M2 newest page: listMessages, 40 a page, createdAt DESC, no total ------------------
    // includeTotal: false is what Mastra's own agent memory passes for last-N reads, and
    // matches the Python bench's M2/M3 (has_more, no total).
    const newestIds = data.slice(-40).reverse().map((m) => m.id);
    const newestPage = () =>
      memory.listMessages({
        threadId,
        page: 0,
        perPage: 40,
        orderBy: { field: 'createdAt', direction: 'DESC' },
        includeTotal: false,
      });
    const checkNewest = (r) => {
      if (r.messages.length !== 40) fail('M2', `expected 40 messages, got ${r.messages.length}`);
      // Mastra returns the page in the requested order
      const got = r.messages.map((m) => m.id);
      if (got.join() !== newestIds.join()) fail('M2', 'page is not the 40 newest, newest first');
    };
    await timed(Array(WARMUP).fill(newestPage), checkNewest);
    result.steps.M2 = latency(await timed(Array(sizes.m2Calls).fill(newestPage), checkNewest));

    // ---- M3 page + include context: include [{ id, withPreviousMessages, withNextMessages }] -
    const index = new Map(data.map((m, i) => [m.id, i]));
    const anchors = Array.from({ length: WARMUP + sizes.m3Calls }, () => rng.choice(data).id);
    const contextCall = (anchor) => async () => {
      const r = await memory.listMessages({
        threadId,
        page: 0,
        perPage: 10,
        orderBy: { field: 'createdAt', direction: 'DESC' },
        include: [{ id: anchor, threadId, withPreviousMessages: 2, withNextMessages: 2 }],
        includeTotal: false,
      });
      return { r, anchor };
    };
    const checkContext = ({ r, anchor }) => {
      const got = new Set(r.messages.map((m) => m.id));
      const i = index.get(anchor);
      for (let j = Math.max(0, i - 2); j <= Math.min(data.length - 1, i + 2); j++) {
        if (!got.has(data[j].id)) fail('M3', `include window of ${anchor} misses message ${j - i}`);
      }
      for (const id of newestIds.slice(0, 10)) if (!got.has(id)) fail('M3', 'newest 10 missing');
    };
    const m3 = anchors.map(contextCall);
    await timed(m3.slice(0, WARMUP), checkContext);
    result.steps.M3 = latency(await timed(m3.slice(WARMUP), checkContext));

    // ---- W1 persistWorkflowSnapshot, W2 loadWorkflowSnapshot -------------------------------
    const workflowName = `aw1-flow-${rng.hex(6)}`;
    const snapshot = makeSnapshot(rng);
    const persist = (runId) => () =>
      workflows.persistWorkflowSnapshot({ workflowName, runId, resourceId: 'user-1', snapshot });
    await timed(Array.from({ length: WARMUP }, (_, i) => persist(`warm-${i}`)));
    result.steps.W1 = latency(
      await timed(Array.from({ length: sizes.runs }, (_, i) => persist(`run-${i}`))),
    );
    const load = (runId) => () => workflows.loadWorkflowSnapshot({ workflowName, runId });
    const checkLoad = (s) => {
      if (!s || s.status !== 'running' || Object.keys(s.context ?? {}).length !== 40) {
        fail('W2', 'snapshot did not load back');
      }
    };
    const loads = Array.from({ length: WARMUP + sizes.loads }, () =>
      load(`run-${rng.int(sizes.runs)}`),
    );
    await timed(loads.slice(0, WARMUP), checkLoad);
    result.steps.W2 = latency(await timed(loads.slice(WARMUP), checkLoad));

    // ---- O1 batchCreateSpans({ records }), O2 getTrace({ traceId }) -------------------------
    if (!observability || typeof observability.batchCreateSpans !== 'function') {
      missing.O1 = 'the installed store has no observability domain with batchCreateSpans';
      missing.O2 = 'no spans were written (O1 missing)';
    } else {
      await observability.batchCreateSpans({ records: makeSpans(WARMUP, rng) });
      const rows = makeSpans(sizes.traces, rng, WARMUP);
      const spanBatches = chunks(rows, SPAN_BATCH);
      started = performance.now();
      for (const records of spanBatches) await observability.batchCreateSpans({ records });
      elapsed = (performance.now() - started) / 1000;
      result.steps.O1 = { spans_per_s: Math.round((rows.length / elapsed) * 10) / 10 };

      if (typeof observability.getTrace !== 'function') {
        missing.O2 = 'the installed observability store has no getTrace';
      } else {
        const traceIds = rows.filter((_, i) => i % SPANS_PER_TRACE === 0).map((r) => r.traceId);
        const reads = Array.from({ length: WARMUP + sizes.traceReads }, () => {
          const traceId = rng.choice(traceIds);
          return () => observability.getTrace({ traceId });
        });
        const checkTrace = (t) => {
          if (!t || t.spans.length !== SPANS_PER_TRACE) fail('O2', 'trace did not read back whole');
        };
        await timed(reads.slice(0, WARMUP), checkTrace);
        result.steps.O2 = latency(await timed(reads.slice(WARMUP), checkTrace));
      }
    }
  } finally {
    await store.close();
  }
  result.wall_s = Math.round((performance.now() - wall) / 100) / 10;
  if (Object.keys(missing).length) result.missing = missing;
  sampleRss();
  result.peak_rss_mb = Math.round(Math.max(vmHwmMb(), sampledPeak / 2 ** 20) * 10) / 10;
  return result;
}

function table(r) {
  const lines = [
    `AW-1 through ${r.system} (${r.backend}), scale ${r.scale}, node ${r.node}`,
    `versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    '',
    `${'step'.padEnd(5)} ${'what'.padEnd(34)} figure`,
  ];
  const what = {
    M1: 'saveMessages, 20 a call',
    M2: 'listMessages newest 40',
    M3: 'listMessages 10 + include(2, 2)',
    W1: 'persistWorkflowSnapshot',
    W2: 'loadWorkflowSnapshot',
    O1: 'batchCreateSpans, 500 a call',
    O2: 'getTrace (10 spans)',
  };
  for (const step of ['M1', 'M2', 'M3', 'W1', 'W2', 'O1', 'O2']) {
    const f = r.steps[step];
    let figure;
    if (!f) figure = `missing: ${r.missing?.[step] ?? 'not run'}`;
    else if ('messages_per_s' in f) figure = `${f.messages_per_s.toFixed(0)} messages/s`;
    else if ('spans_per_s' in f) figure = `${f.spans_per_s.toFixed(0)} spans/s`;
    else figure = `p50 ${f.p50_ms.toFixed(3)} ms   p95 ${f.p95_ms.toFixed(3)} ms`;
    lines.push(`${step.padEnd(5)} ${what[step].padEnd(34)} ${figure}`);
  }
  lines.push('', `peak RSS ${r.peak_rss_mb} MB, wall ${r.wall_s} s`);
  return lines.join('\n') + '\n';
}

const opts = parseArgs(process.argv.slice(2));
// With --json, stdout carries exactly one line: anything else (library logs) goes to stderr.
const writeOut = process.stdout.write.bind(process.stdout);
if (opts.json) process.stdout.write = process.stderr.write.bind(process.stderr);
const sampler = setInterval(sampleRss, 50);
sampler.unref();
try {
  const result = await run(opts);
  clearInterval(sampler);
  writeOut(opts.json ? JSON.stringify(result) + '\n' : table(result));
} catch (error) {
  clearInterval(sampler);
  process.stderr.write(`aw1: ${error?.stack ?? error}\n`);
  if (error?.cause) process.stderr.write(`cause: ${error.cause?.stack ?? error.cause}\n`);
  process.exitCode = 1;
}
