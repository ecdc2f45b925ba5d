/*
 * The HTTP/1.1 server on net: connection state machine (see server_int.h), request
 * storage and accessors, responses, CORS, timeouts, stop.
 *
 * Request storage: everything a handler may read lives in the request (the target and
 * headers copied once from the parser's chunks into one capped buffer, the body in
 * another), so the request outlives the read buffer and can be answered later.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/server_int.h"

#define HEAD_SLACK 2048 /* header record overhead beyond max_header */

void http_limits_fill(struct http_limits *l) {
  if (l->max_header == 0)
    l->max_header = 16 * 1024;
  if (l->max_body == 0)
    l->max_body = 1024 * 1024;
  if (l->header_timeout_ms == 0)
    l->header_timeout_ms = 10000;
  if (l->idle_timeout_ms == 0)
    l->idle_timeout_ms = 60000;
  if (l->ws_max_message == 0)
    l->ws_max_message = 1024 * 1024;
  if (l->ws_high_water == 0)
    l->ws_high_water = 1024 * 1024;
  if (l->ws_max_backlog == 0)
    l->ws_max_backlog = 16 * 1024 * 1024;
  if (l->ws_max_backlog < l->ws_high_water)
    l->ws_max_backlog = l->ws_high_water;
}

/* ---- requests: storage --------------------------------------------------------------- */

static struct http_req *req_new(struct hconn *hc) {
  struct http_server *s = hc->srv;
  struct http_req *r = xcalloc(1, sizeof *r);
  r->conn = hc;
  r->srv = s;
  r->id = ++s->next_id;
  if (s->access_log)
    r->t0_ns = clock_mono_ns();
  buf_init(&r->head, s->lim.max_header + HEAD_SLACK);
  buf_init(&r->body, s->lim.max_body);
  return r;
}

void *http__req_alloc(struct http_req *r, size_t n) {
  struct req_alloc *a = xmalloc(sizeof *a + n + 1);
  a->next = r->allocs;
  r->allocs = a;
  return a->data;
}

void http__req_free(struct http_req *r) {
  if (r == NULL)
    return;
  buf_free(&r->head);
  buf_free(&r->body);
  while (r->allocs) {
    struct req_alloc *a = r->allocs;
    r->allocs = a->next;
    free(a);
  }
  free(r);
}

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static int head_append(struct http_req *r, const void *p, size_t n) {
  return buf_append(&r->head, p, n);
}

/* Starts a header record. */
static int rec_begin(struct http_req *r) {
  static const uint8_t zero[8];
  r->rec_off = r->head.len;
  r->in_value = false;
  return head_append(r, zero, 8);
}

static void rec_end(struct http_req *r, size_t trim) {
  size_t name_start = r->rec_off + 8;
  size_t nlen, vlen;
  if (r->in_value) {
    nlen = r->val_off - name_start;
    vlen = r->head.len - r->val_off;
  } else {
    nlen = r->head.len - name_start;
    vlen = 0;
  }
  if (trim > vlen)
    trim = vlen;
  vlen -= trim;
  r->head.len -= trim;
  wr32(r->head.data + r->rec_off, (uint32_t)nlen);
  wr32(r->head.data + r->rec_off + 4, (uint32_t)vlen);
  r->nheaders++;
  r->in_value = false;
  r->rec_off = 0;
}

/* The head is complete: split the target into path and query, decode the path. */
static int req_head_done(struct http_req *r, const struct http_parser *p) {
  r->method = p->method_id;
  r->version_minor = p->version_minor;
  r->keep_alive = p->keep_alive;
  r->upgrade = p->upgrade;
  r->expect_continue = p->expect_continue;
  const char *t = (const char *)r->head.data;
  size_t n = r->target_len;
  size_t ps = 0;
  if (n >= 1 && t[0] == '/') {
    ps = 0;
  } else if (n == 1 && t[0] == '*' && r->method == HTTP_OPTIONS) {
    r->path = "*";
    r->path_len = 1;
    return 0;
  } else {
    /* absolute-form: scheme "://" authority path */
    const char *sep = n > 3 ? memmem(t, n, "://", 3) : NULL;
    if (sep == NULL)
      return EG_EPROTO;
    const char *slash = memchr(sep + 3, '/', (size_t)(t + n - (sep + 3)));
    if (slash == NULL) {
      r->path = "/";
      r->path_len = 1;
      r->qs_off = r->qs_len = 0;
      const char *q = memchr(sep + 3, '?', (size_t)(t + n - (sep + 3)));
      if (q) {
        r->qs_off = (size_t)(q + 1 - t);
        r->qs_len = n - r->qs_off;
      }
      return 0;
    }
    ps = (size_t)(slash - t);
  }
  const char *q = memchr(t + ps, '?', n - ps);
  size_t pe = q ? (size_t)(q - t) : n;
  if (q) {
    r->qs_off = pe + 1;
    r->qs_len = n - r->qs_off;
  }
  char *path = http__req_alloc(r, pe - ps);
  r->path_len = http__pct_decode(t + ps, pe - ps, path, false);
  path[r->path_len] = '\0';
  r->path = path;
  return 0;
}

