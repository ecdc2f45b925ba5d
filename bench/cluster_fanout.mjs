// The extra latency of the Redis fan-out per emit: one user with three sockets, the
// sender and a "local" receiver on node A, a "remote" receiver on node B. Each
// ai-message's chat-message broadcast reaches the local receiver straight from node A
// and the remote one through Redis (PUBLISH, node B's subscription, node B's delivery);
// the difference of the two arrival times is what the fan-out adds.
//
//   node bench/cluster_fanout.mjs URL_A URL_B [SECRET] [ignored] [N=300]
import { io } from "socket.io-client";
import { randomBytes } from "node:crypto";

const [urlA, urlB] = process.argv.slice(2);
const N = Number(process.argv[6] || process.env.N || 300);
const run = randomBytes(4).toString("hex");

const r = await fetch(urlA + "/api/auth/register", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ email: `fanout-${run}@example.com`, password: "fanout-password-1", fullName: { firstName: "f", lastName: "o" } }),
});
if (r.status !== 201) throw new Error(`register: ${r.status} ${await r.text()}`);
const c = r.headers.getSetCookie().find((v) => v.startsWith("token="));
const cookie = c.slice(0, c.indexOf(";"));
const chat = (await (await fetch(urlA + "/api/chat", { method: "POST", headers: { "content-type": "application/json", cookie }, body: JSON.stringify({ title: "fanout" }) })).json()).chat._id;

const connect = (url) =>
  new Promise((resolve, reject) => {
    const s = io(url, { transports: ["websocket"], extraHeaders: { cookie }, reconnection: false, forceNew: true });
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
const [sender, local, remote] = await Promise.all([connect(urlA), connect(urlA), connect(urlB)]);
const seen = new Map(); // content -> {l, r}
const mark = (k) => (m) => {
  if (m.message.role !== "user") return;
  const e = seen.get(m.message.content) || {};
  e[k] = process.hrtime.bigint();
  seen.set(m.message.content, e);
};
local.on("chat-message", mark("l"));
remote.on("chat-message", mark("r"));

const extra = [];
for (let i = 0; i < N; i++) {
  const content = `fanout ${i}`;
  const done = new Promise((resolve) => sender.once("ai-response", resolve));
  await sender.timeout(10000).emitWithAck("ai-message", { chatId: chat, content });
  await done;
  for (let k = 0; k < 100 && !(seen.get(content)?.l && seen.get(content)?.r); k++) await new Promise((res) => setTimeout(res, 1));
  const e = seen.get(content);
  if (e?.l && e?.r && i >= 20) extra.push(Number(e.r - e.l) / 1000); // us, after warm-up
}
extra.sort((a, b) => a - b);
const q = (p) => extra[Math.min(extra.length - 1, Math.floor(p * extra.length))];
console.log(`cluster: Redis fan-out adds p50 ${(q(0.5) / 1000).toFixed(3)} ms, p90 ${(q(0.9) / 1000).toFixed(3)} ms, p99 ${(q(0.99) / 1000).toFixed(3)} ms per emit (remote minus local arrival, ${extra.length} emits)`);
const m = await (await fetch(urlA + "/metrics")).text();
const cnt = /^engram_redis_publish_seconds_count (\d+)/m.exec(m), sum = /^engram_redis_publish_seconds_sum ([\d.e+-]+)/m.exec(m);
if (cnt && sum && Number(cnt[1])) console.log(`cluster: PUBLISH round trip on node A: mean ${((Number(sum[1]) / Number(cnt[1])) * 1000).toFixed(3)} ms over ${cnt[1]} publishes`);
for (const s of [sender, local, remote]) s.close();
