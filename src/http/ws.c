/*
 * WebSocket connections (RFC 6455) on an upgraded HTTP connection, using the frame codec
 * of proto/ws.h.
 *
 * Closing, from each side:
 * - the peer sends Close: we echo its status (an empty Close if it sent none), report
 *   on_close(status) at once and close TCP gracefully (the server closes first, as RFC 6455
 *   7.1.1 asks).
 * - ws_close(code): we send Close, shut our side down and report on_close(code) when the
 *   TCP connection is gone (peer's EOF, or the 2 s linger).
 * - a protocol error in the input: Close with 1002/1007/1009, report that code, close.
 * - the backlog cap is passed, or TCP drops: on_close(1008 / 1006) when the handle closes.
 * The ws_conn memory lives until the TCP connection is closed, so a late ws_send after
 * on_close is caught (EG_ECLOSED) rather than a use-after-free; the contract still says
 * the pointer is invalid after on_close.
 */
#include <stdlib.h>
#include <string.h>

#include "http/server_int.h"

struct ws_conn {
  struct hconn *hc;
  const struct ws_callbacks *cb;
  void *ud;
  bool close_sent, reported, read_paused, failed;
  int close_code; /* reported when the connection closes, if not reported before */
  struct ws_assembler as;
  char remote[64];
};

static void report_close(struct ws_conn *ws, int code) {
  if (ws->reported)
    return;
  ws->reported = true;
  const struct ws_callbacks *cb = ws->cb;
  ws->cb = NULL;
  if (cb && cb->on_close)
    cb->on_close(ws, code, ws->ud);
}

static void send_control(struct ws_conn *ws, unsigned opcode, const uint8_t *p, size_t n) {
  uint8_t f[WS_MAX_CONTROL_FRAME];
  size_t fl = ws_control_frame(f, opcode, p, n, NULL);
  if (fl && net_conn_write(&ws->hc->nc, f, fl) != 0)
    log_debug("ws: control frame dropped (connection closing)");
}

static void send_close_frame(struct ws_conn *ws, int code, const char *reason) {
  uint8_t f[WS_MAX_CONTROL_FRAME];
  size_t fl = ws_close_frame(f, (uint16_t)code, reason, reason ? strlen(reason) : 0, NULL);
  if (net_conn_write(&ws->hc->nc, f, fl) != 0)
    log_debug("ws: close frame dropped (connection closing)");
  ws->close_sent = true;
}

/* Close because of the peer's bad input: status, report, close. */
static void fail_close(struct ws_conn *ws, int code) {
  send_close_frame(ws, code, NULL);
  ws->close_code = code;
  ws->hc->state = C_CLOSING;
  net_conn_close(&ws->hc->nc);
  report_close(ws, code);
}

size_t http__ws_on_read(struct hconn *hc, uint8_t *data, size_t n) {
  struct ws_conn *ws = hc->ws;
  size_t pos = 0;
  while (pos < n) {
    if (ws->close_sent || ws->reported || ws->failed)
      return n; /* closing: input is discarded */
    struct ws_message m;
    size_t used;
    int rc = ws_assembler_feed(&ws->as, data + pos, n - pos, &used, &m);
    pos += used;
    if (rc == EG_EAGAIN)
      break;
    if (rc < 0) {
      fail_close(ws, ws_err_close_code(rc));
      return n;
    }
    switch (m.opcode) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
      if (ws->cb)
        ws->cb->on_message(ws, m.opcode, m.data, m.len, ws->ud);
      break;
    case WS_OP_PING:
      send_control(ws, WS_OP_PONG, m.data, m.len);
      break;
    case WS_OP_PONG:
      break;
    case WS_OP_CLOSE: {
      int code = m.close_code;
      if (code == WS_CLOSE_NO_STATUS) {
        send_control(ws, WS_OP_CLOSE, NULL, 0);
        ws->close_sent = true;
      } else {
        send_close_frame(ws, code, NULL);
      }
      ws->close_code = code;
      hc->state = C_CLOSING;
      net_conn_close(&hc->nc);
      report_close(ws, code);
      return n;
    }
    default:
      break;
    }
  }
  return n;
}

void http__ws_on_eof(struct hconn *hc) {
  struct ws_conn *ws = hc->ws;
  int code = ws->close_sent ? ws->close_code : WS_CLOSE_ABNORMAL;
  hc->state = C_CLOSING;
  net_conn_close(&hc->nc);
  report_close(ws, code);
}

