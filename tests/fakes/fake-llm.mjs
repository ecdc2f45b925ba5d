#!/usr/bin/env node
// Fake Gemini + OpenAI-compatible model server for engram's tests (no framework, no
// network). Follows /work/shared/PROVIDER-CONTRACTS.md sections 1-3 and 5.
//
// Run:   node tests/fakes/fake-llm.mjs [--port N] [--exit-on-stdin-close]
//        prints one line "PORT=<n>" on stdout once listening (port 0 = a free one).
// Import: import { startFakeLlm } from './fake-llm.mjs';
//         const fake = await startFakeLlm(); fake.port, fake.url, await fake.close()
//
// Served (model routes):
//   POST /v1beta/models/{model}:generateContent
//   POST /v1beta/models/{model}:streamGenerateContent?alt=sse  (without alt=sse: a JSON
//        array of responses, as the real service does)
//   POST /v1beta/models/{model}:embedContent, :batchEmbedContents (<= 100 requests)
//   POST {prefix}/chat/completions (stream true/false), {prefix}/embeddings,
//   GET  {prefix}/models            ({prefix} is usually /v1)
// Gemini auth: x-goog-api-key header or ?key=; missing -> 403 PERMISSION_DENIED, the key
// "invalid-key" -> 400 INVALID_ARGUMENT/API_KEY_INVALID. OpenAI auth: when the env
// FAKE_OPENAI_KEY is set, "Authorization: Bearer <that>" is required (401 otherwise).
// The model "missing-model" answers 404 on both dialects.
//
// Control:
//   POST /__script  {"queue":[behaviour, ...]} (or a bare array): appended to the queue.
//                   Each model request takes the first queued behaviour whose "match"
//                   (substring of "<METHOD> <path>", or "generate" / "chat" / "embed")
//                   fits; a behaviour without "match" fits generation requests only
//                   (generate / chat), never embeddings. None -> the default behaviour.
//                   Embedding routes know the behaviours status, rate_limit, hang,
//                   reset, raw and {shuffle:true} (OpenAI: data in reverse order).
//   POST /__reset   clears the queue and the request log.
//   GET  /__requests [{method, path, query, headers, body (parsed JSON or text), t}]
//   GET  /__health  {"ok":true}
//
// Default behaviour: an instant deterministic answer "You said: <last user message>" (for
// Gemini: the last text part of the last user turn) streamed in three chunks (Gemini SSE with CRLF, OpenAI SSE with LF and [DONE]).
//
// Behaviours ({type, ...options}); options common to streams: text, chunks (array),
// delayMs (per chunk), firstDelayMs, eol ("crlf"|"lf"|"cr"), keepalive (n comment lines
// first), finishReason, usage (bool, OpenAI usage chunk), dialect ("ollama"|"llamacpp"|
// "vllm" tweak the OpenAI chunk shapes).
//   stream            normal streamed answer
//   status            {status, body?, headers?, error?}: an error response; body defaults
//                     to the dialect's error envelope; headers e.g. {"Retry-After":"1"}
//   rate_limit        429 with the dialect's envelope; retryAfter / retryAfterMs headers,
//                     retryDelay (Gemini RetryInfo, e.g. "1s"), quota (OpenAI
//                     insufficient_quota)
//   midstream_error   some chunks, then data: {"error":{...}} (then [DONE] when done:true)
//   named_error       some chunks, then "event: error" with a data payload
//   truncate          some chunks, then half an event, then the connection is closed
//                     (no final chunk of the chunked encoding)
//   truncate_clean    some chunks, then a clean end without finish marker / [DONE]
//   malformed         one event whose data is not JSON
//   hang              headers never come; the socket stays open until the client goes
//   stall             some chunks, then silence (idle timeout tests)
//   reset             the connection is destroyed without a response
//   blocked           Gemini promptFeedback.blockReason (blockReason option, default SAFETY)
//   safety            Gemini candidate finishReason SAFETY without content
//   empty             Gemini candidate content {"role":"model"} finishReason STOP
//                     (OpenAI: only a finish chunk)
//   raw               {status, headers, chunks:[strings] | body (or bodyBase64) + splitAt:[byte offsets],
//                     delayMs, end:false (keep open), destroy:true (reset at the end)}
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Closes the connection after everything written so far has been flushed, without the
// final empty chunk: the client sees a truncated chunked body.
const cut = (res) => new Promise((r) => {
  res.socket.once('close', r);
  res.socket.end();
});

