// @needs-services
// Two engram nodes on PostgreSQL and a Redis of this test's own (so it can be killed):
// when Redis dies both nodes stay alive (/healthz 200), stop being ready (/readyz 503)
// and keep answering their own clients (chat locks granted locally); when Redis comes
// back on the same port they reconnect and re-subscribe within a few seconds, and
// messages fan out across nodes again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, freePort, waitForPort, sleep, servicesEnv } from "./lib/proc.mjs";

const run = randomBytes(4).toString("hex");
let pgBase, pgUrl, dir, dbName, redis, redisPort;
const nodes = [];

const psql = (url, sql) => {
  const r = spawnSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
};

async function startRedis() {
  redis = spawn("redis-server", ["--bind", "127.0.0.1", "--port", String(redisPort), "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
  await waitForPort(redisPort, 5000);
}
async function stopRedis() {
  if (!redis || redis.exitCode !== null) return;
  const gone = new Promise((r) => redis.once("exit", r));
  redis.kill("SIGKILL");
  await gone;
}

async function until(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
const ready = async (n) => (await fetch(n.url + "/readyz")).status;

async function register(base, name) {
  const r = await fetch(base + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${name}-${run}@example.com`, password: `${name}-password-1`, fullName: { firstName: name, lastName: "R" } }),
  });
  assert.equal(r.status, 201);
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { id: (await r.json()).user._id, cookie: c.slice(0, c.indexOf(";")) };
}
function connect(base, user) {
  const s = io(base, { transports: ["websocket"], extraHeaders: { cookie: user.cookie }, reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}
async function ask(sock, chatId, content) {
  const final = new Promise((resolve) => {
    const h = (r) => r.chat === chatId && (sock.off("ai-response", h), resolve(r));
    sock.on("ai-response", h);
  });
  const ack = await sock.timeout(10000).emitWithAck("ai-message", { chatId, content });
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error(`no ai-response for "${content}"`)), 15000).unref());
  return { ack, response: await Promise.race([final, late]) };
}

before(async () => {
  pgBase = servicesEnv().ENGRAM_TEST_PG;
  if (!pgBase) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-cluster-redis-"));
  dbName = `cluster_redis_${run}`;
  psql(pgBase, `CREATE DATABASE ${dbName}`);
  pgUrl = pgBase.replace(/\/[^/]*$/, `/${dbName}`);
  redisPort = await freePort();
  await startRedis();
  for (let i = 0; i < 2; i++) {
    fs.mkdirSync(path.join(dir, `n${i}`));
    nodes.push(
      await startBinary("engram", {
        env: { ENGRAM_DATA_DIR: path.join(dir, `n${i}`), ENGRAM_DB: pgUrl, ENGRAM_REDIS_URL: `redis://127.0.0.1:${redisPort}?key=r${run}`, JWT_SECRET: "cluster-redis-secret-0123456789abcdef", ENGRAM_LLM: "offline", ENGRAM_LOG_LEVEL: "error", ENGRAM_RATE_MESSAGES: "1000" },
      })
    );
  }
});

after(async () => {
  for (const n of nodes) await n.stop();
  await stopRedis();
  if (dbName) psql(pgBase, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("Redis dies and comes back: nodes stay up, degrade, reconnect, fan out again", async (t) => {
  if (!pgBase) return t.skip("no ENGRAM_TEST_PG (run through ctest)");
  for (const n of nodes) await until(async () => (await ready(n)) === 200, 5000, "ready");
  const u = await register(nodes[0].url, "restart");
  const chat = (await (await fetch(nodes[0].url + "/api/chat", { method: "POST", headers: { "content-type": "application/json", cookie: u.cookie }, body: JSON.stringify({ title: "r" }) })).json()).chat._id;
  const a = await connect(nodes[0].url, u);
  const b = await connect(nodes[1].url, u);
  const got = [];
  b.on("chat-message", (m) => got.push(m.message.content));
  try {
    await ask(a, chat, "one");
    await until(() => got.includes("one"), 5000, "fan-out before");

    await stopRedis();
    for (const n of nodes) await until(async () => (await ready(n)) === 503, 5000, "not ready");
    for (const n of nodes) assert.equal((await fetch(n.url + "/healthz")).status, 200);
    const r = await ask(a, chat, "two"); // the lock is granted locally
    assert.equal(r.ack.ok, true);

    await startRedis();
    for (const n of nodes) await until(async () => (await ready(n)) === 200, 10000, "ready again");
    await sleep(200);
    await ask(a, chat, "three");
    await until(() => got.includes("three"), 5000, "fan-out after the restart");
    const m = await (await fetch(nodes[0].url + "/metrics")).text();
    assert.ok(Number(/^engram_redis_reconnects_total (\d+)$/m.exec(m)[1]) > 0);
    assert.ok(Number(/^engram_chat_locks_total\{outcome="local"\} (\d+)$/m.exec(m)[1]) >= 1);
  } finally {
    a.close();
    b.close();
  }
});
