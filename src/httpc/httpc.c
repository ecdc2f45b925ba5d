/*
 * httpc: libcurl multi driven by libuv. See httpc.h for the contract.
 *
 * Request life cycle (req->phase):
 *
 *   QUEUED   created by httpc_start; the request timer fires after 0 ms and adds the
 *            easy handle to the multi (curl_multi_add_handle is not allowed from inside
 *            curl callbacks, and httpc_start may be called from one).
 *   RUNNING  attached to the multi. The request timer is armed at the nearest deadline
 *            (first byte, idle, total); when it fires it re-checks the deadlines against
 *            the clock and either re-arms or ends the attempt with EG_ETIMEOUT.
 *   BACKOFF  between attempts; the request timer fires when the next attempt is due.
 *   DONE     on_done has been called; the timer is closing and the request is freed in
 *            its close callback.
 *
 * Cancellation sets req->canceled and (re)starts the request timer at 0 ms: the timer
 * callback, which runs outside curl, detaches the easy handle and calls on_done. Curl
 * callbacks (header/write) return 0 once canceled, so a cancel from inside on_data also
 * stops the transfer at once.
 *
 * Every on_done call happens from a uv callback of ours (request timer, multi timer or
 * socket poll after curl_multi_socket_action returned), never inside a curl callback.
 */
#include "httpc/httpc.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOLD_BODY_MAX (64u * 1024u)
#define DEFAULT_MAX_BODY (8u * 1024u * 1024u)
#define MAX_HEADERS 128
#define MAX_HEADER_BYTES (64u * 1024u)
#define HTTPC_MAX_IDLE_CONNS 512 /* idle connections kept for reuse (all hosts) */
#define HTTPC_SPARE_EASY 64      /* finished easy handles kept for the next attempts */

enum phase { PH_QUEUED, PH_RUNNING, PH_BACKOFF, PH_DONE };

/* One socket curl asked us to watch. A connection socket that we opened for curl
   (opensocket_cb: "owned") keeps its poll handle for its whole life, across the transfers
   that reuse it: curl's CURL_POLL_REMOVE at the end of a transfer only marks it unwanted
   (it stays watched for reading, so a peer that closes the idle connection is noticed and
   the watch dropped then), and the next transfer's CURL_POLL_IN finds it still armed: no
   uv_poll_init (ioctl + two epoll_ctl) and no epoll_ctl at all per reuse. The handle is
   closed in closesocket_cb, before the fd is. Other sockets (the resolver's) get a handle
   per watch, closed on CURL_POLL_REMOVE. */
struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  struct httpc *c;
  struct sock_ctx *next, *prev;
  int ev;      /* the uv events the poll is started with, 0 = stopped */
  bool owned;  /* opened by opensocket_cb, closed through closesocket_cb */
  bool wanted; /* curl watches it now (between POLL_IN/OUT and POLL_REMOVE) */
};

struct httpc {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  struct httpc_req *reqs;
  struct sock_ctx *socks;
  struct sock_ctx **byfd; /* the watched sockets by fd (nbyfd slots) */
  size_t nbyfd;
  /* Easy handles of finished attempts, reset and reused (curl_easy_reset keeps their
     buffers: no curl_easy_init, download buffer and header buffer per request). */
  CURL *spare[HTTPC_SPARE_EASY];
  size_t nspare;
  size_t active;
  int open_handles;
  bool closing;
  bool torn_down;
  void (*close_cb)(void *ud);
  void *close_ud;
};

struct hdr {
  char *name;
  char *value;
};

