// The language-model providers inside the real engram binary: the gemini provider against
// the fake model server (request format as sent on the wire, streaming to the client,
// upstream failure after retries, cancellation mid-stream), and the offline provider
// (the default with nothing configured). Driven by socket.io-client.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary } from "./lib/proc.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

let fake, gem, off, dir;
const SECRET = "llm-e2e-test-secret-0123456789abcdef";

const post = (url, body, headers = {}) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
const script = (queue) => post(fake.url + "/__script", { queue });
const reset = () => post(fake.url + "/__reset", {});
const generateRequests = async () =>
  (await (await fetch(fake.url + "/__requests")).json()).filter((r) => r.path.includes(":streamGenerateContent"));

async function register(srv, name) {
  const r = await post(srv.url + "/api/auth/register", {
    email: `${name}@example.com`,
    password: `${name}-password-1`,
    fullName: { firstName: name, lastName: "Test" },
  });
  assert.equal(r.status, 201, await r.clone().text());
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { cookie: c.slice(0, c.indexOf(";")) };
}

async function newChat(srv, user, title) {
  const r = await post(srv.url + "/api/chat", { title }, { cookie: user.cookie });
  assert.equal(r.status, 201);
  return (await r.json()).chat._id;
}

function connect(srv, user) {
  const s = io(srv.url, { transports: ["websocket"], extraHeaders: { cookie: user.cookie }, reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

// Sends an ai-message; resolves with the chunks and the final ai-response of that chat.
// onChunk(chunk, sock) runs for every chunk (used to cancel mid-stream).
async function ask(sock, chatId, content, onChunk) {
  const chunks = [];
  const h1 = (c) => {
    if (c.chat !== chatId) return;
    chunks.push(c);
    if (onChunk) onChunk(c, sock);
  };
  sock.on("ai-response-chunk", h1);
  const final = new Promise((resolve) => {
    const h = (r) => {
      if (r.chat !== chatId) return;
      sock.off("ai-response", h);
      resolve(r);
    };
    sock.on("ai-response", h);
  });
  const ack = await sock.timeout(10000).emitWithAck("ai-message", { chatId, content });
  const response = await final;
  sock.off("ai-response-chunk", h1);
  return { ack, response, chunks };
}

before(async () => {
  fake = await startFakeLlm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-llm-"));
  fs.mkdirSync(path.join(dir, "gem"));
  fs.mkdirSync(path.join(dir, "off"));
  const common = { JWT_SECRET: SECRET, ENGRAM_LOG_LEVEL: "error", OPENAI_BASE_URL: "", OPENAI_API_KEY: "" };
  gem = await startBinary("engram", {
    env: {
      ...common,
      ENGRAM_DATA_DIR: path.join(dir, "gem"),
      ENGRAM_LLM: "gemini",
      GEMINI_API_KEY: "e2e-gemini-key",
      ENGRAM_GEMINI_BASE_URL: fake.url,
      ENGRAM_LLM_MODEL: "gemini-2.5-flash",
    },
  });
  off = await startBinary("engram", {
    env: { ...common, ENGRAM_DATA_DIR: path.join(dir, "off"), ENGRAM_LLM: "", GEMINI_API_KEY: "" },
  });
});

after(async () => {
  if (gem) await gem.stop();
  if (off) await off.stop();
  if (fake) await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("gemini: the answer streams through, the request follows the Gemini format", async () => {
  await reset();
  const u = await register(gem, "gina");
  const chat = await newChat(gem, u, "Pets");
  const s = await connect(gem, u);
  try {
    const r1 = await ask(s, chat, "My dog is called Rex and he loves the beach.");
    assert.equal(r1.ack.ok, true);
    assert.equal(r1.response.content, "You said: My dog is called Rex and he loves the beach.");
    assert.ok(r1.chunks.length >= 2);
    assert.equal(r1.chunks.map((c) => c.delta).join(""), r1.response.content);
    const r2 = await ask(s, chat, "What is my dog called?");
    assert.equal(r2.response.content, "You said: What is my dog called?");
    const reqs = await generateRequests();
    assert.equal(reqs.length, 2);
    const q = reqs[1];
    assert.equal(q.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert.equal(q.query.alt, "sse");
    assert.equal(q.query.key, undefined);
    assert.equal(q.headers["x-goog-api-key"], "e2e-gemini-key");
    assert.match(q.headers["content-type"], /application\/json/);
    const roles = q.body.contents.map((c) => c.role);
    assert.deepEqual(roles, ["user", "model", "user"]);
    assert.equal(q.body.contents[1].parts[0].text, r1.response.content);
    assert.equal(q.body.contents.at(-1).parts[0].text, "What is my dog called?");
    assert.ok(q.body.systemInstruction.parts[0].text.length > 0);
    assert.equal(typeof q.body.generationConfig, "object");
  } finally {
    s.close();
  }
});

test("gemini: 5xx is retried, then a clear llm_unavailable error", async () => {
  await reset();
  const u = await register(gem, "gus");
  const chat = await newChat(gem, u, "Errors");
  const s = await connect(gem, u);
  try {
    await script([{ type: "status", status: 503 }, { type: "status", status: 503 }, { type: "status", status: 503 },
      { type: "status", status: 503 }, { type: "status", status: 503 }]);
    const r = await ask(s, chat, "hello?");
    assert.equal(r.ack.ok, true); // the user message is stored anyway
    assert.equal(r.response.code, "llm_unavailable");
    assert.match(r.response.error, /503/);
    assert.ok(!r.response.error.includes("e2e-gemini-key"));
    assert.ok((await generateRequests()).length >= 2);
    // A 429 with RetryInfo is retried and then answers.
    await reset();
    await script([{ type: "rate_limit", retryDelay: "0.2s" }]);
    const ok = await ask(s, chat, "and now?");
    assert.equal(ok.response.content, "You said: and now?");
    assert.equal((await generateRequests()).length, 2);
  } finally {
    s.close();
  }
});

test("gemini: ai-cancel stops the stream mid-answer", async () => {
  await reset();
  const u = await register(gem, "gia");
  const chat = await newChat(gem, u, "Cancel");
  const s = await connect(gem, u);
  try {
    await script([{ type: "stream", chunks: ["one ", "two ", "three ", "four ", "five ", "six "], delayMs: 400 }]);
    const t0 = Date.now();
    const r = await ask(s, chat, "count slowly", (c, sock) => {
      if (c.seq === 0) sock.emit("ai-cancel", { chatId: chat });
    });
    assert.ok(Date.now() - t0 < 2000, "did not wait for the whole answer (2.4 s)");
    assert.equal(r.response.cancelled, true);
    assert.ok(r.response.content.startsWith("one "));
    assert.ok(r.response.content.length < "one two three four five six ".length);
  } finally {
    s.close();
  }
});

test("offline: says no model is configured, answers from memory, streams", async () => {
  const u = await register(off, "olga");
  const a = await newChat(off, u, "A");
  const b = await newChat(off, u, "B");
  const s = await connect(off, u);
  try {
    const r1 = await ask(s, a, "My favourite colour is teal.");
    assert.match(r1.response.content, /No language model is configured/);
    assert.match(r1.response.content, /GEMINI_API_KEY/);
    assert.match(r1.response.content, /OPENAI_BASE_URL/);
    assert.ok(r1.chunks.length > 3);
    assert.equal(r1.chunks.map((c) => c.delta).join(""), r1.response.content);
    const r2 = await ask(s, b, "What is my favourite colour?");
    assert.match(r2.response.content, /favourite colour is teal/);
  } finally {
    s.close();
  }
});