/* ---- requests: accessors --------------------------------------------------------------- */

enum http_method http_req_method(const struct http_req *r) { return r->method; }

struct slice http_req_method_str(const struct http_req *r) {
  return slice_from_cstr(http_method_name(r->method));
}

struct slice http_req_target(const struct http_req *r) {
  return (struct slice){(const char *)r->head.data, r->target_len};
}

struct slice http_req_path(const struct http_req *r) {
  return (struct slice){r->path, r->path_len};
}

struct slice http_req_query_string(const struct http_req *r) {
  if (r->qs_len == 0)
    return (struct slice){"", 0};
  return (struct slice){(const char *)r->head.data + r->qs_off, r->qs_len};
}

bool http_req_query(struct http_req *r, const char *name, struct slice *out) {
  struct slice qs = http_req_query_string(r);
  size_t nl = strlen(name);
  const char *p = qs.p, *end = qs.p + qs.len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *e = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(e - p));
    const char *ke = eq ? eq : e;
    /* decode the key to compare */
    char kbuf[128];
    size_t kl = (size_t)(ke - p);
    if (kl <= sizeof kbuf) {
      size_t dl = http__pct_decode(p, kl, kbuf, true);
      if (dl == nl && memcmp(kbuf, name, nl) == 0) {
        const char *vs = eq ? eq + 1 : e;
        size_t vl = (size_t)(e - vs);
        char *v = http__req_alloc(r, vl);
        size_t n = http__pct_decode(vs, vl, v, true);
        v[n] = '\0';
        *out = (struct slice){v, n};
        return true;
      }
    }
    p = amp ? amp + 1 : end;
  }
  return false;
}

bool http_req_header_at(const struct http_req *r, size_t i, struct slice *name,
                        struct slice *value) {
  if (i >= r->nheaders)
    return false;
  size_t off = r->target_len;
  const uint8_t *d = r->head.data;
  for (size_t k = 0;; k++) {
    uint32_t nl = rd32(d + off), vl = rd32(d + off + 4);
    if (k == i) {
      *name = (struct slice){(const char *)d + off + 8, nl};
      *value = (struct slice){(const char *)d + off + 8 + nl, vl};
      return true;
    }
    off += 8 + nl + vl;
  }
}

bool http_req_header(const struct http_req *r, const char *name, struct slice *out) {
  size_t off = r->target_len;
  const uint8_t *d = r->head.data;
  size_t nl0 = strlen(name);
  for (size_t k = 0; k < r->nheaders; k++) {
    uint32_t nl = rd32(d + off), vl = rd32(d + off + 4);
    if (nl == nl0 && slice_case_eq_cstr((struct slice){(const char *)d + off + 8, nl}, name)) {
      *out = (struct slice){(const char *)d + off + 8 + nl, vl};
      return true;
    }
    off += 8 + nl + vl;
  }
  return false;
}

bool http_req_cookie(const struct http_req *r, const char *name, struct slice *out) {
  struct slice n, v;
  for (size_t i = 0; http_req_header_at(r, i, &n, &v); i++)
    if (slice_case_eq_cstr(n, "cookie") && http_cookie_find(v, name, out))
      return true;
  return false;
}

struct slice http_req_body(const struct http_req *r) {
  if (r->body.len == 0)
    return (struct slice){"", 0};
  return (struct slice){(const char *)r->body.data, r->body.len};
}