struct httpc_req {
  struct httpc *c;
  struct httpc_req *next, *prev;
  /* the request, copied */
  char *method;
  char *url;
  struct curl_slist *slist;
  uint8_t *body;
  size_t body_len;
  struct httpc_timeouts to;
  struct httpc_retry retry;
  size_t max_body;
  httpc_response_fn on_response;
  httpc_data_fn on_data;
  httpc_done_fn on_done;
  httpc_retry_fn should_retry;
  void *ud;
  /* state */
  enum phase phase;
  uv_timer_t timer;
  CURL *easy;
  int attempt;
  uint64_t start_ms;
  uint64_t attempt_ms;
  uint64_t last_byte_ms;
  bool got_byte;
  bool headers_done;
  bool delivered; /* on_response called */
  bool holding;   /* retryable status: buffering the body to decide */
  bool canceled;
  int err; /* error decided by us (callback abort, too big, timeout) */
  int status;
  struct log_ctx log; /* the requester's log context, set again for its callbacks */
  struct hdr *hdrs;
  size_t n_hdrs;
  size_t hdr_bytes;
  struct buf body_buf;
  char errbuf[CURL_ERROR_SIZE];
};

static void check_multi_info(struct httpc *c);
static void req_timer_cb(uv_timer_t *t);
static void maybe_teardown(struct httpc *c);
static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose,
                                   struct curl_sockaddr *a);
static int closesocket_cb(void *clientp, curl_socket_t fd);

/* ---- helpers --------------------------------------------------------------------- */

int httpc_status_err(int status) {
  if (status < 400)
    return 0;
  switch (status) {
  case 429:
    return EG_ELIMIT;
  case 401:
    return EG_EAUTH;
  case 403:
    return EG_EFORBIDDEN;
  case 404:
    return EG_ENOTFOUND;
  default:
    return status >= 500 ? EG_EUPSTREAM : EG_EINVAL;
  }
}

bool httpc_status_retryable(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

const char *httpc_response_header(const struct httpc_response *resp, const char *name) {
  for (size_t i = 0; i < resp->n_headers; i++)
    if (strcasecmp(resp->headers[i].name, name) == 0)
      return resp->headers[i].value;
  return NULL;
}

int httpc_parse_retry_after(const char *value, int64_t now_wall_ms, int64_t *delay_ms) {
  if (value == NULL)
    return EG_EINVAL;
  while (*value == ' ' || *value == '\t')
    value++;
  if (*value == 0)
    return EG_EINVAL;
  if (isdigit((unsigned char)*value)) {
    int64_t v = 0;
    const char *s = value;
    while (isdigit((unsigned char)*s)) {
      if (v > 100000000)
        return EG_EINVAL;
      v = v * 10 + (*s - '0');
      s++;
    }
    while (*s == ' ' || *s == '\t')
      s++;
    if (*s != 0)
      return EG_EINVAL;
    *delay_ms = v * 1000;
    return 0;
  }
  static const char *const fmts[] = {
      "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
      "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
      "%a %b %e %H:%M:%S %Y",      /* asctime */
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(fmts); i++) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(value, fmts[i], &tm);
    if (end == NULL)
      continue;
    while (*end == ' ' || *end == '\t')
      end++;
    if (*end != 0)
      continue;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
      continue;
    int64_t d = (int64_t)t * 1000 - now_wall_ms;
    *delay_ms = d > 0 ? d : 0;
    return 0;
  }
  return EG_EINVAL;
}

int64_t httpc_retry_delay(const struct httpc_response *resp, const struct httpc_retry *retry,
                          int attempt, int64_t now_wall_ms, uint32_t rnd) {
  uint32_t base = retry->base_ms ? retry->base_ms : 500;
  uint32_t maxb = retry->max_ms ? retry->max_ms : 8000;
  uint32_t max_delay = retry->max_delay_ms ? retry->max_delay_ms : 60000;
  if (resp != NULL) {
    const char *ms = httpc_response_header(resp, "retry-after-ms");
    if (ms != NULL) {
      char *end;
      double v = strtod(ms, &end);
      if (end != ms && v >= 0 && v < 1e12) {
        if (v > max_delay)
          return -1;
        return (int64_t)v;
      }
    }
    const char *ra = httpc_response_header(resp, "retry-after");
    int64_t d;
    if (ra != NULL && httpc_parse_retry_after(ra, now_wall_ms, &d) == 0) {
      if (d > (int64_t)max_delay)
        return -1;
      return d;
    }
  }
  if (attempt < 1)
    attempt = 1;
  uint64_t d = base;
  for (int i = 1; i < attempt && d < maxb; i++)
    d *= 2;
  if (d > maxb)
    d = maxb;
  uint64_t half = d / 2;
  return (int64_t)(half + (half ? (uint64_t)rnd % (d - half + 1) : 0));
}

