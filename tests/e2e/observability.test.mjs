// @needs-services (PostgreSQL, for the pool series of a PostgreSQL-backed node; the rest
// runs on SQLite and does not need it)
// Observability of the real binary: /metrics shows Engine.IO sockets by transport (a
// WebSocket client, a polling-only client, and an upgrading one that moves from polling
// to websocket) and the database pool (SQLite readers and writer; PostgreSQL pool); every
// HTTP request gets a request id (the client's valid X-Request-Id, else a new one), sent
// back as X-Request-Id and carried by the JSON log lines written for it, with one access
// line each (method, path without the query string, status, duration_ms); a socket's log
// lines carry its id as "sid"; no secret (password, cookie, token, query string) is
// logged.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, waitFor, freePort, servicesEnv } from "./lib/proc.mjs";
import { client, waitUntil } from "./lib/app.mjs";

let srv, dir;
const app = client(() => srv.url);


// /metrics as a map: 'name{labels}' (labels as sent) -> number.
async function metrics(url) {
  const r = await fetch(url + "/metrics");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  const out = new Map();
  for (const line of (await r.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

const sockets = async () => {
  const m = await metrics(srv.url);
  return { ws: m.get('engram_sockets{transport="websocket"}'), poll: m.get('engram_sockets{transport="polling"}'), upgrades: m.get("engram_transport_upgrades_total") };
};

// The server's JSON log lines so far (every stderr line must be one JSON object).
function logLines(s = srv) {
  return s
    .output()
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        assert.fail(`a log line that is not JSON: ${l}`);
      }
    });
}

function connect(user, transports, extra = {}) {
  const s = io(srv.url, { transports, extraHeaders: { cookie: user.cookie }, reconnection: false, forceNew: true, ...extra });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-obs-"));
  srv = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: dir, JWT_SECRET: "observability-secret-0123456789abcdef", ENGRAM_LOG_FORMAT: "json", ENGRAM_LOG_LEVEL: "debug" },
  });
});