// ---- deterministic embeddings: hashed bag of words, so texts sharing words are close ----
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
function xorshift(seed) {
  let x = seed || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}
export function fakeEmbed(text, dims = 768) {
  const v = new Array(dims).fill(0);
  const toks = String(text).toLowerCase().match(/[\p{L}\p{N}]+/gu) || [''];
  for (const t of toks) {
    const rnd = xorshift(fnv1a(t));
    for (let i = 0; i < dims; i++) v[i] += rnd() * 2 - 1;
  }
  return v.map((x) => Math.round(x * 1e6) / 1e6);
}

// ---- prompt helpers -----------------------------------------------------------------
function lastUserGemini(body) {
  const c = Array.isArray(body?.contents) ? body.contents : [];
  for (let i = c.length - 1; i >= 0; i--) {
    if (c[i]?.role === 'user' || c[i]?.role === undefined) {
      // The last text part: consecutive user messages may share one turn as several parts.
      const texts = (c[i].parts || []).filter((p) => typeof p.text === 'string');
      return texts.length ? texts[texts.length - 1].text : '';
    }
  }
  return '';
}
function lastUserOpenai(body) {
  const m = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = m.length - 1; i >= 0; i--) {
    if (m[i]?.role === 'user') return typeof m[i].content === 'string' ? m[i].content : '';
  }
  return '';
}
function splitChunks(text, n = 3) {
  if (!text) return [''];
  const words = text.split(/(?<= )/);
  const per = Math.max(1, Math.ceil(words.length / n));
  const out = [];
  for (let i = 0; i < words.length; i += per) out.push(words.slice(i, i + per).join(''));
  return out;
}

// ---- error envelopes ----------------------------------------------------------------
const GOOGLE_STATUS = {
  400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED',
};
const GOOGLE_MSG = {
  429: 'You exceeded your current quota, please check your plan and billing details.',
  500: 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
  503: 'The model is overloaded. Please try again later.',
};
function googleError(code, message, details) {
  const e = { code, message: message || GOOGLE_MSG[code] || `error ${code}`, status: GOOGLE_STATUS[code] || 'UNKNOWN' };
  if (details) e.details = details;
  return { error: e };
}
const OPENAI_ERR = {
  400: ['invalid_request_error', null], 401: ['invalid_request_error', 'invalid_api_key'],
  404: ['invalid_request_error', 'model_not_found'], 429: ['requests', 'rate_limit_exceeded'],
  500: ['server_error', null], 503: ['service_unavailable_error', 'server_is_overloaded'],
};
function openaiError(code, message, type, ecode) {
  const d = OPENAI_ERR[code] || ['api_error', null];
  return { error: { message: message || `The server had an error (${code}).`, type: type || d[0], param: null, code: ecode === undefined ? d[1] : ecode } };
}

