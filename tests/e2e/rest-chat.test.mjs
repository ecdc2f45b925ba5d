// REST chats: create, list, rename, delete, message pages, and isolation between two
// users (another user's chat is always 404), against the real engram binary.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, sleep } from "./lib/proc.mjs";

let srv, dir;
const users = {};

async function register(name) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      email: `${name}@example.com`,
      password: `${name}-password`,
      fullName: { firstName: name, lastName: "Test" },
    }),
  });
  assert.equal(r.status, 201);
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  const token = c.slice(6, c.indexOf(";"));
  return { id: (await r.json()).user._id, token, cookie: `token=${token}` };
}

function api(user, method, p, body, headers = {}) {
  const h = { ...headers };
  if (user) h.cookie = user.cookie;
  if (body !== undefined) h["content-type"] ??= "application/json";
  return fetch(srv.url + p, {
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function json(res, status) {
  const text = await res.text();
  assert.equal(res.status, status, text);
  return JSON.parse(text);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rest-chat-"));
  srv = await startBinary("engram", {
    env: { ENGRAM_DATA_DIR: dir, JWT_SECRET: "rest-chat-test-secret-0123456789", ENGRAM_LOG_LEVEL: "warn" },
  });
  users.a = await register("anna");
  users.b = await register("boris");
});

after(async () => {
  if (srv) await srv.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

test("create: 201 {chat}; 400 for bad titles; 401 without a session; 415", async () => {
  const { chat } = await json(await api(users.a, "POST", "/api/chat", { title: "  First chat " }), 201);
  assert.match(chat._id, /^[0-9a-f]{24}$/);
  assert.equal(chat.title, "First chat");
  assert.equal(chat.user, users.a.id);
  assert.match(chat.lastActivity, ISO);
  users.a.first = chat;
  for (const body of [{}, { title: "" }, { title: "   " }, { title: 7 }, { title: "x".repeat(201) }, { title: "a\u0001b" }]) {
    const e = await json(await api(users.a, "POST", "/api/chat", body), 400);
    assert.match(e.message, /title/, JSON.stringify(body));
  }
  assert.equal((await json(await api(users.a, "POST", "/api/chat", { title: "é".repeat(200) }), 201)).chat.title.length, 200);
  assert.match((await json(await api(null, "POST", "/api/chat", { title: "x" }), 401)).message, /Unauthorized/);
  await json(await api({ cookie: "token=x.y.z" }, "POST", "/api/chat", { title: "x" }), 401);
  await json(await api(users.a, "POST", "/api/chat", "title=x", { "content-type": "text/plain" }), 415);
  await json(await api(users.a, "POST", "/api/chat", "{bad"), 400);
  // Bearer works as well as the cookie.
  const r = await fetch(srv.url + "/api/chat", {
    method: "POST",
    headers: { authorization: `Bearer ${users.a.token}`, "content-type": "application/json" },
    body: JSON.stringify({ title: "via bearer" }),
  });
  assert.equal(r.status, 201);
});

test("list: own chats only, most recent activity first", async () => {
  const made = [];
  for (const t of ["one", "two", "three"]) {
    await sleep(5);
    made.push((await json(await api(users.a, "POST", "/api/chat", { title: t }), 201)).chat);
  }
  await json(await api(users.b, "POST", "/api/chat", { title: "boris's" }), 201);
  const { chats } = await json(await api(users.a, "GET", "/api/chat"), 200);
  assert.ok(chats.every((c) => c.user === users.a.id));
  assert.deepEqual(chats.slice(0, 3).map((c) => c.title), ["three", "two", "one"]);
  for (let i = 1; i < chats.length; i++) assert.ok(chats[i - 1].lastActivity >= chats[i].lastActivity);
  const bs = (await json(await api(users.b, "GET", "/api/chat"), 200)).chats;
  assert.deepEqual(bs.map((c) => c.title), ["boris's"]);
  const page = (await json(await api(users.a, "GET", "/api/chat?limit=2"), 200)).chats;
  assert.equal(page.length, 2);
  const next = (await json(await api(users.a, "GET", `/api/chat?limit=2&before=${page[1]._id}`), 200)).chats;
  assert.equal(next[0].title, "one");
  await json(await api(users.a, "GET", "/api/chat?limit=zero"), 400);
  await json(await api(users.a, "GET", "/api/chat?before=nope"), 400);
  await json(await api(null, "GET", "/api/chat"), 401);
});

test("rename and delete: own chat 200; malformed id 400; unknown id 404", async () => {
  const { chat } = await json(await api(users.a, "POST", "/api/chat", { title: "old" }), 201);
  const renamed = (await json(await api(users.a, "PATCH", `/api/chat/${chat._id}`, { title: "new" }), 200)).chat;
  assert.equal(renamed._id, chat._id);
  assert.equal(renamed.title, "new");
  await json(await api(users.a, "PATCH", `/api/chat/${chat._id}`, { title: "" }), 400);
  assert.equal((await json(await api(users.a, "PATCH", "/api/chat/xyz", { title: "t" }), 400)).message, "Invalid chat id");
  await json(await api(users.a, "PATCH", `/api/chat/${chat._id.toUpperCase()}`, { title: "t" }), 400);
  assert.equal((await json(await api(users.a, "PATCH", "/api/chat/5f0000000000000000000000", { title: "t" }), 404)).message, "Chat not found");
  await json(await api(users.a, "DELETE", "/api/chat/5f0000000000000000000000"), 404);
  await json(await api(users.a, "DELETE", "/api/chat/not-an-id"), 400);
  const del = await json(await api(users.a, "DELETE", `/api/chat/${chat._id}`), 200);
  assert.equal(del._id, chat._id);
  await json(await api(users.a, "DELETE", `/api/chat/${chat._id}`), 404);
  await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}`), 404);
  const { chats } = await json(await api(users.a, "GET", "/api/chat"), 200);
  assert.ok(!chats.some((c) => c._id === chat._id));
});

test("another user's chat is 404 for read, rename and delete, and stays unchanged", async () => {
  const mine = users.a.first;
  for (const [m, p, body] of [
    ["GET", `/api/chat/messages/${mine._id}`],
    ["PATCH", `/api/chat/${mine._id}`, { title: "hijacked" }],
    ["DELETE", `/api/chat/${mine._id}`],
  ]) {
    const e = await json(await api(users.b, m, p, body), 404);
    assert.equal(e.message, "Chat not found");
  }
  const { chats } = await json(await api(users.a, "GET", "/api/chat"), 200);
  const still = chats.find((c) => c._id === mine._id);
  assert.equal(still.title, "First chat");
  await json(await api(users.a, "GET", `/api/chat/messages/${mine._id}`), 200);
});

test("messages: empty chat, parameter errors", async () => {
  const { chat } = await json(await api(users.a, "POST", "/api/chat", { title: "empty" }), 201);
  assert.deepEqual(await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}`), 200), { messages: [] });
  await json(await api(users.a, "GET", "/api/chat/messages/123"), 400);
  for (const q of ["limit=0", "limit=-1", "limit=abc", "before=zz"])
    await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}?${q}`), 400);
  assert.match((await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}?before=5f0000000000000000000000`), 400)).message, /before/);
  await json(await api(null, "GET", `/api/chat/messages/${chat._id}`), 401);
});

