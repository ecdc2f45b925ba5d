#!/usr/bin/env node
// Fake Pinecone data plane (legacy vector-index API) for engram's tests. No framework, no
// network. Follows /work/shared/PROVIDER-CONTRACTS.md section 4.
//
// Run:   node tests/fakes/pinecone.mjs [--port N] [--dim 768] [--key KEY] [--exit-on-stdin-close]
//        prints "PORT=<n>" on stdout once listening (port 0 = a free one).
//
// Data plane (headers: Api-Key required, equal to --key (default "pc-test-key"); missing or
// wrong -> 401 with the bare body "Unauthorized"; X-Pinecone-Api-Version is recorded):
//   POST /vectors/upsert {vectors:[{id, values, metadata?}], namespace?} -> {upsertedCount}
//        at most 1000 vectors; values must have the index dimension and a non-zero value;
//        metadata values must not be null.
//   POST /query {namespace?, vector | id, topK, filter?, includeValues?, includeMetadata?}
//        -> {matches:[{id, score, values:[], metadata?}], namespace, usage:{readUnits}}
//        metric dotproduct, best first; topK 1..10000; filters: {field: value},
//        {field: {$eq|$ne|$in|$nin: ...}}, {$and: [...]}, {$or: [...]}.
//   POST /vectors/delete {ids? | deleteAll? | filter?, namespace?} -> {}
//        exactly one of ids (at most 1000), deleteAll, filter.
// Errors: gRPC-shaped {"code": n, "message": "...", "details": []} (400 -> 3, 404 -> 5,
// 429 -> 8, 500 -> 13, 503 -> 14).
// Namespace "" and "__default__" are the same (the default namespace).
//
// Control: POST /__script {"queue":[{status, retryAfter?, message?, match?}]} - the next
// data-plane request whose path contains `match` (or any) answers that error instead.
//   POST /__reset (clears data, queue and log); GET /__requests; GET /__health.
import http from 'node:http';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const PORT = Number(opt('--port', '0'));
const DIM = Number(opt('--dim', '768'));
const KEY = opt('--key', 'pc-test-key');

const GRPC = { 400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 412: 9, 422: 3, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4 };
let spaces = new Map(); // namespace -> Map(id -> {values, metadata})
let queue = [];
let log = [];

const ns = (n) => (n === undefined || n === null || n === '' ? '__default__' : String(n));
function space(n) {
  if (!spaces.has(ns(n))) spaces.set(ns(n), new Map());
  return spaces.get(ns(n));
}

function send(res, status, obj, headers = {}) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': typeof obj === 'string' ? 'text/plain' : 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}
const err = (res, status, message, headers) =>
  send(res, status, { code: GRPC[status] ?? 2, message, details: [] }, headers);

function matchOne(meta, field, cond) {
  const v = meta?.[field];
  if (cond === null || typeof cond !== 'object' || Array.isArray(cond)) return v === cond;
  for (const [op, arg] of Object.entries(cond)) {
    if (op === '$eq' && !(v === arg)) return false;
    if (op === '$ne' && !(v !== arg)) return false;
    if (op === '$in' && !(Array.isArray(arg) && arg.includes(v))) return false;
    if (op === '$nin' && !(Array.isArray(arg) && !arg.includes(v))) return false;
    if (!['$eq', '$ne', '$in', '$nin'].includes(op)) throw new Error(`unsupported operator ${op}`);
  }
  return true;
}
function matches(meta, filter) {
  if (!filter) return true;
  for (const [k, c] of Object.entries(filter)) {
    if (k === '$and') { if (!c.every((f) => matches(meta, f))) return false; continue; }
    if (k === '$or') { if (!c.some((f) => matches(meta, f))) return false; continue; }
    if (!matchOne(meta, k, c)) return false;
  }
  return true;
}

function checkValues(values) {
  if (!Array.isArray(values) || values.some((x) => typeof x !== 'number' || !Number.isFinite(x)))
    return 'Invalid request: values must be an array of numbers';
  if (values.length !== DIM)
    return `Vector dimension ${values.length} does not match the dimension of the index ${DIM}`;
  if (!values.some((x) => x !== 0)) return 'Dense vectors must contain at least one non-zero value';
  return null;
}