static int map_curl(CURLcode cc) {
  switch (cc) {
  case CURLE_OK:
    return 0;
  case CURLE_OPERATION_TIMEDOUT:
    return EG_ETIMEOUT;
  case CURLE_OUT_OF_MEMORY:
    return EG_ENOMEM;
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    return EG_EINVAL;
  default:
    return EG_EIO;
  }
}

/* ---- response state ----------------------------------------------------------------- */

static void clear_headers(struct httpc_req *r) {
  for (size_t i = 0; i < r->n_hdrs; i++) {
    free(r->hdrs[i].name);
    free(r->hdrs[i].value);
  }
  free(r->hdrs);
  r->hdrs = NULL;
  r->n_hdrs = 0;
  r->hdr_bytes = 0;
}

static void reset_response(struct httpc_req *r) {
  clear_headers(r);
  buf_reset(&r->body_buf);
  r->status = 0;
  r->got_byte = false;
  r->headers_done = false;
  r->holding = false;
  r->err = 0;
  r->errbuf[0] = 0;
}

/* Fills *resp (and the header array it points to, allocated in *tmp). */
static void build_resp(struct httpc_req *r, struct httpc_response *resp,
                       struct httpc_header **tmp) {
  memset(resp, 0, sizeof *resp);
  *tmp = NULL;
  if (r->n_hdrs) {
    *tmp = xcalloc(r->n_hdrs, sizeof **tmp);
    for (size_t i = 0; i < r->n_hdrs; i++) {
      (*tmp)[i].name = r->hdrs[i].name;
      (*tmp)[i].value = r->hdrs[i].value;
    }
  }
  resp->status = r->status;
  resp->headers = *tmp;
  resp->n_headers = r->n_hdrs;
  resp->body.p = r->body_buf.len ? (const char *)r->body_buf.data : "";
  resp->body.len = r->body_buf.len;
  resp->error = r->errbuf;
  resp->attempts = r->attempt;
}

/* The callbacks run with the requester's log context (request id, socket id). */
static void ctx_enter(const struct httpc_req *r, struct log_ctx *saved) {
  log_ctx_get(saved);
  log_ctx_set(&r->log);
}

static int deliver_response(struct httpc_req *r) {
  r->delivered = true;
  if (r->on_response == NULL)
    return 0;
  struct httpc_response resp;
  struct httpc_header *tmp;
  build_resp(r, &resp, &tmp);
  resp.body = (struct slice){"", 0};
  struct log_ctx saved;
  ctx_enter(r, &saved);
  int rc = r->on_response(r->ud, &resp);
  log_ctx_set(&saved);
  free(tmp);
  return rc;
}

static int deliver_data(struct httpc_req *r, const uint8_t *p, size_t n) {
  struct log_ctx saved;
  ctx_enter(r, &saved);
  int rc = r->on_data(r->ud, p, n);
  log_ctx_set(&saved);
  return rc;
}

/* ---- curl callbacks --------------------------------------------------------------- */

static bool retries_left(const struct httpc_req *r) {
  return r->attempt < r->retry.max_tries;
}

static void arm_running_timer(struct httpc_req *r);

/* Records a received byte; on the first one the timer moves from the first-byte deadline
   to the idle deadline. */
