#!/usr/bin/env bash
# Interleaved runs of the producer benchmarks beside their raw pgx baselines,
# so drift on the shared server hits both sides alike. Prints benchstat.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-6}"
out="${OUT:-bench-producer.txt}"
: > "$out"
for i in $(seq "$rounds"); do
  for impl in raw outbox; do
    go test -run '^$' -bench "BenchmarkAppend$/$impl/" -benchtime "${BENCHTIME:-2s}" . | grep '^Benchmark' >> "$out"
  done
  for impl in raw_copy outbox; do
    go test -run '^$' -bench "BenchmarkAppendBatch$/$impl/" -benchtime "${BATCHTIME:-20x}" . | grep '^Benchmark' >> "$out"
  done
done
if command -v benchstat >/dev/null; then benchstat "$out"; fi
