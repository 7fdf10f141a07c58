"""The Android app's native layer on a host JVM (no Android SDK/NDK needed).

android_demo/host/build_and_test.sh compiles the shipped JNI glue (app/src/main/cpp/inn_jni.c) with the
C core into a host library and the shipped Java facade (app/src/main/java/dev/innmobile) with javac;
HostTest (android_demo/host/src) drives it. Here we check that what crosses JNI is what the Python
reference computes (weights, filled runtime graphs, the width policy), that bad bundle bytes become a
Java InnException carrying the core's message (never a crash), and that the Gradle project is
consistent (what the JNI library, R8 rules, manifest and CMake files name exists).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import torch
from corpus import reseal, section

from inn_mobile import native
from inn_mobile.app import models
from inn_mobile.core.convert import convert
from inn_mobile.format import bundle, reference, runtime_file, vocab
from inn_mobile.format.tables import Cascade
from inn_mobile.runtime import policy

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "android_demo"
APP = DEMO / "app"
VECTORS = ROOT / "tests" / "vectors"
SCRIPT = DEMO / "host" / "build_and_test.sh"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("javac", "java", "gcc")), reason="needs a JDK (javac, java) and gcc"
)


def java_home() -> str:
    return os.environ.get("JAVA_HOME") or str(Path(shutil.which("javac")).resolve().parents[1])


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> tuple[Path, str]:
    """Builds the host library + classes and runs the self-test once: (build dir, self-test output)."""
    out = tmp_path_factory.mktemp("android_host")
    r = subprocess.run([str(SCRIPT), str(out)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, JAVA_HOME=java_home()))
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


def run_java(build: Path, *args: str, lib_dir: Path | None = None) -> str:
    cmd = ["java", "-Xcheck:jni", f"-Djava.library.path={lib_dir or build}", "-cp", str(build / "classes"),
           "dev.innmobile.host.HostTest", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stderr, r.stderr  # -Xcheck:jni complaints about the glue
    return r.stdout


# ---------------------------------------------------------------------------------------- the CI self-test
def test_selftest_weights_graphs_and_corrupt_bundles(host):
    _, out = host
    assert re.search(r"^vectors: (\d+) records, 0 mismatched$", out, re.M), out
    # InnBundle.open(File) maps the file and the core reads the mapping (a global ref keeps it alive): no copy
    assert re.search(r"^mapped file read in place: true$", out, re.M), out
    assert int(re.search(r"^vectors: (\d+)", out, re.M).group(1)) >= 90
    assert re.search(r"^graph vectors: [1-9]\d* images, 0 mismatched$", out, re.M), out
    m = re.search(r"^corrupt: (\d+) cases, (\d+) InnException .*, (\d+) used without error, 0 other exceptions$",
                  out, re.M)
    assert m, out
    assert int(m.group(2)) > 0.9 * int(m.group(1))  # padding flips are the only harmless ones
    assert ("message CHECKSUM: opening bundle: checksum mismatch: the bundle is corrupted (INN_ERR_CHECKSUM)"
            in out)


# ---------------------------------------------------------------------------------------- a real converted model
def test_jni_weights_equal_python_reference_for_a_converted_model(host, tmp_path):
    torch.manual_seed(0)
    net = models.mobilenet_v2().eval()  # depthwise, residual adds, BatchNorm folding, linear head
    im = convert(net, torch.randn(2, 3, 32, 32))
    path = tmp_path / "model.innb"
    bundle.save(bundle.Bundle(im, bundle.make_buckets(im, (0.5, 0.75, 1.0))), path)
    b = bundle.load(path)

    out = run_java(host[0], "dump", path, tmp_path / "dump")
    checked = 0
    for k, layout, dtype, layer, w, scales, bias in reference.every_case(b):
        stem = tmp_path / "dump" / f"{k}_{layout}_{dtype}_{layer}"
        assert Path(f"{stem}.weight").read_bytes() == w.tobytes(), (k, layout, dtype, layer)
        for suffix, ref in ((".scales", scales), (".bias", bias)):
            got = Path(f"{stem}{suffix}")
            assert got.exists() == (ref is not None), (stem, suffix)
            if ref is not None:
                assert got.read_bytes() == ref.tobytes(), (k, layout, dtype, layer, suffix)
        checked += 1
    assert checked > 100 and f"dump: {len(list((tmp_path / 'dump').iterdir()))} files" in out


# ---------------------------------------------------------------------------------------- bad bytes through JNI
def _mutants() -> dict[str, bytes]:
    good = (VECTORS / "vectors.innb").read_bytes()
    node_off = section(good, b"NODE")
    version = bytearray(good)
    struct.pack_into("<H", version, 4, 2)
    buck = bytearray(good)
    off = section(good, b"BUCK")
    n_buckets, n_groups = struct.unpack_from("<II", buck, off)
    for i in range(n_groups):  # every group of bucket 0 down to 1 channel: no group may do that
        struct.pack_into("<I", buck, off + 8 + 4 * i, 1)
    blob = bytearray(good)
    off = section(good, b"BLOB")
    struct.pack_into("<I", blob, off + 4, 7)  # the first graph record claims 7 images
    part = bytearray(good)
    off = section(good, b"PART")
    struct.pack_into("<f", part, off + 4, 2.0)  # a trained partition leaving [0, 1]
    flip = bytearray(good)
    flip[node_off + 5] ^= 0x10
    return {
        "empty": b"",
        "not a bundle": b"PK\x03\x04" + bytes(100),
        "truncated to 10 bytes": good[:10],
        "truncated by half": good[: len(good) // 2],
        "last byte cut": good[:-1],
        "bit flipped in the nodes": bytes(flip),
        "future major version": reseal(version),
        "1-channel bucket (resealed)": reseal(buck),
        "partition out of [0, 1] (resealed)": reseal(part),
        "bad graph record (resealed)": reseal(blob),
    }


def _python_side(data: bytes) -> native.NativeError | None:
    """What the Python binding (the same C core) reports when doing what HostTest's `open` does."""
    try:
        nb = native.NativeBundle(data)
        for k in range(nb.bucket_count):
            for layer in range(nb.layer_count):
                nb.materialize(k, layer)
        for k, rt in nb.graphs():
            nb.fill(k, rt)
    except native.NativeError as e:
        return e
    return None


