// Remote embedders in the running server: memories made with the hash embedder are
// re-embedded by the backfill after a restart with ENGRAM_EMBEDDER=openai (against the fake
// model server), recall then works with the new model's vectors; an embedder that fails
// leaves memories pending while the chat still answers from the keyword side, and the
// backfill catches up once the embedder recovers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startBinary } from "./lib/proc.mjs";
import { client, waitUntil } from "./lib/app.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

const SECRET = "memory-embedders-secret-0123456789abcdef";
const OPENAI_MODEL = "openai:text-embedding-3-small/768";
let fake, srv, dir;

function env(extra = {}) {
  return {
    ENGRAM_DATA_DIR: dir,
    JWT_SECRET: SECRET,
    ENGRAM_LLM: "openai",
    OPENAI_BASE_URL: fake.url + "/v1",
    ENGRAM_LLM_MODEL: "fake-model",
    ENGRAM_LOG_LEVEL: "error",
    ENGRAM_RATE_MESSAGES: "1000",
    ...extra,
  };
}

// Reads the memories table of the SQLite store (model and dims of each vector).
const app = client(() => srv.url);
const { call, register, login, newChat, connect } = app;
const ask = async (sock, chatId, content) => (await app.ask(sock, chatId, content)).response;

function dbMemories() {
  const py =
    "import sqlite3,json,sys\n" +
    "c=sqlite3.connect(sys.argv[1])\n" +
    "print(json.dumps([dict(id=r[0],text=r[1],model=r[2],dims=r[3]) for r in " +
    "c.execute('SELECT id,text,embed_model,dims FROM memories ORDER BY id')]))";
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", py, path.join(dir, "engram.db")], { encoding: "utf8" }));
}

const script = (queue) =>
  fetch(fake.url + "/__script", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ queue }) });
const reset = () => fetch(fake.url + "/__reset", { method: "POST" });
const embedRequests = async () =>
  (await (await fetch(fake.url + "/__requests")).json()).filter((r) => r.path.endsWith("/embeddings"));
async function metric(name) {
  const t = await (await fetch(srv.url + "/metrics")).text();
  const m = t.match(new RegExp(`^${name} (\\d+)`, "m"));
  return m ? Number(m[1]) : NaN;
}

before(async () => {
  fake = await startFakeLlm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-mem-embedders-"));
});

