/*
 * chatload: the load generator of the pipeline benchmark. Each connection speaks
 * Engine.IO v4 / Socket.IO v5 over WebSocket to engram, authenticates with a session token
 * it signs itself (JWT_SECRET shared with the server), and sends `ai-message`s to its own
 * chat one after the other (a chat's messages are handled strictly in order, so one in
 * flight per connection): a round trip is ai-message -> ai-response.
 *
 *   chatload --port P --pairs FILE --secret S [--conns N] [--warmup W] [--duration T]
 *            [--server-pid PID] [--rate R]
 *
 * --rate R paces the connections to R ai-messages/s in all (each sends its next message
 * CONNS/R seconds after the previous one was sent, or at once when the answer came later):
 * the latency at a given load rather than at saturation (the default, closed loop).
 *
 * PAIRS has "<user id> <chat id>" lines (chat_prefill writes it); connection i uses line
 * i mod lines. Reports ai-messages/s, client-observed latency p50/p99 (exact, from every
 * sample of the window), errors (ai-response with "error"), and with --server-pid the
 * server's CPU microseconds per ai-message (utime+stime from /proc/PID/stat over the
 * window), then one "RESULT key=value ..." line for scripts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth.h"
#include "base/base.h"
#include "loadgen_wire.h"

#define MSG_MAX (256 * 1024)

enum cstate { C_HTTP, C_OPEN, C_CONNECTING, C_READY };

struct conn {
  int fd;
  enum cstate st;
  struct lgw_http http;
  struct lgw_ws ws;
  struct buf msg; /* the current WebSocket message */
  char chat[ID_LEN + 1];
  char *token;
  uint64_t sent_ns, next_ns; /* next_ns: paced send due (0 = none) */
  unsigned seq;
  bool waiting;
};