def test_bad_bundle_bytes_raise_java_exceptions_with_the_core_message(host, tmp_path):
    mutants = _mutants()
    files = []
    for i, data in enumerate(mutants.values()):
        files.append(tmp_path / f"bad{i}.innb")
        files[-1].write_bytes(data)
    lines = run_java(host[0], "open", *files).splitlines()  # one JVM for all: a crash would end it early
    assert len(lines) == len(mutants)
    names = set()
    for (what, data), line in zip(mutants.items(), lines):
        err = _python_side(data)
        assert err is not None, f"{what}: the Python binding accepted it"
        assert line.startswith(f"InnException {err.name} "), (what, line, str(err))
        # the core's own text and code, whatever the call was
        assert line.endswith(f"{native.lib().inn_status_str(err.code).decode()} (INN_ERR_{err.name})"), (what, line)
        if str(err).startswith("opening bundle"):
            assert line == f"InnException {err.name} {err}", what  # word for word what Python says
        names.add(err.name)
    assert {"MAGIC", "TRUNCATED", "CHECKSUM", "VERSION"} <= names and len(names) >= 6, names


# ---------------------------------------------------------------------------------------- width policy parity
def _policy_bundle(tmp_path: Path) -> Path:
    """Four buckets; "fake" graphs for three of them (so candidate and bucket indices differ)."""
    torch.manual_seed(0)
    im = convert(models.resnet(widths=(8, 16), blocks=(1, 1)).eval(), torch.randn(2, 1, 8, 8))
    buckets = bundle.make_buckets(im, (0.25, 0.5, 0.75, 1.0), multiple_of=1)
    b = bundle.Bundle(im, buckets)
    costs = {0: (85.0, 1000), 2: (91.5, 3000), 3: (91.5, 4000)}  # accuracy tie: the smaller wins
    for k, (acc, weights) in costs.items():
        buckets[k].info["runtimes"] = {"fake": {"accuracy": acc, "weights_bytes": weights, "arena_bytes": 500},
                                       "noacc": {"weights_bytes": weights}}
        b.graphs[(k, "fake")] = runtime_file.encode_record([runtime_file.Image("g", b"x")])
        b.graphs[(k, "noacc")] = runtime_file.encode_record([runtime_file.Image("g", b"x")])
    path = tmp_path / "policy.innb"
    bundle.save(b, path)
    return path


