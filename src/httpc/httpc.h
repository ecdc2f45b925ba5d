/*
 * httpc: outbound HTTP on libcurl's multi interface, driven by the libuv loop.
 *
 * One `struct httpc` per loop. It owns a CURLM handle, one uv_poll_t per socket curl
 * asks about (CURLMOPT_SOCKETFUNCTION) and one uv_timer_t for curl's timeouts
 * (CURLMOPT_TIMERFUNCTION), after curl's docs/examples/multi-uv.c. Nothing blocks: name
 * resolution uses curl's threaded resolver, everything else is the loop.
 *
 * Thread: every function here is called on the loop thread, and every callback runs on
 * it. Not thread-safe.
 *
 * A request (`struct httpc_req`, opaque) goes through:
 *
 *   httpc_start -> [attempt: connect, send, wait for the status line]
 *                    |-- retryable failure before the first byte and tries left:
 *                    |     wait backoff (or Retry-After), next attempt
 *                    '-- otherwise:
 *                          on_response(status, headers)      (once, if a response came)
 *                          on_data(chunk) ...                (zero or more times)
 *                          on_done(err, resp)                (exactly once, always)
 *
 * Retries happen only before anything was delivered to the caller: on connection errors
 * (refused, reset, DNS, TLS, connect timeout, first-byte timeout) and on the HTTP
 * statuses 408, 429, 500, 502, 503, 504 (when `retry.max_tries` > 1). A retryable status
 * response is read whole (capped at 64 KiB) before deciding; when it is the last try it
 * is then delivered as usual (on_response, one on_data with the body, on_done). The wait
 * before try n+1 is, in order of preference: the `should_retry` hook's answer, the
 * `retry-after-ms` header, the `Retry-After` header (delta-seconds or HTTP-date), else
 * exponential backoff base_ms * 2^(n-1) with full jitter in [d/2, d], capped at max_ms.
 * A server-given delay above `retry.max_delay_ms` is not waited for: the response is
 * delivered as final instead. Once on_response has been called nothing is retried.
 * Note: libcurl itself re-sends a request once, silently, when a reused keep-alive
 * connection turns out to be dead before any response byte; that is not an attempt here.
 * Connections are reused across requests of one client (up to 512 idle ones are kept, so
 * a dip in load does not close the connections the next burst needs); the usual proxy
 * environment variables (http_proxy, https_proxy, no_proxy) are honoured by libcurl.
 *
 * on_done's `err` (EG_* codes from base.h):
 *   0             the transfer completed and the status is 2xx (or 1xx/3xx: no redirects
 *                 are followed, see CURLOPT_FOLLOWLOCATION)
 *   EG_ELIMIT     final status 429
 *   EG_EAUTH      final status 401
 *   EG_EFORBIDDEN final status 403
 *   EG_ENOTFOUND  final status 404
 *   EG_EINVAL     any other final 4xx
 *   EG_EUPSTREAM  final 5xx (and other statuses >= 500)
 *   EG_ETIMEOUT   a connect / first-byte / idle / total timeout fired (after the last try)
 *   EG_EIO        connection or protocol failure (refused, reset, DNS, TLS, truncated
 *                 chunked body, ...), after the last try
 *   EG_ETOOBIG    the buffered body passed `max_body`
 *   EG_ECANCELED  httpc_cancel() or httpc_close() ended the request
 *   <cb's code>   on_response or on_data returned a negative code (aborts the transfer)
 * `resp` is never NULL; resp->status is 0 when no response line arrived. resp->body holds
 * the buffered body when `on_data` is NULL (else it is empty). resp->error is a short
 * human-readable reason (curl's error text for transport failures) without secrets.
 *
 * Ownership: httpc_start copies everything in the request (URL, headers, body); the
 * caller may free them when it returns. `resp` and everything it points to is valid only
 * during the callback. The `struct httpc_req` pointer is valid from httpc_start until
 * on_done returns; httpc frees it afterwards.
 *
 * Cancellation: httpc_cancel(req) may be called at any time before on_done, including
 * from inside on_response / on_data / should_retry of the same or another request. After
 * it no more on_response / on_data calls happen for that request, and on_done(EG_ECANCELED)
 * follows from a later loop iteration (never from inside httpc_cancel itself). on_done is
 * likewise never called from inside httpc_start.
 *
 * Timeouts (milliseconds, 0 = none): connect = TCP+TLS connect per attempt; first_byte =
 * from the start of an attempt until the first response byte; idle = the longest gap
 * between received bytes after the first one (SSE keep-alive comments count as bytes);
 * total = the whole request including every retry and backoff wait.
 */
#ifndef ENGRAM_HTTPC_H
#define ENGRAM_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/base.h"

struct httpc;
struct httpc_req;

struct httpc_header {
  const char *name;  /* NUL-terminated */
  const char *value; /* NUL-terminated, no CR/LF (rejected with EG_EINVAL) */
};

/* What arrived from the server. Headers are those of the final response (after any 1xx),
   names as sent, values with surrounding whitespace trimmed. */
