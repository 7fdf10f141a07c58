#!/usr/bin/env bash
# Host build and JVM test of the app's native layer -- no Android SDK/NDK needed:
#   gcc:   inn_mobile/csrc/*.c (the core) + app/src/main/cpp/inn_jni.c (the JNI glue) -> libinn_jni.so
#   javac: app/src/main/java/dev/innmobile (the facade the app ships) + host/src (the JVM test)
#   java:  HostTest selftest on tests/vectors: materialised weights and filled runtime graphs byte-equal
#          to the Python reference; truncated / bit-flipped bundles throw InnException, never crash
#
#   android_demo/host/build_and_test.sh [BUILD_DIR]        build, then run the self-test
#   INN_HOST_RUN=0 android_demo/host/build_and_test.sh DIR  build only (tests/test_android_host.py
#                                                           then runs HostTest's other modes itself)
# Env: JAVA_HOME (else found from javac), CC (gcc), INN_SANITIZE=1 (ASan+UBSan core and glue).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DEMO="$(dirname "$HERE")"
ROOT="$(dirname "$DEMO")"
OUT="${1:-$DEMO/build/host}"
CC="${CC:-gcc}"
if [ -z "${JAVA_HOME:-}" ]; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
fi
mkdir -p "$OUT/classes"

# Same flags as the core's other builds: C99, warnings are errors, no FMA contraction (bit-exact
# with the Python reference), hidden symbols except the JNI entry points (JNIEXPORT).
CFLAGS=(-std=c99 -O2 -fPIC -shared -Wall -Wextra -Werror -ffp-contract=off -fvisibility=hidden)
if [ "${INN_SANITIZE:-0}" = 1 ]; then
  CFLAGS+=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -g)
fi
"$CC" "${CFLAGS[@]}" -I"$ROOT/inn_mobile/csrc" -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/linux" \
  "$ROOT"/inn_mobile/csrc/*.c "$DEMO/app/src/main/cpp/inn_jni.c" -lm -o "$OUT/libinn_jni.so"

# --release 11: the facade must not use newer library APIs than Android offers (minSdk 24 + desugaring).
javac --release 11 -Xlint:all -Werror -d "$OUT/classes" \
  $(find "$DEMO/app/src/main/java" "$HERE/src" -name '*.java' | sort)

if [ "${INN_HOST_RUN:-1}" = 1 ]; then
  # -Xcheck:jni makes the JVM verify every JNI call of the glue (pending exceptions, types, refs).
  V="$ROOT/tests/vectors"
  java -Xcheck:jni -Djava.library.path="$OUT" -cp "$OUT/classes" dev.innmobile.host.HostTest selftest \
    "$V/vectors.innb" "$V/expected.bin" "$V/expected_graphs.bin" vectors
fi