function upsert(res, body) {
  const vs = body?.vectors;
  if (!Array.isArray(vs) || vs.length === 0) return err(res, 400, 'Invalid request: vectors is required');
  if (vs.length > 1000) return err(res, 400, `Invalid request: upsert at most 1000 vectors, got ${vs.length}`);
  for (const v of vs) {
    if (typeof v.id !== 'string' || v.id === '') return err(res, 400, 'Invalid request: id is required');
    const e = checkValues(v.values);
    if (e) return err(res, 400, e);
    if (v.metadata !== undefined) {
      if (typeof v.metadata !== 'object' || v.metadata === null) return err(res, 400, 'Invalid request: metadata must be an object');
      for (const [k, x] of Object.entries(v.metadata))
        if (x === null) return err(res, 400, `Invalid request: metadata value for ${k} must not be null`);
    }
  }
  const sp = space(body.namespace);
  for (const v of vs) sp.set(v.id, { values: v.values, metadata: v.metadata || {} });
  send(res, 200, { upsertedCount: vs.length });
}

function query(res, body) {
  const topK = body?.topK;
  if (!Number.isInteger(topK) || topK < 1 || topK > 10000) return err(res, 400, 'Invalid request: topK must be between 1 and 10000');
  const sp = space(body.namespace);
  let q = body.vector;
  if (q === undefined && typeof body.id === 'string') q = sp.get(body.id)?.values;
  if (q === undefined) return err(res, 400, 'Invalid request: vector or id is required');
  const e = checkValues(q);
  if (e && !e.startsWith('Dense')) return err(res, 400, e);
  let list;
  try {
    list = [...sp.entries()].filter(([, r]) => matches(r.metadata, body.filter));
  } catch (x) {
    return err(res, 400, `Invalid request: ${x.message}`);
  }
  const scored = list.map(([id, r]) => ({ id, score: r.values.reduce((a, x, i) => a + x * q[i], 0), r }));
  scored.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1));
  const matchesOut = scored.slice(0, topK).map(({ id, score, r }) => ({
    id, score,
    values: body.includeValues ? r.values : [],
    ...(body.includeMetadata ? { metadata: r.metadata } : {}),
  }));
  send(res, 200, { results: [], matches: matchesOut, namespace: body.namespace ?? '', usage: { readUnits: 5 } });
}

function del(res, body) {
  const has = ['ids', 'deleteAll', 'filter'].filter((k) => body?.[k] !== undefined && body?.[k] !== false);
  if (has.length !== 1) return err(res, 400, 'Invalid request: exactly one of ids, deleteAll, filter must be given');
  const sp = space(body.namespace);
  if (body.ids) {
    if (!Array.isArray(body.ids) || body.ids.length > 1000) return err(res, 400, 'Invalid request: at most 1000 ids');
    for (const id of body.ids) sp.delete(id);
  } else if (body.deleteAll) {
    sp.clear();
  } else {
    try {
      for (const [id, r] of [...sp.entries()]) if (matches(r.metadata, body.filter)) sp.delete(id);
    } catch (x) {
      return err(res, 400, `Invalid request: ${x.message}`);
    }
  }
  send(res, 200, {});
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/__health') return send(res, 200, { ok: true });
  if (path === '/__reset') { spaces = new Map(); queue = []; log = []; return send(res, 200, {}); }
  if (path === '/__requests') return send(res, 200, log);
  if (path === '/__script') {
    const b = JSON.parse(raw || '{}');
    queue.push(...(Array.isArray(b) ? b : b.queue || []));
    return send(res, 200, { queued: queue.length });
  }
  let body = null;
  try { body = raw ? JSON.parse(raw) : null; } catch { body = raw; }
  log.push({ method: req.method, path, headers: req.headers, body, t: Date.now() });
  if (req.headers['api-key'] !== KEY) return send(res, 401, 'Unauthorized');
  const qi = queue.findIndex((b) => !b.match || path.includes(b.match));
  if (qi >= 0) {
    const b = queue.splice(qi, 1)[0];
    const h = b.retryAfter !== undefined ? { 'Retry-After': String(b.retryAfter) } : {};
    return err(res, b.status || 429, b.message || `Request failed with status ${b.status || 429}`, h);
  }
  if (req.method !== 'POST') return err(res, 404, 'Not Found');
  if (typeof body !== 'object' || body === null) return err(res, 400, 'Invalid request: body must be JSON');
  if (path === '/vectors/upsert') return upsert(res, body);
  if (path === '/query') return query(res, body);
  if (path === '/vectors/delete') return del(res, body);
  return err(res, 404, 'Not Found');
});

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`PORT=${server.address().port}\n`);
});
if (args.includes('--exit-on-stdin-close')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}
