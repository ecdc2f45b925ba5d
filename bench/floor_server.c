/*
 * floor_server: the cheapest loopback echo server, the floor the transport benchmark
 * compares engram with. One thread, one epoll set (level-triggered), and for each readable
 * connection exactly one read() then one write() of the same bytes: no framing, no
 * buffering, no timers. Its CPU per round trip is what the kernel alone costs here.
 *
 *   floor_server [--port P]     (P = 0 or absent: an ephemeral port)
 *
 * Prints "port N" on stdout once listening; runs until SIGINT/SIGTERM.
 * Bytes the socket does not take at once (never, with the benchmark's small messages) are
 * kept per connection and flushed on EPOLLOUT, so the echo stays correct under any load.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"

struct pend {
  uint8_t *data;
  size_t len, off;
};

static volatile sig_atomic_t stop;
static struct pend *pending; /* indexed by fd, allocated lazily */
static int npending;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void queue(int ep, int fd, const uint8_t *p, size_t n) {
  if (fd >= npending) {
    int nn = EG_MAX(fd + 1, npending * 2);
    pending = xrealloc(pending, (size_t)nn * sizeof *pending);
    memset(pending + npending, 0, (size_t)(nn - npending) * sizeof *pending);
    npending = nn;
  }
  struct pend *q = &pending[fd];
  q->data = xrealloc(q->data, q->len - q->off + n);
  memmove(q->data, q->data + q->off, q->len - q->off);
  q->len -= q->off;
  q->off = 0;
  memcpy(q->data + q->len, p, n);
  q->len += n;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void drop(int fd) {
  if (fd < npending) {
    free(pending[fd].data);
    memset(&pending[fd], 0, sizeof pending[fd]);
  }
  close(fd);
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      port = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: floor_server [--port P]\n");
      return 2;
    }
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
    perror("floor_server: bind/listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
  static uint8_t buf[65536];
  struct epoll_event evs[512];
  while (!stop) {
    int n = epoll_wait(ep, evs, (int)EG_ARRAY_LEN(evs), -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0)
            break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      struct pend *q = fd < npending ? &pending[fd] : NULL;
      if ((evs[i].events & EPOLLOUT) && q && q->len > q->off) {
        ssize_t k = write(fd, q->data + q->off, q->len - q->off);
        if (k < 0 && errno != EAGAIN) {
          drop(fd);
          continue;
        }
        if (k > 0)
          q->off += (size_t)k;
        if (q->off == q->len) {
          q->len = q->off = 0;
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
          epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
        }
      }
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        continue;
      ssize_t r = read(fd, buf, sizeof buf);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(fd);
        continue;
      }
      if (r < 0)
        continue;
      if (q && q->len > q->off) {
        queue(ep, fd, buf, (size_t)r); /* keep order behind what is pending */
        continue;
      }
      ssize_t w = write(fd, buf, (size_t)r);
      if (w < 0 && errno != EAGAIN) {
        drop(fd);
        continue;
      }
      if (w < r)
        queue(ep, fd, buf + (w > 0 ? w : 0), (size_t)(r - (w > 0 ? w : 0)));
    }
  }
  return 0;
}
