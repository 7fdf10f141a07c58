"""The C core on its own: the C test program and the fuzzer under ASan + UBSan, and the CMake build
used for Android/iOS. Needs gcc (and cmake for the last test)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "inn_mobile" / "csrc"
VECTORS = ROOT / "tests" / "vectors"
SOURCES = sorted(p.name for p in CSRC.glob("*.c"))
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def build(tmp_path: Path, main: str, flags: list[str]) -> Path:
    exe = tmp_path / Path(main).stem
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", *flags, f"-I{CSRC}",
           f"-I{CSRC / 'tests'}", *[str(CSRC / s) for s in SOURCES], str(CSRC / "tests" / main), "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
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


@pytest.mark.slow
@NODE_SETS
def test_fuzz_bundle_reader_under_sanitizers(tmp_path, suffix):
    seconds = os.environ.get("INN_FUZZ_SECONDS", "10")
    exe = build(tmp_path, "fuzz_bundle.c", SAN)
    r = run(exe, str(VECTORS / f"vectors{suffix}.innb"), seconds, "12345")
    assert r.returncode == 0, r.stdout + r.stderr
    rounds = int(r.stdout.split()[1])
    assert rounds > 1000 and "no crash" in r.stdout


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
