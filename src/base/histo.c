/* Fixed-bucket latency histograms (see base.h). */
#include "base.h"

const uint64_t histo_bounds_us[HISTO_BUCKETS] = {
    100,    250,    500,     1000,    2500,    5000,     10000,    25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 10000000, 60000000};

void histo_add(struct histo *h, uint64_t us) {
  size_t i = 0;
  while (i < HISTO_BUCKETS && us > histo_bounds_us[i])
    i++;
  h->counts[i]++;
  h->count++;
  h->sum_us += us;
}

uint64_t histo_quantile_us(const struct histo *h, double q) {
  if (h->count == 0)
    return 0;
  uint64_t want = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
  if (want == 0)
    want = 1;
  for (size_t i = 0; i < HISTO_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= want)
      return histo_bounds_us[i];
  }
  return UINT64_MAX;
}

int histo_prometheus(const struct histo *h, const char *name, const char *labels,
                     struct buf *out) {
  const char *sep = labels && *labels ? "," : "";
  labels = labels ? labels : "";
  uint64_t cum = 0;
  int rc = 0;
  for (size_t i = 0; i < HISTO_BUCKETS && !rc; i++) {
    cum += h->counts[i];
    rc = buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                    (double)histo_bounds_us[i] / 1e6, (unsigned long long)cum);
  }
  if (!rc)
    rc = buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    (unsigned long long)h->count);
  if (!rc)
    rc = buf_printf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, *labels ? "{" : "",
                    labels, *labels ? "}" : "", (double)h->sum_us / 1e6, name,
                    *labels ? "{" : "", labels, *labels ? "}" : "",
                    (unsigned long long)h->count);
  return rc;
}
