"""The C core on its own: the C test programs and the fuzzer under ASan + UBSan, with gcc and clang, and
the CMake build used for Android/iOS. Needs gcc (clang and cmake for some tests). Other CPUs (aarch64,
armhf under qemu) and libFuzzer: tools/cross_test.sh and tools/fuzz.sh, which CI (.ci/run) runs."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from corpus import with_cascades

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "inn_mobile" / "csrc"
VECTORS = ROOT / "tests" / "vectors"
SOURCES = sorted(p.name for p in CSRC.glob("*.c"))
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


CLANG = shutil.which("clang-14") or shutil.which("clang")
needs_clang = pytest.mark.skipif(CLANG is None, reason="needs clang")


def build(tmp_path: Path, main: str, flags: list[str], cc: str = "gcc") -> Path:
    exe = tmp_path / f"{Path(main).stem}-{Path(cc).name}"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", *flags, f"-I{CSRC}",
           f"-I{CSRC / 'tests'}", *[str(CSRC / s) for s in SOURCES], str(CSRC / "tests" / main), "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run(exe: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1", UBSAN_OPTIONS="halt_on_error=1")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)


# the shared vectors: float32 nodes, and the same model with int8 nodes (tools/make_test_vectors.py)
NODE_SETS = pytest.mark.parametrize("suffix", ["", "_i8"], ids=["f32-nodes", "i8-nodes"])


@NODE_SETS
@pytest.mark.parametrize("copies", [[], ["-DINN_PORTABLE"]], ids=["as-shipped", "portable-loops-only"])
def test_c_core_vectors_and_bad_input_under_sanitizers(tmp_path, suffix, copies):
    """On x86-64 Linux the shipped build runs the AVX2 copies of the hot loops and SSE transposes; the
    second build runs the plain C loops that every other CPU gets. Both must give the vectors' bits."""
    exe = build(tmp_path, "test_core.c", SAN + copies)
    r = run(exe, *(str(VECTORS / f"{f}{suffix}.{ext}") for f, ext in (("vectors", "innb"), ("expected", "bin"),
                                                                        ("expected_graphs", "bin"))))
    assert r.returncode == 0, r.stdout + r.stderr
    passed = int(r.stdout.split()[0])
    assert passed >= 90 and " 0 failed" in r.stdout


def test_c_core_reads_a_1_3_bundle(tmp_path):
    """tests/vectors/legacy_1_3.innb is vectors.innb as the 1.3 writer wrote it (every checksum CRC-32, no
    CRC-32C flag): it still opens and gives the same weights and graphs."""
    exe = build(tmp_path, "test_core.c", SAN)
    r = run(exe, *(str(VECTORS / f) for f in ("legacy_1_3.innb", "expected.bin", "expected_graphs.bin")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(r.stdout.split()[0]) >= 90 and " 0 failed" in r.stdout


# gcc's -fsanitize=undefined leaves out float-to-int overflow (NaN to int8); clang's includes it
GCC_SAN = [*SAN, "-fsanitize=float-cast-overflow"]


@pytest.mark.parametrize("cc", [pytest.param("gcc", id="gcc"), pytest.param(CLANG, marks=needs_clang, id="clang")])
def test_hostile_bundles_made_in_c_are_rejected_cleanly(tmp_path, cc):
    """csrc/tests/test_hostile.c builds bundles and graph records in C, each a regression test: a graph
    image header cut short (heap over-read), misaligned data, bucket widths and images larger than the
    file justifies, non-finite nodes/scales/norms, NaN reaching int8, and the 1x1 layer of 2^24 inputs
    whose scratch size wrapped with a 32-bit size_t (on x86-64: its true size; tools/cross_test.sh runs
    it on armhf)."""
    exe = build(tmp_path, "test_hostile.c", GCC_SAN if cc == "gcc" else SAN, cc)
    r = run(exe)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(", 0 failed"), r.stdout


@needs_clang
@NODE_SETS
def test_c_core_vectors_with_clang(tmp_path, suffix):
    """clang builds inn_resample.c as shipped on x86-64 (AVX2 clones, F16C) and gives the vectors' bits."""
    exe = build(tmp_path, "test_core.c", SAN, CLANG)
    r = run(exe, *(str(VECTORS / f"{f}{suffix}.{ext}") for f, ext in (("vectors", "innb"), ("expected", "bin"),
                                                                        ("expected_graphs", "bin"))))
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr


def test_core_builds_with_gcc_O3_werror(tmp_path):
    """The release optimisation level with warnings as errors (gcc 12 -O3 warned maybe-uninitialized)."""
    for src in SOURCES:
        r = subprocess.run(["gcc", "-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-c",
                            str(CSRC / src), "-o", str(tmp_path / f"{src}.o")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_thread_sanitizer_build_runs(tmp_path):
    """Under TSan the AVX2 ifunc clones are off (their resolvers ran before the TSan runtime: a crash)."""
    exe = build(tmp_path, "test_hostile.c", ["-O1", "-g", "-fsanitize=thread"])
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    if "FATAL: ThreadSanitizer" in r.stderr and "unexpected memory mapping" in r.stderr:
        pytest.skip("ThreadSanitizer cannot map its shadow memory on this kernel")
    assert r.returncode == 0 and r.stdout.strip().endswith(", 0 failed"), r.stdout + r.stderr


@pytest.mark.slow
@NODE_SETS
def test_fuzz_bundle_reader_under_sanitizers(tmp_path, suffix):
    seconds = os.environ.get("INN_FUZZ_SECONDS", "10")
    exe = build(tmp_path, "fuzz_bundle.c", SAN)
    r = run(exe, str(VECTORS / f"vectors{suffix}.innb"), seconds, "12345")
    assert r.returncode == 0, r.stdout + r.stderr
    rounds = int(r.stdout.split()[1])
    assert rounds > 1000 and "no crash" in r.stdout


@pytest.mark.slow
def test_fuzz_cascade_tables_under_sanitizers(tmp_path):
    """The fuzzer seeded with the vectors plus MACS and three cascades (format 1.4), so mutations reach CSCD."""
    seed = tmp_path / "cascades.innb"
    seed.write_bytes(with_cascades(VECTORS / "vectors.innb"))
    exe = build(tmp_path, "fuzz_bundle.c", SAN)
    r = run(exe, str(seed), os.environ.get("INN_FUZZ_SECONDS", "10"), "12345")
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(r.stdout.split()[1]) > 1000 and "no crash" in r.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_builds_the_mobile_library(tmp_path):
    """The CMake build apps use, and its ctest entries for the shared vectors (both node types)."""
    build_dir = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(CSRC), "-B", str(build_dir), "-DINN_SHARED=ON", "-DINN_BUILD_TESTS=ON"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build_dir)], check=True, capture_output=True)
    assert list(build_dir.glob("libinn_core*"))
    r = subprocess.run(["ctest", "-R", "core_vectors"], cwd=build_dir, capture_output=True, text=True)
    assert r.returncode == 0 and "0 tests failed out of 2" in r.stdout, r.stdout
