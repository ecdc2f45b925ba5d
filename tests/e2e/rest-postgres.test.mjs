// @needs-services
// The accounts/chats REST API and the handshake auth on the PostgreSQL store: the same
// contract as on SQLite (register, login, me, chats, another user's chat is 404, user
// deletion by the CLI -> "User not found"). Emails are unique per run: the database is
// shared with other tests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, BUILD, servicesEnv } from "./lib/proc.mjs";

let srv, dir, pg;
const SECRET = "rest-postgres-secret-0123456789abcdef";
const run = randomBytes(4).toString("hex");


async function call(cookie, method, p, body) {
  const headers = {};
  if (cookie) headers.cookie = cookie;
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(srv.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, r };
}

async function register(name) {
  const email = `${name}-${run}@example.com`;
  const res = await call(null, "POST", "/api/auth/register", { email, password: `${name}-password`, fullName: { firstName: name, lastName: "PG" } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const c = res.r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { email, id: res.body.user._id, token: c.slice(6, c.indexOf(";")), cookie: c.slice(0, c.indexOf(";")) };
}

function handshake(token) {
  return new Promise((resolve) => {
    const s = io(srv.url, { transports: ["websocket"], reconnection: false, auth: { token } });
    s.once("connect", () => (s.close(), resolve("connected")));
    s.once("connect_error", (e) => (s.close(), resolve(e.message)));
  });
}

before(async () => {
  pg = servicesEnv().ENGRAM_TEST_PG;
  if (!pg) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rest-pg-"));
  srv = await startBinary("engram", { env: { ENGRAM_DATA_DIR: dir, ENGRAM_DB: pg, JWT_SECRET: SECRET, ENGRAM_LOG_LEVEL: "warn" } });
});

after(async () => {
  if (srv) await srv.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("accounts, chats and isolation on PostgreSQL", async (t) => {
  if (!pg) return t.skip("no ENGRAM_TEST_PG (run through ctest, which starts PostgreSQL)");
  const a = await register("pia");
  const b = await register("pete");
  assert.equal((await call(null, "POST", "/api/auth/register", { email: a.email.toUpperCase(), password: "whatever-pass", fullName: { firstName: "x", lastName: "y" } })).status, 409);
  const login = await call(null, "POST", "/api/auth/login", { email: a.email, password: "pia-password" });
  assert.equal(login.status, 200);
  assert.equal(login.body.user._id, a.id);
  assert.equal((await call(null, "POST", "/api/auth/login", { email: a.email, password: "wrong-password" })).status, 401);
  assert.equal((await call(a.cookie, "GET", "/api/auth/me")).body.user.email, a.email);

  const c1 = (await call(a.cookie, "POST", "/api/chat", { title: "pg one" })).body.chat;
  await new Promise((r) => setTimeout(r, 5));
  const c2 = (await call(a.cookie, "POST", "/api/chat", { title: "pg two" })).body.chat;
  const list = (await call(a.cookie, "GET", "/api/chat")).body.chats;
  assert.deepEqual(list.map((c) => c._id), [c2._id, c1._id]);
  assert.deepEqual((await call(b.cookie, "GET", "/api/chat")).body.chats, []);
  assert.equal((await call(b.cookie, "GET", `/api/chat/messages/${c1._id}`)).status, 404);
  assert.equal((await call(b.cookie, "PATCH", `/api/chat/${c1._id}`, { title: "mine now" })).status, 404);
  assert.equal((await call(b.cookie, "DELETE", `/api/chat/${c1._id}`)).status, 404);
  assert.equal((await call(a.cookie, "PATCH", `/api/chat/${c1._id}`, { title: "renamed" })).body.chat.title, "renamed");
  assert.deepEqual((await call(a.cookie, "GET", `/api/chat/messages/${c1._id}`)).body, { messages: [] });
  assert.equal((await call(a.cookie, "DELETE", `/api/chat/${c2._id}`)).status, 200);
  assert.equal((await call(a.cookie, "GET", `/api/chat/messages/${c2._id}`)).status, 404);

  assert.equal(await handshake(b.token), "connected");
  const del = spawnSync(path.join(BUILD, "engram"), ["user", "delete", b.email], {
    env: { ...process.env, ENGRAM_DATA_DIR: dir, ENGRAM_DB: pg, JWT_SECRET: SECRET },
    encoding: "utf8",
  });
  assert.equal(del.status, 0, del.stderr);
  assert.equal(await handshake(b.token), "Authentication error: User not found");
  assert.equal((await call(b.cookie, "GET", "/api/auth/me")).status, 401);
});
