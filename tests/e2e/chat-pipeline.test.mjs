// The ai-message pipeline end to end: the real engram binary (SQLite, hash embedder, the
// OpenAI-compatible provider) against the fake model server, driven by the official
// socket.io-client. Checks memory across chats, isolation between users, ordering,
// cancellation, upstream faults, idempotency, fan-out, limits and restart durability.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, waitFor, sleep } from "./lib/proc.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

let fake, srv, dir;
const SECRET = "pipeline-test-secret-0123456789abcdef";

function serverEnv(extra = {}) {
  return {
    ENGRAM_DATA_DIR: dir,
    JWT_SECRET: SECRET,
    ENGRAM_LLM: "openai",
    OPENAI_BASE_URL: fake.url + "/v1",
    ENGRAM_LLM_MODEL: "fake-model",
    ENGRAM_LOG_LEVEL: "warn",
    ENGRAM_RATE_MESSAGES: "1000",
    ...extra,
  };
}

async function register(name) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      email: `${name}@example.com`,
      password: `${name}-password-1`,
      fullName: { firstName: name, lastName: "Test" },
    }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { id: (await r.json()).user._id, cookie: c.slice(0, c.indexOf(";")) };
}

async function newChat(user, title) {
  const r = await fetch(srv.url + "/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json", cookie: user.cookie },
    body: JSON.stringify({ title }),
  });
  assert.equal(r.status, 201);
  return (await r.json()).chat._id;
}

async function messages(user, chatId) {
  const r = await fetch(srv.url + `/api/chat/messages/${chatId}`, { headers: { cookie: user.cookie } });
  assert.equal(r.status, 200);
  return (await r.json()).messages;
}

// The answer is stored just after ai-response is emitted (pipeline step 7): poll briefly.
async function messagesAtLeast(user, chatId, n, ms = 3000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = await messages(user, chatId);
    if (m.length >= n || Date.now() > deadline) return m;
    await sleep(20);
  }
}

function connect(user, transports = ["websocket"]) {
  const s = io(srv.url, {
    transports,
    extraHeaders: { cookie: user.cookie },
    reconnection: false,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

// Sends an ai-message and collects the chunks and the final ai-response for that chat.
async function ask(sock, chatId, content, extra = {}) {
  const chunks = [];
  const onChunk = (c) => c.chat === chatId && chunks.push(c);
  sock.on("ai-response-chunk", onChunk);
  const final = new Promise((resolve) => {
    const h = (r) => {
      if (r.chat !== chatId) return;
      sock.off("ai-response", h);
      resolve(r);
    };
    sock.on("ai-response", h);
  });
  const ackv = await sock.timeout(10000).emitWithAck("ai-message", { chatId, content, ...extra });
  const response = await final;
  sock.off("ai-response-chunk", onChunk);
  return { ack: ackv, response, chunks };
}

async function fakeRequests() {
  return (await (await fetch(fake.url + "/__requests")).json()).filter((r) => r.path.endsWith("/chat/completions"));
}
const script = (queue) =>
  fetch(fake.url + "/__script", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ queue }) });
const reset = () => fetch(fake.url + "/__reset", { method: "POST" });
const promptText = (req) => req.body.messages.map((m) => `${m.role}: ${m.content}`).join("\n");

before(async () => {
  fake = await startFakeLlm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-pipeline-"));
  srv = await startBinary("engram", { env: serverEnv() });
});

