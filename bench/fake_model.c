/*
 * fake_model: an instant OpenAI-compatible model server for the pipeline benchmark.
 *
 *   fake_model PORT
 *
 * One thread, epoll, HTTP/1.1 keep-alive. Every request (any method and path) is answered
 * at once with a complete `text/event-stream` body of three OpenAI chat-completion chunks
 * and `data: [DONE]`, framed by Content-Length, so the server under test pays for a real
 * HTTP request, an SSE parse and three deltas while the model itself costs ~nothing. It
 * reads the head up to the blank line and skips Content-Length bytes of body. Bounded: a
 * head over 64 KiB or a body over 16 MiB closes the connection. Loopback only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD 65536
#define MAX_BODY (16u << 20)

static const char body[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fake\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Noted. \"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fake\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"I will remember that.\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fake\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";

struct conn {
  int fd;
  char head[MAX_HEAD];
  size_t hlen;
  size_t skip; /* body bytes still to discard */
};

static void answer(struct conn *c) {
  char out[2048];
  int n = snprintf(out, sizeof out,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   sizeof body - 1, body);
  ssize_t w = write(c->fd, out, (size_t)n); /* small: fits the socket buffer */
  (void)w;
}

/* Consumes what is buffered; returns -1 to close. */
static int process(struct conn *c) {
  for (;;) {
    if (c->skip) {
      size_t d = c->skip < c->hlen ? c->skip : c->hlen;
      memmove(c->head, c->head + d, c->hlen - d);
      c->hlen -= d;
      c->skip -= d;
      if (c->skip)
        return 0;
    }
    char *end = memmem(c->head, c->hlen, "\r\n\r\n", 4);
    if (end == NULL)
      return c->hlen >= MAX_HEAD ? -1 : 0;
    size_t hl = (size_t)(end - c->head) + 4;
    size_t clen = 0;
    for (char *p = c->head; p < end; p++) {
      if ((p == c->head || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
        clen = strtoul(p + 15, NULL, 10);
        break;
      }
    }
    if (clen > MAX_BODY)
      return -1;
    memmove(c->head, c->head + hl, c->hlen - hl);
    c->hlen -= hl;
    c->skip = clen;
    answer(c);
  }
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) {
    perror("fake_model: bind");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("PORT=%d\n", ntohs(a.sin_port));
  fflush(stdout);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c == NULL) {
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
        }
        continue;
      }
      ssize_t r = read(c->fd, c->head + c->hlen, MAX_HEAD - c->hlen);
      if (r <= 0 || (c->hlen += (size_t)r, process(c) < 0)) {
        if (r < 0 && errno == EAGAIN)
          continue;
        close(c->fd);
        free(c);
      }
    }
  }
}