static void mark_byte(struct httpc_req *r) {
  r->last_byte_ms = clock_mono_ms();
  if (!r->got_byte) {
    r->got_byte = true;
    arm_running_timer(r);
  }
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
  struct httpc_req *r = ud;
  size_t n = sz * nm;
  if (r->canceled || r->err)
    return 0;
  mark_byte(r);
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    /* A new response (1xx interim responses come first). */
    clear_headers(r);
    r->headers_done = false;
    const char *sp = memchr(p, ' ', n);
    int st = 0;
    if (sp != NULL) {
      sp++;
      for (int k = 0; k < 3 && sp < p + n && isdigit((unsigned char)*sp); k++, sp++)
        st = st * 10 + (*sp - '0');
    }
    r->status = st;
    return n;
  }
  if ((n == 2 && p[0] == '\r' && p[1] == '\n') || (n == 1 && p[0] == '\n')) {
    if (r->status >= 100 && r->status < 200)
      return n; /* interim response: wait for the final one */
    r->headers_done = true;
    if (httpc_status_retryable(r->status) && retries_left(r) && !r->delivered) {
      r->holding = true;
      return n;
    }
    int rc = deliver_response(r);
    if (rc != 0) {
      r->err = rc;
      return 0;
    }
    return r->canceled ? 0 : n;
  }
  /* A header line: "Name: value\r\n". */
  if (r->n_hdrs >= MAX_HEADERS || r->hdr_bytes + n > MAX_HEADER_BYTES)
    return n; /* silently ignore the excess */
  const char *colon = memchr(p, ':', n);
  if (colon == NULL)
    return n;
  const char *v = colon + 1, *e = p + n;
  while (v < e && (*v == ' ' || *v == '\t'))
    v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
    e--;
  r->hdrs = xrealloc(r->hdrs, (r->n_hdrs + 1) * sizeof *r->hdrs);
  r->hdrs[r->n_hdrs].name = xstrndup(p, (size_t)(colon - p));
  r->hdrs[r->n_hdrs].value = xstrndup(v, (size_t)(e - v));
  r->n_hdrs++;
  r->hdr_bytes += n;
  return n;
}

static size_t on_write(char *p, size_t sz, size_t nm, void *ud) {
  struct httpc_req *r = ud;
  size_t n = sz * nm;
  if (r->canceled || r->err)
    return 0;
  mark_byte(r);
  if (r->holding) {
    size_t room = HOLD_BODY_MAX > r->body_buf.len ? HOLD_BODY_MAX - r->body_buf.len : 0;
    if (room && buf_append(&r->body_buf, p, EG_MIN(n, room)) != 0)
      return 0; /* cannot happen: the buffer's cap is at least HOLD_BODY_MAX */
    return n;
  }
  if (!r->delivered) {
    int rc = deliver_response(r);
    if (rc != 0) {
      r->err = rc;
      return 0;
    }
    if (r->canceled)
      return 0;
  }
  if (r->on_data != NULL) {
    int rc = deliver_data(r, (const uint8_t *)p, n);
    if (rc != 0) {
      r->err = rc;
      return 0;
    }
    return r->canceled ? 0 : n;
  }
  if (r->body_buf.len + n > r->max_body || buf_append(&r->body_buf, p, n) != 0) {
    r->err = EG_ETOOBIG;
    return 0;
  }
  return n;
}

/* ---- attempts ----------------------------------------------------------------------- */

static void detach(struct httpc_req *r) {
  if (r->easy == NULL)
    return;
  struct httpc *c = r->c;
  curl_multi_remove_handle(c->multi, r->easy);
  if (!c->closing && c->nspare < HTTPC_SPARE_EASY)
    c->spare[c->nspare++] = r->easy;
  else
    curl_easy_cleanup(r->easy);
  r->easy = NULL;
}

static void req_close_cb(uv_handle_t *h) {
  struct httpc_req *r = h->data;
  struct httpc *c = r->c;
  clear_headers(r);
  buf_free(&r->body_buf);
  curl_slist_free_all(r->slist);
  free(r->method);
  free(r->url);
  free(r->body);
  free(r);
  c->open_handles--;
  maybe_teardown(c);
}

static void complete(struct httpc_req *r, int err) {
  struct httpc *c = r->c;
  detach(r);
  uv_timer_stop(&r->timer);
  r->phase = PH_DONE;
  if (r->canceled)
    err = EG_ECANCELED;
  struct httpc_response resp;
  struct httpc_header *tmp;
  build_resp(r, &resp, &tmp);
  if (r->on_data != NULL && !r->holding)
    resp.body = (struct slice){"", 0};
  struct log_ctx saved;
  ctx_enter(r, &saved);
  r->on_done(r->ud, err, &resp);
  log_ctx_set(&saved);
  free(tmp);
  /* unlink */
  if (r->prev)
    r->prev->next = r->next;
  else
    c->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  c->active--;
  uv_close((uv_handle_t *)&r->timer, req_close_cb);
  maybe_teardown(c);
}

