/*
 * net over real sockets: a net server on port 0 runs on a uv loop in a thread, tests talk
 * to it with blocking sockets. Covers write coalescing (many writes in one loop turn = one
 * write system call), ordering, pause/resume with leftover redelivery, graceful close that
 * flushes a large backlog, on_drain, timeout classes, shared buffers, jobs, RLIMIT_NOFILE.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "net/net.h"
#include "test_time.h"

static uv_loop_t loop;
static uv_thread_t thread;
static uv_async_t stop_async;
static struct net_server *server;
static int port;
static _Atomic int srv_failures;
static _Atomic int timeouts;
static _Atomic int drains;
static _Atomic int closes;
static _Atomic uint64_t calls_at_burst_start, calls_at_burst_end;
static _Atomic int jobs_done;
static _Atomic int job_on_loop_thread;
static uv_thread_t loop_tid;
static struct net_sbuf *shared;

#define SRV_CHECK(x)                                                                       \
  do {                                                                                     \
    if (!(x)) {                                                                            \
      fprintf(stderr, "server-side check failed: %s (line %d)\n", #x, __LINE__);           \
      srv_failures++;                                                                      \
    }                                                                                      \
  } while (0)

/* The consumer's connection: the first byte of each read picks a behaviour. */
struct tconn {
  struct net_conn nc;
  bool paused;
  uv_timer_t *resume_timer;
};

static void resume_fire(uv_timer_t *t) {
  struct tconn *tc = t->data;
  tc->paused = false;
  net_conn_resume(&tc->nc);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  tc->resume_timer = NULL;
}

static void job_work(void *ud) { *(int *)ud = 42; }

static void job_done(void *ud, int status) {
  SRV_CHECK(status == 0);
  SRV_CHECK(*(int *)ud == 42);
  job_on_loop_thread = uv_thread_equal(&loop_tid, &(uv_thread_t){uv_thread_self()});
  free(ud);
  jobs_done++;
}

/* Commands (one line each, "\n"-terminated):
     e<text>   echo <text>
     b<n>      burst: n one-byte writes in this turn ("x" each)
     p         pause input for 100 ms (bytes after it are delivered later, in order)
     c<n>      write n bytes then close gracefully
     t         start timeout class 0
     s         send the shared buffer twice
     j         submit a job; its done writes "J"
     w<n>      write n bytes (drain test) */
static size_t t_on_read(struct net_conn *c, uint8_t *d, size_t n) {
  struct tconn *tc = (struct tconn *)c;
  size_t pos = 0;
  while (pos < n) {
    if (tc->paused)
      return pos;
    uint8_t *nl = memchr(d + pos, '\n', n - pos);
    if (nl == NULL)
      return pos; /* keep the partial line */
    size_t len = (size_t)(nl - (d + pos));
    char *line = (char *)d + pos;
    pos += len + 1;
    switch (line[0]) {
    case 'e':
      SRV_CHECK(net_conn_write(c, line + 1, len - 1) == 0);
      SRV_CHECK(net_conn_write(c, "\n", 1) == 0);
      break;
    case 'b': {
      int k = atoi(line + 1);
      calls_at_burst_start = net_server_write_calls(server);
      for (int i = 0; i < k; i++)
        SRV_CHECK(net_conn_write(c, "x", 1) == 0);
      SRV_CHECK(net_conn_write(c, "\n", 1) == 0);
      break;
    }
    case 'p':
      tc->paused = true;
      net_conn_pause(c);
      tc->resume_timer = xmalloc(sizeof *tc->resume_timer);
      uv_timer_init(&loop, tc->resume_timer);
      tc->resume_timer->data = tc;
      uv_timer_start(tc->resume_timer, resume_fire, 100, 0);
      break;
    case 'c':
    case 'w': {
      size_t k = (size_t)atol(line + 1);
      char *buf = xmalloc(k);
      for (size_t i = 0; i < k; i++)
        buf[i] = (char)('a' + i % 26);
      SRV_CHECK(net_conn_write(c, buf, k) == 0);
      free(buf);
      if (line[0] == 'c') {
        net_conn_close(c);
        SRV_CHECK(net_conn_write(c, "late", 4) == EG_ECLOSED);
        return n;
      }
      net_conn_set_low_water(c, 0);
      break;
    }
    case 't':
      net_conn_timeout(c, 0);
      break;
    case 's':
      SRV_CHECK(net_conn_write_sbuf(c, shared, 0, shared->len) == 0);
      SRV_CHECK(net_conn_write_sbuf(c, shared, 0, shared->len) == 0);
      SRV_CHECK(net_conn_write_sbuf(c, shared, 0, shared->len + 1) == EG_EINVAL);
      break;
    case 'j': {
      int *v = xcalloc(1, sizeof *v);
      SRV_CHECK(net_job_submit(&loop, job_work, job_done, v) == 0);
      break;
    }
    default:
      break;
    }
  }
  return pos;
}

