// Shared helpers for end-to-end tests: start one of the built binaries on a free port,
// wait until it accepts connections, and stop it again, checking that it exited cleanly
// (exit code 0, no sanitizer report). Generic on purpose: any test may use it.
//
//   import { startBinary, freePort, sleep, waitFor } from "./lib/proc.mjs";
//   const srv = await startBinary("echo-server");          // $ENGRAM_BUILD/echo-server
//   ... use srv.port / srv.url ...
//   await srv.stop();                                      // throws on an unclean exit
//
// Options of startBinary(name, opts):
//   env      extra environment variables (PORT is set to the chosen port)
//   args     command-line arguments
//   port     a port to use (default: a free one)
//   readyTimeoutMs  how long to wait for the port to accept connections (default 10 s)
//   allowExitCodes  exit codes stop() accepts besides 0 (for tests that kill on purpose)
import fs from "node:fs";
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";

export const BUILD = process.env.ENGRAM_BUILD || path.resolve("build");

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Picks a free TCP port on loopback by binding port 0 and closing it again.
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Resolves once something accepts a TCP connection on host:port, or rejects after ms.
export async function waitForPort(port, ms = 10000, host = "127.0.0.1") {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect({ port, host });
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${ms} ms`);
    await sleep(25);
  }
}

// Resolves with the arguments of the first `event` the emitter fires, or rejects after ms.
export function waitFor(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    const handler = (...args) => {
      clearTimeout(t);
      off();
      resolve(args.length <= 1 ? args[0] : args);
    };
    const off = () => (emitter.off ? emitter.off(event, handler) : emitter.removeListener(event, handler));
    emitter.on(event, handler);
  });
}

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startBinary(name, opts = {}) {
  const port = opts.port ?? (await freePort());
  const bin = path.join(BUILD, name);
  const child = spawn(bin, opts.args || [], {
    env: { ...process.env, PORT: String(port), ...(opts.env || {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let output = "";
  const keep = (d) => {
    output += d.toString();
    if (output.length > 1 << 20) output = output.slice(-(1 << 19));
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    })
  );
  let early = null;
  exited.then((r) => (early = r));
  try {
    await Promise.race([
      waitForPort(port, opts.readyTimeoutMs ?? 10000),
      exited.then((r) => {
        throw new Error(`${name} exited early (${r.code ?? r.signal}):\n${output}`);
      }),
    ]);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  const allowed = new Set([0, ...(opts.allowExitCodes || [])]);
  return {
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => output,
    exited,
    // Sends SIGTERM, waits (SIGKILL after killAfterMs) and checks the exit was clean.
    async stop({ killAfterMs = 5000, check = true } = {}) {
      if (early === null && child.exitCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      const r = await exited;
      clearTimeout(t);
      if (!check) return r;
      if (r.signal || !allowed.has(r.code)) {
        throw new Error(`${name} exited uncleanly (${r.code ?? r.signal}):\n${output.slice(-8000)}`);
      }
      if (/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.test(output)) {
        throw new Error(`${name} reported a sanitizer error:\n${output.slice(-8000)}`);
      }
      return r;
    },
    // Kills at once (SIGKILL) without checks: crash tests.
    async kill() {
      child.kill("SIGKILL");
      return exited;
    },
  };
}

// The KEY=value lines of the file ctest names in ENGRAM_SERVICES_ENV (PostgreSQL and Redis
// URLs for tests marked @needs-services); {} when there is none.
export function servicesEnv() {
  const file = process.env.ENGRAM_SERVICES_ENV;
  const out = {};
  if (!file || !fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m) out[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return out;
}
