// Abuse over WebSocket / Engine.IO / Socket.IO and cross-user access, against the real
// engram binary and the fake model (SECURITY.md, abuse table): invalid UTF-8 in text
// frames (1007), oversized frames and packets (1009 / close), deeply nested JSON in
// Socket.IO packets, malformed packets, a flood of ai-message (rate_limited), ai-cancel
// and ai-message on another user's chat, another user's memory ids on DELETE, another
// user's chat ids on every REST route, and SQL/FTS injection in message content and in
// /api/memory?q=. After each attack the server must still serve.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { io } from "socket.io-client";
import { startBinary, sleep, waitFor } from "./lib/proc.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

let fake, srv, dir;
const MAX_PAYLOAD = 100000;

async function register(name) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${name}@example.com`, password: `${name}-password-1`, fullName: { firstName: name, lastName: "T" } }),
  });
  assert.equal(r.status, 201);
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { id: (await r.json()).user._id, cookie: c.slice(0, c.indexOf(";")) };
}
const api = (u, method, p, body) =>
  fetch(srv.url + p, { method, headers: { cookie: u.cookie, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
async function newChat(u, title) {
  const r = await api(u, "POST", "/api/chat", { title });
  assert.equal(r.status, 201);
  return (await r.json()).chat._id;
}
async function messages(u, chatId) {
  const r = await api(u, "GET", `/api/chat/messages/${chatId}`);
  assert.equal(r.status, 200);
  return (await r.json()).messages;
}
function connect(u) {
  const s = io(srv.url, { transports: ["websocket"], extraHeaders: { cookie: u.cookie }, reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}
// A raw Engine.IO WebSocket, Socket.IO-connected; resolves once "40{...}" arrived.
function rawSocket(u) {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket`, { headers: { cookie: u.cookie } });
  ws.msgs = [];
  ws.closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
  ws.on("error", () => {});
  return new Promise((resolve, reject) => {
    ws.on("message", (d) => {
      const m = d.toString();
      ws.msgs.push(m);
      if (m === "2") ws.send("3");
      if (m.startsWith("0{")) ws.send("40");
      if (m.startsWith("40")) resolve(ws);
    });
    ws.on("close", () => reject(new Error("closed before connect")));
  });
}
async function healthy(u) {
  const r = await fetch(srv.url + "/healthz");
  assert.equal(r.status, 200);
  if (u) {
    const s = await connect(u);
    const echo = await s.timeout(5000).emitWithAck("echo", "still here");
    assert.equal(echo, "still here");
    s.disconnect();
  }
}

before(async () => {
  fake = await startFakeLlm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-abuse-socket-"));
  srv = await startBinary("engram", {
    env: {
      ENGRAM_DATA_DIR: dir,
      JWT_SECRET: "abuse-socket-secret-0123456789abcdef",
      ENGRAM_LLM: "openai",
      OPENAI_BASE_URL: fake.url + "/v1",
      ENGRAM_LLM_MODEL: "fake-model",
      ENGRAM_LOG_LEVEL: "error",
      ENGRAM_RATE_MESSAGES: "8",
      ENGRAM_MAX_PAYLOAD: String(MAX_PAYLOAD),
    },
  });
});

after(async () => {
  if (srv) await srv.stop();
  if (fake) await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("invalid UTF-8 in a WebSocket text frame closes that socket with 1007; others are unaffected", async () => {
  const u = await register("utf8");
  for (const bad of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]]) {
    const ws = await rawSocket(u);
    const pkt = Buffer.concat([Buffer.from('42["echo","'), Buffer.from(bad), Buffer.from('"]')]);
    ws.send(pkt, { binary: false });
    assert.equal(await ws.closed, 1007, Buffer.from(bad).toString("hex"));
  }
  await healthy(u);
});