struct httpc_response {
  int status; /* HTTP status, 0 when no response line arrived */
  const struct httpc_header *headers;
  size_t n_headers;
  struct slice body; /* buffered body (on_data == NULL) or retryable-error body */
  const char *error; /* short reason for a transport failure, "" otherwise */
  int attempts;      /* how many attempts were made (1 when not retried) */
};

struct httpc_timeouts {
  uint32_t connect_ms;
  uint32_t first_byte_ms;
  uint32_t idle_ms;
  uint32_t total_ms;
};

struct httpc_retry {
  int max_tries;         /* total attempts; 0 or 1 = no retry */
  uint32_t base_ms;      /* first backoff (default 500 when 0) */
  uint32_t max_ms;       /* cap on one computed backoff (default 8000 when 0) */
  uint32_t max_delay_ms; /* cap on a server-given delay (default 60000 when 0) */
};

/* Retry hook: called for a retryable response (status 408/429/5xx, body read whole) or a
   retryable transport failure (status 0) when tries are left. Return -1 to not retry
   (deliver this response as final), 0 to use the default delay (headers, then backoff),
   or a positive delay in milliseconds. Providers use it to read delays from bodies
   (Gemini RetryInfo.retryDelay) and to refuse retrying permanent 429s
   (insufficient_quota). */
typedef int64_t (*httpc_retry_fn)(void *ud, const struct httpc_response *resp);

/* Called once with the final response's status and headers, before any body byte.
   Return 0 to continue or a negative EG_* code to abort (on_done gets that code). */
typedef int (*httpc_response_fn)(void *ud, const struct httpc_response *resp);
/* Called with each body chunk as it arrives. Return 0 or a negative EG_* code to abort. */
typedef int (*httpc_data_fn)(void *ud, const uint8_t *p, size_t n);
/* Called exactly once per started request. */
typedef void (*httpc_done_fn)(void *ud, int err, const struct httpc_response *resp);

struct httpc_request {
  const char *method; /* "GET", "POST", "DELETE", ...; NULL = GET, or POST with a body */
  const char *url;    /* http:// or https:// only */
  const struct httpc_header *headers;
  size_t n_headers;
  const void *body; /* may be NULL */
  size_t body_len;
  struct httpc_timeouts timeouts;
  struct httpc_retry retry;
  size_t max_body;               /* cap on a buffered body (on_data == NULL); 0 = 8 MiB */
  httpc_response_fn on_response; /* optional */
  httpc_data_fn on_data;         /* optional: NULL buffers the body into resp->body */
  httpc_done_fn on_done;         /* required */
  httpc_retry_fn should_retry;   /* optional */
  void *ud;
};

/* Creates a client on `loop`. Returns 0, EG_EINTERNAL (curl init failed). */
EG_WUR int httpc_new(uv_loop_t *loop, struct httpc **out);

/* Cancels every pending request (each gets on_done(EG_ECANCELED) first), closes the uv
   handles and frees the client once they are closed, then calls cb(ud) (cb may be NULL).
   The loop must keep running until then. */
void httpc_close(struct httpc *c, void (*cb)(void *ud), void *ud);

/* Starts a request. Returns 0 and sets *out (may be NULL if the caller never cancels),
   or EG_EINVAL (bad method, URL scheme, header with CR/LF, missing on_done),
   EG_ECLOSED (client closing). On error no callback is called. */
EG_WUR int httpc_start(struct httpc *c, const struct httpc_request *r, struct httpc_req **out);

/* Cancels a request before its on_done; see the contract at the top. */
void httpc_cancel(struct httpc_req *r);

/* Number of requests started and not yet done (for tests and metrics). */
size_t httpc_active(const struct httpc *c);

/* ---- helpers (pure; exposed for the providers and for tests) ----------------------- */

/* Case-insensitive header lookup in a response; NULL when absent. */
const char *httpc_response_header(const struct httpc_response *resp, const char *name);

/* Maps a final HTTP status to the on_done code listed above (0 for < 400). */
int httpc_status_err(int status);

/* True for the statuses the retry helper retries: 408, 429, 500, 502, 503, 504. */
bool httpc_status_retryable(int status);

/* Parses a Retry-After value: delta-seconds ("120") or an HTTP-date
   ("Wed, 21 Oct 2015 07:28:00 GMT", also RFC 850 and asctime forms) against now_wall_ms.
   A date in the past gives 0. Returns 0 and sets *delay_ms, or EG_EINVAL. */
EG_WUR int httpc_parse_retry_after(const char *value, int64_t now_wall_ms, int64_t *delay_ms);

/* The delay before attempt `attempt` + 1 (attempt >= 1) from the request's headers
   (retry-after-ms, then Retry-After) when present and <= max_delay, else -1 when a header
   asked for more than max_delay, else exponential backoff with jitter: d = min(base *
   2^(attempt-1), max), result in [d/2, d] using `rnd` (uniform 32-bit random value). */
int64_t httpc_retry_delay(const struct httpc_response *resp, const struct httpc_retry *retry,
                          int attempt, int64_t now_wall_ms, uint32_t rnd);

#endif
