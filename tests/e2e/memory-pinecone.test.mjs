// Pinecone as the vector store of the running server (ENGRAM_VECTORS=pinecone) against the
// fake data plane (tests/fakes/pinecone.mjs): a fact told in chat A is upserted with
// {user, chat, text} and recalled in chat B through a Pinecone query filtered by user and
// model; another user never gets it; DELETE /api/memory/:id and DELETE /api/memory reach
// Pinecone; Pinecone failures: the chat answers from the keyword side, a memory whose
// upsert failed stays pending and the backfill upserts it once Pinecone answers again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startBinary, sleep } from "./lib/proc.mjs";
import { client, waitUntil } from "./lib/app.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

const SRC = process.env.ENGRAM_SRC || path.resolve(".");
const SECRET = "memory-pinecone-secret-0123456789abcdef";
const KEY = "pc-e2e-key";
let fake, pc, pcUrl, srv, dir;

function startPinecone() {
  const child = spawn(process.execPath, [path.join(SRC, "tests/fakes/pinecone.mjs"), "--port", "0", "--key", KEY, "--exit-on-stdin-close"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.once("error", reject);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/PORT=(\d+)/);
      if (m) resolve({ child, url: `http://127.0.0.1:${m[1]}` });
    });
  });
}

const pcPost = (p, body) =>
  fetch(pcUrl + p, { method: "POST", headers: { "content-type": "application/json", "api-key": KEY }, body: JSON.stringify(body ?? {}) });
const pcLog = async () => (await (await fetch(pcUrl + "/__requests")).json()).filter((r) => !r.path.startsWith("/__"));

const { call, register, newChat, connect, ask } = client(() => srv.url);

function dbMemories() {
  const py =
    "import sqlite3,json,sys\n" +
    "c=sqlite3.connect(sys.argv[1])\n" +
    "print(json.dumps([dict(id=r[0],user=r[1],text=r[2],model=r[3]) for r in " +
    "c.execute('SELECT id,user_id,text,embed_model FROM memories ORDER BY id')]))";
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", py, path.join(dir, "engram.db")], { encoding: "utf8" }));
}

const upserted = async (id) =>
  (await pcLog()).filter((r) => r.path === "/vectors/upsert").flatMap((r) => r.body.vectors).find((v) => v.id === id);

before(async () => {
  fake = await startFakeLlm();
  const p = await startPinecone();
  pc = p.child;
  pcUrl = p.url;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-mem-pinecone-"));
  srv = await startBinary("engram", {
    env: {
      ENGRAM_DATA_DIR: dir,
      JWT_SECRET: SECRET,
      ENGRAM_LLM: "openai",
      OPENAI_BASE_URL: fake.url + "/v1",
      ENGRAM_LLM_MODEL: "fake-model",
      ENGRAM_LOG_LEVEL: "error",
      ENGRAM_RATE_MESSAGES: "1000",
      ENGRAM_VECTORS: "pinecone",
      PINECONE_API_KEY: KEY,
      PINECONE_INDEX_HOST: pcUrl,
    },
  });
});

