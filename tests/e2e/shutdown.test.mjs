// Graceful shutdown: on SIGTERM engram refuses new ai-messages, lets running answers
// finish (up to ENGRAM_SHUTDOWN_MS; past it they are cancelled and what was streamed is
// stored, marked cancelled), flushes the store and exits 0; clients reconnect to the
// restarted server by themselves and carry on.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, freePort, waitFor, sleep } from "./lib/proc.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

let fake, dir, port;
const SECRET = "shutdown-test-secret-0123456789abcdef";
const env = (extra = {}) => ({
  ENGRAM_DATA_DIR: dir, JWT_SECRET: SECRET, ENGRAM_LLM: "openai", OPENAI_BASE_URL: fake.url + "/v1",
  ENGRAM_LOG_LEVEL: "warn", ...extra,
});
const script = (queue) => fetch(fake.url + "/__script", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ queue }) });

before(async () => {
  fake = await startFakeLlm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-shutdown-"));
  port = await freePort();
});
after(async () => {
  if (fake) await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function setup(srv, name) {
  const r = await fetch(srv.url + "/api/auth/register", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: `${name}@example.com`, password: "shutdown-pw-1", fullName: { firstName: name, lastName: "S" } }),
  });
  assert.equal(r.status, 201);
  const cookie = r.headers.getSetCookie()[0].split(";")[0];
  const c = await fetch(srv.url + "/api/chat", { method: "POST", headers: { "content-type": "application/json", cookie }, body: JSON.stringify({ title: "t" }) });
  return { cookie, chat: (await c.json()).chat._id };
}
const messages = async (url, u) => (await (await fetch(`${url}/api/chat/messages/${u.chat}`, { headers: { cookie: u.cookie } })).json()).messages;

test("SIGTERM lets a running answer finish, refuses new messages, exits 0; clients reconnect", async (t) => {
  let srv = await startBinary("engram", { port, env: env() });
  t.after(() => { s.close(); srv.child.kill("SIGKILL"); });
  const u = await setup(srv, "sigterm");
  const s = io(srv.url, { transports: ["websocket"], extraHeaders: { cookie: u.cookie }, reconnectionDelay: 100, reconnectionDelayMax: 300 });
  await waitFor(s, "connect");
  await script([{ match: "chat", type: "stream", chunks: ["one ", "two ", "three ", "four"], delayMs: 250 }]);
  const final = new Promise((resolve) => s.on("ai-response", (r) => r.content !== undefined && resolve(r)));
  const first = waitFor(s, "ai-response-chunk", 5000);
  const a = await s.timeout(5000).emitWithAck("ai-message", { chatId: u.chat, content: "count to four" });
  assert.equal(a.ok, true);
  await first;
  srv.child.kill("SIGTERM");
  await sleep(50);
  const refused = await s.timeout(3000).emitWithAck("ai-message", { chatId: u.chat, content: "too late" });
  assert.equal(refused.ok, false);
  assert.equal(refused.code, "internal");
  assert.match(refused.error, /shutting down/);
  const r = await final;
  assert.equal(r.content, "one two three four");
  assert.equal(r.cancelled, undefined);
  const ex = await srv.exited;
  assert.equal(ex.code, 0, srv.output());

  srv = await startBinary("engram", { port, env: env() });
  if (!s.connected) await waitFor(s, "connect", 10000); // the client comes back by itself
  const ms = await messages(srv.url, u);
  assert.deepEqual(ms.map((m) => m.content), ["count to four", "one two three four"]);
  const again = waitFor(s, "ai-response", 10000);
  assert.equal((await s.timeout(5000).emitWithAck("ai-message", { chatId: u.chat, content: "back again" })).ok, true);
  assert.ok((await again).content.includes("back again"));
  s.close();
  await srv.stop();
});

test("past the shutdown deadline a running answer is cancelled and stored as cancelled", async (t) => {
  let srv = await startBinary("engram", { port, env: env({ ENGRAM_SHUTDOWN_MS: "400" }) });
  t.after(() => { s.close(); srv.child.kill("SIGKILL"); });
  const u = await setup(srv, "deadline");
  const s = io(srv.url, { transports: ["websocket"], extraHeaders: { cookie: u.cookie }, reconnection: false });
  await waitFor(s, "connect");
  await script([{ match: "chat", type: "stream", chunks: ["a ", "b ", "c ", "d ", "e ", "f ", "g ", "h "], delayMs: 300 }]);
  const final = waitFor(s, "ai-response", 10000);
  const first = waitFor(s, "ai-response-chunk", 5000);
  await s.timeout(5000).emitWithAck("ai-message", { chatId: u.chat, content: "a long answer please" });
  await first;
  const t0 = Date.now();
  srv.child.kill("SIGTERM");
  const r = await final;
  assert.equal(r.cancelled, true);
  const ex = await srv.exited;
  assert.equal(ex.code, 0);
  assert.ok(Date.now() - t0 < 3000, "the deadline was not kept");
  srv = await startBinary("engram", { port, env: env() });
  const ms = await messages(srv.url, u);
  assert.equal(ms.length, 2);
  assert.equal(ms[1].cancelled, true);
  assert.equal(ms[1].content, r.content);
  s.close();
  await srv.stop();
});
