#!/usr/bin/env bash
# Coverage-guided fuzzing of the C core's bundle reader (libFuzzer + ASan + UBSan).
#   tools/fuzz.sh [SECONDS]      (default 60)
# Builds inn_mobile/csrc/tests/fuzz_bundle.c with clang -fsanitize=fuzzer,address,undefined, seeds the
# corpus with tests/vectors/*.innb, runs for SECONDS with the section-tag dictionary, and prints the
# executions, coverage (cov: edges, ft: features) and the crash count. Exits non-zero on a crash
# (the reproducer is kept under $INN_FUZZ_DIR, default out/fuzz) or when clang cannot build libFuzzer
# targets. Environment: CC (default clang-14, else clang), INN_FUZZ_DIR, INN_FUZZ_JOBS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN="${1:-60}"
CSRC=inn_mobile/csrc
OUT="${INN_FUZZ_DIR:-out/fuzz}"
JOBS="${INN_FUZZ_JOBS:-1}"

CC="${CC:-}"
if [ -z "$CC" ]; then
  for c in clang-14 clang; do
    if command -v "$c" >/dev/null 2>&1; then CC="$c"; break; fi
  done
fi
if [ -z "$CC" ]; then
  echo "fuzz.sh: FAIL: no clang found (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi

rm -rf "$OUT/crashes"  # each run reports its own crashes (the corpus carries over between runs)
mkdir -p "$OUT/corpus" "$OUT/crashes"
exe="$OUT/fuzz_bundle"
# -O1 -g: the sanitizers' usual setting; -ffp-contract=off as every build of the core
if ! "$CC" -std=c99 -O1 -g -ffp-contract=off -DINN_LIBFUZZER \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$CSRC" -I"$CSRC/tests" "$CSRC"/*.c "$CSRC/tests/fuzz_bundle.c" -lm -o "$exe" 2>"$OUT/build.log"; then
  cat "$OUT/build.log" >&2
  echo "fuzz.sh: FAIL: $CC could not build the libFuzzer target (needs libclang-rt-14-dev)" >&2
  exit 2
fi

log="$OUT/fuzz.log"
parallel=()
[ "$JOBS" -gt 1 ] && parallel=(-jobs="$JOBS" -workers="$JOBS")
set +e
ASAN_OPTIONS="abort_on_error=1:detect_leaks=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  "$exe" -max_total_time="$SECONDS_TO_RUN" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=2048 \
  -dict="$CSRC/tests/fuzz_bundle.dict" -artifact_prefix="$OUT/crashes/" -print_final_stats=1 \
  "${parallel[@]}" "$OUT/corpus" tests/vectors >"$log" 2>&1
rc=$?
set -e
if [ "$JOBS" -gt 1 ]; then cat fuzz-*.log >>"$log" 2>/dev/null || true; rm -f fuzz-*.log; fi

execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | awk '{s += $2} END {print s + 0}')
last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | awk '{print $2}')
ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | awk '{print $2}')
crashes=$(find "$OUT/crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
corpus=$(find "$OUT/corpus" -type f | wc -l)
echo "fuzz: ${SECONDS_TO_RUN}s, executions ${execs}, cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus} files, crashes ${crashes}"
if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
  tail -60 "$log" >&2
  echo "fuzz.sh: FAIL: libFuzzer exited $rc with $crashes crash file(s) in $OUT/crashes" >&2
  exit 1
fi