after(async () => {
  if (srv) await srv.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("sockets by transport: websocket, polling, and an upgrade moving one from polling to websocket", async () => {
  const user = await app.register("obs-transports");
  assert.deepEqual(await sockets(), { ws: 0, poll: 0, upgrades: 0 });

  const ws = await connect(user, ["websocket"]);
  const poll = await connect(user, ["polling"]);
  assert.equal(ws.io.engine.transport.name, "websocket");
  assert.equal(poll.io.engine.transport.name, "polling");
  assert.deepEqual(await sockets(), { ws: 1, poll: 1, upgrades: 0 });

  // The default client starts on polling and upgrades.
  const up = await connect(user, ["polling", "websocket"]);
  if (up.io.engine.transport.name !== "websocket") await waitFor(up.io.engine, "upgrade", 5000);
  await waitUntil("the upgrade is counted", async () => {
    const s = await sockets();
    return s.ws === 2 && s.poll === 1 && s.upgrades === 1;
  });

  // The polling socket still works (an echo round trip), and the gauges do not move.
  assert.deepEqual(await poll.timeout(5000).emitWithAck("echo", { n: 1 }), { n: 1 });
  assert.deepEqual(await sockets(), { ws: 2, poll: 1, upgrades: 1 });

  poll.close();
  await waitUntil("the polling socket is gone", async () => (await sockets()).poll === 0);
  ws.close();
  up.close();
  await waitUntil("every socket is gone", async () => {
    const s = await sockets();
    return s.ws === 0 && s.poll === 0;
  });
  const m = await metrics(srv.url);
  assert.equal(m.get("engram_engineio_clients"), 0);
  assert.equal(m.get("engram_transport_upgrades_total"), 1);
});

test("database pool series (SQLite: readers and the writer)", async () => {
  const m = await metrics(srv.url);
  const v = (name, role) => m.get(`${name}{backend="sqlite",role="${role}"}`);
  assert.equal(v("engram_db_pool_size", "reader"), 4);
  assert.equal(v("engram_db_pool_size", "writer"), 1);
  assert.equal(v("engram_db_pool_open", "writer"), 1);
  const open = v("engram_db_pool_open", "reader");
  assert.ok(open >= 1 && open <= 4, `readers open: ${open}`);
  for (const role of ["reader", "writer"]) {
    assert.equal(v("engram_db_pool_in_use", role), 0); // nothing runs between requests
    assert.equal(v("engram_db_pool_waiters", role), 0);
  }
  assert.equal(m.get('engram_db_reconnects_total{backend="sqlite"}'), 0);
});

test("request ids: taken from the client when valid, else generated; in the response and the log lines", async () => {
  const given = "obs-req.1_A";
  let r = await fetch(srv.url + "/healthz?token=query-secret-123", { headers: { "x-request-id": given } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-request-id"), given);
  await r.text();

  r = await fetch(srv.url + "/api/chat", {}); // no id, and a 401
  assert.equal(r.status, 401);
  const generated = r.headers.get("x-request-id");
  assert.match(generated, /^[0-9a-f]{16}$/);
  await r.text();

  const invalid = ["has space", "x".repeat(65), "quote\"d", "é"];
  const replaced = [];
  for (const bad of invalid) {
    r = await fetch(srv.url + "/healthz", { headers: { "x-request-id": encodeURI(bad) === bad ? bad : bad.replace(/[^\x20-\x7e]/g, "?") } });
    const id = r.headers.get("x-request-id");
    assert.match(id, /^[0-9a-f]{16}$/, `${bad} was not replaced: ${id}`);
    replaced.push(id);
    await r.text();
  }
  assert.equal(new Set([generated, ...replaced]).size, 1 + invalid.length); // all different

  // A 64-character id is the longest taken as it is.
  const long = "L".repeat(64);
  r = await fetch(srv.url + "/healthz", { headers: { "x-request-id": long } });
  assert.equal(r.headers.get("x-request-id"), long);
  await r.text();

  await waitUntil("the access lines are written", () => logLines().some((l) => l.request_id === long));
  const lines = logLines();
  const byId = (id) => lines.filter((l) => l.request_id === id);

  const a = byId(given);
  assert.equal(a.length, 1, JSON.stringify(a));
  assert.equal(a[0].level, "info");
  assert.equal(a[0].method, "GET");
  assert.equal(a[0].path, "/healthz"); // without the query string
  assert.equal(a[0].status, 200);
  assert.equal(typeof a[0].duration_ms, "number");
  assert.ok(a[0].duration_ms >= 0 && a[0].duration_ms < 5000);
  assert.match(a[0].ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

  const b = byId(generated);
  assert.equal(b.length, 1);
  assert.deepEqual([b[0].method, b[0].path, b[0].status], ["GET", "/api/chat", 401]);
  for (const id of replaced) assert.equal(byId(id).length, 1);
  assert.equal(byId(long).length, 1);

  const all = srv.output();
  assert.ok(!all.includes("query-secret-123"), "the query string was logged");
  for (const bad of invalid) assert.ok(!lines.some((l) => l.request_id === bad));
});

test("a request's own log lines carry its id; a socket's lines carry its sid; no secrets in the log", async () => {
  // A throttled login logs an info line inside the handler: it carries the request id.
  const user = await app.register("obs-logs");
  const ids = [];
  let throttled = null;
  for (let i = 0; i < 40 && !throttled; i++) {
    const id = `obs-login-${i}`;
    const r = await fetch(srv.url + "/api/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id },
      body: JSON.stringify({ email: "obs-logs@example.com", password: "wrong-password-xyz" }),
    });
    await r.text();
    ids.push(id);
    if (r.status === 429) throttled = id;
  }
  assert.ok(throttled, "the login throttle never answered 429");
  await waitUntil("the throttle's line", () => logLines().some((l) => l.request_id === throttled && /throttled/.test(l.msg)));
  const mine = logLines().filter((l) => l.request_id === throttled);
  assert.ok(mine.length >= 2, JSON.stringify(mine)); // the handler's line and the access line
  assert.ok(mine.some((l) => l.path === "/api/auth/login" && l.status === 429));

  // Socket ids: a WebSocket and a polling socket, each with an event.
  for (const transports of [["websocket"], ["polling"]]) {
    const s = await connect(user, transports);
    assert.deepEqual(await s.timeout(5000).emitWithAck("echo", "hi"), "hi");
    const sid = s.id;
    s.close();
    await waitUntil(`lines with sid ${sid}`, () => {
      const l = logLines().filter((x) => x.sid === sid);
      return l.some((x) => /socket connected/.test(x.msg)) && l.some((x) => /socket left/.test(x.msg));
    });
    const tagged = logLines().filter((x) => x.sid === sid);
    assert.ok(tagged.every((x) => typeof x.sid === "string" && x.sid.length === 20));
    assert.ok(tagged.some((x) => x.msg.includes(transports[0])), JSON.stringify(tagged));
  }

  // Secrets: the password, the session token (cookie value) and the JWT secret never
  // appear, whatever the level (debug here).
  const out = srv.output();
  const token = user.cookie.slice("token=".length);
  for (const secret of ["obs-logs-password-1", "wrong-password-xyz", token, "observability-secret-0123456789abcdef"])
    assert.ok(!out.includes(secret), `a secret was logged: ${secret.slice(0, 12)}...`);
  assert.ok(!/Bearer |token=/.test(out), "a credential header was logged");
});

test("the pipeline's later lines (store and model callbacks) still carry the socket's sid", async () => {
  // A model nobody listens for: the answer fails, asynchronously, after the store and
  // recall steps; its warning lines must name the socket that asked.
  const ddir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-obs-llm-"));
  const dead = await freePort();
  const node = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: ddir, JWT_SECRET: "observability-llm-secret-0123456789", ENGRAM_LOG_FORMAT: "json", ENGRAM_LLM: "openai", OPENAI_BASE_URL: `http://127.0.0.1:${dead}/v1`, ENGRAM_LLM_MAX_TRIES: "1" },
  });
  try {
    const c = client(() => node.url);
    const user = await c.register("obs-llm");
    const chatId = await c.newChat(user, "t");
    const s = await c.connect(user);
    const failed = new Promise((resolve) => s.on("ai-response", (m) => m.error && resolve(m)));
    const ack = await s.timeout(10000).emitWithAck("ai-message", { chatId, content: "hello there" });
    assert.equal(ack.ok, true);
    assert.equal((await failed).code, "llm_unavailable");
    const sid = s.id;
    s.close();
    await waitUntil("the model failure line", () => logLines(node).some((l) => /chat: model failed/.test(l.msg)));
    const warn = logLines(node).filter((l) => l.level === "warn" && /model failed|language model/.test(l.msg));
    assert.ok(warn.length >= 1);
    for (const l of warn) assert.equal(l.sid, sid, JSON.stringify(l));
  } finally {
    await node.stop();
    fs.rmSync(ddir, { recursive: true, force: true });
  }
});

test("PostgreSQL node: pool size, connections in use, waiters, reconnects", async (t) => {
  const pg = servicesEnv().ENGRAM_TEST_PG;
  if (!pg) return t.skip("no PostgreSQL (ENGRAM_SERVICES_ENV)");
  const pdir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-obs-pg-"));
  const node = await startBinary("engram", { env: { ENGRAM_DATA_DIR: pdir, ENGRAM_DB: pg, JWT_SECRET: "observability-pg-secret-0123456789", ENGRAM_LOG_FORMAT: "json", ENGRAM_LOG_LEVEL: "warn" } });
  try {
    // Some traffic through the pool first.
    const r = await fetch(node.url + "/readyz");
    assert.equal(r.status, 200, await r.text());
    const m = await metrics(node.url);
    const v = (name) => m.get(`${name}{backend="postgres",role="all"}`);
    assert.equal(v("engram_db_pool_size"), 8);
    const open = v("engram_db_pool_open");
    assert.ok(open >= 1 && open <= 8, `open: ${open}`);
    assert.equal(v("engram_db_pool_in_use"), 0);
    assert.equal(v("engram_db_pool_waiters"), 0);
    assert.equal(m.get('engram_db_reconnects_total{backend="postgres"}'), 0);
    assert.equal(m.get('engram_db_pool_size{backend="postgres",role="writer"}'), undefined); // one pool for both
  } finally {
    await node.stop();
    fs.rmSync(pdir, { recursive: true, force: true });
  }
});
