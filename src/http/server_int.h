/*
 * Private structures shared by server.c, ws.c, router.c and static.c.
 *
 * One struct hconn per TCP connection (it embeds struct net_conn first: one allocation).
 * Connection states:
 *   C_IDLE     between requests (idle timeout running) or before the first byte
 *   C_READING  a request is being parsed (header timeout running)
 *   C_HANDLER  a complete request was dispatched and is not answered yet; input is
 *              paused (pipelined bytes wait in net's leftover buffer)
 *   C_WS       upgraded: bytes go to the WebSocket assembler
 *   C_CLOSING  closing after the last response (input discarded)
 */
#ifndef ENGRAM_HTTP_SERVER_INT_H
#define ENGRAM_HTTP_SERVER_INT_H

#include "http/http_int.h"

enum { C_IDLE, C_READING, C_HANDLER, C_WS, C_CLOSING };
enum { TO_HEADER = 0, TO_IDLE = 1 };

#define HTTP_MAX_PARAMS 8

struct http_server {
  struct net_server *net;
  uv_loop_t *loop;
  struct http_limits lim;
  char **origins;
  size_t norigins;
  bool any_origin;
  bool cors_credentials;
  bool request_ids, access_log;
  http_handler_fn handler;
  void *ud;
  uint64_t next_id;
  bool stopping;
  void (*on_closed)(void *ud);
  void *closed_ud;
  struct buf scratch; /* response heads are built here, then copied into the queue */
};

struct hconn {
  struct net_conn nc;
  struct http_server *srv;
  struct http_req *req; /* being parsed, or dispatched and unanswered */
  struct ws_conn *ws;
  struct http_parser parser;
  uint8_t state;
  bool in_read; /* inside on_read (a synchronous answer continues the parse loop) */
};

struct req_alloc {
  struct req_alloc *next;
  char data[];
};

struct http_req {
  struct hconn *conn; /* NULL once the client is gone */
  struct http_server *srv;
  enum http_method method;
  uint8_t version_minor;
  bool keep_alive, upgrade, expect_continue;
  bool in_abort, answered;
  bool in_value; /* parsing: current header has value bytes */
  uint64_t id;
  struct buf head;    /* target, then header records [u32 nlen][u32 vlen][name][value] */
  size_t target_len;
  size_t rec_off;     /* parsing: current record */
  size_t val_off;     /* parsing: current value start */
  uint16_t nheaders;
  struct buf body;
  const char *path;
  size_t path_len;
  size_t qs_off, qs_len; /* in head */
  struct req_alloc *allocs;
  uint8_t nparams;
  struct slice param_names[HTTP_MAX_PARAMS];
  struct slice param_values[HTTP_MAX_PARAMS];
  void (*abort_cb)(struct http_req *r, void *ud);
  void *abort_ud;
  void *data;
  uint64_t t0_ns; /* first byte (access log duration) */
  char remote[64];
  char rid[LOG_REQUEST_ID_MAX + 1]; /* request id ("" without request_ids) */
};

/* Allocation freed with the request. */
void *http__req_alloc(struct http_req *r, size_t n);
/* Sends one complete response (head + body) on hc, adding the automatic headers. */
int http__send_response(struct http_req *r, int status, const char *content_type,
                        const struct http_header *hdrs, size_t nhdrs, const void *body,
                        size_t len, bool has_body);
/* The access log line of r (when the server keeps one). */
void http__access_log(const struct http_req *r, int status);
/* Ends the request r on its connection (frees r). */
void http__req_finish(struct http_req *r, bool close_conn);
void http__req_free(struct http_req *r);

/* ws.c */
size_t http__ws_on_read(struct hconn *hc, uint8_t *data, size_t n);
void http__ws_on_eof(struct hconn *hc);
void http__ws_on_conn_closed(struct hconn *hc);
void http__ws_on_drain(struct hconn *hc);
void http__ws_server_stop(struct hconn *hc);

#endif