static uint64_t total_deadline(const struct httpc_req *r) {
  return r->to.total_ms ? r->start_ms + r->to.total_ms : UINT64_MAX;
}

static void arm_running_timer(struct httpc_req *r) {
  uint64_t dl = total_deadline(r);
  if (!r->got_byte && r->to.first_byte_ms)
    dl = EG_MIN(dl, r->attempt_ms + r->to.first_byte_ms);
  if (r->got_byte && r->to.idle_ms)
    dl = EG_MIN(dl, r->last_byte_ms + r->to.idle_ms);
  if (dl == UINT64_MAX) {
    uv_timer_stop(&r->timer);
    return;
  }
  uint64_t now = clock_mono_ms();
  uv_timer_start(&r->timer, req_timer_cb, dl > now ? dl - now : 0, 0);
}

static void start_attempt(struct httpc_req *r) {
  struct httpc *c = r->c;
  r->attempt++;
  reset_response(r);
  r->attempt_ms = clock_mono_ms();
  CURL *e;
  if (c->nspare) {
    e = c->spare[--c->nspare];
    curl_easy_reset(e);
  } else {
    e = curl_easy_init();
  }
  if (e == NULL) {
    complete(r, EG_ENOMEM);
    return;
  }
  r->easy = e;
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->slist);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c);
  if (r->to.connect_ms)
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->to.connect_ms);
  if (strcmp(r->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(r->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
    if (strcmp(r->method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  }
  if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
    curl_easy_cleanup(e);
    r->easy = NULL;
    complete(r, EG_EINTERNAL);
    return;
  }
  r->phase = PH_RUNNING;
  arm_running_timer(r);
}

/* Ends the current attempt with `err` (0 = transfer finished; the status decides). */
static void end_attempt(struct httpc_req *r, int err) {
  detach(r);
  if (r->canceled) {
    complete(r, EG_ECANCELED);
    return;
  }
  if (r->err)
    err = r->err;
  bool transport_fail = err != 0;
  if (err == 0)
    err = httpc_status_err(r->status);
  bool retryable = false;
  if (!r->delivered && retries_left(r) && !r->c->closing) {
    if (transport_fail && err != EG_ETOOBIG && err != EG_EINVAL && r->err == 0)
      retryable = true; /* connection-level failure before anything was delivered */
    else if (transport_fail && err == EG_ETIMEOUT && !r->got_byte)
      retryable = true; /* first-byte timeout */
    else if (!transport_fail && r->holding)
      retryable = true;
  }
  if (retryable) {
    struct httpc_response resp;
    struct httpc_header *tmp;
    build_resp(r, &resp, &tmp);
    if (transport_fail)
      resp.status = 0;
    int64_t delay = 0;
    if (r->should_retry != NULL)
      delay = r->should_retry(r->ud, &resp);
    if (delay == 0) {
      uint32_t rnd;
      rand_bytes(&rnd, sizeof rnd);
      delay = httpc_retry_delay(transport_fail ? NULL : &resp, &r->retry, r->attempt,
                                clock_wall_ms(), rnd);
    }
    free(tmp);
    if (r->canceled) {
      complete(r, EG_ECANCELED);
      return;
    }
    uint64_t now = clock_mono_ms();
    if (delay >= 0 && now + (uint64_t)delay < total_deadline(r)) {
      log_debug("httpc: attempt %d failed (%s, status %d), retrying in %lld ms", r->attempt,
                eg_errname(err), r->status, (long long)delay);
      r->phase = PH_BACKOFF;
      uv_timer_start(&r->timer, req_timer_cb, (uint64_t)delay, 0);
      return;
    }
  }
  if (r->holding && !transport_fail) {
    /* Deliver the held error response as the final one. */
    r->holding = false;
    int rc = deliver_response(r);
    if (rc == 0 && !r->canceled && r->on_data != NULL && r->body_buf.len)
      rc = deliver_data(r, r->body_buf.data, r->body_buf.len);
    if (rc != 0)
      err = rc;
  }
  complete(r, err);
}

static void req_timer_cb(uv_timer_t *t) {
  struct httpc_req *r = t->data;
  if (r->canceled) {
    complete(r, EG_ECANCELED);
    return;
  }
  switch (r->phase) {
  case PH_QUEUED:
  case PH_BACKOFF:
    if (r->c->closing) {
      complete(r, EG_ECANCELED);
      return;
    }
    start_attempt(r);
    return;
  case PH_RUNNING: {
    uint64_t now = clock_mono_ms();
    bool fired = now >= total_deadline(r);
    const char *what = "total";
    if (!r->got_byte && r->to.first_byte_ms && now >= r->attempt_ms + r->to.first_byte_ms) {
      fired = true;
      what = "first byte";
    }
    if (r->got_byte && r->to.idle_ms && now >= r->last_byte_ms + r->to.idle_ms) {
      fired = true;
      what = "idle";
    }
    if (!fired) {
      arm_running_timer(r);
      return;
    }
    snprintf(r->errbuf, sizeof r->errbuf, "%s timeout", what);
    if (now >= total_deadline(r)) {
      /* No retry can fit in the total budget. */
      r->retry.max_tries = r->attempt;
    }
    end_attempt(r, EG_ETIMEOUT);
    return;
  }
  case PH_DONE:
    return;
  }
}

/* ---- multi plumbing ----------------------------------------------------------------- */

static void check_multi_info(struct httpc *c) {
  CURLMsg *m;
  int left;
  while (!c->torn_down && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    struct httpc_req *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode cc = m->data.result;
    if (r == NULL || r->phase != PH_RUNNING)
      continue;
    int err = map_curl(cc);
    if (cc == CURLE_OPERATION_TIMEDOUT && r->errbuf[0] == 0)
      snprintf(r->errbuf, sizeof r->errbuf, "connect timeout");
    end_attempt(r, err);
  }
}

static void sock_close_cb(uv_handle_t *h) {
  struct sock_ctx *sc = h->data;
  struct httpc *c = sc->c;
  free(sc);
  c->open_handles--;
  maybe_teardown(c);
}

static void sock_drop(struct httpc *c, struct sock_ctx *sc) {
  if (sc->prev)
    sc->prev->next = sc->next;
  else
    c->socks = sc->next;
  if (sc->next)
    sc->next->prev = sc->prev;
  sc->next = sc->prev = NULL;
  if ((size_t)sc->fd < c->nbyfd && c->byfd[sc->fd] == sc)
    c->byfd[sc->fd] = NULL;
  uv_poll_stop(&sc->poll);
  uv_close((uv_handle_t *)&sc->poll, sock_close_cb);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Starts the poll with ev (0 stops it) unless it is started with ev already. */
static void sock_watch(struct sock_ctx *sc, int ev) {
  if (sc->ev == ev)
    return;
  sc->ev = ev;
  if (ev)
    uv_poll_start(&sc->poll, ev, on_poll);
  else
    uv_poll_stop(&sc->poll);
}

static struct sock_ctx *sock_new(struct httpc *c, curl_socket_t s) {
  struct sock_ctx *sc = xcalloc(1, sizeof *sc);
  sc->fd = s;
  sc->c = c;
  if (uv_poll_init_socket(c->loop, &sc->poll, s) != 0) {
    free(sc);
    return NULL;
  }
  sc->poll.data = sc;
  c->open_handles++;
  sc->next = c->socks;
  if (c->socks)
    c->socks->prev = sc;
  c->socks = sc;
  return sc;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct sock_ctx *sc = h->data;
  struct httpc *c = sc->c;
  if (!sc->wanted) {
    /* An idle connection became readable (the peer closed it or sent something
       unasked): stop watching; curl finds out when it next tries to reuse it. */
    sock_watch(sc, 0);
    return;
  }
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  int running;
  if (c->torn_down)
    return;
  curl_multi_socket_action(c->multi, sc->fd, flags, &running);
  check_multi_info(c);
}

static void byfd_set(struct httpc *c, curl_socket_t fd, struct sock_ctx *sc) {
  if ((size_t)fd >= c->nbyfd) {
    size_t n = EG_MAX((size_t)fd + 1, c->nbyfd * 2);
    c->byfd = xrealloc(c->byfd, n * sizeof *c->byfd);
    memset(c->byfd + c->nbyfd, 0, (n - c->nbyfd) * sizeof *c->byfd);
    c->nbyfd = n;
  }
  c->byfd[fd] = sc;
}

/* Sockets are found by fd (c->byfd), not through curl_multi_assign: curl keeps no pointer
   of ours that could outlive a handle closed in closesocket_cb. */
static int socket_cb(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp) {
  (void)easy, (void)socketp;
  struct httpc *c = userp;
  if (s < 0)
    return 0;
  struct sock_ctx *sc = (size_t)s < c->nbyfd ? c->byfd[s] : NULL;
  if (action == CURL_POLL_REMOVE) {
    if (sc != NULL) {
      sc->wanted = false;
      if (!sc->owned)
        sock_drop(c, sc);
      else if (sc->ev != UV_READABLE)
        sock_watch(sc, UV_READABLE); /* idle: see a close by the peer */
    }
    return 0;
  }
  if (sc == NULL) {
    sc = sock_new(c, s);
    if (sc == NULL)
      return -1;
    byfd_set(c, s, sc);
  }
  sc->wanted = true;
  int ev = 0;
  if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
    ev |= UV_READABLE;
  if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
    ev |= UV_WRITABLE;
  sock_watch(sc, ev);
  return 0;
}

/* The connection sockets are ours to open and close, so that their poll handles can live
   as long as they do (struct sock_ctx). */
static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose,
                                   struct curl_sockaddr *a) {
  struct httpc *c = clientp;
  if (purpose != CURLSOCKTYPE_IPCXN)
    return CURL_SOCKET_BAD;
  int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd < 0)
    return CURL_SOCKET_BAD;
  if ((size_t)fd < c->nbyfd && c->byfd[fd] != NULL)
    sock_drop(c, c->byfd[fd]); /* a stale watch of a socket closed behind our back */
  struct sock_ctx *sc = sock_new(c, fd);
  if (sc == NULL) {
    close(fd);
    return CURL_SOCKET_BAD;
  }
  sc->owned = true;
  byfd_set(c, fd, sc);
  return fd;
}

static int closesocket_cb(void *clientp, curl_socket_t fd) {
  struct httpc *c = clientp;
  struct sock_ctx *sc = fd >= 0 && (size_t)fd < c->nbyfd ? c->byfd[fd] : NULL;
  if (sc != NULL)
    sock_drop(c, sc); /* the poll stops (epoll_ctl DEL) before the fd closes */
  return close(fd);
}

static void multi_timer_cb(uv_timer_t *t) {
  struct httpc *c = t->data;
  int running;
  if (c->torn_down)
    return;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  struct httpc *c = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, multi_timer_cb, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- public ------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc;

static void curl_init_once(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : EG_EINTERNAL;
}

int httpc_new(uv_loop_t *loop, struct httpc **out) {
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != 0)
    return curl_init_rc;
  struct httpc *c = xcalloc(1, sizeof *c);
  c->loop = loop;
  c->multi = curl_multi_init();
  if (c->multi == NULL) {
    free(c);
    return EG_EINTERNAL;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->open_handles = 1;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  /* Keep idle connections for reuse. Without a fixed size libcurl caps its cache at four
     times the transfers running at that moment, so when the load dips (many requests
     waiting on other stages) it closes idle connections that the next burst reopens. */
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)HTTPC_MAX_IDLE_CONNS);
  *out = c;
  return 0;
}