def _python_policy(path: Path, runtime: str, budget: int, latency: float | None, profile: Path | None) -> str:
    b = bundle.load(path)
    try:
        cands = policy.candidates(b, runtime, None if profile is None else policy.load_profile(profile))
        c = policy.choose(cands, budget, latency)
    except policy.BudgetError as e:
        return f"NoWidthFits {e}"
    except ValueError as e:
        return f"Invalid {e}"
    k = next(i for i, bk in enumerate(b.buckets) if bk.name == c.bucket)
    return f"chosen {c.index} {k} {c.bucket} | {c.reason}"


def _profile_args(path: Path) -> list[str]:
    """The profile as HostTest takes it (an app parses its profile itself: the facade reads no JSON)."""
    doc = policy.load_profile(path)
    return [doc["runtime"]] + [f"{name}={row['latency_ms']!r}:{row['peak_bytes']}"
                               for name, row in doc["buckets"].items()]


def test_width_policy_with_cascades_matches_python(host, tmp_path):
    """Cascades as candidates (the sum of their steps' memory, their calibrated accuracy and mean MACs) and
    the accuracy tolerance that trades points for MACs: WidthPolicy.java against policy.py."""
    b = bundle.load(_policy_bundle(tmp_path))
    for k, bk in enumerate(b.buckets):
        bk.macs = 1000 * 8 ** k  # the 75% bucket (64,000) costs more than the "lean" cascade (20,000 on average)
    b.cascades = [Cascade("lean", (0, 3), (0.8, 0.0), target="accuracy_drop", target_value=0.3, accuracy=91.3,
                          mean_macs=20_000.0),
                  Cascade("cheap", (0, 2), (0.5, 0.0), accuracy=89.0, mean_macs=5_000.0),
                  Cascade("orphan", (1, 3), (0.5, 0.0), accuracy=99.0, mean_macs=10.0)]  # bucket 1 has no graph
    path = tmp_path / "cascades.innb"
    bundle.save(b, path)
    seen = set()
    for runtime, budget, tolerance in [("fake", 10**9, 0.0), ("fake", 10**9, 0.3), ("fake", 10**9, 3.0),
                                       ("fake", 5000, 0.3), ("fake", 4999, 3.0), ("fake", 1499, 0.3),
                                       ("noacc", 10**9, 0.3)]:
        b = bundle.load(path)
        try:
            c = policy.choose(policy.candidates(b, runtime, cascades=True), budget, accuracy_tolerance=tolerance)
            want = f"chosen {c.index} {c.bucket} {c.cascade if c.cascade else 'null'} | {c.reason}"
        except policy.BudgetError as e:
            want = f"NoWidthFits {e}"
        got = run_java(host[0], "cascade-policy", path, runtime, budget, tolerance).strip()
        assert got == want, (runtime, budget, tolerance)
        seen.add(got.split()[2] if got.startswith("chosen") else got.split()[0])
    assert {"cascade:lean", "cascade:cheap", "NoWidthFits"} <= seen and any(s.startswith("w") for s in seen), seen


def test_bucket_names_and_costs_cross_jni_as_the_decoder_reads_them(host, tmp_path):
    """InnBundle.bucketInfo / costs / cost (JNI, the core's BKIN and COST) against the Python decoder,
    on the vectors (every combination of measured fields, a count past 2^32) and on the policy bundle."""
    for path in (VECTORS / "vectors.innb", _policy_bundle(tmp_path)):
        b = bundle.load(path)
        lines = run_java(host[0], "costs", path).splitlines()
        want = [f"bucket {k} {bk.name} {'NaN' if bk.ratio is None else float(bk.ratio)!r}"
                for k, bk in enumerate(b.buckets)]
        for (k, rt), c in sorted(b.costs().items(), key=lambda kv: (kv[0][0], kv[0][1].encode())):
            known = sum(bit for f, bit in vocab.COST_FIELDS.items() if getattr(c, f) is not None)
            want.append(f"cost {k} {rt} {known} {c.weights_bytes or 0} {c.file_bytes or 0} {c.arena_bytes or 0} "
                        f"{float(c.accuracy or 0.0)!r}")
        assert lines == want