static void t_on_eof(struct net_conn *c, int status) {
  (void)status;
  net_conn_close(c);
}

static void t_on_drain(struct net_conn *c) {
  (void)c;
  drains++;
}

static void t_on_timeout(struct net_conn *c, int cls) {
  SRV_CHECK(cls == 0);
  timeouts++;
  SRV_CHECK(net_conn_write(c, "T\n", 2) == 0);
}

static void t_on_close(struct net_conn *c) {
  struct tconn *tc = (struct tconn *)c;
  if (tc->resume_timer) {
    uv_timer_stop(tc->resume_timer);
    uv_close((uv_handle_t *)tc->resume_timer, (uv_close_cb)free);
  }
  closes++;
}

static const struct net_conn_cbs tcbs = {.on_read = t_on_read,
                                         .on_eof = t_on_eof,
                                         .on_drain = t_on_drain,
                                         .on_timeout = t_on_timeout,
                                         .on_close = t_on_close};

static int t_on_accept(struct net_server *s, struct net_conn *c, void *ud) {
  (void)s;
  (void)ud;
  net_conn_set_cbs(c, &tcbs);
  return 0;
}

/* After each loop turn's flush, remember the write-call count (for the burst test). */
static uv_check_t after_check;
static void on_after_check(uv_check_t *h) {
  (void)h;
  calls_at_burst_end = net_server_write_calls(server);
}

static void stopped(void *ud) { (void)ud; }

static void abort_conn(struct net_conn *c, void *ud) {
  (void)ud;
  net_conn_abort(c);
}

static void on_stop(uv_async_t *a) {
  net_server_stop(server, stopped, NULL);
  net_server_foreach(server, abort_conn, NULL);
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&after_check, NULL);
}

static void loop_main(void *arg) {
  (void)arg;
  loop_tid = uv_thread_self();
  uv_run(&loop, UV_RUN_DEFAULT);
}

static int setup(void **state) {
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct net_server_opts o = {.host = "127.0.0.1",
                              .conn_size = sizeof(struct tconn),
                              .on_accept = t_on_accept};
  assert_int_equal(net_server_start(&loop, &o, &server), 0);
  net_server_set_timeout(server, 0, 150);
  port = net_server_port(server);
  shared = net_sbuf_from("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",
                         256);
  uv_check_init(&loop, &after_check);
  uv_check_start(&after_check, on_after_check);
  uv_async_init(&loop, &stop_async, on_stop);
  assert_int_equal(uv_thread_create(&thread, loop_main, NULL), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  uv_async_send(&stop_async);
  uv_thread_join(&thread);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(atomic_load((_Atomic uint32_t *)&shared->refs), 1);
  net_sbuf_unref(shared);
  assert_int_equal(srv_failures, 0);
  return 0;
}

/* ---- client ------------------------------------------------------------------------------ */

static int cl_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

static void cl_sends(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    assert_true(w > 0);
    s += w;
    n -= (size_t)w;
  }
}

/* Reads until want bytes arrived (or EOF/timeout); returns bytes read. */
static size_t cl_read(int fd, char *out, size_t want, int timeout_ms) {
  size_t got = 0;
  uint64_t end = clock_mono_ms() + (uint64_t)test_ms(timeout_ms);
  while (got < want) {
    uint64_t now = clock_mono_ms();
    if (now >= end)
      break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(end - now)) <= 0)
      break;
    ssize_t n = recv(fd, out + got, want - got, 0);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  return got;
}

static bool cl_eof(int fd, int timeout_ms) {
  char tmp[256];
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, test_ms(timeout_ms)) <= 0)
    return false;
  return recv(fd, tmp, sizeof tmp, 0) == 0;
}