static void client_timer_close_cb(uv_handle_t *h) {
  struct httpc *c = h->data;
  c->open_handles--;
  maybe_teardown(c);
}

static void maybe_teardown(struct httpc *c) {
  if (!c->closing || c->active > 0)
    return;
  if (!c->torn_down) {
    c->torn_down = true;
    while (c->nspare)
      curl_easy_cleanup(c->spare[--c->nspare]);
    curl_multi_cleanup(c->multi); /* may report sockets to remove */
    c->multi = NULL;
    while (c->socks != NULL)
      sock_drop(c, c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, client_timer_close_cb);
    return;
  }
  if (c->open_handles > 0)
    return;
  free(c->byfd);
  void (*cb)(void *) = c->close_cb;
  void *ud = c->close_ud;
  c->close_cb = NULL;
  free(c);
  if (cb)
    cb(ud);
}

void httpc_close(struct httpc *c, void (*cb)(void *ud), void *ud) {
  if (c->closing)
    return;
  c->closing = true;
  c->close_cb = cb;
  c->close_ud = ud;
  for (struct httpc_req *r = c->reqs; r != NULL; r = r->next)
    httpc_cancel(r);
  maybe_teardown(c);
}

static bool valid_token(const char *s) {
  if (s == NULL || *s == 0)
    return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
      return false;
  return true;
}