void http__ws_on_conn_closed(struct hconn *hc) {
  struct ws_conn *ws = hc->ws;
  report_close(ws, ws->close_code ? ws->close_code : WS_CLOSE_ABNORMAL);
  ws_assembler_free(&ws->as);
  free(ws);
  hc->ws = NULL;
}

void http__ws_on_drain(struct hconn *hc) {
  struct ws_conn *ws = hc->ws;
  if (!ws->read_paused)
    return;
  ws->read_paused = false;
  net_conn_read_start(&hc->nc);
  if (ws->cb && ws->cb->on_drain && !ws->close_sent)
    ws->cb->on_drain(ws, ws->ud);
}

void http__ws_server_stop(struct hconn *hc) { ws_close(hc->ws, WS_CLOSE_GOING_AWAY, NULL); }

/* ---- accept --------------------------------------------------------------------------------- */

static bool has_token(const struct http_req *r, const char *name, const char *token) {
  struct slice n, v;
  size_t tl = strlen(token);
  for (size_t i = 0; http_req_header_at(r, i, &n, &v); i++) {
    if (!slice_case_eq_cstr(n, name))
      continue;
    const char *p = v.p, *end = v.p + v.len;
    while (p < end) {
      const char *c = memchr(p, ',', (size_t)(end - p));
      const char *e = c ? c : end;
      const char *s = p;
      while (s < e && (*s == ' ' || *s == '\t'))
        s++;
      const char *t = e;
      while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
        t--;
      if ((size_t)(t - s) == tl && slice_case_eq_cstr((struct slice){s, tl}, token))
        return true;
      p = c ? c + 1 : end;
    }
  }
  return false;
}

bool http_req_is_upgrade(const struct http_req *r) {
  return has_token(r, "upgrade", "websocket");
}

