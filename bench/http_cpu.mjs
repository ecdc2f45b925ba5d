// Server CPU per HTTP request: N GET requests (default /healthz) over C keep-alive
// connections at once, after 500 warm-up requests; the server's utime+stime from
// /proc/PID/stat before and after, divided by N (clock ticks of 10 ms: use N >= 20000).
//   node bench/http_cpu.mjs PORT SERVER_PID [N] [C] [PATH]
// Used for the cost of request ids and the access log (bench/README.md "Observability").
import fs from "node:fs";
import http from "node:http";
const [port, pid, N = "20000", C = "16", p = "/healthz"] = process.argv.slice(2);
const ticks = () => { const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return Number(f[11]) + Number(f[12]); };
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(C) });
const get = () => new Promise((res, rej) => http.get({ host: "127.0.0.1", port, path: p, agent }, (r) => { r.resume(); r.on("end", res); }).on("error", rej));
for (let i = 0; i < 500; i++) await get(); // warm-up
const t0 = ticks(), w0 = performance.now();
let left = Number(N);
await Promise.all(Array.from({ length: Number(C) }, async () => { while (left-- > 0) await get(); }));
const cpuUs = ((ticks() - t0) * 1e6) / 100, wall = performance.now() - w0;
console.log(`${N} requests: server CPU ${(cpuUs / Number(N)).toFixed(2)} us/request, ${(Number(N) / (wall / 1000)).toFixed(0)} requests/s`);
agent.destroy();
