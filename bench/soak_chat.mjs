// soak_chat: the chatting fraction of the soak test (scripts/soak.sh). N Socket.IO clients
// (socket.io-client from node_modules, WebSocket transport), spread over U registered
// users, each with its own chat, each sending one `ai-message` (with an ack) every
// INTERVAL ms (jittered) for DURATION s. Measures the latency from emit to the final
// `ai-response` of that chat, counts errors (ai-response with `error`, a negative or
// missing ack, a disconnect, a reply that never comes within 30 s), and prints one
// `RESULT key=value ...` line.
//
//   node bench/soak_chat.mjs --url http://127.0.0.1:P --conns 100 --users 10 \
//        --interval 2000 --duration 600 [--warmup 30]
import { io } from "socket.io-client";

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const URL = arg("url", "http://127.0.0.1:3000");
const CONNS = +arg("conns", 100);
const USERS = +arg("users", 10);
const INTERVAL = +arg("interval", 2000);
const DURATION = +arg("duration", 600) * 1000;
const WARMUP = +arg("warmup", 30) * 1000;

const stats = { sent: 0, ok: 0, errors: 0, disconnects: 0, timeouts: 0, lat: [], kinds: {} };
const err = (kind) => {
  stats.errors++;
  stats.kinds[kind] = (stats.kinds[kind] || 0) + 1;
};

async function rest(method, path, body, cookie) {
  const r = await fetch(URL + path, {
    method,
    headers: { "content-type": "application/json", ...(cookie ? { cookie } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null, cookie: r.headers.get("set-cookie") };
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
const clients = [];
for (let i = 0; i < CONNS; i++) {
  const cookie = users[i % USERS];
  const c = await rest("POST", "/api/chat", { title: `soak ${i}` }, cookie);
  if (c.status !== 201) throw new Error(`chat: ${c.status}`);
  const chatId = c.json.chat._id;
  const s = io(URL, { transports: ["websocket"], extraHeaders: { cookie }, reconnection: false });
  const st = { s, chatId, pending: null, seq: 0 };
  s.on("ai-response", (m) => {
    if (!st.pending || m.chat !== chatId) return;
    const { at, timer, counted } = st.pending;
    clearTimeout(timer);
    st.pending = null;
    if (m.error) {
      if (counted) err(`response:${m.code}`);
    } else if (counted) {
      stats.ok++;
      stats.lat.push(Date.now() - at);
    }
  });
  s.on("disconnect", (why) => {
    if (!stopping) {
      stats.disconnects++;
      err(`disconnect:${why}`);
    }
  });
  s.on("connect_error", (e) => err(`connect_error:${e.message}`));
  clients.push(st);
}
let stopping = false;

function send(st) {
  if (stopping || !st.s.connected || st.pending) return;
  const counted = measuring();
  const at = Date.now();
  const timer = setTimeout(() => {
    if (st.pending && st.pending.at === at) {
      st.pending = null;
      if (counted) {
        stats.timeouts++;
        err("timeout");
      }
    }
  }, 30000);
  st.pending = { at, timer, counted };
  if (counted) stats.sent++;
  st.s.emit("ai-message", { chatId: st.chatId, content: `soak message ${st.seq++} about apples and ${Math.random()}` },
    (ack) => {
      if (!ack || ack.ok !== true) {
        if (counted) err(`ack:${ack && ack.code}`);
      }
    });
}
for (const st of clients) {
  const tick = () => {
    if (stopping) return;
    send(st);
    st.t = setTimeout(tick, INTERVAL * (0.5 + Math.random()));
  };
  st.t = setTimeout(tick, Math.random() * INTERVAL);
}
await new Promise((r) => setTimeout(r, DURATION));
stopping = true;
await new Promise((r) => setTimeout(r, 3000));
for (const st of clients) {
  clearTimeout(st.t);
  if (st.pending) clearTimeout(st.pending.timer);
  st.s.close();
}
const l = stats.lat.sort((a, b) => a - b);
const q = (p) => (l.length ? l[Math.min(l.length - 1, Math.floor(p * l.length))] : -1);
console.log(`soak_chat: ${CONNS} chatting connections, ${stats.sent} ai-messages sent after warm-up, ` +
  `${stats.ok} answered, ${stats.errors} errors ${JSON.stringify(stats.kinds)}`);
console.log(`soak_chat: latency ai-message -> ai-response p50=${q(0.5)} ms p99=${q(0.99)} ms max=${l.length ? l[l.length - 1] : -1} ms`);
console.log(`RESULT chat_conns=${CONNS} sent=${stats.sent} ok=${stats.ok} errors=${stats.errors} ` +
  `disconnects=${stats.disconnects} timeouts=${stats.timeouts} p50_ms=${q(0.5)} p99_ms=${q(0.99)}`);
process.exit(0);