int http_ws_accept_ex(struct http_req *r, const struct ws_callbacks *cb, void *ud,
                      const struct http_header *hdrs, size_t nhdrs, struct ws_conn **out) {
  if (r->conn == NULL || r->in_abort) {
    http__req_finish(r, true);
    return EG_ECLOSED;
  }
  struct slice key, ver;
  char accept[WS_ACCEPT_LEN + 1];
  if (cb == NULL || cb->on_message == NULL || cb->on_close == NULL ||
      r->method != HTTP_GET || r->version_minor != 1 || !http_req_is_upgrade(r) ||
      !has_token(r, "connection", "upgrade") ||
      !http_req_header(r, "sec-websocket-version", &ver) || !slice_eq_cstr(ver, "13") ||
      !http_req_header(r, "sec-websocket-key", &key) ||
      ws_accept_key(key.p, key.len, accept) != 0)
    return EG_EINVAL;
  for (size_t i = 0; i < nhdrs; i++)
    if (strpbrk(hdrs[i].name, "\r\n") || strpbrk(hdrs[i].value, "\r\n"))
      return EG_EINVAL;
  struct hconn *hc = r->conn;
  struct http_server *s = hc->srv;
  struct buf *b = &s->scratch;
  buf_reset(b);
  int rc = buf_printf(b,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                      accept);
  if (rc == 0 && r->rid[0])
    rc = buf_printf(b, "X-Request-Id: %s\r\n", r->rid);
  for (size_t i = 0; rc == 0 && i < nhdrs; i++)
    rc = buf_printf(b, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
  if (rc == 0)
    rc = buf_append_str(b, "\r\n");
  if (rc != 0)
    return EG_EINVAL;
  if (net_conn_write(&hc->nc, b->data, b->len) != 0) {
    http__req_finish(r, true);
    return EG_ECLOSED;
  }
  http__access_log(r, 101);
  struct ws_conn *ws = xcalloc(1, sizeof *ws);
  ws->hc = hc;
  ws->cb = cb;
  ws->ud = ud;
  ws_assembler_init(&ws->as, WS_ROLE_SERVER, s->lim.ws_max_message, s->lim.ws_max_message);
  snprintf(ws->remote, sizeof ws->remote, "%s", http_req_remote(r));
  hc->ws = ws;
  hc->state = C_WS;
  hc->req = NULL;
  http__req_free(r);
  net_conn_timeout(&hc->nc, NET_TIMEOUT_NONE);
  net_conn_set_low_water(&hc->nc, s->lim.ws_high_water / 2);
  if (!hc->in_read)
    net_conn_resume(&hc->nc); /* bytes that came after the request, from the loop */
  *out = ws;
  return 0;
}

int http_ws_accept(struct http_req *r, const struct ws_callbacks *cb, void *ud,
                   struct ws_conn **out) {
  return http_ws_accept_ex(r, cb, ud, NULL, 0, out);
}

/* ---- sending ---------------------------------------------------------------------------------- */

/* Backpressure bookkeeping before queueing total bytes. */
static int admit(struct ws_conn *ws, size_t total) {
  if (ws->close_sent || ws->reported || ws->failed)
    return EG_ECLOSED;
  struct http_server *s = ws->hc->srv;
  if (net_conn_backlog(&ws->hc->nc) + total > s->lim.ws_max_backlog) {
    ws->failed = true;
    ws->close_code = WS_CLOSE_POLICY;
    ws->hc->state = C_CLOSING;
    net_conn_abort(&ws->hc->nc);
    return EG_ETOOBIG;
  }
  return 0;
}

static void after_send(struct ws_conn *ws) {
  struct http_server *s = ws->hc->srv;
  if (!ws->read_paused && net_conn_backlog(&ws->hc->nc) > s->lim.ws_high_water) {
    ws->read_paused = true;
    net_conn_read_stop(&ws->hc->nc);
  }
}

int ws_sendv(struct ws_conn *ws, int opcode, const uv_buf_t *parts, unsigned nparts) {
  size_t total = 0;
  for (unsigned i = 0; i < nparts; i++)
    total += parts[i].len;
  uint8_t h[WS_MAX_HEADER];
  size_t hl = ws_frame_header(h, (unsigned)opcode, true, total, NULL);
  int rc = admit(ws, hl + total);
  if (rc != 0)
    return rc;
  uv_buf_t v[9];
  if (nparts > 8) {
    /* rare: join the pieces */
    struct net_sbuf *f = ws_frame_new(opcode, parts, nparts);
    rc = net_conn_write_sbuf(&ws->hc->nc, f, 0, f->len);
    net_sbuf_unref(f);
  } else {
    v[0] = uv_buf_init((char *)h, (unsigned)hl);
    for (unsigned i = 0; i < nparts; i++)
      v[i + 1] = parts[i];
    rc = net_conn_writev(&ws->hc->nc, v, nparts + 1);
  }
  if (rc == 0)
    after_send(ws);
  return rc;
}

int ws_send(struct ws_conn *ws, int opcode, const void *p, size_t n) {
  uv_buf_t part = uv_buf_init((char *)p, (unsigned)n);
  return ws_sendv(ws, opcode, &part, 1);
}

int ws_send_text(struct ws_conn *ws, const void *p, size_t n) {
  return ws_send(ws, WS_OP_TEXT, p, n);
}

int ws_send_binary(struct ws_conn *ws, const void *p, size_t n) {
  return ws_send(ws, WS_OP_BINARY, p, n);
}

struct net_sbuf *ws_frame_new(int opcode, const uv_buf_t *parts, unsigned nparts) {
  size_t total = 0;
  for (unsigned i = 0; i < nparts; i++)
    total += parts[i].len;
  uint8_t h[WS_MAX_HEADER];
  size_t hl = ws_frame_header(h, (unsigned)opcode, true, total, NULL);
  struct net_sbuf *f = net_sbuf_new(hl + total);
  memcpy(f->data, h, hl);
  size_t off = hl;
  for (unsigned i = 0; i < nparts; i++) {
    if (parts[i].len)
      memcpy(f->data + off, parts[i].base, parts[i].len);
    off += parts[i].len;
  }
  return f;
}

int ws_send_frame(struct ws_conn *ws, struct net_sbuf *frame) {
  int rc = admit(ws, frame->len);
  if (rc != 0)
    return rc;
  rc = net_conn_write_sbuf(&ws->hc->nc, frame, 0, frame->len);
  if (rc == 0)
    after_send(ws);
  return rc;
}

void ws_close(struct ws_conn *ws, int code, const char *reason) {
  if (ws->close_sent || ws->reported || ws->failed)
    return;
  if (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 ||
      code == 1015)
    code = WS_CLOSE_NORMAL;
  send_close_frame(ws, code, reason);
  ws->close_code = code;
  ws->hc->state = C_CLOSING;
  net_conn_close(&ws->hc->nc);
}

size_t ws_backlog(const struct ws_conn *ws) { return net_conn_backlog(&ws->hc->nc); }

void ws_set_callbacks(struct ws_conn *ws, const struct ws_callbacks *cb, void *ud) {
  if (ws->reported)
    return;
  ws->cb = cb;
  ws->ud = ud;
}

const char *ws_remote(const struct ws_conn *ws) { return ws->remote; }
