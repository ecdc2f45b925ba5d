// @needs-services
// Crash safety: clients keep sending ai-messages (each with a clientId, retried after a
// reconnect until acked) while engram is killed with SIGKILL at random moments and
// restarted, KILLS times. Afterwards every acked message is in the database exactly once
// (a retry of the same clientId never stores a second copy and acks the same id), and the
// database is consistent: SQLite's PRAGMA integrity_check and foreign_key_check;
// PostgreSQL: no message without its chat, no memory without its user.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { io } from "socket.io-client";
import { startBinary, freePort, sleep, servicesEnv } from "./lib/proc.mjs";
import { startFakeLlm } from "../fakes/fake-llm.mjs";

const KILLS = Number(process.env.ENGRAM_CRASH_KILLS || 20);
const CLIENTS = 6;
const SECRET = "crash-test-secret-0123456789abcdef";
let fake;


before(async () => {
  fake = await startFakeLlm();
});
after(async () => {
  if (fake) await fake.close();
});

async function crashRun(db, query) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "engram-crash-"));
  const port = await freePort();
  const env = {
    ENGRAM_DATA_DIR: dir,
    ENGRAM_DB: db(dir),
    JWT_SECRET: SECRET,
    ENGRAM_LLM: "openai",
    OPENAI_BASE_URL: fake.url + "/v1",
    ENGRAM_RATE_MESSAGES: "0",
    ENGRAM_LOG_LEVEL: "error",
  };
  let srv = await startBinary("engram", { port, env });
  const url = srv.url;
  const post = async (p, body, cookie) => {
    const r = await fetch(url + p, {
      method: "POST",
      headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}) },
      body: JSON.stringify(body),
    });
    assert.ok(r.status < 300, `${p}: ${r.status}`);
    return r;
  };
  const email = `crash-${randomBytes(4).toString("hex")}@example.com`;
  const reg = await post("/api/auth/register", { email, password: "crash-password-1", fullName: { firstName: "C", lastName: "K" } });
  const cookie = reg.headers.getSetCookie()[0].split(";")[0];
  const chats = [];
  for (let i = 0; i < CLIENTS; i++) chats.push((await (await post("/api/chat", { title: `c${i}` }, cookie)).json()).chat._id);

  const acked = new Map(); // clientId -> messageId
  let stop = false;
  const clients = chats.map((chatId, i) => (async () => {
    const s = io(url, { transports: ["websocket"], extraHeaders: { cookie }, reconnectionDelay: 50, reconnectionDelayMax: 200 });
    let n = 0;
    while (!stop) {
      const clientId = `client-${i}-${n}`;
      if (!s.connected) { await sleep(20); continue; }
      try {
        const a = await s.timeout(1500).emitWithAck("ai-message", { chatId, content: `message ${n} from client ${i}`, clientId });
        if (a.ok) {
          const before = acked.get(clientId);
          assert.ok(before === undefined || before === a.messageId, `clientId ${clientId} acked as ${before} and ${a.messageId}`);
          acked.set(clientId, a.messageId);
          n++;
        } else {
          assert.fail(`ack refused: ${JSON.stringify(a)}`);
        }
      } catch (e) {
        if (e.code === "ERR_ASSERTION") throw e;
        // No ack (the server died): retry the same clientId after reconnecting.
      }
    }
    s.close();
  })());

  for (let k = 0; k < KILLS; k++) {
    await sleep(150 + Math.floor(Math.random() * 450));
    await srv.kill();
    srv = await startBinary("engram", { port, env });
  }
  await sleep(500);
  stop = true;
  await Promise.all(clients);
  await srv.stop();

  assert.ok(acked.size >= KILLS, `too few messages acked: ${acked.size}`);
  const ids = [...acked.values()];
  const found = query(dir, `SELECT id FROM messages WHERE id IN (${ids.map((x) => `'${x}'`).join(",")})`);
  assert.equal(new Set(found).size, ids.length, "an acked message is missing");
  const dups = query(dir, "SELECT chat_id || ':' || client_id FROM messages WHERE client_id IS NOT NULL GROUP BY chat_id, client_id HAVING count(*) > 1");
  assert.deepEqual(dups, [], "a message was stored twice");
  const copies = query(dir, "SELECT content FROM messages WHERE role = 'user' GROUP BY chat_id, content HAVING count(*) > 1");
  assert.deepEqual(copies, [], "a user message appears twice");
  return { dir, acked: acked.size };
}

test(`SQLite: ${KILLS} kill -9 during a message burst lose no acked message`, async () => {
  const sql = (dir, q) => {
    const r = spawnSync("sqlite3", [path.join(dir, "engram.db"), q], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").filter(Boolean);
  };
  const { dir, acked } = await crashRun((d) => path.join(d, "engram.db"), sql);
  assert.deepEqual(sql(dir, "PRAGMA integrity_check"), ["ok"]);
  assert.deepEqual(sql(dir, "PRAGMA foreign_key_check"), []);
  console.log(`sqlite: ${KILLS} kills, ${acked} acked messages checked`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test(`PostgreSQL: ${KILLS} kill -9 during a message burst lose no acked message`, async (t) => {
  const pg = servicesEnv().ENGRAM_TEST_PG;
  if (!pg) return t.skip("no PostgreSQL (run through ctest, which starts it)");
  const dbname = `crash_${randomBytes(4).toString("hex")}`;
  const admin = spawnSync("psql", [pg, "-qc", `CREATE DATABASE ${dbname}`], { encoding: "utf8" });
  assert.equal(admin.status, 0, admin.stderr);
  const url = pg.replace(/\/[^/]*$/, `/${dbname}`);
  const sql = (_dir, q) => {
    const r = spawnSync("psql", [url, "-Atqc", q], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").filter(Boolean);
  };
  try {
    const { dir, acked } = await crashRun(() => url, sql);
    assert.deepEqual(sql(dir, "SELECT m.id FROM messages m LEFT JOIN chats c ON c.id = m.chat_id WHERE c.id IS NULL"), []);
    assert.deepEqual(sql(dir, "SELECT m.id FROM memories m LEFT JOIN users u ON u.id = m.user_id WHERE u.id IS NULL"), []);
    console.log(`postgres: ${KILLS} kills, ${acked} acked messages checked`);
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    spawnSync("psql", [pg, "-qc", `DROP DATABASE IF EXISTS ${dbname} WITH (FORCE)`]);
  }
});
