// soak_chat: the chatting fraction of the soak test (scripts/soak.sh). N Socket.IO clients
// (socket.io-client from node_modules, WebSocket transport), spread over U registered
// users. Each client is a paced chatter with a fixed working set, the way a real user keeps
// their data bounded:
//   - it sends one `ai-message` (with an ack) every INTERVAL ms (jittered 0.5x..1.5x), and
//     never a second one before the first is answered;
//   - it writes PER_CHAT messages in a chat, then opens a new chat (POST /api/chat) and
//     keeps at most CHATS chats: the oldest is retired by first checking that the server
//     stored exactly what was acked and answered (GET /api/chat/messages/:id: the PER_CHAT
//     user messages and the PER_CHAT answers, by id, each once), then deleting it
//     (DELETE /api/chat/:id, which deletes its messages and memories too).
// So each user holds at most (N/U) * CHATS * PER_CHAT * 2 messages and as many memories,
// and the database and the memory index reach a steady state after the first rotations.
//
// Errors (every one counts, warm-up included): a connect error, a disconnect, an error or
// missing ack, an `ai-response` with `error`, an answer that does not come within TIMEOUT
// ms, a REST call with an unexpected status, a retired chat whose stored messages differ
// from what was acked and answered. Latencies: ai-message -> `ai-response` p50/p99/max of
// the messages sent after WARMUP s, and the chatters' Socket.IO connect latency (at the
// start). Prints one `RESULT key=value ...` line; exits 1 when there was any error.
//
//   node bench/soak_chat.mjs --url http://127.0.0.1:P --conns 100 --users 20 \
//        --interval 5000 --duration 600 [--warmup 120] [--per-chat 10] [--chats 2]
import { io } from "socket.io-client";

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const URL = arg("url", "http://127.0.0.1:3000");
const CONNS = +arg("conns", 100);
const USERS = +arg("users", 20);
const INTERVAL = +arg("interval", 5000);
const DURATION = +arg("duration", 600) * 1000;
const WARMUP = +arg("warmup", 120) * 1000;
const PER_CHAT = +arg("per-chat", 10);
const CHATS = +arg("chats", 2);
const TIMEOUT = +arg("timeout", 30000);

const stats = {
  sent: 0, ok: 0, sentAll: 0, okAll: 0, errors: 0, disconnects: 0, timeouts: 0,
  rotations: 0, checked: 0, lat: [], conn: [], kinds: {}, first: {},
};
const err = (kind, detail) => {
  stats.errors++;
  stats.kinds[kind] = (stats.kinds[kind] || 0) + 1;
  if (!stats.first[kind]) stats.first[kind] = detail || kind;
};

