#!/usr/bin/env bash
# The C core on other compilers and CPUs: clang on x86-64, and aarch64 / armhf (32-bit) with GCC and
# clang --target, run under qemu-user with the Debian cross sysroots.
#   tools/cross_test.sh
# Each target builds csrc/tests/test_core.c (the shared vectors of tests/vectors, bit-exact, both node
# types, and legacy_1_3.innb: a 1.3 file, CRC-32 throughout) and csrc/tests/test_hostile.c (crafted
# bundles; on armhf this includes the 32-bit scratch-size overflow regression: a 1x1 layer of 2^24
# inputs), once under ASan + UBSan (GCC: the sanitizer runtimes of the cross compilers work under
# qemu-user with leak detection off) and once optimised (-O2/-O3, no sanitizers; clang with
# -fsanitize=undefined in trap mode, which needs no runtime, so misaligned loads trap). Then a short ASan
# + UBSan fuzz run on armhf under qemu with the mutation mode of fuzz_bundle.c (libFuzzer itself runs on
# x86-64: tools/fuzz.sh). Also on the host: GCC -O3 -Werror, clang builds and ThreadSanitizer builds (no
# ifunc clones under TSan).
#
# Packages (Debian 12): gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross
# libc6-dev-armhf-cross qemu-user clang-14. A missing tool fails the run when CI=true; elsewhere the
# steps that need it are skipped (and listed as skipped at the end, with exit status 0).
# Environment: INN_CROSS_FUZZ_SECONDS (default 20), INN_CROSS_DIR (default out/cross).
set -euo pipefail
cd "$(dirname "$0")/.."