after(async () => {
  if (srv) await srv.stop();
  if (fake) await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a fact told in one chat is recalled in another, streamed, and stored", async () => {
  await reset();
  const u = await register("alice");
  const a = await newChat(u, "Family");
  const b = await newChat(u, "Travel");
  const s = await connect(u);
  try {
    const fact = "My sister Beatrice lives in Lisbon and she teaches violin there.";
    const r1 = await ask(s, a, fact);
    assert.equal(r1.ack.ok, true);
    assert.match(r1.ack.messageId, /^[0-9a-f]{24}$/);
    assert.equal(r1.response.chat, a);
    assert.ok(r1.response.content.length > 0);
    assert.equal(r1.chunks.map((c) => c.delta).join(""), r1.response.content);
    assert.deepEqual(r1.chunks.map((c) => c.seq), r1.chunks.map((_, i) => i));
    assert.ok(r1.chunks.every((c) => c.messageId === r1.response.messageId));

    const r2 = await ask(s, b, "Which city does my sister Beatrice live in?");
    assert.equal(r2.response.chat, b);
    const texts = r2.response.memories.map((m) => m.text);
    assert.ok(texts.includes(fact), `memories: ${JSON.stringify(r2.response.memories)}`);
    const m = r2.response.memories.find((x) => x.text === fact);
    assert.equal(m.chatId, a);
    assert.equal(m.id, r1.ack.messageId);
    assert.ok(m.score > 0);
    assert.ok(!Number.isNaN(Date.parse(m.createdAt)));
    // The model was sent the memory, in the memories block.
    const reqs = await fakeRequests();
    const last = reqs[reqs.length - 1];
    assert.equal(last.body.stream, true);
    assert.equal(last.body.model, "fake-model");
    assert.equal(last.body.messages[0].role, "system");
    assert.match(last.body.messages[0].content, /Relevant memories from earlier conversations/);
    assert.ok(last.body.messages[0].content.includes("Lisbon"));
    // The memory comes with its neighbouring turn in chat A (the answer it got).
    assert.match(last.body.messages[0].content, /around it in that chat:\s*\n.*model: /);
    assert.equal(last.body.messages.at(-1).content, "Which city does my sister Beatrice live in?");
    // Both chats hold the user message and the answer, oldest first.
    const ma = await messagesAtLeast(u, a, 2);
    assert.deepEqual(ma.map((x) => x.role), ["user", "model"]);
    assert.equal(ma[0].content, fact);
    assert.equal(ma[1].content, r1.response.content);
    assert.equal(ma[1]._id, r1.response.messageId);
  } finally {
    s.disconnect();
  }
});

test("another user never gets the first user's memories, even with identical wording", async () => {
  const u1 = await register("carol");
  const u2 = await register("dave");
  const c1 = await newChat(u1, "one");
  const c2 = await newChat(u2, "two");
  const c2b = await newChat(u2, "two b");
  const s1 = await connect(u1);
  const s2 = await connect(u2);
  try {
    const secret = "The code of my garage door is quartz flamingo 8812.";
    await ask(s1, c1, secret);
    await ask(s2, c2, "I like tea in the morning.");
    const r = await ask(s2, c2b, secret); // the very same words
    for (const m of r.response.memories) assert.notEqual(m.text, secret, "leaked another user's memory");
    const reqs = await fakeRequests();
    assert.ok(!promptText(reqs.at(-1)).includes("quartz flamingo 8812") ||
      reqs.at(-1).body.messages.at(-1).content === secret);
    assert.ok(!reqs.at(-1).body.messages[0].content.includes("quartz flamingo"));
  } finally {
    s1.disconnect();
    s2.disconnect();
  }
});

test("two rapid messages in one chat: the second prompt contains the first answer", async () => {
  await reset();
  const u = await register("erin");
  const c = await newChat(u, "rapid");
  const s = await connect(u);
  try {
    await script([{ match: "chat", type: "stream", text: "FIRST-ANSWER-7731", delayMs: 30 }]);
    // Both go out at once; the answers come back in order, one per message.
    const answers = [];
    const two = new Promise((resolve) => s.on("ai-response", (r) => r.chat === c && answers.push(r) === 2 && resolve()));
    const [a1, a2] = await Promise.all([
      s.timeout(5000).emitWithAck("ai-message", { chatId: c, content: "first question" }),
      s.timeout(5000).emitWithAck("ai-message", { chatId: c, content: "second question" }),
    ]);
    assert.ok(a1.ok && a2.ok);
    await two;
    assert.equal(answers[0].content, "FIRST-ANSWER-7731");
    const reqs = await fakeRequests();
    assert.equal(reqs.length, 2);
    const second = reqs[1].body.messages;
    assert.equal(second.at(-1).content, "second question");
    assert.ok(second.some((m) => m.role === "assistant" && m.content === "FIRST-ANSWER-7731"));
    assert.ok(answers[1].content.includes("second question"));
    const r2 = { response: answers[1] };
    const ms = await messagesAtLeast(u, c, 4);
    assert.deepEqual(ms.map((m) => m.content), ["first question", "FIRST-ANSWER-7731", "second question", r2.response.content]);
  } finally {
    s.disconnect();
  }
});

