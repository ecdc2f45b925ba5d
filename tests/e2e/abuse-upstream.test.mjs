// Upstream faults the chat pipeline must survive (SECURITY.md): the model API answers 429
// or 503, resets the connection, never answers (hang), stalls mid-stream, or sends
// garbage. For each: the ack says the user message is stored, the client gets a clear
// ai-response error (code llm_unavailable or rate_limited), the message is in the chat,
// and the server keeps serving other users meanwhile and the same chat afterwards.
// (Embedding faults and the memory backfill: tests/e2e/memory-embedders.test.mjs.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary } from "./lib/proc.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

let fake, srv, dir;

async function register(name) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${name}@example.com`, password: `${name}-password-1`, fullName: { firstName: name, lastName: "T" } }),
  });
  assert.equal(r.status, 201);
  const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
  return { cookie: c.slice(0, c.indexOf(";")) };
}
async function newChat(u) {
  const r = await fetch(srv.url + "/api/chat", { method: "POST", headers: { cookie: u.cookie, "content-type": "application/json" }, body: '{"title":"faults"}' });
  return (await r.json()).chat._id;
}
function connect(u) {
  const s = io(srv.url, { transports: ["websocket"], extraHeaders: { cookie: u.cookie }, reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}
async function ask(s, chatId, content) {
  const final = new Promise((resolve) => {
    const h = (r) => { if (r.chat === chatId) { s.off("ai-response", h); resolve(r); } };
    s.on("ai-response", h);
  });
  const ack = await s.timeout(10000).emitWithAck("ai-message", { chatId, content });
  return { ack, response: await final };
}
const script = (queue) => fetch(fake.url + "/__script", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ queue }) });

before(async () => {
  fake = await startFakeLlm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-abuse-upstream-"));
  srv = await startBinary("engram", {
    env: {
      ENGRAM_DATA_DIR: dir, JWT_SECRET: "abuse-upstream-secret-0123456789abc", ENGRAM_LLM: "openai",
      OPENAI_BASE_URL: fake.url + "/v1", ENGRAM_LLM_MODEL: "fake-model", ENGRAM_LOG_LEVEL: "error",
      ENGRAM_LLM_TIMEOUT_MS: "2500", ENGRAM_LLM_MAX_TRIES: "1", ENGRAM_RATE_MESSAGES: "1000",
    },
  });
});

after(async () => {
  if (srv) await srv.stop();
  if (fake) await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// The model's timeouts are not configurable from the server's settings yet (src/app/main.c
// takes llm_config_defaults: 60 s to the first byte, 3 tries, ENGRAM_LLM_TIMEOUT_MS and
// ENGRAM_LLM_MAX_TRIES are not read), so a hanging or stalled model costs ~3 minutes
// before the error: that case runs only with ENGRAM_TEST_SLOW=1 (SECURITY.md, open items).
const QUICK = [
  { type: "rate_limit", retryAfter: 1 },
  { type: "status", status: 503 },
  { type: "reset" },
  { type: "raw", status: 200, headers: { "content-type": "text/event-stream" }, chunks: ["data: \u0000\u00ff{{{\n\n", "garbage\r\n\r\n"] },
  { type: "raw", status: 200, headers: { "content-type": "application/json" }, body: "<html>proxy error</html>" },
];
const SLOW = [{ type: "hang" }, { type: "stall", chunks: ["partial "], delayMs: 10 }];

test("429, 503, reset and garbage: clear error, message kept, server serving", async () => {
  await faultRound("quick", QUICK, 15000);
});

test("hang and stall mid-stream: clear error, message kept, server serving", { skip: process.env.ENGRAM_TEST_SLOW ? false : "slow (~6 min with the built-in LLM timeouts); ENGRAM_TEST_SLOW=1 runs it" }, async () => {
  await faultRound("slow", SLOW, 400000);
});

async function faultRound(name, faults, maxMs) {
  const u = await register(`victim-${name}`);
  const other = await register(`bystander-${name}`);
  const c = await newChat(u);
  const s = await connect(u);
  const so = await connect(other);
  try {
    for (const f of faults) {
      await fetch(fake.url + "/__reset", { method: "POST" });
      // Retried faults (429, 5xx, reset) are queued often enough to exhaust the tries.
      await script(Array.from({ length: 4 }, () => ({ match: "chat", ...f })));
      const t0 = Date.now();
      const pending = ask(s, c, `fault ${f.type} ${f.status ?? ""}`);
      // Meanwhile another user is served at once.
      const echo = await so.timeout(2000).emitWithAck("echo", "alive");
      assert.equal(echo, "alive", `${f.type}: the server is not blocked`);
      const { ack, response } = await pending;
      assert.equal(ack.ok, true, `${f.type}: the user message is stored and acked`);
      assert.ok(["llm_unavailable", "rate_limited"].includes(response.code), `${f.type}: ${JSON.stringify(response)}`);
      assert.ok(typeof response.error === "string" && response.error.length > 0);
      assert.ok(Date.now() - t0 < maxMs, `${f.type}: error after ${Date.now() - t0} ms`);
      const ms = (await (await fetch(srv.url + `/api/chat/messages/${c}`, { headers: { cookie: u.cookie } })).json()).messages;
      assert.ok(ms.some((m) => m.role === "user" && m.content === `fault ${f.type} ${f.status ?? ""}`), `${f.type}: message kept`);
    }
    await fetch(fake.url + "/__reset", { method: "POST" });
    const ok = await ask(s, c, "back to normal?");
    assert.equal(ok.response.error, undefined, JSON.stringify(ok.response));
    assert.ok(ok.response.content.includes("back to normal?"));
  } finally {
    s.disconnect();
    so.disconnect();
  }
}