def test_width_policy_matches_python(host, tmp_path):
    path = _policy_bundle(tmp_path)
    names = [bk.name for bk in bundle.load(path).buckets]
    profile = tmp_path / "device.json"
    policy.save_profile(profile, "fake", "host", {names[0]: {"latency_ms": 1.25, "peak_bytes": 2000},
                                                  names[2]: {"latency_ms": 2.5, "peak_bytes": 5000},
                                                  names[3]: {"latency_ms": 4.0, "peak_bytes": 9000}})
    cases = [("fake", b, None, None) for b in (0, 1499, 1500, 3499, 3500, 4500, 10**9)]
    cases += [("noacc", b, None, None) for b in (999, 1000, 3000, 10**9)]
    cases += [("fake", 10**9, 3.0, None), ("fake", 10**9, 3.0, profile), ("fake", 6000, None, profile),
              ("fake", 10**9, 1.0, profile), ("fake", 1999, None, profile), ("noacc", 10**9, None, profile),
              ("litert", 10**9, None, None)]
    seen = set()
    for runtime, budget, latency, prof in cases:
        args = [path, runtime, budget, "-" if latency is None else latency] + (_profile_args(prof) if prof else [])
        got = run_java(host[0], "policy", *args).strip()
        assert got == _python_policy(path, runtime, budget, latency, prof), (runtime, budget, latency, prof)
        seen.add(got.split()[0] + (got.split()[2] if got.startswith("chosen") else ""))
    # every outcome kind was exercised: each bucket chosen, no fit, invalid requests
    assert {"chosen0", "chosen2", "chosen3", "NoWidthFits", "Invalid"} <= seen, seen


# ---------------------------------------------------------------------------------------- the Gradle project
@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_app_cmake_file_builds_the_jni_library_on_host(host, tmp_path):
    """The app's own CMakeLists (the one the NDK build uses) finds the core and builds a library
    that exports only JNI entry points and passes the shared vectors."""
    env = dict(os.environ, JAVA_HOME=java_home())
    subprocess.run(["cmake", "-S", str(APP / "src/main/cpp"), "-B", str(tmp_path)], check=True, capture_output=True,
                   env=env)
    subprocess.run(["cmake", "--build", str(tmp_path)], check=True, capture_output=True, env=env)
    lib = tmp_path / "libinn_jni.so"
    exported = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    functions = [ln.split()[-1] for ln in exported.splitlines() if " T " in ln]
    assert functions and all(f.startswith("Java_dev_innmobile_InnBundle_") for f in functions), functions
    out = run_java(host[0], "vectors", VECTORS / "vectors.innb", VECTORS / "expected.bin", lib_dir=tmp_path)
    assert ", 0 mismatched" in out


def test_gradle_project_is_consistent():
    read = lambda p: (DEMO / p).read_text()  # noqa: E731
    catalog, app = read("gradle/libs.versions.toml"), read("app/build.gradle.kts")
    jni = read("app/src/main/cpp/inn_jni.c")
    facade = read("app/src/main/java/dev/innmobile/InnBundle.java")
    # every version pinned, nothing dynamic
    versions = dict(re.findall(r'^(\w+) = "([^"]+)"$', catalog.split("[libraries]")[0], re.M))
    assert {"agp", "kotlin", "litert", "ndk", "cmake", "minSdk", "compileSdk", "targetSdk"} <= set(versions)
    assert all(re.fullmatch(r"\d+(\.\d+)*", v) for v in versions.values()), versions
    assert "+" not in catalog and "latest" not in catalog
    assert 'include(":app")' in read("settings.gradle.kts")
    assert "distributionUrl=https\\://services.gradle.org/distributions/gradle-8.9-bin.zip" in read(
        "gradle/wrapper/gradle-wrapper.properties")
    # package names: namespace = applicationId = the Kotlin package of the launcher activity
    ns = re.search(r'namespace = "([\w.]+)"', app).group(1)
    assert re.search(rf'applicationId = "{re.escape(ns)}"', app)
    activity = re.search(r'android:name="\.(\w+)"', read("app/src/main/AndroidManifest.xml")).group(1)
    kt = APP / "src/main/java" / ns.replace(".", "/") / f"{activity}.kt"
    assert f"package {ns}\n" in kt.read_text() and f"class {activity} " in kt.read_text()
    # the native build: CMake path in Gradle, the core's path in CMake, the library name Java loads
    cmake_path = re.search(r'path = file\("([^"]+)"\)', app).group(1)
    cmake = (APP / cmake_path).read_text()
    rel = re.search(r"set\(INN_CSRC \$\{CMAKE_CURRENT_SOURCE_DIR\}/([^)]+)\)", cmake).group(1)
    assert ((APP / cmake_path).parent / rel / "inn.h").resolve() == ROOT / "inn_mobile" / "csrc" / "inn.h"
    lib = re.search(r"add_library\((\w+) SHARED", cmake).group(1)
    assert f'System.loadLibrary("{lib}")' in facade
    # every native method has its JNI function, and R8 keeps what JNI binds by name
    natives = re.findall(r"private static native \S+ (n\w+)\(", facade)
    assert len(natives) >= 10
    for n in natives:
        assert f"Java_dev_innmobile_InnBundle_{n}(" in jni, n
    rules = read("app/proguard-rules.pro")
    assert "class dev.innmobile.InnBundle {\n    native <methods>;" in rules
    assert "public <init>(int, java.lang.String);" in rules and '"(ILjava/lang/String;)V"' in jni
    assert "isMinifyEnabled = true" in app and '"proguard-rules.pro"' in app
    # the facade stays host-testable: no android.* in dev.innmobile (the app's Kotlin lives in .demo)
    for src in (APP / "src/main/java/dev/innmobile").glob("*.java"):
        assert "import android." not in src.read_text(), src


