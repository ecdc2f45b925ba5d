// @needs-services
// Three engram nodes on one PostgreSQL database and one Redis, behind nginx (ip_hash
// stickiness, WebSocket upgrade), all on loopback:
//   - two sockets of one user on two different nodes see each other's messages live;
//   - a fact told through node 1 is recalled through node 3 (whose index was loaded);
//   - the npm @socket.io/redis-emitter reaches the user's sockets on every node;
//   - messages of one chat sent at once through two nodes are answered in order;
//   - killing the node nginx routes to: the client reconnects through nginx to another
//     node and carries on; nothing it was acked for is lost;
//   - /readyz and the Redis metrics.
// Isolation: its own PostgreSQL database and its own Redis channel prefix (?key=...).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { createClient } from "redis";
import { Emitter } from "@socket.io/redis-emitter";
import { createAdapter } from "@socket.io/redis-adapter";
import { Server } from "socket.io";
import http from "node:http";
import { startBinary, freePort, waitForPort, waitFor, sleep, servicesEnv } from "./lib/proc.mjs";

const SECRET = "cluster-test-secret-0123456789abcdef";
const run = randomBytes(4).toString("hex");
const prefix = `engram-test-${run}`;
let pgBase, pgUrl, redisUrl, dir, dbName;
const nodes = [];
let nginx, nginxPort;


function psql(url, sql) {
  const r = spawnSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
}

function nodeEnv(i) {
  return {
    ENGRAM_DATA_DIR: path.join(dir, `node${i}`),
    ENGRAM_DB: pgUrl,
    ENGRAM_REDIS_URL: `${redisUrl}?key=${prefix}`,
    JWT_SECRET: SECRET,
    ENGRAM_LLM: "offline",
    ENGRAM_LOG_LEVEL: "warn",
    ENGRAM_RATE_MESSAGES: "1000",
  };
}

async function startNode(i) {
  fs.mkdirSync(path.join(dir, `node${i}`), { recursive: true });
  const port = nodes[i]?.port;
  nodes[i] = await startBinary("engram", { env: nodeEnv(i), port, allowExitCodes: [137] });
  return nodes[i];
}

async function waitReady(url, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await fetch(url + "/readyz").catch(() => null);
    if (r && r.status === 200) return r.json();
    if (Date.now() > deadline) throw new Error(`${url} not ready: ${r && (await r.text())}`);
    await sleep(50);
  }
}

function nginxConf() {
  const up = nodes.map((n) => `    server 127.0.0.1:${n.port} max_fails=1 fail_timeout=2s;`).join("\n");
  return `${process.getuid && process.getuid() === 0 ? "user root;\n" : ""}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
daemon off;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream engram {
    ip_hash;
${up}
  }
  server {
    listen 127.0.0.1:${nginxPort};
    location / {
      proxy_pass http://engram;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 120s;
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout;
      proxy_buffering off;
    }
  }
}
`;
}