const char *http_req_remote(const struct http_req *r) {
  struct http_req *m = (struct http_req *)r;
  if (m->remote[0] == '\0') {
    if (m->conn == NULL || net_conn_peer(&m->conn->nc, m->remote, sizeof m->remote) != 0)
      snprintf(m->remote, sizeof m->remote, "unknown");
  }
  return m->remote;
}

uint64_t http_req_id(const struct http_req *r) { return r->id; }
const char *http_req_request_id(const struct http_req *r) {
  return r->rid;
}
int http_req_version_minor(const struct http_req *r) { return r->version_minor; }
struct http_server *http_req_server(const struct http_req *r) { return r->srv; }
uv_loop_t *http_req_loop(const struct http_req *r) { return r->srv->loop; }
void http_req_set_data(struct http_req *r, void *data) { r->data = data; }
void *http_req_data(const struct http_req *r) { return r->data; }

bool http_req_param(const struct http_req *r, const char *name, struct slice *out) {
  for (unsigned i = 0; i < r->nparams; i++)
    if (slice_eq_cstr(r->param_names[i], name)) {
      *out = r->param_values[i];
      return true;
    }
  return false;
}

void http_req_on_abort(struct http_req *r, void (*cb)(struct http_req *r, void *ud),
                       void *ud) {
  r->abort_cb = cb;
  r->abort_ud = ud;
}

/* ---- CORS ------------------------------------------------------------------------------ */

bool http_server_origin_allowed(const struct http_server *s, struct slice origin) {
  if (origin.len == 0)
    return false;
  if (s->any_origin)
    return true;
  for (size_t i = 0; i < s->norigins; i++)
    if (slice_eq_cstr(origin, s->origins[i]))
      return true;
  return false;
}

static int add_cors(struct http_server *s, const struct http_req *r, struct buf *b) {
  struct slice origin;
  if (s->norigins == 0 && !s->any_origin)
    return 0;
  if (!http_req_header(r, "origin", &origin) || !http_server_origin_allowed(s, origin))
    return 0;
  int rc;
  if (s->any_origin && !s->cors_credentials)
    rc = buf_append_str(b, "Access-Control-Allow-Origin: *\r\n");
  else
    rc = buf_printf(b, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
                    (int)origin.len, origin.p);
  if (rc == 0 && s->cors_credentials)
    rc = buf_append_str(b, "Access-Control-Allow-Credentials: true\r\n");
  return rc;
}

/* ---- responses ------------------------------------------------------------------------ */

static bool header_ok(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n')
      return false;
  return true;
}

static void conn_after_response(struct hconn *hc, bool close_conn);