def test_cascades_and_macs_cross_jni_as_the_python_reader_reads_them(host, tmp_path):
    """InnBundle.macs / cascades (JNI: inn_bucket_macs, inn_cascade_*) against the Python decoder, and
    Cascade.confidence / accepts against runtime.cascade.confidence on a few logits."""
    import numpy as np

    from inn_mobile.format.tables import Cascade
    from inn_mobile.runtime.cascade import confidence

    b = bundle.load(VECTORS / "vectors.innb")
    for bk, m in zip(b.buckets, (3_000_000_000_000, 2000, 1000)):
        bk.macs = m
    b.cascades = [Cascade("fast", (2, 0), (0.75, 0.0), "max_prob", "accuracy_drop", 0.3, 91.5, 1234.5),
                  Cascade("lean ünï", (2, 1, 0), (0.5, 0.125, 0.0), "margin", "mean_macs", 2000.0, None, 1999.0)]
    path = tmp_path / "cascades.innb"
    bundle.save(b, path)
    logits = ["2,0,0", "0.5,0.25,0", "1,1,1", "-3,4,3.5"]
    lines = run_java(host[0], "cascades", path, *logits).splitlines()
    py = bundle.load(path)
    want = [f"macs {k} {bk.macs}" for k, bk in enumerate(py.buckets)]
    for c in py.cascades:
        known = (1 if c.accuracy is not None else 0) | (2 if c.mean_macs is not None else 0)
        steps = ",".join(f"{k}:{t!r}" for k, t in zip(c.buckets, c.thresholds))
        want.append(f"cascade {c.name} {vocab.CASCADE_SCORES[c.score]} {vocab.CASCADE_TARGETS[c.target]} {known} "
                    f"{c.target_value!r} {float(c.accuracy or 0.0)!r} {float(c.mean_macs or 0.0)!r} {steps}")
    assert lines[:len(want)] == want
    rest = lines[len(want):]
    for i, text in enumerate(logits):
        z = np.array([[float(v) for v in text.split(",")]], np.float32)
        conf_line = next(line for line in rest if line.startswith(f"confidence {i} "))
        got = [float(v) for v in conf_line.split()[2:]]
        assert got == pytest.approx([confidence(z, "max_prob")[0], confidence(z, "margin")[0]], abs=1e-12)
        for c in py.cascades:  # every step gives the same logits: the first step whose threshold they reach
            conf = confidence(z, c.score)[0]
            step = next(j for j, t in enumerate(c.thresholds) if j == len(c.thresholds) - 1 or conf >= t)
            spent = sum(py.buckets[k].macs for k in c.buckets[:step + 1])
            assert f"step {i} {c.name} {step} {spent}" in rest
    steps_seen = {line.split()[-2] for line in rest if line.startswith("step ")}
    assert len(steps_seen) >= 2, rest  # the logits reach different steps
    before = run_java(host[0], "cascades", VECTORS / "vectors.innb").splitlines()
    assert before == [f"macs {k} -1" for k in range(len(b.buckets))]  # before 1.4: nothing