async function register(base, name) {
  const r = await fetch(base + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${name}-${run}@example.com`, password: `${name}-password-1`, fullName: { firstName: name, lastName: "Cluster" } }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { id: (await r.json()).user._id, cookie: c.slice(0, c.indexOf(";")) };
}

async function newChat(base, user, title) {
  const r = await fetch(base + "/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json", cookie: user.cookie },
    body: JSON.stringify({ title }),
  });
  assert.equal(r.status, 201);
  return (await r.json()).chat._id;
}

async function messages(base, user, chatId) {
  const r = await fetch(base + `/api/chat/messages/${chatId}`, { headers: { cookie: user.cookie } });
  assert.equal(r.status, 200);
  return (await r.json()).messages;
}

function connect(base, user, opts = {}) {
  const s = io(base, { transports: ["websocket"], extraHeaders: { cookie: user.cookie }, reconnection: false, forceNew: true, ...opts });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

async function ask(sock, chatId, content, extra = {}) {
  const final = new Promise((resolve) => {
    const h = (r) => {
      if (r.chat !== chatId) return;
      sock.off("ai-response", h);
      resolve(r);
    };
    sock.on("ai-response", h);
  });
  const ack = await sock.timeout(10000).emitWithAck("ai-message", { chatId, content, ...extra });
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error(`no ai-response for "${content}"`)), 15000).unref());
  return { ack, response: await Promise.race([final, late]) };
}

// Collects `event` payloads on a socket.
function collect(sock, event) {
  const got = [];
  sock.on(event, (x) => got.push(x));
  return got;
}

async function until(fn, ms = 5000, what = "condition") {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const skip = () => !pgBase || !redisUrl;

before(async () => {
  const env = servicesEnv();
  pgBase = env.ENGRAM_TEST_PG;
  redisUrl = env.ENGRAM_TEST_REDIS;
  if (skip()) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-cluster-"));
  fs.chmodSync(dir, 0o755);
  dbName = `cluster_${run}`;
  psql(pgBase, `CREATE DATABASE ${dbName}`);
  pgUrl = pgBase.replace(/\/[^/]*$/, `/${dbName}`);
  // Node 1 first: it applies the schema migrations; then the others.
  await startNode(0);
  await Promise.all([startNode(1), startNode(2)]);
  for (const n of nodes) await waitReady(n.url);
  nginxPort = await freePort();
  fs.writeFileSync(path.join(dir, "nginx.conf"), nginxConf());
  nginx = spawn("nginx", ["-p", dir, "-c", path.join(dir, "nginx.conf")], { stdio: ["ignore", "pipe", "pipe"] });
  let nginxOut = "";
  nginx.stderr.on("data", (d) => (nginxOut += d));
  await waitForPort(nginxPort, 5000).catch((e) => {
    throw new Error(`${e.message}\n${nginxOut}`);
  });
});

after(async () => {
  if (nginx && nginx.exitCode === null) {
    nginx.kill("SIGQUIT");
    await new Promise((r) => nginx.once("exit", r));
  }
  for (const n of nodes) if (n && n.child.exitCode === null && n.child.signalCode === null) await n.stop();
  if (dbName) psql(pgBase, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("readyz reports Redis; metrics show the adapter", async (t) => {
  if (skip()) return t.skip("no ENGRAM_TEST_PG/REDIS (run through ctest)");
  for (const n of nodes) {
    const r = await waitReady(n.url);
    assert.deepEqual(r, { status: "ready", store: true, redis: true, model: true });
  }
  const m = await (await fetch(nodes[0].url + "/metrics")).text();
  assert.match(m, /^engram_redis_up\{conn="pub"\} 1$/m);
  assert.match(m, /^engram_redis_up\{conn="sub"\} 1$/m);
  assert.match(m, /^engram_redis_publish_seconds_count \d+$/m);
});

test("a node whose Redis is unreachable is alive but not ready, and still answers", async (t) => {
  if (skip()) return t.skip("no services");
  const dead = await freePort();
  fs.mkdirSync(path.join(dir, "lonely"), { recursive: true });
  const n = await startBinary("engram", { env: { ...nodeEnv(0), ENGRAM_DATA_DIR: path.join(dir, "lonely"), ENGRAM_REDIS_URL: `redis://127.0.0.1:${dead}?key=${prefix}`, ENGRAM_LOG_LEVEL: "error" } });
  try {
    assert.equal((await fetch(n.url + "/healthz")).status, 200);
    const r = await fetch(n.url + "/readyz");
    assert.equal(r.status, 503);
    assert.deepEqual(await r.json(), { status: "not ready", store: true, redis: false, model: true });
    const u = await register(n.url, "lonely");
    const chat = await newChat(n.url, u, "lonely");
    const s = await connect(n.url, u);
    const a = await ask(s, chat, "no redis here");
    assert.equal(a.ack.ok, true);
    assert.ok(a.response.content);
    s.close();
  } finally {
    await n.stop();
  }
});

test("two tabs of one user on two nodes see each other's messages live", async (t) => {
  if (skip()) return t.skip("no services");
  const u = await register(nodes[0].url, "tabs");
  const chat = await newChat(nodes[0].url, u, "two tabs");
  const a = await connect(nodes[0].url, u);
  const b = await connect(nodes[1].url, u, { transports: ["polling"] });
  const c = await connect(nodes[2].url, u);
  try {
    const gotB = collect(b, "chat-message");
    const gotC = collect(c, "chat-message");
    const gotA = collect(a, "chat-message");
    const r = await ask(a, chat, "hello from node one");
    assert.equal(r.ack.ok, true);
    // The user's message and the answer reach the tabs on nodes 2 and 3, not the sender.
    await until(() => gotB.length >= 2 && gotC.length >= 2, 5000, "fan-out to nodes 2 and 3");
    for (const got of [gotB, gotC]) {
      assert.equal(got[0].chat, chat);
      assert.equal(got[0].message.role, "user");
      assert.equal(got[0].message.content, "hello from node one");
      assert.equal(got[0].message.id, r.ack.messageId);
      assert.equal(got[1].message.role, "model");
      assert.equal(got[1].message.content, r.response.content);
    }
    // And back: b (node 2, polling) writes, a and c see it.
    const gotA2 = gotA.length;
    const r2 = await ask(b, chat, "answer from node two");
    await until(() => gotA.length >= gotA2 + 2 && gotC.length >= 4, 5000, "fan-out from node 2");
    assert.equal(gotA[gotA2].message.id, r2.ack.messageId);
    assert.equal(gotC[2].message.content, "answer from node two");
    // Another user sees nothing.
    const v = await register(nodes[0].url, "other");
    const o = await connect(nodes[1].url, v);
    const gotO = collect(o, "chat-message");
    await ask(a, chat, "private");
    await sleep(200);
    assert.equal(gotO.length, 0);
    o.close();
  } finally {
    a.close();
    b.close();
    c.close();
  }
});