int http__send_response(struct http_req *r, int status, const char *content_type,
                        const struct http_header *hdrs, size_t nhdrs, const void *body,
                        size_t len, bool has_body) {
  struct hconn *hc = r->conn;
  struct http_server *s = r->srv;
  struct buf *b = &s->scratch;
  bool close_conn = !r->keep_alive || s->stopping;
  char date[30];
  buf_reset(b);
  http__date(date);
  int rc = buf_printf(b, "HTTP/1.%d %d %s\r\nDate: %s\r\n", r->version_minor ? 1 : 0, status,
                      http_status_text(status), date);
  if (rc == 0 && content_type)
    rc = buf_printf(b, "Content-Type: %s\r\n", content_type);
  if (rc == 0 && status != 204 && status != 304 && status >= 200)
    rc = buf_printf(b, "Content-Length: %zu\r\n", len);
  if (rc == 0) {
    if (close_conn)
      rc = buf_append_str(b, "Connection: close\r\n");
    else if (r->version_minor == 0)
      rc = buf_append_str(b, "Connection: keep-alive\r\n");
  }
  if (rc == 0)
    rc = add_cors(s, r, b);
  if (rc == 0 && r->rid[0])
    rc = buf_printf(b, "X-Request-Id: %s\r\n", r->rid);
  for (size_t i = 0; rc == 0 && i < nhdrs; i++)
    rc = buf_printf(b, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
  if (rc == 0)
    rc = buf_append_str(b, "\r\n");
  if (rc != 0) {
    log_warn("http: response head too large");
    net_conn_abort(&hc->nc);
    return EG_ETOOBIG;
  }
  uv_buf_t parts[2] = {uv_buf_init((char *)b->data, (unsigned)b->len),
                       uv_buf_init((char *)body, (unsigned)len)};
  bool send_body = has_body && r->method != HTTP_HEAD && len > 0;
  rc = net_conn_writev(&hc->nc, parts, send_body ? 2 : 1);
  http__access_log(r, status);
  if (b->cap > 64 * 1024) /* don't keep a huge scratch around */
    buf_free(b);
  return rc == 0 && close_conn ? 1 : rc;
}

void http__req_finish(struct http_req *r, bool close_conn) {
  struct hconn *hc = r->conn;
  if (r->in_abort) {
    r->answered = true;
    return;
  }
  http__req_free(r);
  if (hc == NULL)
    return;
  hc->req = NULL;
  conn_after_response(hc, close_conn);
}

int http_respond_ex(struct http_req *r, int status, const char *content_type,
                    const struct http_header *hdrs, size_t nhdrs, const void *body,
                    size_t len) {
  if (r->conn == NULL || r->in_abort) {
    if (!r->in_abort)
      http__access_log(r, 499); /* the client left first */
    http__req_finish(r, true);
    return EG_ECLOSED;
  }
  bool bad = status < 100 || status > 599 || (content_type && !header_ok(content_type));
  for (size_t i = 0; !bad && i < nhdrs; i++)
    bad = !header_ok(hdrs[i].name) || !header_ok(hdrs[i].value);
  int rc;
  if (bad) {
    rc = http__send_response(r, 500, "application/json; charset=utf-8", NULL, 0,
                             "{\"message\":\"Internal Server Error\"}", 35, true);
    http__req_finish(r, rc != 0);
    return EG_EINVAL;
  }
  rc = http__send_response(r, status, content_type, hdrs, nhdrs, body, len, true);
  http__req_finish(r, rc != 0);
  return rc < 0 ? rc : 0;
}

int http_respond(struct http_req *r, int status, const char *content_type, const void *body,
                 size_t len) {
  return http_respond_ex(r, status, content_type, NULL, 0, body, len);
}

int http_respond_json(struct http_req *r, int status, const char *json) {
  return http_respond_ex(r, status, "application/json; charset=utf-8", NULL, 0, json,
                         strlen(json));
}

int http_respond_error(struct http_req *r, int status, const char *message) {
  struct buf b;
  buf_init(&b, 64 * 1024);
  int rc = buf_append_str(&b, "{\"message\":\"");
  for (const unsigned char *p = (const unsigned char *)message; rc == 0 && *p; p++) {
    if (*p == '"' || *p == '\\')
      rc = buf_printf(&b, "\\%c", *p);
    else if (*p < 0x20)
      rc = buf_printf(&b, "\\u%04x", *p);
    else
      rc = buf_append_byte(&b, *p);
  }
  if (rc == 0)
    rc = buf_append_str(&b, "\"}");
  if (rc != 0) {
    buf_free(&b);
    return http_respond_json(r, status, "{\"message\":\"error\"}");
  }
  rc = http_respond_ex(r, status, "application/json; charset=utf-8", NULL, 0, b.data, b.len);
  buf_free(&b);
  return rc;
}

/* An automatic error answer (parse errors, timeouts) that closes the connection. */
static void send_error_close(struct hconn *hc, int status) {
  char body[128];
  int n = snprintf(body, sizeof body, "{\"message\":\"%s\"}", http_status_text(status));
  char head[512];
  char date[30];
  http__date(date);
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json; "
                    "charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                    status, http_status_text(status), date, n);
  uv_buf_t parts[2] = {uv_buf_init(head, (unsigned)hn), uv_buf_init(body, (unsigned)n)};
  if (net_conn_writev(&hc->nc, parts, 2) != 0)
    log_debug("http: connection failed before the %d answer", status);
  hc->state = C_CLOSING;
  net_conn_close(&hc->nc);
}

/* ---- connection state machine ------------------------------------------------------------- */

static void dispatch(struct hconn *hc);

static void conn_after_response(struct hconn *hc, bool close_conn) {
  if (hc->state == C_WS || hc->state == C_CLOSING)
    return;
  if (close_conn || hc->srv->stopping) {
    hc->state = C_CLOSING;
    net_conn_close(&hc->nc);
    return;
  }
  hc->state = C_IDLE;
  net_conn_timeout(&hc->nc, TO_IDLE);
  if (!hc->in_read)
    net_conn_resume(&hc->nc); /* pipelined bytes are presented again from the loop */
}

/* The automatic CORS preflight answer. */
static bool answer_preflight(struct http_req *r) {
  struct slice origin, acrm, acrh;
  if (r->method != HTTP_OPTIONS || !http_req_header(r, "origin", &origin) ||
      !http_req_header(r, "access-control-request-method", &acrm))
    return false;
  struct http_header h[4];
  size_t n = 0;
  char *hdrs = NULL;
  h[n++] = (struct http_header){"Access-Control-Allow-Methods",
                                "GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS"};
  if (http_req_header(r, "access-control-request-headers", &acrh) && acrh.len < 4096) {
    hdrs = http__req_alloc(r, acrh.len);
    memcpy(hdrs, acrh.p, acrh.len);
    hdrs[acrh.len] = '\0';
    h[n++] = (struct http_header){"Access-Control-Allow-Headers", hdrs};
  }
  h[n++] = (struct http_header){"Access-Control-Max-Age", "86400"};
  if (!r->srv->any_origin || r->srv->cors_credentials)
    h[n++] = (struct http_header){"Vary", "Access-Control-Request-Headers"};
  if (http_respond_ex(r, 204, NULL, h, n, NULL, 0) != 0)
    log_debug("http: client gone before the preflight answer");
  return true;
}

/* The access log line (see http.h "Access log"). */
void http__access_log(const struct http_req *r, int status) {
  if (!r->srv->access_log || !log_enabled(LOG_INFO))
    return;
  double ms = (double)(clock_mono_ns() - r->t0_ns) / 1e6;
  ms = (double)(uint64_t)(ms * 1000.0 + 0.5) / 1000.0; /* microseconds are enough */
  struct slice t = http_req_target(r);
  const char *q = memchr(t.p, '?', t.len);
  size_t plen = q ? (size_t)(q - t.p) : t.len;
  char path[LOG_FIELD_MAX + 1];
  plen = EG_MIN(plen, sizeof path - 1);
  memcpy(path, t.p, plen);
  path[plen] = '\0';
  const char *method = http_method_name(r->method);
  struct log_ctx saved;
  log_ctx_get(&saved);
  log_ctx_set_request_id(r->rid, strlen(r->rid));
  const struct log_field f[] = {{"method", method, 0},
                                {"path", path, 0},
                                {"status", NULL, status},
                                {"duration_ms", NULL, ms}};
  log_fields(LOG_INFO, f, EG_ARRAY_LEN(f), "http: %s %s %d", method, path, status);
  log_ctx_set(&saved);
}

/* The request's id: the client's X-Request-Id when it is a valid one, else a new one. */
static void req_assign_id(struct http_req *r) {
  struct slice v;
  if (http_req_header(r, "x-request-id", &v) && log_request_id_valid(v.p, v.len)) {
    memcpy(r->rid, v.p, v.len);
    r->rid[v.len] = '\0';
  } else {
    log_request_id_new(r->rid);
  }
}

static void dispatch(struct hconn *hc) {
  struct http_req *r = hc->req;
  struct http_server *s = hc->srv;
  hc->state = C_HANDLER;
  net_conn_timeout(&hc->nc, NET_TIMEOUT_NONE);
  struct log_ctx saved;
  if (s->request_ids) {
    req_assign_id(r);
    log_ctx_get(&saved);
    log_ctx_set_request_id(r->rid, strlen(r->rid));
  }
  /* r may be gone once answered: only s is used below. */
  if (!answer_preflight(r))
    s->handler(r, s->ud);
  if (s->request_ids)
    log_ctx_set(&saved);
}

static size_t conn_on_read(struct net_conn *nc, uint8_t *data, size_t n) {
  struct hconn *hc = (struct hconn *)nc;
  size_t pos = 0;
  if (hc->state == C_WS)
    return http__ws_on_read(hc, data, n);
  hc->in_read = true;
  while (pos < n || http_parser_msg_pending(&hc->parser)) {
    if (hc->state == C_HANDLER) {
      net_conn_pause(nc);
      break;
    }
    if (hc->state == C_WS) {
      hc->in_read = false;
      return pos + http__ws_on_read(hc, data + pos, n - pos);
    }
    if (hc->state == C_CLOSING) {
      pos = n;
      break;
    }
    struct http_pevent ev;
    size_t used;
    int rc = http_parser_feed(&hc->parser, data + pos, n - pos, &used, &ev);
    pos += used;
    if (rc == EG_EAGAIN)
      break;
    if (rc < 0) {
      send_error_close(hc, hc->parser.status);
      pos = n;
      break;
    }
    if (hc->state == C_IDLE) {
      hc->state = C_READING;
      net_conn_timeout(nc, TO_HEADER);
    }
    if (hc->req == NULL)
      hc->req = req_new(hc);
    struct http_req *r = hc->req;
    rc = 0;
    switch (ev.type) {
    case HTTP_PEV_URL:
      rc = head_append(r, ev.data, ev.len);
      r->target_len += ev.len;
      break;
    case HTTP_PEV_HDR_NAME:
      if (r->rec_off == 0)
        rc = rec_begin(r);
      if (rc == 0)
        rc = head_append(r, ev.data, ev.len);
      break;
    case HTTP_PEV_HDR_VALUE:
      if (r->rec_off == 0) /* cannot happen: a value follows a name */
        rc = EG_EPROTO;
      if (rc == 0 && !r->in_value) {
        r->in_value = true;
        r->val_off = r->head.len;
      }
      if (rc == 0)
        rc = head_append(r, ev.data, ev.len);
      break;
    case HTTP_PEV_HDR_END:
      if (r->rec_off != 0)
        rec_end(r, ev.trim);
      break;
    case HTTP_PEV_HEAD_DONE:
      if (req_head_done(r, &hc->parser) != 0) {
        send_error_close(hc, 400);
        pos = n;
        goto out;
      }
      net_conn_timeout(nc, TO_HEADER); /* the body gets its own header_timeout */
      if (r->expect_continue && net_conn_write(nc, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
        log_debug("http: connection failed before 100 Continue");
      break;
    case HTTP_PEV_BODY:
      rc = buf_append(&r->body, ev.data, ev.len);
      if (rc != 0) {
        send_error_close(hc, 413);
        pos = n;
        goto out;
      }
      break;
    case HTTP_PEV_MSG_DONE:
      dispatch(hc);
      break;
    }
    if (rc != 0) {
      send_error_close(hc, 431);
      pos = n;
      break;
    }
  }
out:
  hc->in_read = false;
  return pos;
}

/* The client is gone while r is pending: abort it. */
static void abort_pending(struct hconn *hc) {
  struct http_req *r = hc->req;
  if (r == NULL)
    return;
  hc->req = NULL;
  r->conn = NULL;
  if (hc->state != C_HANDLER) { /* still being parsed: the handler never saw it */
    http__req_free(r);
    return;
  }
  if (r->abort_cb) {
    r->in_abort = true;
    r->abort_cb(r, r->abort_ud);
    http__req_free(r);
  }
  /* else: the handler still holds r; its answer frees it */
}

static void conn_on_eof(struct net_conn *nc, int status) {
  struct hconn *hc = (struct hconn *)nc;
  if (hc->state == C_WS) {
    http__ws_on_eof(hc);
    return;
  }
  if (status == EG_ECLOSED && hc->state == C_HANDLER && hc->req && !hc->req->abort_cb) {
    /* Half-close after a request (nc -N, some load tools): answer, then close. Requests
       that registered an abort callback (long-polls) are aborted instead. */
    hc->req->keep_alive = false;
    return;
  }
  abort_pending(hc);
  hc->state = C_CLOSING;
  net_conn_close(nc);
}

static void conn_on_timeout(struct net_conn *nc, int cls) {
  struct hconn *hc = (struct hconn *)nc;
  if (cls == TO_HEADER && hc->state == C_READING) {
    abort_pending(hc);
    send_error_close(hc, 408);
  } else if (hc->state == C_WS) {
    /* no timeouts on WebSockets */
  } else {
    abort_pending(hc);
    hc->state = C_CLOSING;
    net_conn_close(nc);
  }
}

static void conn_on_drain(struct net_conn *nc) {
  struct hconn *hc = (struct hconn *)nc;
  if (hc->state == C_WS)
    http__ws_on_drain(hc);
}

static void conn_on_close(struct net_conn *nc) {
  struct hconn *hc = (struct hconn *)nc;
  if (hc->ws)
    http__ws_on_conn_closed(hc);
  abort_pending(hc);
}

static const struct net_conn_cbs conn_cbs = {
    .on_read = conn_on_read,
    .on_eof = conn_on_eof,
    .on_drain = conn_on_drain,
    .on_timeout = conn_on_timeout,
    .on_close = conn_on_close,
};

static int on_accept(struct net_server *ns, struct net_conn *nc, void *ud) {
  (void)ns;
  struct http_server *s = ud;
  struct hconn *hc = (struct hconn *)nc;
  if (s->stopping)
    return -1;
  hc->srv = s;
  hc->state = C_IDLE;
  http_parser_init(&hc->parser, s->lim.max_header, s->lim.max_body);
  net_conn_set_cbs(nc, &conn_cbs);
  /* A fresh connection must send its request head within header_timeout. */
  net_conn_timeout(nc, TO_HEADER);
  return 0;
}

/* ---- server ---------------------------------------------------------------------------------- */

int http_server_start(uv_loop_t *loop, const struct http_server_opts *o,
                      http_handler_fn on_request, void *ud, struct http_server **out) {
  if (on_request == NULL)
    return EG_EINVAL;
  struct http_server *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->lim = o->limits;
  http_limits_fill(&s->lim);
  s->handler = on_request;
  s->ud = ud;
  s->cors_credentials = o->cors_credentials;
  s->request_ids = o->request_ids;
  s->access_log = o->access_log;
  buf_init(&s->scratch, s->lim.max_header * 4 + 64 * 1024);
  if (o->cors_origins) {
    for (size_t i = 0; o->cors_origins[i]; i++) {
      if (strcmp(o->cors_origins[i], "*") == 0) {
        s->any_origin = true;
        continue;
      }
      s->origins = xrealloc(s->origins, (s->norigins + 1) * sizeof *s->origins);
      s->origins[s->norigins++] = xstrdup(o->cors_origins[i]);
    }
  }
  struct net_server_opts no = {
      .host = o->host,
      .port = o->port,
      .backlog = o->backlog,
      .conn_size = sizeof(struct hconn),
      .on_accept = on_accept,
      .ud = s,
      .max_per_addr = s->lim.max_conn_per_addr,
  };
  int rc = net_server_start(loop, &no, &s->net);
  if (rc != 0) {
    for (size_t i = 0; i < s->norigins; i++)
      free(s->origins[i]);
    free(s->origins);
    buf_free(&s->scratch);
    free(s);
    return rc;
  }
  net_server_set_timeout(s->net, TO_HEADER, s->lim.header_timeout_ms);
  net_server_set_timeout(s->net, TO_IDLE, s->lim.idle_timeout_ms);
  *out = s;
  return 0;
}

int http_server_port(const struct http_server *s) { return net_server_port(s->net); }
uv_loop_t *http_server_loop(const struct http_server *s) { return s->loop; }

static void on_net_closed(void *ud) {
  struct http_server *s = ud;
  void (*cb)(void *) = s->on_closed;
  void *cud = s->closed_ud;
  for (size_t i = 0; i < s->norigins; i++)
    free(s->origins[i]);
  free(s->origins);
  buf_free(&s->scratch);
  free(s);
  if (cb)
    cb(cud);
}

static void stop_conn(struct net_conn *nc, void *ud) {
  (void)ud;
  struct hconn *hc = (struct hconn *)nc;
  switch (hc->state) {
  case C_WS:
    http__ws_server_stop(hc);
    break;
  case C_HANDLER:
    if (hc->req && hc->req->abort_cb) {
      abort_pending(hc);
      hc->state = C_CLOSING;
      net_conn_close(nc);
    }
    /* else: closes after its response (stopping forces Connection: close) */
    break;
  default:
    abort_pending(hc);
    hc->state = C_CLOSING;
    net_conn_close(nc);
    break;
  }
}

void http_server_stop(struct http_server *s, void (*on_closed)(void *ud), void *ud) {
  if (s->stopping)
    return;
  s->stopping = true;
  s->on_closed = on_closed;
  s->closed_ud = ud;
  net_server_foreach(s->net, stop_conn, NULL);
  net_server_stop(s->net, on_net_closed, s);
}