static struct {
  int port, conns, warmup, duration, pid;
  double rate;
  const char *pairs, *secret;
  bool measuring;
  uint64_t done, errors;
  uint64_t *lat;
  size_t nlat, caplat;
} g = {.conns = 100, .warmup = 3, .duration = 10};

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Sends one masked client text frame (the mask key is fixed: this is a benchmark). */
static void ws_send_text(struct conn *c, const char *p, size_t n) {
  uint8_t hdr[14];
  size_t h = 0;
  hdr[h++] = 0x81;
  if (n < 126) {
    hdr[h++] = (uint8_t)(0x80 | n);
  } else if (n < 65536) {
    hdr[h++] = 0x80 | 126;
    hdr[h++] = (uint8_t)(n >> 8);
    hdr[h++] = (uint8_t)n;
  } else {
    hdr[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  memcpy(hdr + h, key, 4);
  h += 4;
  uint8_t *frame = xmalloc(h + n);
  memcpy(frame, hdr, h);
  for (size_t i = 0; i < n; i++)
    frame[h + i] = (uint8_t)p[i] ^ key[i & 3];
  size_t off = 0;
  while (off < h + n) {
    ssize_t w = write(c->fd, frame + off, h + n - off);
    if (w < 0 && errno == EAGAIN)
      continue; /* small frames on loopback: spin briefly */
    if (w < 0)
      die("write");
    off += (size_t)w;
  }
  free(frame);
}

/* The words chat_prefill's memories are made of (see there). */
static const char *const syl[] = {"ka", "lo",  "mi", "ren", "tu",  "sa", "vel", "do",
                                  "ni", "par", "go", "ze",  "fin", "ha", "bro", "li"};

static void send_message(struct conn *c) {
  char p[512], w[3][16];
  uint64_t r = (uint64_t)c->seq * 2654435761u + (uint64_t)(uintptr_t)c;
  for (int k = 0; k < 3; k++, r = r * 6364136223846793005ull + 1442695040888963407ull) {
    uint64_t x = (r >> 20) % 4096;
    snprintf(w[k], sizeof w[k], "%s%s%s", syl[x & 15], syl[(x >> 4) & 15],
             (x >> 8) & 1 ? syl[(x >> 9) & 15] : "");
  }
  int n =
      snprintf(p, sizeof p,
               "42%u[\"ai-message\",{\"chatId\":\"%s\",\"content\":\"Where did I put the %s "
               "%s that %s gave me? (question %u)\"}]",
               c->seq, c->chat, w[0], w[1], w[2], c->seq);
  c->seq++;
  c->sent_ns = clock_mono_ns();
  c->waiting = true;
  ws_send_text(c, p, (size_t)n);
}

static void on_message(struct conn *c, const char *p, size_t n) {
  if (n == 1 && p[0] == '2') { /* Engine.IO ping */
    ws_send_text(c, "3", 1);
    return;
  }
  if (c->st == C_OPEN && n > 0 && p[0] == '0') {
    char auth[1024];
    int k = snprintf(auth, sizeof auth, "40{\"token\":\"%s\"}", c->token);
    ws_send_text(c, auth, (size_t)k);
    c->st = C_CONNECTING;
    return;
  }
  if (c->st == C_CONNECTING) {
    if (n >= 2 && p[0] == '4' && p[1] == '0') {
      c->st = C_READY;
      send_message(c);
    } else if (n >= 2 && p[0] == '4' && p[1] == '4') {
      fprintf(stderr, "chatload: refused: %.*s\n", (int)EG_MIN(n, 200), p);
      exit(1);
    }
    return;
  }
  static const char resp[] = "42[\"ai-response\",";
  if (c->st == C_READY && n >= sizeof resp - 1 && !memcmp(p, resp, sizeof resp - 1)) {
    uint64_t now = clock_mono_ns();
    bool err = memmem(p, n, "\"error\":", 8) != NULL;
    if (g.measuring) {
      g.done++;
      if (err)
        g.errors++;
      if (g.nlat == g.caplat) {
        g.caplat = g.caplat ? g.caplat * 2 : 65536;
        g.lat = xrealloc(g.lat, g.caplat * sizeof *g.lat);
      }
      g.lat[g.nlat++] = (now - c->sent_ns) / 1000;
    }
    if (err && !g.measuring)
      fprintf(stderr, "chatload: error answer: %.*s\n", (int)EG_MIN(n, 300), p);
    if (g.rate > 0) {
      uint64_t due = c->sent_ns + (uint64_t)((double)g.conns / g.rate * 1e9);
      if (due > now) {
        c->waiting = false;
        c->next_ns = due;
        return;
      }
    }
    send_message(c);
  }
}

static void on_readable(struct conn *c) {
  static uint8_t rbuf[256 * 1024];
  ssize_t r = read(c->fd, rbuf, sizeof rbuf);
  if (r == 0) {
    fprintf(stderr, "chatload: server closed a connection\n");
    exit(1);
  }
  if (r < 0) {
    if (errno == EAGAIN)
      return;
    die("read");
  }
  size_t pos = 0, n = (size_t)r;
  if (c->st == C_HTTP) {
    size_t used;
    int rc = lgw_http_feed(&c->http, rbuf, n, &used);
    pos = used;
    if (rc == EG_EAGAIN)
      return;
    if (rc || c->http.status != 101) {
      fprintf(stderr, "chatload: upgrade failed (HTTP %d)\n", c->http.status);
      exit(1);
    }
    c->st = C_OPEN;
  }
  while (pos < n) {
    struct lgw_ws_ev ev;
    size_t used;
    int rc = lgw_ws_feed(&c->ws, rbuf + pos, n - pos, &used, &ev);
    pos += used;
    if (rc == EG_EAGAIN)
      break;
    if (rc) {
      fprintf(stderr, "chatload: bad frame from the server\n");
      exit(1);
    }
    if (ev.opcode == LGW_OP_CLOSE) {
      fprintf(stderr, "chatload: the server closed the WebSocket\n");
      exit(1);
    }
    if (ev.opcode & 0x8)
      continue; /* ping/pong frames: the server sends none */
    if (buf_append(&c->msg, ev.data, ev.len) != 0) {
      fprintf(stderr, "chatload: message over %d bytes\n", MSG_MAX);
      exit(1);
    }
    if (ev.last && ev.fin) {
      on_message(c, (const char *)c->msg.data, c->msg.len);
      buf_reset(&c->msg);
    }
  }
}

static double cpu_seconds(int pid) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f || !fgets(line, sizeof line, f))
    die(path);
  fclose(f);
  char *p = strrchr(line, ')');
  unsigned long ut = 0, stt = 0;
  /* Fields after the command: state(3) ... utime(14) stime(15). */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
    die("stat");
  return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  static const struct option lo[] = {
      {"port", 1, 0, 'p'},       {"pairs", 1, 0, 'f'},  {"secret", 1, 0, 's'},
      {"conns", 1, 0, 'n'},      {"warmup", 1, 0, 'w'}, {"duration", 1, 0, 'd'},
      {"server-pid", 1, 0, 'P'}, {"rate", 1, 0, 'r'},   {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (o) {
    case 'p':
      g.port = atoi(optarg);
      break;
    case 'f':
      g.pairs = optarg;
      break;
    case 's':
      g.secret = optarg;
      break;
    case 'n':
      g.conns = atoi(optarg);
      break;
    case 'w':
      g.warmup = atoi(optarg);
      break;
    case 'd':
      g.duration = atoi(optarg);
      break;
    case 'P':
      g.pid = atoi(optarg);
      break;
    case 'r':
      g.rate = atof(optarg);
      break;
    default:
      return 2;
    }
  }
  if (!g.port || !g.pairs || !g.secret || g.conns < 1) {
    fprintf(stderr, "usage: chatload --port P --pairs F --secret S [--conns N] [--warmup W] "
                    "[--duration T] [--server-pid PID] [--rate R]\n");
    return 2;
  }
  FILE *pf = fopen(g.pairs, "r");
  if (!pf)
    die(g.pairs);
  char(*users)[ID_LEN + 1] = NULL, (*chats)[ID_LEN + 1] = NULL;
  size_t np = 0;
  char u[64], ch[64];
  while (fscanf(pf, "%63s %63s", u, ch) == 2) {
    if (!id_valid(u, strlen(u)) || !id_valid(ch, strlen(ch))) {
      fprintf(stderr, "chatload: bad line in %s\n", g.pairs);
      return 1;
    }
    users = xrealloc(users, (np + 1) * sizeof *users);
    chats = xrealloc(chats, (np + 1) * sizeof *chats);
    memcpy(users[np], u, ID_LEN + 1);
    memcpy(chats[np], ch, ID_LEN + 1);
    np++;
  }
  fclose(pf);
  if (np == 0) {
    fprintf(stderr, "chatload: no pairs in %s\n", g.pairs);
    return 1;
  }
  struct auth_jwt jwt;
  auth_jwt_init_key(&jwt, g.secret, strlen(g.secret), 3600);
  int ep = epoll_create1(0);
  struct conn *cs = xcalloc((size_t)g.conns, sizeof *cs);
  for (int i = 0; i < g.conns; i++) {
    struct conn *c = &cs[i];
    size_t k = (size_t)i % np;
    memcpy(c->chat, chats[k], sizeof c->chat);
    if (auth_jwt_sign(&jwt, users[k], clock_wall_ms() / 1000, &c->token) != 0)
      die("sign");
    lgw_http_init(&c->http, 16384);
    lgw_ws_init(&c->ws, MSG_MAX);
    buf_init(&c->msg, MSG_MAX);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0)
      die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: "
                     "127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     g.port);
    if (write(c->fd, req, (size_t)n) != n)
      die("write");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  uint64_t start = clock_mono_ns();
  uint64_t warm_end = start + (uint64_t)g.warmup * 1000000000ull;
  uint64_t end = warm_end + (uint64_t)g.duration * 1000000000ull;
  double cpu0 = 0;
  struct epoll_event evs[256];
  for (;;) {
    uint64_t now = clock_mono_ns();
    if (!g.measuring && now >= warm_end) {
      g.measuring = true;
      if (g.pid)
        cpu0 = g.pid ? cpu_seconds(g.pid) : 0;
    }
    if (now >= end)
      break;
    int n = epoll_wait(ep, evs, 256, g.rate > 0 ? 1 : 50);
    for (int i = 0; i < n; i++)
      on_readable(evs[i].data.ptr);
    if (g.rate > 0) {
      now = clock_mono_ns();
      for (int i = 0; i < g.conns; i++) {
        if (cs[i].next_ns && cs[i].next_ns <= now) {
          cs[i].next_ns = 0;
          send_message(&cs[i]);
        }
      }
    }
  }
  double cpu = g.pid ? cpu_seconds(g.pid) - cpu0 : 0;
  qsort(g.lat, g.nlat, sizeof *g.lat, cmp_u64);
  uint64_t p50 = g.nlat ? g.lat[g.nlat / 2] : 0;
  uint64_t p99 = g.nlat ? g.lat[(size_t)((double)g.nlat * 0.99)] : 0;
  double rate = (double)g.done / g.duration;
  double us_per = g.done && g.pid ? cpu * 1e6 / (double)g.done : 0;
  if (g.rate > 0)
    printf("chatload: paced at %.0f ai-messages/s in all\n", g.rate);
  printf("chatload: %d connections, %d s window: %.0f ai-messages/s, latency p50 %.2f ms "
         "p99 %.2f ms, errors %llu, server CPU %.1f us per ai-message\n",
         g.conns, g.duration, rate, (double)p50 / 1000, (double)p99 / 1000,
         (unsigned long long)g.errors, us_per);
  printf("RESULT conns=%d rate=%.1f p50_us=%llu p99_us=%llu errors=%llu cpu_us_per_msg=%.1f\n",
         g.conns, rate, (unsigned long long)p50, (unsigned long long)p99,
         (unsigned long long)g.errors, us_per);
  return g.errors ? 1 : 0;
}