// ---- the server ---------------------------------------------------------------------
export async function startFakeLlm({ port = 0, host = '127.0.0.1' } = {}) {
  let queue = [];
  let requests = [];
  const sockets = new Set();

  function take(kind, method, path) {
    const key = `${method} ${path}`;
    // Without "match" a behaviour is for the next generation request (chat / generate),
    // so scripted model faults never hit embedding calls by accident.
    const fits = (b) => (b.match ? b.match === kind || key.includes(b.match) : kind !== 'embed');
    const i = queue.findIndex(fits);
    return i < 0 ? null : queue.splice(i, 1)[0];
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body = raw;
    try { body = raw ? JSON.parse(raw) : null; } catch { /* keep text */ }
    const path = url.pathname;

    if (path === '/__health') return json(res, 200, { ok: true });
    if (path === '/__requests') return json(res, 200, requests);
    if (path === '/__reset') { queue = []; requests = []; return json(res, 200, { ok: true }); }
    if (path === '/__script') {
      const q = Array.isArray(body) ? body : body?.queue || [];
      queue.push(...q);
      return json(res, 200, { ok: true, queued: queue.length });
    }

    requests.push({ method: req.method, path, query: Object.fromEntries(url.searchParams), headers: req.headers, body, t: Date.now() });

    try {
      const g = path.match(/^\/v1beta\/(?:models|tunedModels)\/([^/:]+):(\w+)$/);
      if (g) return await gemini(req, res, url, g[1], g[2], body);
      if (path.endsWith('/chat/completions')) return await openaiChat(req, res, body);
      if (path.endsWith('/embeddings')) return await openaiEmbed(req, res, body);
      if (path.endsWith('/models') && req.method === 'GET') {
        return json(res, 200, { object: 'list', data: [{ id: 'fake-model', object: 'model', owned_by: 'fake' }] });
      }
      return json(res, 404, { error: { code: 404, message: `no route ${req.method} ${path}`, status: 'NOT_FOUND' } });
    } catch (e) {
      if (!res.headersSent) json(res, 500, { error: { code: 500, message: String(e), status: 'INTERNAL' } });
      else res.destroy();
    }
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  function json(res, status, obj, headers = {}, pretty = false) {
    const s = pretty ? JSON.stringify(obj, null, 2) : JSON.stringify(obj);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', ...headers });
    res.end(s);
  }

  // Runs a behaviour that is dialect-independent; returns true when handled.
  async function common(res, b, req) {
    if (b.type === 'hang') {
      await new Promise((r) => req.socket.once('close', r));
      return true;
    }
    if (b.type === 'reset') { req.socket.destroy(); return true; }
    if (b.type === 'raw') {
      res.writeHead(b.status || 200, b.headers || { 'Content-Type': 'text/event-stream' });
      let pieces = (b.chunks || []).map((c) => Buffer.from(c, 'utf8'));
      if (typeof b.body === 'string' || typeof b.bodyBase64 === 'string') {
        // body (or bodyBase64, for bytes that are not UTF-8) + splitAt: byte offsets into
        // the body (may cut inside a character).
        const all = typeof b.bodyBase64 === 'string' ? Buffer.from(b.bodyBase64, 'base64') : Buffer.from(b.body, 'utf8');
        const cuts = [0, ...(b.splitAt || []).filter((x) => x > 0 && x < all.length), all.length];
        pieces = [];
        for (let i = 0; i + 1 < cuts.length; i++) pieces.push(all.subarray(cuts[i], cuts[i + 1]));
      }
      for (const c of pieces) {
        if (b.delayMs) await sleep(b.delayMs);
        if (res.destroyed) return true;
        res.write(c);
      }
      if (b.end === false) await new Promise((r) => req.socket.once('close', r));
      else if (b.destroy) await cut(res);
      else res.end();
      return true;
    }
    return false;
  }

  function retryHeaders(b) {
    const h = { ...(b.headers || {}) };
    if (b.retryAfter !== undefined) h['Retry-After'] = String(b.retryAfter);
    if (b.retryAfterMs !== undefined) h['retry-after-ms'] = String(b.retryAfterMs);
    return h;
  }

  // Writes SSE events with the chosen line ending; returns false if the client left.
  async function sseWrite(res, events, b, eol, endHow) {
    if (b.firstDelayMs) await sleep(b.firstDelayMs);
    for (let i = 0; i < (b.keepalive || 0); i++) res.write(`:${eol}${eol}`);
    for (const ev of events) {
      if (b.delayMs) await sleep(b.delayMs);
      if (res.destroyed || res.socket?.destroyed) return false;
      res.write(ev);
    }
    return true;
  }

  // ---- Gemini ----
  async function gemini(req, res, url, model, method, body) {
    const key = req.headers['x-goog-api-key'] || url.searchParams.get('key');
    if (!key) return json(res, 403, googleError(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."), {}, true);
    if (key === 'invalid-key') {
      return json(res, 400, googleError(400, 'API key not valid. Please pass a valid API key.', [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: 'generativelanguage.googleapis.com' } }]), {}, true);
    }
    if (model === 'missing-model') {
      return json(res, 404, googleError(404, `models/${model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`), {}, true);
    }
    if (req.method !== 'POST') return json(res, 405, googleError(400, 'method not allowed'));
    if (method === 'embedContent') return geminiEmbed(res, model, body);
    if (method === 'batchEmbedContents') return geminiBatchEmbed(res, model, body);
    if (method !== 'generateContent' && method !== 'streamGenerateContent') {
      return json(res, 404, googleError(404, `method ${method} not found`));
    }
    if (!body || typeof body !== 'object' || !Array.isArray(body.contents)) {
      return json(res, 400, googleError(400, 'Invalid JSON payload received. Unknown name "" : Required field "contents" missing.'), {}, true);
    }
    const b = take('generate', req.method, url.pathname) || { type: 'stream' };
    if (await common(res, b, req)) return;
    const streaming = method === 'streamGenerateContent';
    const alt = url.searchParams.get('alt');

    if (b.type === 'status' || b.type === 'rate_limit') {
      const st = b.status || (b.type === 'rate_limit' ? 429 : 500);
      let details;
      if (b.retryDelay) {
        details = [
          { '@type': 'type.googleapis.com/google.rpc.QuotaFailure', violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests', quotaId: b.daily ? 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' : 'GenerateRequestsPerMinutePerProjectPerModel-FreeTier' }] },
          { '@type': 'type.googleapis.com/google.rpc.Help', links: [{ description: 'Learn more about Gemini API quotas', url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }] },
          { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: b.retryDelay },
        ];
      }
      return json(res, st, b.body || googleError(st, b.error, details), retryHeaders(b), true);
    }

    const text = b.text !== undefined ? b.text : `You said: ${lastUserGemini(body)}`;
    const parts = b.chunks || splitChunks(text);
    const version = 'gemini-fake-001';
    const respId = 'fakeResp' + String(requests.length).padStart(4, '0');
    const promptTokens = Math.max(1, Math.ceil(JSON.stringify(body.contents).length / 4));
    const mk = (t, last) => {
      const cand = { content: { parts: [{ text: t }], role: 'model' }, index: 0 };
      if (last) cand.finishReason = b.finishReason || 'STOP';
      const usage = last
        ? { promptTokenCount: promptTokens, candidatesTokenCount: Math.ceil(text.length / 4), totalTokenCount: promptTokens + Math.ceil(text.length / 4) }
        : { promptTokenCount: promptTokens, totalTokenCount: promptTokens };
      return { candidates: [cand], usageMetadata: usage, modelVersion: version, responseId: respId };
    };
    let objs;
    if (b.type === 'blocked') {
      objs = [{ promptFeedback: { blockReason: b.blockReason || 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }] }, usageMetadata: { promptTokenCount: promptTokens, totalTokenCount: promptTokens }, modelVersion: version, responseId: respId }];
    } else if (b.type === 'safety') {
      objs = [{ candidates: [{ finishReason: 'SAFETY', index: 0, safetyRatings: [{ category: 'HARM_CATEGORY_HARASSMENT', probability: 'HIGH', blocked: true }] }], usageMetadata: { promptTokenCount: promptTokens, totalTokenCount: promptTokens }, modelVersion: version, responseId: respId }];
    } else if (b.type === 'empty') {
      objs = [{ candidates: [{ content: { role: 'model' }, finishReason: b.finishReason || 'STOP', index: 0 }], usageMetadata: { promptTokenCount: promptTokens, totalTokenCount: promptTokens }, modelVersion: version, responseId: respId }];
    } else {
      const last = ['stream', 'slow'].includes(b.type);
      objs = parts.map((t, i) => mk(t, last && i === parts.length - 1));
    }

    if (!streaming) {
      if (b.type !== 'stream' && b.type !== 'slow' && !['blocked', 'safety', 'empty'].includes(b.type)) {
        return json(res, 500, googleError(500));
      }
      const all = objs.length === 1 ? objs[0] : { ...objs[objs.length - 1], candidates: [{ ...objs[objs.length - 1].candidates[0], content: { parts: [{ text: parts.join('') }], role: 'model' } }] };
      if (b.delayMs) await sleep(b.delayMs);
      return json(res, 200, all, {}, true);
    }

    if (alt !== 'sse') {
      // JSON array streaming, written incrementally.
      res.writeHead(200, { 'Content-Type': 'application/json; charset=UTF-8' });
      for (let i = 0; i < objs.length; i++) {
        if (b.delayMs) await sleep(b.delayMs);
        res.write((i === 0 ? '[' : ',\r\n') + JSON.stringify(objs[i], null, 2));
      }
      res.end(']');
      return;
    }

    const eol = { crlf: '\r\n', lf: '\n', cr: '\r' }[b.eol || 'crlf'];
    const ev = (o) => `data: ${typeof o === 'string' ? o : JSON.stringify(o)}${eol}${eol}`;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' });
    let events = objs.map(ev);
    if (b.type === 'midstream_error') {
      events.push(ev(googleError(b.code || 503, b.error || GOOGLE_MSG[503])));
    } else if (b.type === 'named_error') {
      events.push(`event: error${eol}data: ${JSON.stringify(googleError(b.code || 500, b.error))}${eol}${eol}`);
    } else if (b.type === 'truncate') {
      events.push(`data: {"candidates": [{"content": {"parts": [{"text": "cut`);
    } else if (b.type === 'malformed') {
      events = [ev('{"candidates": [{"content": {"parts": [{"text": oops}]}}]')];
    }
    if (!(await sseWrite(res, events, b, eol))) return;
    if (b.type === 'stall') { await new Promise((r) => req.socket.once('close', r)); return; }
    if (b.type === 'truncate') { await cut(res); return; }
    res.end();
  }

  async function geminiEmbed(res, model, body) {
    const b = take('embed', 'POST', `/v1beta/models/${model}:embedContent`);
    if (b && (await common(res, b, res.req))) return;
    if (b && (b.type === 'status' || b.type === 'rate_limit')) {
      const st = b.status || 429;
      return json(res, st, b.body || googleError(st, b.error), retryHeaders(b), true);
    }
    const text = (body?.content?.parts || []).map((p) => p.text || '').join('');
    if (!body?.content) return json(res, 400, googleError(400, '* EmbedContentRequest.content: contents is not specified'), {}, true);
    const dims = body.outputDimensionality || 3072;
    return json(res, 200, { embedding: { values: fakeEmbed(text, dims) } }, {}, true);
  }

  async function geminiBatchEmbed(res, model, body) {
    const b = take('embed', 'POST', `/v1beta/models/${model}:batchEmbedContents`);
    if (b && (await common(res, b, res.req))) return;
    if (b && (b.type === 'status' || b.type === 'rate_limit')) {
      const st = b.status || 429;
      return json(res, st, b.body || googleError(st, b.error), retryHeaders(b), true);
    }
    const reqs = Array.isArray(body?.requests) ? body.requests : null;
    if (!reqs) return json(res, 400, googleError(400, '* BatchEmbedContentsRequest.requests: requests is not specified'), {}, true);
    if (reqs.length > 100) return json(res, 400, googleError(400, '* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch'), {}, true);
    for (let i = 0; i < reqs.length; i++) {
      if (reqs[i].model !== `models/${model}`) {
        return json(res, 400, googleError(400, `* BatchEmbedContentsRequest.requests[${i}].model: model "${reqs[i].model}" must match the parent model "models/${model}"`), {}, true);
      }
    }
    const embeddings = reqs.map((r) => ({ values: fakeEmbed((r.content?.parts || []).map((p) => p.text || '').join(''), r.outputDimensionality || 3072) }));
    return json(res, 200, { embeddings }, {}, true);
  }

  // ---- OpenAI-compatible ----
  function openaiAuth(req, res) {
    const want = process.env.FAKE_OPENAI_KEY;
    if (!want) return true;
    if (req.headers.authorization === `Bearer ${want}`) return true;
    json(res, 401, openaiError(401, 'Incorrect API key provided: sk-***. You can find your API key at https://platform.openai.com/account/api-keys.'), {}, true);
    return false;
  }

  async function openaiChat(req, res, body) {
    if (!openaiAuth(req, res)) return;
    if (!body || typeof body !== 'object' || !Array.isArray(body.messages)) {
      return json(res, 400, openaiError(400, "'messages' is a required property", undefined, null), {}, true);
    }
    if (body.model === 'missing-model') {
      return json(res, 404, openaiError(404, `The model \`${body.model}\` does not exist or you do not have access to it.`), {}, true);
    }
    const b = take('chat', req.method, new URL(req.url, 'http://x').pathname) || { type: 'stream' };
    if (await common(res, b, req)) return;
    if (b.type === 'status' || b.type === 'rate_limit') {
      const st = b.status || (b.type === 'rate_limit' ? 429 : 500);
      let envelope;
      if (b.type === 'rate_limit' && b.quota) envelope = openaiError(429, 'You exceeded your current quota, please check your plan and billing details.', 'insufficient_quota', 'insufficient_quota');
      else if (b.type === 'rate_limit') envelope = openaiError(429, 'Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.', 'requests', 'rate_limit_exceeded');
      else envelope = openaiError(st, b.error);
      return json(res, st, b.body || envelope, retryHeaders(b), true);
    }
    const text = b.text !== undefined ? b.text : `You said: ${lastUserOpenai(body)}`;
    const parts = b.chunks || splitChunks(text);
    const id = 'chatcmpl-fake' + String(requests.length).padStart(4, '0');
    const created = 1700000000 + requests.length;
    const model = body.model || 'fake-model';
    const promptTokens = Math.max(1, Math.ceil(JSON.stringify(body.messages).length / 4));
    const usage = { prompt_tokens: promptTokens, completion_tokens: Math.ceil(text.length / 4), total_tokens: promptTokens + Math.ceil(text.length / 4) };
    if (!body.stream) {
      if (b.delayMs) await sleep(b.delayMs);
      if (b.type === 'malformed') { res.writeHead(200, { 'Content-Type': 'application/json' }); return res.end('{"id": "x", "choices": [oops'); }
      return json(res, 200, {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: b.type === 'empty' ? '' : text, refusal: null }, logprobs: null, finish_reason: b.finishReason || 'stop' }],
        usage, service_tier: 'default', system_fingerprint: 'fp_fake',
      }, {}, true);
    }
    const dialect = b.dialect || 'openai';
    const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: dialect === 'llamacpp' ? 'b1234-fake' : 'fp_fake' };
    const withUsage = b.usage || body.stream_options?.include_usage;
    const chunk = (delta, finish, extra = {}) => ({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(withUsage ? { usage: null } : {}), ...extra });
    const events = [];
    const complete = ['stream', 'slow', 'empty'].includes(b.type);
    const textParts = b.type === 'empty' ? [] : parts;
    if (dialect === 'ollama') {
      textParts.forEach((t, i) => events.push(chunk(i === 0 ? { role: 'assistant', content: t } : { content: t }, null)));
    } else {
      events.push(chunk({ role: 'assistant', content: dialect === 'llamacpp' ? null : '' }, null));
      textParts.forEach((t) => events.push(chunk({ content: t }, null)));
    }
    if (complete || b.type === 'truncate_clean_finish') {
      events.push(chunk(dialect === 'vllm' ? { content: '' } : {}, b.finishReason || 'stop'));
      if (withUsage) events.push({ ...base, choices: [], usage });
    }
    const eol = { crlf: '\r\n', lf: '\n', cr: '\r' }[b.eol || 'lf'];
    let lines = events.map((o) => `data: ${JSON.stringify(o)}${eol}${eol}`);
    if (b.type === 'midstream_error') {
      const err = dialect === 'llamacpp' ? { error: { code: 500, message: b.error || 'Internal server error', type: 'server_error' } } : openaiError(b.code || 500, b.error || 'The server had an error while processing your request.');
      lines.push(`data: ${JSON.stringify(err)}${eol}${eol}`);
      if (b.done || dialect === 'vllm') lines.push(`data: [DONE]${eol}${eol}`);
    } else if (b.type === 'named_error') {
      lines.push(`event: error${eol}data: ${JSON.stringify(openaiError(500, b.error || 'boom'))}${eol}${eol}`);
    } else if (b.type === 'truncate') {
      lines.push(`data: {"id":"${id}","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"cu`);
    } else if (b.type === 'malformed') {
      lines = [lines[0], `data: {"id": "x", "choices": [oops]}${eol}${eol}`];
    } else if (complete && !b.noDone) {
      lines.push(`data: [DONE]${eol}${eol}`);
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', 'x-request-id': 'req_fake' });
    if (!(await sseWrite(res, lines, b, eol))) return;
    if (b.type === 'stall') { await new Promise((r) => req.socket.once('close', r)); return; }
    if (b.type === 'truncate') { await cut(res); return; }
    res.end();
  }

  async function openaiEmbed(req, res, body) {
    if (!openaiAuth(req, res)) return;
    const b = take('embed', req.method, new URL(req.url, 'http://x').pathname);
    if (b && (await common(res, b, req))) return;
    if (b && (b.type === 'status' || b.type === 'rate_limit')) {
      const st = b.status || 429;
      return json(res, st, b.body || openaiError(st, b.error), retryHeaders(b), true);
    }
    const input = body?.input;
    const list = typeof input === 'string' ? [input] : Array.isArray(input) ? input : null;
    if (!list || list.length === 0) return json(res, 400, openaiError(400, "'input' is a required property", undefined, null), {}, true);
    if (list.length > 2048) return json(res, 400, openaiError(400, 'Too many inputs. The max number of inputs is 2048.', undefined, null), {}, true);
    if (list.some((s) => typeof s !== 'string' || s === '')) return json(res, 400, openaiError(400, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", undefined, null), {}, true);
    const dims = body.dimensions || 768;
    const data = list.map((s, index) => ({ object: 'embedding', index, embedding: fakeEmbed(s, dims) }));
    if (b?.shuffle) data.reverse();
    const toks = list.reduce((a, s) => a + Math.ceil(s.length / 4), 0);
    return json(res, 200, { object: 'list', data, model: body.model || 'fake-embed', usage: { prompt_tokens: toks, total_tokens: toks } }, {}, true);
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://${host}:${actual}`,
    server,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  const i = process.argv.indexOf('--port');
  const fake = await startFakeLlm({ port: i > 0 ? Number(process.argv[i + 1]) : 0 });
  process.stdout.write(`PORT=${fake.port}\n`);
  const stop = () => fake.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // --exit-on-stdin-close: exit with the parent (the spawning test holds a pipe to stdin).
  if (process.argv.includes('--exit-on-stdin-close')) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}