static bool has_crlf(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

int httpc_start(struct httpc *c, const struct httpc_request *q, struct httpc_req **out) {
  if (out)
    *out = NULL;
  if (c->closing)
    return EG_ECLOSED;
  if (q->on_done == NULL || q->url == NULL)
    return EG_EINVAL;
  if (strncasecmp(q->url, "http://", 7) != 0 && strncasecmp(q->url, "https://", 8) != 0)
    return EG_EINVAL;
  if (has_crlf(q->url) || strchr(q->url, ' ') != NULL)
    return EG_EINVAL;
  const char *method = q->method ? q->method : (q->body ? "POST" : "GET");
  if (!valid_token(method))
    return EG_EINVAL;
  for (size_t i = 0; i < q->n_headers; i++) {
    const struct httpc_header *h = &q->headers[i];
    if (!valid_token(h->name) || h->value == NULL || has_crlf(h->value))
      return EG_EINVAL;
  }
  struct httpc_req *r = xcalloc(1, sizeof *r);
  r->c = c;
  r->method = xstrdup(method);
  r->url = xstrdup(q->url);
  struct buf line;
  buf_init(&line, 1u << 20);
  bool has_expect = false;
  for (size_t i = 0; i < q->n_headers; i++) {
    const struct httpc_header *h = &q->headers[i];
    buf_reset(&line);
    int rc = buf_printf(&line, *h->value ? "%s: %s" : "%s;", h->name, h->value);
    if (rc == 0)
      r->slist = curl_slist_append(r->slist, (const char *)line.data);
    if (strcasecmp(h->name, "expect") == 0)
      has_expect = true;
  }
  buf_free(&line);
  if (!has_expect)
    r->slist = curl_slist_append(r->slist, "Expect:");
  if (q->body && q->body_len) {
    r->body = xmemdup(q->body, q->body_len);
    r->body_len = q->body_len;
  }
  r->to = q->timeouts;
  r->retry = q->retry;
  if (r->retry.max_tries < 1)
    r->retry.max_tries = 1;
  r->max_body = q->max_body ? q->max_body : DEFAULT_MAX_BODY;
  buf_init(&r->body_buf, EG_MAX(r->max_body, (size_t)HOLD_BODY_MAX));
  r->on_response = q->on_response;
  r->on_data = q->on_data;
  r->on_done = q->on_done;
  r->should_retry = q->should_retry;
  r->ud = q->ud;
  log_ctx_get(&r->log);
  r->phase = PH_QUEUED;
  r->start_ms = clock_mono_ms();
  uv_timer_init(c->loop, &r->timer);
  r->timer.data = r;
  c->open_handles++;
  r->next = c->reqs;
  if (c->reqs)
    c->reqs->prev = r;
  c->reqs = r;
  c->active++;
  uv_timer_start(&r->timer, req_timer_cb, 0, 0);
  if (out)
    *out = r;
  return 0;
}

void httpc_cancel(struct httpc_req *r) {
  if (r == NULL || r->phase == PH_DONE || r->canceled)
    return;
  r->canceled = true;
  uv_timer_start(&r->timer, req_timer_cb, 0, 0);
}

size_t httpc_active(const struct httpc *c) {
  return c->active;
}
