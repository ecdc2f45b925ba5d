// REST memory routes: search, list, add a note, delete one, forget everything, and
// isolation between two users. Skipped when this build does not wire recall into the API.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startBinary } from "./lib/proc.mjs";

let srv, dir, wired = false;
const users = {};

async function register(name) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${name}@example.com`, password: `${name}-password`, fullName: { firstName: name, lastName: "M" } }),
  });
  assert.equal(r.status, 201);
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { id: (await r.json()).user._id, cookie: c.slice(0, c.indexOf(";")) };
}

function api(user, method, p, body) {
  const headers = {};
  if (user) headers.cookie = user.cookie;
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(srv.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  return JSON.parse(text);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rest-memory-"));
  srv = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: dir, JWT_SECRET: "rest-memory-secret-0123456789abcdef", ENGRAM_LOG_LEVEL: "warn" },
  });
  users.a = await register("mia");
  users.b = await register("max");
  const probe = await api(users.a, "GET", "/api/memory");
  await probe.text();
  wired = probe.status === 200;
});

after(async () => {
  if (srv) await srv.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

test("notes: add, list newest first, search best first, delete, forget all", async (t) => {
  if (!wired) return t.skip("the /api/memory routes are not wired into this build (api_deps.recall)");
  const texts = ["My cat is called Miso and she loves tuna", "I work as a marine biologist in Lisbon", "My favourite tea is genmaicha"];
  const made = [];
  for (const text of texts) {
    const { memory } = await json(await api(users.a, "POST", "/api/memory", { text }), 201);
    assert.match(memory.id, /^[0-9a-f]{24}$/);
    assert.equal(memory.text, text);
    assert.equal(memory.role, "note");
    assert.equal(memory.chatId, null);
    assert.match(memory.createdAt, ISO);
    made.push(memory);
  }
  const old = (await json(await api(users.a, "POST", "/api/memory", { text: "I grew up in Porto", createdAt: "2020-05-01T10:00:00.000Z" }), 201)).memory;
  assert.equal(old.createdAt, "2020-05-01T10:00:00.000Z");

  const list = (await json(await api(users.a, "GET", "/api/memory"), 200)).memories;
  assert.equal(list.length, 4);
  assert.equal(list[list.length - 1].id, old.id, "newest first");
  for (const m of list) assert.deepEqual(Object.keys(m).sort(), ["chatId", "createdAt", "id", "role", "score", "text"]);
  const page = (await json(await api(users.a, "GET", "/api/memory?limit=2"), 200)).memories;
  assert.equal(page.length, 2);
  const rest = (await json(await api(users.a, "GET", `/api/memory?limit=10&before=${page[1].id}`), 200)).memories;
  assert.equal(rest.length, 2);

  const hits = (await json(await api(users.a, "GET", "/api/memory?q=" + encodeURIComponent("what is my cat called?") + "&k=2"), 200)).memories;
  assert.ok(hits.length >= 1 && hits.length <= 2);
  assert.equal(hits[0].id, made[0].id);
  assert.equal(typeof hits[0].score, "number");
  for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1].score >= hits[i].score);

  // The other user sees none of it and cannot delete it.
  assert.deepEqual((await json(await api(users.b, "GET", "/api/memory"), 200)).memories, []);
  assert.deepEqual((await json(await api(users.b, "GET", "/api/memory?q=cat"), 200)).memories, []);
  await json(await api(users.b, "DELETE", `/api/memory/${made[0].id}`), 404);

  const del = await json(await api(users.a, "DELETE", `/api/memory/${made[0].id}`), 200);
  assert.equal(del.id, made[0].id);
  await json(await api(users.a, "DELETE", `/api/memory/${made[0].id}`), 404);
  const after1 = (await json(await api(users.a, "GET", "/api/memory?q=cat%20Miso%20tuna"), 200)).memories;
  assert.ok(!after1.some((m) => m.id === made[0].id));

  const all = await json(await api(users.a, "DELETE", "/api/memory"), 200);
  assert.equal(all.deleted, 3);
  assert.deepEqual((await json(await api(users.a, "GET", "/api/memory"), 200)).memories, []);
});

test("memory routes: 400s, 401, 415", async (t) => {
  if (!wired) return t.skip("the /api/memory routes are not wired into this build (api_deps.recall)");
  for (const body of [{}, { text: "" }, { text: "   " }, { text: 5 }, { text: "x", createdAt: "soon" }])
    assert.equal(typeof (await json(await api(users.a, "POST", "/api/memory", body), 400)).message, "string");
  await json(await api(users.a, "DELETE", "/api/memory/not-an-id"), 400);
  await json(await api(users.a, "GET", "/api/memory?q=x&k=0"), 400);
  await json(await api(users.a, "GET", "/api/memory?limit=x"), 400);
  await json(await api(null, "GET", "/api/memory"), 401);
  await json(await api(null, "DELETE", "/api/memory"), 401);
  const r = await fetch(srv.url + "/api/memory", { method: "POST", headers: { cookie: users.a.cookie, "content-type": "text/plain" }, body: "hi" });
  await json(r, 415);
});
