/*
 * Deadlines of the C unit tests, scaled by ENGRAM_TEST_TIME_SCALE (a positive integer,
 * default 1). scripts/valgrind.sh sets it: under memcheck the code runs 10-50 times slower,
 * so "this must arrive within 3 s" needs more time to stay true, while what the code
 * promises is unchanged. Scale only waits and "not hung" upper bounds with test_ms();
 * lower bounds ("not before the 250 ms timeout") hold at any speed and stay as they are.
 */
#ifndef ENGRAM_TEST_TIME_H
#define ENGRAM_TEST_TIME_H

#include <stdlib.h>

static inline int test_time_scale(void) {
  const char *v = getenv("ENGRAM_TEST_TIME_SCALE");
  long s = v ? strtol(v, NULL, 10) : 1;
  return s >= 1 && s <= 1000 ? (int)s : 1;
}

/* ms milliseconds of wall time, scaled. */
static inline int test_ms(int ms) {
  return ms * test_time_scale();
}

#endif