CSRC=inn_mobile/csrc
VEC=tests/vectors
OUT="${INN_CROSS_DIR:-out/cross}"
FUZZ_SECONDS="${INN_CROSS_FUZZ_SECONDS:-20}"
mkdir -p "$OUT"
CORE=("$CSRC"/*.c)
WARN=(-std=c99 -Wall -Wextra -Werror -ffp-contract=off)
SAN=(-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all)
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
skipped=()
passed=0

have() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  if [ "${CI:-}" = "true" ]; then
    echo "cross_test.sh: FAIL: $1 is not installed (CI must run every target)" >&2
    exit 1
  fi
  echo "cross_test.sh: $1 not installed: skipping what needs it" >&2
  skipped+=("$1")
  return 1
}

CLANG=""
for c in clang-14 clang; do
  if command -v "$c" >/dev/null 2>&1; then CLANG="$c"; break; fi
done
[ -n "$CLANG" ] || have clang-14 || true

# build NAME CC [flags...] -- compiles both test programs as $OUT/NAME-test_core and $OUT/NAME-test_hostile
build() {
  local name="$1" cc="$2"
  shift 2
  for prog in test_core test_hostile; do
    "$cc" "${WARN[@]}" "$@" -I"$CSRC" -I"$CSRC/tests" "${CORE[@]}" "$CSRC/tests/$prog.c" -lm -o "$OUT/$name-$prog"
  done
}

# check NAME [runner...]: runs both programs (vectors with float32 and int8 nodes), wants 0 failures
check() {
  local name="$1"
  shift
  local t0=$SECONDS
  # bundle:expected suffix; legacy_1_3 is vectors.innb as the 1.3 writer wrote it (CRC-32 checksums)
  for set in vectors: vectors_i8:_i8 legacy_1_3:; do
    local bundle="${set%%:*}" sfx="${set#*:}"
    local log="$OUT/$name-core-$bundle.log"
    if ! "$@" "$OUT/$name-test_core" "$VEC/$bundle.innb" "$VEC/expected$sfx.bin" "$VEC/expected_graphs$sfx.bin" \
        >"$log" 2>&1 || ! grep -q " 0 failed" "$log"; then
      tail -30 "$log" >&2
      echo "cross_test.sh: FAIL: $name test_core $bundle" >&2
      exit 1
    fi
  done
  local log="$OUT/$name-hostile.log"
  if ! "$@" "$OUT/$name-test_hostile" >"$log" 2>&1 || ! grep -q " 0 failed" "$log"; then
    tail -30 "$log" >&2
    echo "cross_test.sh: FAIL: $name test_hostile" >&2
    exit 1
  fi
  passed=$((passed + 1))
  echo "ok  $name: $(head -1 "$OUT/$name-core-vectors.log"), $(tail -1 "$log") ($((SECONDS - t0)) s)"
  grep "^32-bit size_t" "$log" | sed 's/^/    /' || true
}

# ---------------------------------------------------------------- host (x86-64)
if have gcc; then
  # release flags as setup.py, warnings as errors (gcc 12 -O3 once warned maybe-uninitialized)
  for f in "${CORE[@]}"; do gcc "${WARN[@]}" -O3 -c "$f" -o "$OUT/$(basename "$f" .c).o"; done
  echo "ok  gcc -O3 -Wall -Wextra -Werror: the core compiles"
  build gcc-tsan gcc -O1 -g -fsanitize=thread
  check gcc-tsan
fi
if [ -n "$CLANG" ]; then
  build clang-x86_64-san "$CLANG" "${SAN[@]}"
  check clang-x86_64-san
  build clang-x86_64-O3 "$CLANG" -O3
  check clang-x86_64-O3
  build clang-x86_64-tsan "$CLANG" -O1 -g -fsanitize=thread
  check clang-x86_64-tsan
fi

# ---------------------------------------------------------------- aarch64 and armhf under qemu-user
for arch in aarch64 armhf; do
  if [ "$arch" = aarch64 ]; then triple=aarch64-linux-gnu qemu=qemu-aarch64; else triple=arm-linux-gnueabihf qemu=qemu-arm; fi
  have "$qemu" || continue
  run=("$qemu" -L "/usr/$triple")
  if have "$triple-gcc"; then
    build "gcc-$arch-san" "$triple-gcc" "${SAN[@]}"
    check "gcc-$arch-san" "${run[@]}"
    build "gcc-$arch-O2" "$triple-gcc" -O2
    check "gcc-$arch-O2" "${run[@]}"
  fi
  if [ -n "$CLANG" ] && [ -d "/usr/$triple/include" ]; then
    build "clang-$arch-O2" "$CLANG" --target="$triple" -O2 -fsanitize=undefined -fsanitize-trap=undefined
    check "clang-$arch-O2" "${run[@]}"
  elif [ -n "$CLANG" ]; then
    have "/usr/$triple/include" || true
  fi
done

# ---------------------------------------------------------------- short ASan fuzz run on armhf (32-bit)
if command -v qemu-arm >/dev/null 2>&1 && command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1; then
  arm-linux-gnueabihf-gcc "${WARN[@]}" "${SAN[@]}" -I"$CSRC" -I"$CSRC/tests" "${CORE[@]}" "$CSRC/tests/fuzz_bundle.c" \
    -lm -o "$OUT/gcc-armhf-fuzz"
  half=$(( (FUZZ_SECONDS + 1) / 2 ))
  for sfx in "" _i8; do
    log="$OUT/armhf-fuzz$sfx.log"
    if ! qemu-arm -L /usr/arm-linux-gnueabihf "$OUT/gcc-armhf-fuzz" "$VEC/vectors$sfx.innb" "$half" 4242 >"$log" 2>&1 ||
        ! grep -q "no crash" "$log"; then
      tail -40 "$log" >&2
      echo "cross_test.sh: FAIL: armhf ASan fuzz run (vectors$sfx)" >&2
      exit 1
    fi
    echo "ok  armhf ASan+UBSan mutation fuzz, vectors$sfx, ${half} s: $(tail -1 "$log")"
  done
fi

if [ ${#skipped[@]} -gt 0 ]; then
  echo "cross_test.sh: $passed builds passed; SKIPPED (not installed): ${skipped[*]}"
else
  echo "cross_test.sh: all $passed builds passed"
fi
