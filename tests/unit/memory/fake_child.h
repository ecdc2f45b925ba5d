/*
 * Test helper for the memory module's unit tests: runs one of the node fakes of
 * tests/fakes/ (FAKE_SCRIPT, e.g. "pinecone.mjs" or "fake-llm.mjs", defined before the
 * include) as a child with --exit-on-stdin-close, a libuv loop with an httpc client on it,
 * and ctl(): a blocking call to the fake's control routes. Header-only (static), for
 * cmocka group setup/teardown: start_fake / stop_fake.
 */
#ifndef ENGRAM_TEST_MEMORY_FAKE_CHILD_H
#define ENGRAM_TEST_MEMORY_FAKE_CHILD_H

#ifndef FAKE_SCRIPT
#error "define FAKE_SCRIPT before including fake_child.h"
#endif

static pid_t fake_pid;
static int fake_stdin = -1;
static int fake_port;
static uv_loop_t loop;
static struct httpc *http;
static char base[64];

static int start_fake(void **state) {
  (void)state;
  const char *src = getenv("ENGRAM_SRC");
  char path[1024];
  snprintf(path, sizeof(path), "%s/tests/fakes/" FAKE_SCRIPT, src ? src : ".");
  if (access(path, R_OK) != 0)
    return -1;
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0)
    return -1;
  fake_pid = fork();
  if (fake_pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execlp("node", "node", path, "--port", "0", "--exit-on-stdin-close", (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  fake_stdin = in[1];
  FILE *f = fdopen(out[0], "r");
  char line[128];
  while (fgets(line, sizeof(line), f) != NULL) {
    if (sscanf(line, "PORT=%d", &fake_port) == 1)
      break;
  }
  fclose(f);
  if (fake_port <= 0)
    return -1;
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", fake_port);
  if (uv_loop_init(&loop) != 0 || httpc_new(&loop, &http) != 0)
    return -1;
  return 0;
}

static void closed(void *ud) { *(int *)ud = 1; }

static int stop_fake(void **state) {
  (void)state;
  int done = 0;
  if (http) {
    httpc_close(http, closed, &done);
    while (!done)
      uv_run(&loop, UV_RUN_ONCE);
    uv_loop_close(&loop);
  }
  if (fake_stdin >= 0)
    close(fake_stdin);
  if (fake_pid > 0) {
    kill(fake_pid, SIGTERM);
    waitpid(fake_pid, NULL, 0);
  }
  return 0;
}

/* ---- a blocking HTTP helper for the fake's control routes ---- */
struct ctl {
  int done;
  int err;
  char *body;
};

static void ctl_done(void *ud, int err, const struct httpc_response *resp) {
  struct ctl *c = ud;
  c->done = 1;
  c->err = err;
  c->body = xstrndup(resp->body.p ? resp->body.p : "", resp->body.len);
}

static json_t *ctl(const char *method, const char *path, const char *body) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", base, path);
  struct httpc_header h = {"Content-Type", "application/json"};
  struct ctl c = {0};
  struct httpc_request r = {.method = method, .url = url, .headers = &h, .n_headers = 1,
                            .body = body, .body_len = body ? strlen(body) : 0,
                            .on_done = ctl_done, .ud = &c};
  assert_int_equal(httpc_start(http, &r, NULL), 0);
  while (!c.done)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(c.err, 0);
  json_t *j = json_loads(c.body, JSON_DECODE_ANY, NULL);
  free(c.body);
  return j;
}

#endif