after(async () => {
  if (srv) await srv.stop();
  if (fake) await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const FACTS = [
  "My sister Beatrice lives in Lisbon and teaches violin there.",
  "Our dog is a grey whippet called Pixel.",
  "I am allergic to hazelnuts since childhood.",
];

test("hash memories are re-embedded with the openai embedder after a restart; recall works", async () => {
  srv = await startBinary("engram", { env: env() });
  const u = await register("erin");
  for (const text of FACTS) assert.equal((await call(u, "POST", "/api/memory", { text })).status, 201);
  const chat = await newChat(u, "Plans");
  const s = await connect(u);
  await ask(s, chat, "Next spring we will visit Kyoto for the cherry blossoms.");
  s.close();
  // Every memory holds a hash vector.
  await waitUntil("hash vectors", () => {
    const m = dbMemories();
    return m.length >= 5 && m.every((x) => x.model === "hash-v1/768") && m;
  });
  await srv.stop();

  await reset();
  srv = await startBinary("engram", { env: env({ ENGRAM_EMBEDDER: "openai" }) });
  const mems = await waitUntil("every memory re-embedded by the openai model", () => {
    const m = dbMemories();
    return m.every((x) => x.model === OPENAI_MODEL && x.dims === 768) && m;
  });
  assert.ok(mems.length >= 5);
  const embedded = (await embedRequests()).flatMap((r) => (Array.isArray(r.body.input) ? r.body.input : [r.body.input]));
  for (const m of mems) if (m.text) assert.ok(embedded.includes(m.text), `not sent to the embedder: ${m.text}`);
  for (const r of await embedRequests()) assert.equal(r.body.dimensions, 768);
  assert.ok((await metric("engram_memories_backfilled_total")) >= mems.length);

  // Recall with the new model: REST search and the chat pipeline.
  const u2 = await login("erin");
  const found = await call(u2, "GET", "/api/memory?q=" + encodeURIComponent("Which city does Beatrice live in?"));
  assert.equal(found.status, 200);
  assert.equal(found.body.memories[0].text, FACTS[0], JSON.stringify(found.body));
  const before = (await embedRequests()).length;
  const s2 = await connect(u2);
  const chat2 = await newChat(u2, "Pets");
  const r = await ask(s2, chat2, "What breed is our dog Pixel?");
  s2.close();
  assert.ok(r.memories.some((m) => m.text === FACTS[1]), JSON.stringify(r.memories));
  const q = (await embedRequests()).slice(before);
  assert.ok(q.some((x) => (Array.isArray(x.body.input) ? x.body.input : [x.body.input]).includes("What breed is our dog Pixel?")), "the query was embedded by the openai embedder");
});

test("a failing embedder leaves memories pending, the chat answers by keywords, the backfill catches up", async () => {
  assert.ok(srv, "runs after the first test");
  const u = await login("erin");
  const chat = await newChat(u, "Outage");
  const failures0 = await metric("engram_embed_failures_total");
  // Every embedding request fails with 500 (retried quickly) until the fake recovers.
  await script(Array.from({ length: 400 }, () => ({ match: "embed", type: "status", status: 500, retryAfterMs: 1 })));
  const s = await connect(u);
  const fact = "My locker code at the swimming pool is 4711.";
  await ask(s, chat, fact);
  const chat2 = await newChat(u, "Allergies");
  const r = await ask(s, chat2, "Which nuts am I allergic to, hazelnuts?");
  assert.ok(r.content.length > 0);
  assert.ok(r.memories.some((m) => m.text === FACTS[2]), `keyword side answers: ${JSON.stringify(r.memories)}`);
  assert.ok((await metric("engram_embed_failures_total")) > failures0);
  const pending = dbMemories().filter((m) => m.model !== OPENAI_MODEL);
  assert.ok(pending.some((m) => m.text === fact), "the new message stays pending");

  // Recovery: the next successful embedding kicks the backfill.
  await reset();
  await ask(s, chat2, "Thanks, that is all for today.");
  s.close();
  await waitUntil("the backfill embedded the pending memories", () =>
    dbMemories().every((m) => m.model === OPENAI_MODEL),
  );
  const found = await call(u, "GET", "/api/memory?q=" + encodeURIComponent("swimming pool locker code"));
  assert.equal(found.body.memories[0].text, fact);
});

test("switching to the gemini embedder re-embeds everything with gemini-embedding-001 (768 dims, task types)", async () => {
  assert.ok(srv, "runs after the first tests");
  await srv.stop();
  await reset();
  srv = await startBinary("engram", {
    env: env({ ENGRAM_EMBEDDER: "gemini", GEMINI_API_KEY: "gem-test-key", ENGRAM_GEMINI_BASE_URL: fake.url }),
  });
  const GEM = "gemini:gemini-embedding-001/768";
  const mems = await waitUntil("every memory re-embedded by gemini", () => {
    const m = dbMemories();
    return m.every((x) => x.model === GEM && x.dims === 768) && m;
  });
  const reqs = (await (await fetch(fake.url + "/__requests")).json()).filter((r) => /:(batchEmbedContents|embedContent)$/.test(r.path));
  assert.ok(reqs.length >= 1);
  for (const r of reqs) {
    assert.equal(r.headers["x-goog-api-key"], "gem-test-key");
    for (const q of r.body.requests || [r.body]) {
      assert.equal(q.taskType, "RETRIEVAL_DOCUMENT");
      assert.equal(q.outputDimensionality, 768);
    }
  }
  const u = await login("erin");
  const found = await call(u, "GET", "/api/memory?q=" + encodeURIComponent("swimming pool locker code"));
  assert.equal(found.status, 200);
  assert.equal(found.body.memories[0].text, "My locker code at the swimming pool is 4711.");
  const q = (await (await fetch(fake.url + "/__requests")).json()).filter((r) => r.path.endsWith(":embedContent") && r.body.taskType === "RETRIEVAL_QUERY");
  assert.ok(q.length >= 1, "the query embedded as RETRIEVAL_QUERY");
  assert.ok(mems.length >= 8);
});
