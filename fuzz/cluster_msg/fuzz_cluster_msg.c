/* libFuzzer target: the socket.io Redis adapter message decoder (src/cluster/codec.c).
   A decoded message is re-encoded and decoded again: the round trip must agree. */
#include <stdint.h>
#include <stdlib.h>

#include "cluster/cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct cluster_msg m;
  if (cluster_msg_decode(data, size, &m) != 0)
    return 0;
  size_t nr = json_array_size(m.rooms), ne = json_array_size(m.except);
  const char **v = calloc(nr + ne + 1, sizeof *v);
  for (size_t i = 0; i < nr; i++)
    v[i] = json_string_value(json_array_get(m.rooms, i));
  for (size_t i = 0; i < ne; i++)
    v[nr + i] = json_string_value(json_array_get(m.except, i));
  struct buf out;
  buf_init(&out, 4u << 20);
  if (cluster_msg_encode(m.uid, m.nsp, m.data, v, nr, v + nr, ne, &out) == 0) {
    struct cluster_msg m2;
    if (cluster_msg_decode(out.data, out.len, &m2) != 0 || !json_equal(m.data, m2.data) ||
        !json_equal(m.rooms, m2.rooms) || !json_equal(m.except, m2.except))
      abort();
    cluster_msg_free(&m2);
  }
  buf_free(&out);
  free(v);
  cluster_msg_free(&m);
  return 0;
}