test("a fact told through node 1 is recalled through node 3", async (t) => {
  if (skip()) return t.skip("no services");
  const u = await register(nodes[0].url, "fact");
  const c1 = await newChat(nodes[0].url, u, "telling");
  const c3 = await newChat(nodes[2].url, u, "asking");
  const s3 = await connect(nodes[2].url, u);
  const s1 = await connect(nodes[0].url, u);
  try {
    // Node 3 loads this user's index first (a search), so it must learn about the change.
    await ask(s3, c3, "warm up the memory of node three");
    const fact = `My cat is called Zorblax${run}`;
    const told = await ask(s1, c1, fact);
    assert.equal(told.ack.ok, true);
    await sleep(300);
    const r = await ask(s3, c3, "What is my cat called?");
    const texts = r.response.memories.map((m) => m.text);
    assert.ok(texts.includes(fact), `memories on node 3: ${JSON.stringify(texts)}`);
    const m = await (await fetch(nodes[2].url + "/metrics")).text();
    const rec = /engram_memory_invalidations_total\{dir="received"\} (\d+)/.exec(m);
    assert.ok(rec && Number(rec[1]) > 0, "node 3 received invalidations");
  } finally {
    s1.close();
    s3.close();
  }
});

test("@socket.io/redis-emitter reaches a user's sockets on every node", async (t) => {
  if (skip()) return t.skip("no services");
  const u = await register(nodes[1].url, "emit");
  const v = await register(nodes[1].url, "bystander");
  const socks = await Promise.all(nodes.map((n) => connect(n.url, u)));
  const other = await connect(nodes[0].url, v);
  const client = createClient({ url: redisUrl });
  await client.connect();
  try {
    const emitter = new Emitter(client, { key: prefix });
    const got = socks.map((s) => collect(s, "notice"));
    const gotOther = collect(other, "notice");
    emitter.to(`user:${u.id}`).emit("notice", { text: "from another service", n: 42, ok: true, f: 1.5, list: [1, "two", null] });
    await until(() => got.every((g) => g.length === 1), 5000, "the emitter's event on all three nodes");
    for (const g of got) assert.deepEqual(g[0], { text: "from another service", n: 42, ok: true, f: 1.5, list: [1, "two", null] });
    // Several arguments, to two rooms at once (the namespace channel).
    const two = socks.map((s) => collect(s, "pair"));
    emitter.to(`user:${u.id}`).to("nobody-room").emit("pair", "a", 2);
    await until(() => two.every((g) => g.length === 1), 5000, "multi-room emit");
    // except: the user's room is excluded -> nobody gets it; then a broadcast to all.
    const all = collect(other, "all");
    emitter.except(`user:${v.id}`).emit("all", "x");
    emitter.emit("all", "y");
    await until(() => all.length >= 1, 5000, "namespace broadcast");
    await sleep(100);
    assert.deepEqual(all, ["y"]);
    assert.equal(gotOther.length, 0);
  } finally {
    await client.quit();
    for (const s of socks) s.close();
    other.close();
  }
});

test("a Node.js socket.io server with @socket.io/redis-adapter is a peer node", async (t) => {
  if (skip()) return t.skip("no services");
  const u = await register(nodes[0].url, "peer");
  const chat = await newChat(nodes[0].url, u, "peer");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const hs = http.createServer();
  const nio = new Server(hs, { adapter: createAdapter(pub, sub, { key: prefix }) });
  nio.on("connection", (s) => s.join(s.handshake.auth.room));
  await new Promise((r) => hs.listen(0, "127.0.0.1", r));
  const nurl = `http://127.0.0.1:${hs.address().port}`;
  const ns = io(nurl, { transports: ["websocket"], auth: { room: `user:${u.id}` }, reconnection: false, forceNew: true });
  await waitFor(ns, "connect", 5000);
  const e = await connect(nodes[1].url, u);
  const sender = await connect(nodes[0].url, u);
  try {
    await sleep(200); // the Node adapter's PSUBSCRIBE
    // engram -> Node: the chat-message broadcast of a message sent through node 1.
    const gotNode = collect(ns, "chat-message");
    const r = await ask(sender, chat, "seen by the Node server");
    await until(() => gotNode.length >= 2, 5000, "engram's broadcast on the Node server");
    assert.equal(gotNode[0].message.id, r.ack.messageId);
    assert.equal(gotNode[0].message.content, "seen by the Node server");
    // Node -> engram: io.to(room).emit on the Node server reaches engram's socket.
    const gotE = collect(e, "from-node");
    nio.to(`user:${u.id}`).emit("from-node", { x: [1, 2.5, "z"] }, "second");
    await until(() => gotE.length === 1, 5000, "the Node server's broadcast on engram");
    assert.deepEqual(gotE[0], { x: [1, 2.5, "z"] });
  } finally {
    ns.close();
    e.close();
    sender.close();
    nio.close();
    await new Promise((r) => hs.close(r));
    await Promise.allSettled([pub.quit(), sub.quit()]);
  }
});

