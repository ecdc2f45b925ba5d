/*
 * Test helper: runs tests/fakes/fake-llm.mjs as a child process and talks to its control
 * endpoints with a tiny blocking HTTP/1.0 client. Header-only (static functions) so that
 * tests/unit/httpc and tests/unit/llm can both include it as "llm/fake_llm.h".
 *
 * The child gets a pipe as stdin and runs with --exit-on-stdin-close, so it goes away
 * with the test process even if the test crashes; fake_stop() also kills and reaps it.
 */
#ifndef ENGRAM_TEST_FAKE_LLM_H
#define ENGRAM_TEST_FAKE_LLM_H

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"

extern char **environ;

struct fake_llm {
  pid_t pid;
  int port;
  int stdin_fd;
  char base[64]; /* http://127.0.0.1:<port> */
};

static inline int fake_llm_start(struct fake_llm *f) {
  memset(f, 0, sizeof *f);
  const char *src = getenv("ENGRAM_SRC");
  char script[4096];
  snprintf(script, sizeof script, "%s/tests/fakes/fake-llm.mjs", src ? src : ".");
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0)
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, in[1]);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  char *argv[] = {"node", script, "--exit-on-stdin-close", NULL};
  int rc = posix_spawnp(&f->pid, "node", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    return -1;
  }
  f->stdin_fd = in[1];
  char line[128];
  size_t n = 0;
  while (n < sizeof line - 1) {
    struct pollfd pf = {out[0], POLLIN, 0};
    if (poll(&pf, 1, 10000) <= 0)
      break;
    ssize_t k = read(out[0], line + n, 1);
    if (k <= 0)
      break;
    if (line[n] == '\n')
      break;
    n++;
  }
  line[n] = 0;
  close(out[0]);
  if (sscanf(line, "PORT=%d", &f->port) != 1) {
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    close(f->stdin_fd);
    return -1;
  }
  snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->port);
  return 0;
}

static inline void fake_llm_stop(struct fake_llm *f) {
  if (f->pid <= 0)
    return;
  kill(f->pid, SIGTERM);
  close(f->stdin_fd);
  waitpid(f->pid, NULL, 0);
  f->pid = 0;
}

/* Blocking HTTP/1.0 request to the fake; returns the response body (malloc'd) or NULL. */
static inline char *fake_llm_http(struct fake_llm *f, const char *method, const char *path,
                                  const char *body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return NULL;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)f->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return NULL;
  }
  size_t blen = body ? strlen(body) : 0;
  size_t cap = blen + 512;
  char *req = xmalloc(cap);
  int n = snprintf(req, cap,
                   "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   method, path, blen, body ? body : "");
  size_t off = 0;
  while (off < (size_t)n) {
    ssize_t k = write(fd, req + off, (size_t)n - off);
    if (k <= 0)
      break;
    off += (size_t)k;
  }
  free(req);
  struct buf resp;
  buf_init(&resp, 64u << 20);
  char tmp[8192];
  for (;;) {
    ssize_t k = read(fd, tmp, sizeof tmp);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      break;
    if (buf_append(&resp, tmp, (size_t)k) != 0)
      break;
  }
  close(fd);
  char *out = NULL;
  if (resp.len) {
    const char *sep = strstr((const char *)resp.data, "\r\n\r\n");
    if (sep)
      out = xstrdup(sep + 4);
  }
  buf_free(&resp);
  return out;
}

static inline void fake_llm_script(struct fake_llm *f, const char *json_queue) {
  char *r = fake_llm_http(f, "POST", "/__script", json_queue);
  free(r);
}

static inline void fake_llm_reset(struct fake_llm *f) {
  char *r = fake_llm_http(f, "POST", "/__reset", "{}");
  free(r);
}

/* The request log as a JSON array (caller decrefs). */
static inline json_t *fake_llm_requests(struct fake_llm *f) {
  char *r = fake_llm_http(f, "GET", "/__requests", NULL);
  json_t *j = r ? json_loads(r, 0, NULL) : NULL;
  free(r);
  return j;
}

#endif