async function rest(method, path, body, cookie) {
  const r = await fetch(URL + path, {
    method,
    headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { raw: text };
  }
  return { status: r.status, json, cookie: r.headers.get("set-cookie") };
}

const run = Date.now().toString(36);
const users = [];
for (let u = 0; u < USERS; u++) {
  const r = await rest("POST", "/api/auth/register", {
    email: `soak-${run}-${u}@example.com`,
    password: "soak-password-123",
    fullName: { firstName: "Soak", lastName: String(u) },
  });
  if (r.status !== 201) throw new Error(`register: ${r.status} ${JSON.stringify(r.json)}`);
  users.push(r.cookie.split(";")[0]);
}

const t0 = Date.now();
const measuring = () => Date.now() - t0 >= WARMUP;
let stopping = false;

async function newChat(st) {
  const c = await rest("POST", "/api/chat", { title: `soak ${st.i} ${st.nchats++}` }, st.cookie);
  if (c.status !== 201 || !c.json?.chat?._id) {
    err(`rest:create:${c.status}`, JSON.stringify(c.json));
    return null;
  }
  const chat = { id: c.json.chat._id, sent: 0, acked: new Set(), answers: new Set() };
  st.chats.push(chat);
  return chat;
}

// The retired chat must hold exactly the acked user messages and the answers, each once.
async function retire(st, chat) {
  let why = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = await rest("GET", `/api/chat/messages/${chat.id}?limit=200`, null, st.cookie);
    if (r.status !== 200) {
      why = `status ${r.status}`;
    } else {
      const msgs = r.json.messages;
      const ids = msgs.map((m) => m._id);
      const user = new Set(msgs.filter((m) => m.role === "user").map((m) => m._id));
      const model = new Set(msgs.filter((m) => m.role === "model").map((m) => m._id));
      const same = (a, b) => a.size === b.size && [...a].every((x) => b.has(x));
      if (new Set(ids).size !== ids.length) why = "a message stored twice";
      else if (!same(user, chat.acked)) why = `user messages ${user.size} stored, ${chat.acked.size} acked`;
      else if (!same(model, chat.answers)) why = `answers ${model.size} stored, ${chat.answers.size} received`;
      else why = "";
      if (!why) break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  if (why) err("stored-mismatch", `chat ${chat.id}: ${why}`);
  else stats.checked++;
  const d = await rest("DELETE", `/api/chat/${chat.id}`, null, st.cookie);
  if (d.status !== 200) err(`rest:delete:${d.status}`, JSON.stringify(d.json));
  st.chats.splice(st.chats.indexOf(chat), 1);
  stats.rotations++;
}

function send(st, chat) {
  const counted = measuring();
  const at = Date.now();
  const timer = setTimeout(() => {
    if (st.pending && st.pending.at === at) {
      st.pending = null;
      stats.timeouts++;
      err("timeout", `no ai-response in ${TIMEOUT} ms (chat ${chat.id})`);
    }
  }, TIMEOUT);
  st.pending = { at, timer, counted, chat };
  chat.sent++;
  stats.sentAll++;
  if (counted) stats.sent++;
  st.s.emit("ai-message",
    { chatId: chat.id, content: `soak message ${chat.sent} from chatter ${st.i} about apples and ${Math.random()}` },
    (ack) => {
      if (!ack || ack.ok !== true || !ack.messageId) err(`ack:${ack && ack.code}`, JSON.stringify(ack));
      else chat.acked.add(ack.messageId);
    });
}

async function tick(st) {
  if (stopping) return;
  try {
    if (!st.s.connected) {
      // not connected (yet, or any more): the connect_error / disconnect was counted
    } else if (st.pending) {
      // still waiting for the previous answer: pace on, the timeout counts a missing one
    } else {
      let chat = st.chats[st.chats.length - 1];
      if (chat.sent >= PER_CHAT) {
        chat = await newChat(st);
        if (chat && st.chats.length > CHATS) await retire(st, st.chats[0]);
      }
      if (chat && !stopping) send(st, chat);
    }
  } catch (e) {
    err("exception", String(e));
  }
  if (!stopping) st.t = setTimeout(() => tick(st), INTERVAL * (0.5 + Math.random()));
}

const clients = [];
for (let i = 0; i < CONNS; i++) {
  const cookie = users[i % USERS];
  const st = { i, cookie, chats: [], nchats: 0, pending: null };
  if (!(await newChat(st))) throw new Error("chat: could not create the first chat");
  const c0 = Date.now();
  const s = io(URL, { transports: ["websocket"], extraHeaders: { cookie }, reconnection: false });
  st.s = s;
  s.on("connect", () => {
    stats.conn.push(Date.now() - c0);
  });
  s.on("ai-response", (m) => {
    const p = st.pending;
    if (!p || m.chat !== p.chat.id) return;
    clearTimeout(p.timer);
    st.pending = null;
    if (m.error) {
      err(`response:${m.code}`, JSON.stringify(m));
      return;
    }
    p.chat.answers.add(m.messageId);
    stats.okAll++;
    if (p.counted) {
      stats.ok++;
      stats.lat.push(Date.now() - p.at);
    }
  });
  s.on("disconnect", (why) => {
    if (!stopping) {
      stats.disconnects++;
      err(`disconnect:${why}`, `chatter ${i}`);
    }
  });
  s.on("connect_error", (e) => err(`connect_error:${e.message}`, `chatter ${i}`));
  clients.push(st);
}
for (const st of clients) st.t = setTimeout(() => tick(st), Math.random() * INTERVAL);

await new Promise((r) => setTimeout(r, DURATION));
stopping = true;
// Answers still owed get their full timeout to arrive.
const owed = () => clients.filter((st) => st.pending).length;
for (let w = 0; w < TIMEOUT + 1000 && owed() > 0; w += 100) await new Promise((r) => setTimeout(r, 100));
for (const st of clients) {
  clearTimeout(st.t);
  if (st.pending) clearTimeout(st.pending.timer);
  st.s.close();
}
const pct = (arr) => {
  const l = arr.slice().sort((a, b) => a - b);
  const q = (p) => (l.length ? l[Math.min(l.length - 1, Math.floor(p * l.length))] : -1);
  return { p50: q(0.5), p99: q(0.99), max: l.length ? l[l.length - 1] : -1 };
};
const lat = pct(stats.lat);
const conn = pct(stats.conn);
const window = (DURATION - WARMUP) / 1000;
const rate = window > 0 ? stats.ok / window : 0;
console.log(`soak_chat: ${CONNS} chatting connections over ${USERS} users, one ai-message every ~${INTERVAL} ms each, ` +
  `${PER_CHAT} per chat, ${CHATS} chats kept: ${stats.sentAll} ai-messages sent (${stats.sent} after the ${WARMUP / 1000} s warm-up), ` +
  `${stats.okAll} answered (${stats.ok} after warm-up: ${rate.toFixed(1)} answers/s); ${stats.rotations} chats retired, ` +
  `${stats.checked} of them checked intact; ${stats.errors} errors ${JSON.stringify(stats.kinds)}`);
for (const [k, v] of Object.entries(stats.first)) console.log(`soak_chat: first ${k}: ${v}`);
console.log(`soak_chat: latency ai-message -> ai-response after warm-up p50=${lat.p50} ms p99=${lat.p99} ms max=${lat.max} ms; ` +
  `Socket.IO connect p50=${conn.p50} ms p99=${conn.p99} ms`);
console.log(`RESULT chat_conns=${CONNS} sent=${stats.sent} ok=${stats.ok} sent_all=${stats.sentAll} ok_all=${stats.okAll} ` +
  `rate=${rate.toFixed(2)} errors=${stats.errors} disconnects=${stats.disconnects} timeouts=${stats.timeouts} ` +
  `rotations=${stats.rotations} checked=${stats.checked} p50_ms=${lat.p50} p99_ms=${lat.p99} max_ms=${lat.max} ` +
  `connect_p50_ms=${conn.p50} connect_p99_ms=${conn.p99}`);
process.exit(stats.errors ? 1 : 0);