test("an oversized WebSocket message (> maxPayload) closes with 1009; an oversized polling POST is refused", async () => {
  const u = await register("big");
  const ws = await rawSocket(u);
  ws.send('42["echo","' + "x".repeat(MAX_PAYLOAD + 10) + '"]');
  const code = await ws.closed;
  assert.ok([1009, 1008].includes(code), `close code ${code}`);
  // Long-polling: handshake, then a POST body over maxPayload.
  const hs = await fetch(srv.url + "/socket.io/?EIO=4&transport=polling", { headers: { cookie: u.cookie } });
  const sid = JSON.parse((await hs.text()).slice(1)).sid;
  const post = await fetch(srv.url + `/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
    method: "POST", headers: { cookie: u.cookie, "content-type": "text/plain" }, body: "4" + "x".repeat(MAX_PAYLOAD * 2),
  });
  assert.ok([400, 413].includes(post.status), `polling POST: ${post.status}`);
  await post.text();
  await healthy(u);
});

test("deeply nested JSON and malformed Socket.IO packets never crash the server", async () => {
  const u = await register("nested");
  const c = await newChat(u, "nested");
  const deep = (n) => "[".repeat(n) + "]".repeat(n);
  const obj = (n) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
  const packets = [
    `42["ai-message",{"chatId":"${c}","content":${deep(50000)}}]`,
    `42["ai-message",${obj(50000)}]`,
    `42${deep(90000)}`,
    `42["echo",${deep(10000)}]`,
    `42["ai-message",{"chatId":"${c}","content":"${"\\u0000".repeat(10)}"}`,
    '42["ai-message"', "42[", "4", "42]", '42{"a":1}', "43999[]", "45-[]", "4" + "9".repeat(400),
    "42/%%%,1[]", '42["ai-message",{"chatId":' + "9".repeat(5000) + "}]",
    '42["__proto__",{"constructor":{"prototype":{"x":1}}}]',
  ];
  for (const p of packets) {
    const ws = await rawSocket(u);
    ws.send(p);
    const code = await Promise.race([ws.closed, sleep(700).then(() => "open")]);
    if (code === "open") ws.close();
    else assert.ok(code === 1000 || code === 1005 || code === 1008 || code === 1009 || code === 1002, `${p.slice(0, 30)}: close ${code}`);
  }
  await healthy(u);
  assert.equal((await messages(u, c)).length, 0, "nothing was stored from a malformed packet");
});

test("a flood of ai-message is rate limited (rate_limited) and the server keeps serving", async () => {
  const u = await register("flood");
  const c = await newChat(u, "flood");
  const s = await connect(u);
  try {
    const acks = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      s.timeout(15000).emitWithAck("ai-message", { chatId: c, content: `flood ${i}` })));
    const ok = acks.filter((a) => a.ok).length;
    const limited = acks.filter((a) => a.code === "rate_limited").length;
    assert.ok(ok <= 8, `${ok} accepted with a limit of 8 a minute`);
    assert.ok(limited >= 32, `${limited} rate_limited`);
    assert.equal(ok + limited, 40);
  } finally {
    s.disconnect();
  }
  await healthy();
});

test("ai-message and ai-cancel on another user's chat: not_found, nothing written, their answer untouched", async () => {
  const alice = await register("alice");
  const eve = await register("eve");
  const ca = await newChat(alice, "alice's");
  const sa = await connect(alice);
  const se = await connect(eve);
  try {
    await fetch(fake.url + "/__script", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ queue: [{ match: "chat", type: "stream", chunks: ["one ", "two ", "three ", "four"], delayMs: 250 }] }) });
    const final = waitFor(sa, "ai-response", 10000);
    const first = waitFor(sa, "ai-response-chunk", 5000);
    const ack = await sa.timeout(5000).emitWithAck("ai-message", { chatId: ca, content: "count for me" });
    assert.equal(ack.ok, true);
    await first;
    const eveErrs = [];
    se.on("ai-response", (r) => eveErrs.push(r));
    se.on("ai-response-chunk", (r) => eveErrs.push(r));
    se.emit("ai-cancel", { chatId: ca });
    const cancelAck = await se.timeout(3000).emitWithAck("ai-cancel", { chatId: ca }).catch(() => null);
    if (cancelAck) assert.notEqual(cancelAck.ok, true, "cancel of another user's chat must not succeed");
    const inj = await se.timeout(5000).emitWithAck("ai-message", { chatId: ca, content: "eve was here" });
    assert.equal(inj.code, "not_found");
    const r = await final;
    assert.ok(!r.error && !r.cancelled, JSON.stringify(r));
    assert.equal(r.content, "one two three four");
    await sleep(200);
    const ms = await messages(alice, ca);
    assert.ok(!ms.some((m) => m.content.includes("eve was here")));
    assert.ok(!ms.some((m) => m.cancelled));
    assert.ok(!eveErrs.some((e) => e.content || e.delta), "eve never receives alice's text");
  } finally {
    sa.disconnect();
    se.disconnect();
  }
});

test("another user's chat and memory ids on every REST route: 404, nothing changed", async () => {
  const bob = await register("bob");
  const eve = await register("eve2");
  const cb = await newChat(bob, "bob's chat");
  const mem = (await (await api(bob, "POST", "/api/memory", { text: "bob's bank pin is zebra-4711" })).json()).memory;
  assert.match(mem.id, /^[0-9a-f]{24}$/);
  for (const [m, p, body] of [["GET", `/api/chat/messages/${cb}`], ["PATCH", `/api/chat/${cb}`, { title: "pwned" }],
    ["DELETE", `/api/chat/${cb}`], ["DELETE", `/api/memory/${mem.id}`], ["GET", `/api/chat/messages/${cb}?before=${mem.id}&limit=5`]]) {
    const r = await api(eve, m, p, body);
    assert.equal(r.status, 404, `${m} ${p}`);
    assert.ok(!(await r.text()).includes("zebra"));
  }
  const chats = await (await api(bob, "GET", "/api/chat")).json();
  assert.ok(JSON.stringify(chats).includes("bob's chat"));
  const mine = (await (await api(bob, "GET", "/api/memory")).json()).memories;
  assert.ok(mine.some((x) => x.id === mem.id), "bob's memory is still there");
  const eves = (await (await api(eve, "GET", "/api/memory?q=" + encodeURIComponent("bank pin zebra"))).json()).memories;
  assert.deepEqual(eves, []);
});

test("SQL and FTS injection in message content and in /api/memory?q= stay data", async () => {
  const victim = await register("victim");
  const att = await register("attacker");
  await api(victim, "POST", "/api/memory", { text: "victim secret word quokkafish" });
  const ca = await newChat(att, "inj");
  const s = await connect(att);
  const evil = [`'); DROP TABLE messages; --`, `" OR 1=1 --`, `quokkafish OR *`, `NEAR(quokkafish secret, 5)`, `"unterminated`,
    `* AND user_id:*`, `quokkafish) OR (1`, `\\'; SELECT * FROM users; --`, `{quokkafish}`, `^quokkafish*`, `col:quokkafish`, `-quokkafish`, `'||'`];
  // The server allows 8 ai-messages a minute per user here: the 8 nastiest go as content,
  // all of them as searches.
  const sent = evil.slice(0, 8);
  try {
    for (const content of sent) {
      const done = new Promise((resolve) => {
        const h = (r) => { if (r.chat === ca) { s.off("ai-response", h); resolve(r); } };
        s.on("ai-response", h);
      });
      const ack = await s.timeout(5000).emitWithAck("ai-message", { chatId: ca, content });
      assert.equal(ack.ok, true, content);
      const r = await done;
      assert.ok(!r.error, `${content}: ${JSON.stringify(r)}`);
      for (const m of r.memories || []) assert.ok(!m.text.includes("quokkafish secret") && !m.text.includes("victim"), "recall leaked another user's memory");
    }
  } finally {
    s.disconnect();
  }
  const stored = (await messages(att, ca)).filter((m) => m.role === "user").map((m) => m.content);
  for (const content of sent) assert.ok(stored.includes(content), `stored verbatim: ${content}`);
  for (const q of [...evil, "quokkafish", "*", "\"", "'", "%", "_", "\\", "a".repeat(5000)]) {
    const r = await api(att, "GET", "/api/memory?q=" + encodeURIComponent(q));
    assert.ok([200, 400].includes(r.status), `${q}: ${r.status}`);
    const text = await r.text();
    assert.ok(!text.includes("victim secret"), `q=${q} leaked the other user's memory`);
  }
  const v = (await (await api(victim, "GET", "/api/memory?q=quokkafish")).json()).memories;
  assert.equal(v.length, 1, "the victim's memory and the tables are intact");
  await healthy(att);
});