static void test_echo_and_order(void **state) {
  (void)state;
  int fd = cl_connect();
  cl_sends(fd, "ehello\neworld\n");
  char buf[64] = {0};
  assert_int_equal(cl_read(fd, buf, 12, 3000), 12);
  assert_string_equal(buf, "hello\nworld\n");
  /* a line split over two sends (leftover kept, then completed) */
  cl_sends(fd, "eab");
  usleep(50 * 1000);
  cl_sends(fd, "cd\n");
  memset(buf, 0, sizeof buf);
  assert_int_equal(cl_read(fd, buf, 5, 3000), 5);
  assert_string_equal(buf, "abcd\n");
  close(fd);
}

static void test_coalescing(void **state) {
  (void)state;
  int fd = cl_connect();
  cl_sends(fd, "b1000\n");
  char *buf = xcalloc(1, 2000);
  assert_int_equal(cl_read(fd, buf, 1001, 3000), 1001);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(buf[i], 'x');
  free(buf);
  usleep(20 * 1000);
  /* 1001 queued writes in one turn went out in one system call */
  assert_int_equal(calls_at_burst_end - calls_at_burst_start, 1);
  close(fd);
}

static void test_pause_resume(void **state) {
  (void)state;
  int fd = cl_connect();
  uint64_t t0 = clock_mono_ms();
  cl_sends(fd, "e1\np\ne2\ne3\n");
  char buf[16] = {0};
  assert_int_equal(cl_read(fd, buf, 2, 3000), 2);
  assert_int_equal(cl_read(fd, buf + 2, 4, 3000), 4);
  assert_true(clock_mono_ms() - t0 >= 90); /* delivered after the 100 ms pause */
  assert_string_equal(buf, "1\n2\n3\n");
  close(fd);
}

static void test_close_flushes(void **state) {
  (void)state;
  int fd = cl_connect();
  cl_sends(fd, "c4000000\n");
  size_t n = 4000000;
  char *buf = xmalloc(n);
  assert_int_equal(cl_read(fd, buf, n, 10000), n);
  for (size_t i = 0; i < n; i += 997)
    assert_int_equal(buf[i], 'a' + i % 26);
  free(buf);
  assert_true(cl_eof(fd, 3000));
  close(fd);
}

static void test_drain(void **state) {
  (void)state;
  int before = drains;
  int fd = cl_connect();
  int small = 65536; /* (tiny windows make loopback TCP crawl: silly-window avoidance) */
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  cl_sends(fd, "w32000000\n");
  usleep(100 * 1000);
  assert_int_equal(drains, before); /* not drained: the client has not read */
  size_t n = 32000000;
  char *buf = xmalloc(n);
  assert_int_equal(cl_read(fd, buf, n, 10000), n);
  free(buf);
  for (int i = 0; i < test_ms(1000) / 10 && drains == before; i++)
    usleep(10 * 1000);
  assert_int_equal(drains, before + 1);
  close(fd);
}

static void test_timeout_shared_job(void **state) {
  (void)state;
  int fd = cl_connect();
  uint64_t t0 = clock_mono_ms();
  cl_sends(fd, "t\n");
  char buf[600] = {0};
  assert_int_equal(cl_read(fd, buf, 2, 3000), 2);
  assert_string_equal(buf, "T\n");
  uint64_t dt = clock_mono_ms() - t0;
  assert_true(dt >= 120 && dt < (uint64_t)test_ms(2000));
  assert_int_equal(timeouts, 1);
  cl_sends(fd, "s\n");
  assert_int_equal(cl_read(fd, buf, 512, 3000), 512);
  assert_memory_equal(buf, shared->data, 256);
  assert_memory_equal(buf + 256, shared->data, 256);
  cl_sends(fd, "j\n");
  for (int i = 0; i < test_ms(3000) / 10 && jobs_done == 0; i++)
    usleep(10 * 1000);
  assert_int_equal(jobs_done, 1);
  assert_true(job_on_loop_thread);
  close(fd);
}

static void test_nofile(void **state) {
  (void)state;
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  long n = net_raise_nofile();
  assert_true(n >= (long)rl.rlim_cur);
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  assert_int_equal((long)rl.rlim_cur, n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_and_order), cmocka_unit_test(test_coalescing),
      cmocka_unit_test(test_pause_resume),   cmocka_unit_test(test_close_flushes),
      cmocka_unit_test(test_drain),          cmocka_unit_test(test_timeout_shared_job),
      cmocka_unit_test(test_nofile),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