test("messages: oldest first, ?before= and ?limit= pages (through ai-message)", async (t) => {
  const { chat } = await json(await api(users.a, "POST", "/api/chat", { title: "talk" }), 201);
  const s = io(srv.url, { transports: ["websocket"], reconnection: false, extraHeaders: { cookie: users.a.cookie } });
  try {
    await new Promise((res, rej) => {
      s.once("connect", res);
      s.once("connect_error", rej);
      setTimeout(() => rej(new Error("no connect")), 3000);
    });
    let ok = false;
    try {
      const ack = await s.timeout(3000).emitWithAck("ai-message", { chatId: chat._id, content: "hello 0" });
      ok = ack && ack.ok === true;
    } catch {
      ok = false;
    }
    if (!ok) {
      t.skip("the ai-message pipeline is not wired into this build");
      return;
    }
    // Wait for each answer so the order is user, model, user, model, ...
    const answered = () => new Promise((res) => s.once("ai-response", res));
    await answered();
    for (let i = 1; i < 4; i++) {
      const done = answered();
      await s.timeout(5000).emitWithAck("ai-message", { chatId: chat._id, content: `hello ${i}` });
      await done;
    }
    // The answer is stored right after ai-response is emitted: wait for the last one.
    let all = [];
    for (let i = 0; i < 100 && all.length < 8; i++) {
      if (i) await sleep(30);
      all = (await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}`), 200)).messages;
    }
    assert.equal(all.length, 8);
    assert.deepEqual(all.filter((m) => m.role === "user").map((m) => m.content), ["hello 0", "hello 1", "hello 2", "hello 3"]);
    for (const m of all) {
      assert.equal(m.chat, chat._id);
      assert.match(m.createdAt, ISO);
      assert.ok(["user", "model"].includes(m.role));
    }
    const last3 = (await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}?limit=3`), 200)).messages;
    assert.deepEqual(last3.map((m) => m._id), all.slice(5).map((m) => m._id));
    const prev = (await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}?limit=3&before=${last3[0]._id}`), 200)).messages;
    assert.deepEqual(prev.map((m) => m._id), all.slice(2, 5).map((m) => m._id));
    const big = (await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}?limit=5000`), 200)).messages;
    assert.equal(big.length, 8);
    // The other user cannot page through it either.
    await json(await api(users.b, "GET", `/api/chat/messages/${chat._id}?before=${last3[0]._id}`), 404);
    // Deleting the chat takes its messages along, and their memories (when this build
    // serves /api/memory).
    const mem = async () => {
      const r = await api(users.a, "GET", "/api/memory?limit=200");
      if (r.status !== 200) return null;
      return (await r.json()).memories.filter((m) => m.chatId === chat._id);
    };
    const before = await mem();
    if (before !== null) assert.ok(before.length > 0, "the chat's messages are memories");
    await json(await api(users.a, "DELETE", `/api/chat/${chat._id}`), 200);
    await json(await api(users.a, "GET", `/api/chat/messages/${chat._id}`), 404);
    if (before !== null) assert.deepEqual(await mem(), []);
  } finally {
    s.close();
  }
});