after(async () => {
  if (srv) await srv.stop();
  if (fake) await fake.close();
  if (pc) {
    pc.stdin.end();
    pc.kill();
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

const FACT = "My sister Beatrice lives in Lisbon and she teaches violin there.";

test("a fact told in chat A is recalled in chat B through Pinecone, never for another user", async () => {
  const a = await register("paula");
  const b = await register("pedro");
  const s = await connect(a);
  const c1 = await newChat(a, "Family");
  const r1 = await ask(s, c1, FACT);
  const id = r1.ack.messageId;
  // Upserted with the memory's metadata, then recorded in the store.
  const v = await waitUntil("the fact upserted to Pinecone", () => upserted(id));
  assert.equal(v.values.length, 768);
  assert.equal(v.metadata.user, a.id);
  assert.equal(v.metadata.chat, c1);
  assert.equal(v.metadata.text, FACT);
  assert.equal(v.metadata.model, "hash-v1/768");
  await waitUntil("vector recorded in the store", () => dbMemories().find((m) => m.id === id && m.model === "hash-v1/768"));
  for (const r of await pcLog()) assert.equal(r.headers["api-key"], KEY);

  const c2 = await newChat(a, "Travel");
  const n0 = (await pcLog()).length;
  const r2 = await ask(s, c2, "Which city does my sister Beatrice live in?");
  s.close();
  const mem = r2.response.memories.find((m) => m.id === id);
  assert.ok(mem, JSON.stringify(r2.response.memories));
  assert.equal(mem.text, FACT);
  assert.equal(mem.chatId, c1);
  const queries = (await pcLog()).slice(n0).filter((r) => r.path === "/query");
  assert.ok(queries.length >= 1, "recall queried Pinecone");
  const f = JSON.stringify(queries[0].body.filter);
  assert.ok(f.includes(a.id) && f.includes("hash-v1/768"), f);
  assert.equal(queries[0].body.vector.length, 768);

  // Another user asking the same question gets nothing of Paula's.
  const sb = await connect(b);
  const cb = await newChat(b, "Mine");
  const n1 = (await pcLog()).length;
  const rb = await ask(sb, cb, "Which city does my sister Beatrice live in?");
  sb.close();
  assert.ok(!rb.response.memories.some((m) => m.text === FACT), JSON.stringify(rb.response.memories));
  for (const q of (await pcLog()).slice(n1).filter((r) => r.path === "/query")) {
    const fq = JSON.stringify(q.body.filter);
    assert.ok(fq.includes(b.id) && !fq.includes(a.id), fq);
  }
  const found = await call(b, "GET", "/api/memory?q=" + encodeURIComponent("Beatrice Lisbon violin"));
  assert.equal(found.status, 200);
  assert.ok(!found.body.memories.some((m) => m.text === FACT));
});

test("DELETE /api/memory/:id and DELETE /api/memory reach Pinecone", async () => {
  const u = await register("petra");
  const ids = [];
  for (const text of ["I play the cello on Sundays", "My car is a red Fiat Panda", "I was born in Graz"]) {
    const r = await call(u, "POST", "/api/memory", { text });
    assert.equal(r.status, 201);
    ids.push(r.body.memory.id);
  }
  for (const id of ids) await waitUntil("note upserted", () => upserted(id));

  const n0 = (await pcLog()).length;
  assert.equal((await call(u, "DELETE", `/api/memory/${ids[0]}`)).status, 200);
  const del = (await pcLog()).slice(n0).filter((r) => r.path === "/vectors/delete");
  assert.equal(del.length, 1, "deleted before the response");
  assert.deepEqual(del[0].body.ids, [ids[0]]);
  // Pinecone no longer has it: a query by the user finds only the other two.
  const left = await (await pcPost("/query", { vector: (await upserted(ids[1])).values, topK: 10, filter: { user: { $eq: u.id } } })).json();
  assert.deepEqual(left.matches.map((m) => m.id).sort(), [ids[1], ids[2]].sort());

  const n1 = (await pcLog()).length;
  const all = await call(u, "DELETE", "/api/memory");
  assert.equal(all.status, 200, JSON.stringify(all.body));
  const del2 = (await pcLog()).slice(n1).filter((r) => r.path === "/vectors/delete");
  assert.equal(del2.length, 1);
  assert.deepEqual(del2[0].body.filter, { user: { $eq: u.id } });
  const none = await (await pcPost("/query", { vector: (await upserted(ids[1])).values, topK: 10, filter: { user: { $eq: u.id } } })).json();
  assert.deepEqual(none.matches, []);
});

test("Pinecone down: keyword answers, the memory stays pending, the backfill upserts it later", async () => {
  const u = await register("pia");
  const s = await connect(u);
  const c1 = await newChat(u, "Pool");
  await pcPost("/__script", { queue: Array.from({ length: 40 }, () => ({ status: 503, retryAfter: 0 })) });
  const fact = "My locker code at the swimming pool is 4711.";
  const r1 = await ask(s, c1, fact);
  const id = r1.ack.messageId;
  const c2 = await newChat(u, "Again");
  const r2 = await ask(s, c2, "What is my locker code at the swimming pool?");
  assert.ok(r2.response.memories.some((m) => m.id === id), `keyword side: ${JSON.stringify(r2.response.memories)}`);
  await sleep(200);
  const m = dbMemories().find((x) => x.id === id);
  assert.equal(m.model, null, "pending: no vector recorded while Pinecone failed");

  await pcPost("/__reset");
  await ask(s, c2, "Thanks, that is all.");
  s.close();
  const v = await waitUntil("the backfill upserted the pending memory", () => upserted(id));
  assert.equal(v.metadata.user, u.id);
  assert.equal(v.metadata.chat, c1);
  await waitUntil("recorded in the store", () => dbMemories().find((x) => x.id === id && x.model === "hash-v1/768"));
});