test("ai-cancel stops the generation and stores what was streamed, marked cancelled", async () => {
  await reset();
  const u = await register("frank");
  const c = await newChat(u, "cancel");
  const s = await connect(u);
  try {
    await script([{ match: "chat", type: "stream", chunks: ["one ", "two ", "three ", "four ", "five "], delayMs: 300 }]);
    const first = waitFor(s, "ai-response-chunk", 5000);
    const final = waitFor(s, "ai-response", 10000);
    const ackv = await s.timeout(5000).emitWithAck("ai-message", { chatId: c, content: "count slowly" });
    assert.equal(ackv.ok, true);
    await first;
    s.emit("ai-cancel", { chatId: c });
    const r = await final;
    assert.equal(r.cancelled, true);
    assert.ok(r.content.startsWith("one "));
    assert.ok(!r.content.includes("five"));
    const ms = await messagesAtLeast(u, c, 2);
    assert.equal(ms.length, 2);
    assert.equal(ms[1].cancelled, true);
    assert.equal(ms[1].content, r.content);
  } finally {
    s.disconnect();
  }
});

test("upstream faults give a clear error with its code; the message stays; the server keeps serving", async () => {
  const u = await register("gina");
  const c = await newChat(u, "faults");
  const s = await connect(u);
  try {
    for (const behaviour of [
      { type: "status", status: 500 },
      { type: "midstream_error" },
      { type: "truncate" },
      { type: "malformed" },
    ]) {
      await reset();
      // 500 is retried: give it enough failures to exhaust the tries.
      const q = behaviour.type === "status" ? [behaviour, behaviour, behaviour, behaviour] : [behaviour];
      await script(q.map((b) => ({ match: "chat", ...b })));
      const { ack: a, response } = await ask(s, c, `fault ${behaviour.type}`);
      assert.equal(a.ok, true, "the user message is stored and acked before the model runs");
      assert.equal(response.code, "llm_unavailable", JSON.stringify(response));
      assert.equal(typeof response.error, "string");
      assert.equal(response.chat, c);
      const ms = await messages(u, c);
      assert.ok(ms.some((m) => m.role === "user" && m.content === `fault ${behaviour.type}`));
    }
    await reset();
    const ok = await ask(s, c, "are you back?");
    assert.ok(ok.response.content.includes("are you back?"));
  } finally {
    s.disconnect();
  }
});

test("validation, ownership, size limit and idempotent clientId", async () => {
  const u = await register("hank");
  const other = await register("ivy");
  const c = await newChat(u, "checks");
  const foreign = await newChat(other, "not yours");
  const s = await connect(u);
  try {
    const errs = [];
    s.on("ai-response", (r) => r.error && errs.push(r));
    let a = await s.timeout(5000).emitWithAck("ai-message", { chatId: c });
    assert.deepEqual(a, { ok: false, error: "chatId and content are required", code: "bad_request" });
    a = await s.timeout(5000).emitWithAck("ai-message", { content: "x" });
    assert.equal(a.code, "bad_request");
    a = await s.timeout(5000).emitWithAck("ai-message", "not an object");
    assert.equal(a.code, "bad_request");
    a = await s.timeout(5000).emitWithAck("ai-message", { chatId: foreign, content: "hi" });
    assert.equal(a.code, "not_found");
    a = await s.timeout(5000).emitWithAck("ai-message", { chatId: "nope", content: "hi" });
    assert.equal(a.code, "not_found");
    a = await s.timeout(5000).emitWithAck("ai-message", { chatId: c, content: "x".repeat(65537) });
    assert.equal(a.code, "too_large");
    await sleep(100);
    assert.ok(errs.some((r) => r.code === "bad_request" && r.error === "chatId and content are required"));
    assert.equal((await messages(other, foreign)).length, 0, "nothing was written to another user's chat");

    const r1 = await ask(s, c, "idempotent hello", { clientId: "client-1" });
    const again = await s.timeout(5000).emitWithAck("ai-message", { chatId: c, content: "idempotent hello", clientId: "client-1" });
    assert.equal(again.ok, true);
    assert.equal(again.messageId, r1.ack.messageId);
    assert.equal(again.duplicate, true);
    const ms = await messages(u, c);
    assert.equal(ms.filter((m) => m.content === "idempotent hello").length, 1);
  } finally {
    s.disconnect();
  }
});

