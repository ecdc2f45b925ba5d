#!/usr/bin/env bash
# bench/memory.sh: the long-term memory benchmarks (called by bench/run.sh; see
# bench/README.md "Memory").
#   1. recall quality: regenerates bench/data/eval.jsonl (bench/eval_gen.py, deterministic)
#      and runs eval_recall (real store + FTS5, hash embedder, builtin index, fusion);
#   2. speed: memory_bench (builtin int8 index) and faiss_flat (FAISS IndexFlatIP, one
#      thread) on the same vectors at 1k, 10k, 100k and 1M memories of one user.
# MEMORY_BENCH_SIZES=1000,10000 shortens the run. Uses $ENGRAM_BUILD (default build/).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${ENGRAM_BUILD:-build}
SIZES=${MEMORY_BENCH_SIZES:-1000,10000,100000,1000000}
for t in eval_recall memory_bench; do
  [ -x "$B/$t" ] || { echo "memory.sh: $B/$t missing (make build)"; exit 1; }
done
python3 bench/eval_gen.py bench/data/eval.jsonl
echo "--- recall quality (test half; tune half with --split tune)"
"$B/eval_recall" --data bench/data/eval.jsonl --db "${TMPDIR:-/tmp}/engram-eval-$$.db" --kinds
rm -f "${TMPDIR:-/tmp}/engram-eval-$$.db"*
echo "--- speed: builtin index"
"$B/memory_bench" --sizes "$SIZES"
echo "--- speed: FAISS IndexFlatIP, 1 thread"
if [ -x "$B/faiss_flat" ]; then
  "$B/faiss_flat" --sizes "$SIZES"
else
  echo "faiss_flat not built (libfaiss-dev / libopenblas-dev missing)"
fi