# ---------------------------------------------------------------------------------------- a mapped bundle's nodes
@pytest.mark.parametrize("threads", [1, 3])
def test_a_mapped_bundle_checks_its_nodes_at_the_first_read_and_hands_out_nothing_made_from_bad_ones(
        host, tmp_path, threads):
    """InnBundle.open(File) leaves the node section's checksum and finite check to the first read of the nodes
    (inn_bundle_open_deferred): a fill checks them on its threads and joins the parts' checksums before it
    returns; materialise and the NODE section check them first. A good file reads as the Python reference
    (also from 8 threads at once, fills and materialisations mixed); a flipped node byte or a NaN node opens,
    then every read throws the open's InnException."""
    good = (VECTORS / "vectors.innb").read_bytes()
    reference_bundle = native.NativeBundle(good)
    bucket, runtime = reference_bundle.graphs()[-1]
    want = reference_bundle.fill(bucket, runtime)
    path = tmp_path / "b.innb"
    path.write_bytes(good)
    lines = run_java(host[0], "mapped", path, bucket, runtime, threads, tmp_path / "good").splitlines()
    reads = ("fill", "materialize", "section", "section", "materialize", "fill")  # two opens, both orders
    assert lines == [f"{read} ok" for read in reads] + ["concurrent 8 of 8 reads good"], lines
    assert [(tmp_path / "good" / str(i)).read_bytes() for i in range(len(want))] == list(want.values())

    nodes, size = section(good, b"NODE"), len(reference_bundle.section(b"NODE"))
    bad = {}
    for at in (nodes, nodes + size // 2, nodes + size - 1):
        bad[f"flip at {at}"] = bytearray(good)
        bad[f"flip at {at}"][at] ^= 0x04
    nan = bytearray(good)
    struct.pack_into("<f", nan, nodes + (size // 2) // 4 * 4, float("nan"))
    bad["nan"] = reseal(nan)
    for name, data in bad.items():
        expected = _python_side(bytes(data))
        assert expected is not None and str(expected).startswith("opening bundle"), name  # the eager open's verdict
        path.write_bytes(data)
        lines = run_java(host[0], "mapped", path, bucket, runtime, threads, tmp_path / "bad").splitlines()
        assert [ln.split()[:3] for ln in lines] == [[read, "InnException", expected.name] for read in reads], \
            (name, lines)
        assert all(ln.endswith(f"(INN_ERR_{expected.name})") for ln in lines), (name, lines)


def test_the_apps_width_cache_checks_every_byte_and_shares_entries_with_the_python_loader(host, tmp_path):
    """WidthCache (the facade) keeps a width's filled files and hands them out on the next start only when the
    core's stamp checks them; a damaged file or another width's entry is refilled. The entries are the Python
    loader's (the same core names and stamps them): an entry either writes is a hit for the other."""
    import zlib

    from inn_mobile.runtime import WidthCache

    path = tmp_path / "b.innb"
    path.write_bytes((VECTORS / "vectors.innb").read_bytes())
    nb = native.NativeBundle.from_file(path)
    (bucket, runtime), (other, _) = nb.graphs()[-1], nb.graphs()[0]
    want = [f"cache file {name} {len(data)} {zlib.crc32(data):08x}" for name, data in nb.fill(bucket, runtime).items()]
    cache = tmp_path / "cache"

    def start(b: int = bucket) -> list[str]:
        return run_java(host[0], "cache", path, b, runtime, cache).splitlines()

    assert start() == ["cache: stored", *want]
    assert start() == ["cache: hit", *want]
    assert WidthCache(cache).load(nb, bucket, runtime) is not None  # Java's entry, checked by Python
    entry = WidthCache(cache).entry(nb, bucket, runtime)
    first = entry / nb.image_names(bucket, runtime)[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x01
    first.write_bytes(bytes(data))
    assert start() == ["cache: stored", *want]  # damaged: refused, filled, kept anew
    assert start(other)[0] == "cache: stored"
    shutil.rmtree(entry)
    shutil.copytree(WidthCache(cache).entry(nb, other, runtime), entry)  # another width's entry in its place
    assert start() == ["cache: stored", *want]
    shutil.rmtree(cache)
    WidthCache(cache).store(nb, bucket, runtime, nb.fill(bucket, runtime))  # Python's entry, hit by Java
    assert start() == ["cache: hit", *want]
    shutil.rmtree(cache)  # an executor writes the entry after the start, the bundle closed by then
    assert run_java(host[0], "cache", path, bucket, runtime, cache, "background").splitlines() == \
        ["cache: storing", *want, "cache kept: stored"]
    assert start() == ["cache: hit", *want]