test("the user's other sockets get chat-message for both sides of the conversation", async () => {
  const u = await register("jack");
  const c = await newChat(u, "sync");
  const s1 = await connect(u);
  const s2 = await connect(u, ["polling"]);
  try {
    const seen = [];
    s2.on("chat-message", (m) => seen.push(m));
    const r = await ask(s1, c, "hello from tab one");
    await sleep(300);
    assert.equal(seen.length, 2, JSON.stringify(seen));
    assert.equal(seen[0].chat, c);
    assert.equal(seen[0].message.role, "user");
    assert.equal(seen[0].message.content, "hello from tab one");
    assert.equal(seen[0].message.id, r.ack.messageId);
    assert.equal(seen[1].message.role, "model");
    assert.equal(seen[1].message.content, r.response.content);
  } finally {
    s1.disconnect();
    s2.disconnect();
  }
});

test("per-user message rate limit answers rate_limited", async () => {
  const d2 = fs.mkdtempSync(path.join(os.tmpdir(), "engram-rate-"));
  const saved = { srv, dir };
  dir = d2;
  srv = await startBinary("engram", { env: serverEnv({ ENGRAM_RATE_MESSAGES: "3" }) });
  try {
    const u = await register("kate");
    const c = await newChat(u, "rate");
    const s = await connect(u);
    const codes = [];
    for (let i = 0; i < 5; i++) {
      const a = await s.timeout(5000).emitWithAck("ai-message", { chatId: c, content: `m${i}` });
      codes.push(a.ok ? "ok" : a.code);
    }
    assert.deepEqual(codes, ["ok", "ok", "ok", "rate_limited", "rate_limited"]);
    s.disconnect();
  } finally {
    await srv.stop();
    srv = saved.srv;
    dir = saved.dir;
    fs.rmSync(d2, { recursive: true, force: true });
  }
});

test("after a restart, history and memories are still there", async () => {
  const u = await register("liam");
  const a = await newChat(u, "before");
  let s = await connect(u);
  const fact = "My bicycle is a green Bianchi named Celeste.";
  await ask(s, a, fact);
  s.disconnect();
  await srv.stop();
  srv = await startBinary("engram", { env: serverEnv() });
  const ms = await messages(u, a);
  assert.equal(ms[0].content, fact);
  const b = await newChat(u, "after");
  s = await connect(u);
  try {
    const r = await ask(s, b, "What is my bicycle named?");
    assert.ok(r.response.memories.some((m) => m.text === fact), JSON.stringify(r.response.memories));
  } finally {
    s.disconnect();
  }
});

test("/metrics reports messages, answers, errors by code and latency histograms", async () => {
  const u = await register("mona");
  const c = await newChat(u, "metrics");
  const s = await connect(u);
  try {
    await ask(s, c, "count me");
    await s.timeout(5000).emitWithAck("ai-message", { chatId: c });
  } finally {
    s.disconnect();
  }
  const r = await fetch(srv.url + "/metrics");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1]);
  assert.ok(value("engram_ai_messages_total") >= 2);
  assert.ok(value("engram_answers_total") >= 1);
  assert.ok(value('engram_errors_total\\{code="bad_request"\\}') >= 1);
  assert.ok(value("engram_answer_overhead_seconds_count") >= 1);
  assert.ok(value("engram_answer_latency_seconds_count") >= 1);
  assert.ok(value("engram_model_seconds_count") >= 1);
  assert.ok(value("engram_recall_seconds_count") >= 1);
  assert.ok(value("engram_store_inserts_total") >= 2);
  assert.match(text, /^engram_model_seconds_bucket\{le="\+Inf"\} \d+$/m);
  assert.match(text, /^# TYPE engram_answer_overhead_seconds histogram$/m);
  assert.match(text, /^# TYPE engram_answer_latency_seconds histogram$/m);
});