test("one chat written from two nodes at once is answered strictly in order", async (t) => {
  if (skip()) return t.skip("no services");
  const u = await register(nodes[0].url, "order");
  const chat = await newChat(nodes[0].url, u, "order");
  const a = await connect(nodes[0].url, u);
  const b = await connect(nodes[1].url, u);
  try {
    const sends = [];
    for (let i = 0; i < 4; i++) {
      sends.push(a.timeout(10000).emitWithAck("ai-message", { chatId: chat, content: `a${i}` }));
      sends.push(b.timeout(10000).emitWithAck("ai-message", { chatId: chat, content: `b${i}` }));
    }
    const acks = await Promise.all(sends);
    for (const k of acks) assert.equal(k.ok, true, JSON.stringify(k));
    let ms;
    await until(async () => (ms = await messages(nodes[2].url, u, chat)).length >= 16, 10000, "16 messages");
    // Strictly alternating user, model: each answer stored before the next message.
    for (let i = 0; i < ms.length; i++) assert.equal(ms[i].role, i % 2 ? "model" : "user", JSON.stringify(ms.map((m) => m.role)));
    // The two nodes did contend for the chat's lock.
    let waited = 0;
    for (const n of nodes.slice(0, 2)) {
      const m = await (await fetch(n.url + "/metrics")).text();
      waited += Number((/^engram_chat_locks_total\{outcome="waited"\} (\d+)$/m.exec(m) || [0, 0])[1]);
    }
    assert.ok(waited > 0, "some message waited for the other node's lock");
  } finally {
    a.close();
    b.close();
  }
});

test("through nginx: kill the node a client is on, it reconnects elsewhere, nothing lost", async (t) => {
  if (skip()) return t.skip("no services");
  const base = `http://127.0.0.1:${nginxPort}`;
  const u = await register(base, "failover");
  const chat = await newChat(base, u, "failover");
  // Polling first, then the WebSocket upgrade through nginx (ip_hash keeps the node).
  const s = io(base, { extraHeaders: { cookie: u.cookie }, reconnectionDelay: 100, reconnectionDelayMax: 500, forceNew: true });
  await waitFor(s, "connect", 5000);
  await until(() => s.io.engine.transport.name === "websocket", 5000, "upgrade");
  try {
    const r1 = await ask(s, chat, "before the crash");
    assert.equal(r1.ack.ok, true);
    // The answer is stored just after ai-response (pipeline step 7).
    await until(async () => (await messages(base, u, chat)).length >= 2, 5000, "the answer stored");
    // Which node holds it: the one that counts an Engine.IO client (the other tests
    // closed theirs).
    let victim = -1, most = 0;
    for (let i = 0; i < nodes.length; i++) {
      const m = await (await fetch(nodes[i].url + "/metrics")).text();
      const n = Number((/^engram_engineio_clients (\d+)$/m.exec(m) || [0, 0])[1]);
      if (n > most) (most = n), (victim = i);
    }
    assert.ok(victim >= 0, "found the node");
    nodes[victim].child.kill("SIGKILL");
    await nodes[victim].exited;
    await waitFor(s, "connect", 10000);
    const r2 = await ask(s, chat, "after the crash");
    assert.equal(r2.ack.ok, true);
    const ms = await messages(base, u, chat);
    const contents = ms.map((m) => m.content);
    assert.ok(contents.includes("before the crash") && contents.includes("after the crash"), JSON.stringify(contents));
    assert.ok(contents.includes(r1.response.content));
    // Bring it back for the others (same port: nginx's upstream list is fixed).
    await startNode(victim);
    await waitReady(nodes[victim].url);
  } finally {
    s.close();
  }
});
