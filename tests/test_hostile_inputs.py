"""Hostile inputs: a few hundred malformed bundles (tests/corpus.py) through both readers, the host
loader and the command line. Every case must end cleanly (a result, or the library's error; on the
command line one ``error:`` line and exit code 1) within 5 seconds and bounded memory, and the Python
and C readers must agree on what they accept. Their intended differences (FORMAT.md "Validation") are
``META``, host metadata the C core never reads: the Python reader builds layers and buckets from it and
rejects a ``META`` of the wrong shape; and layer names, which key the Python reader's model and so must
be distinct there (an edited name offset can point one layer at another's name).
"""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from corpus import Case, base_bundle, corpus

from inn_mobile import native, runtime
from inn_mobile.app import cli
from inn_mobile.errors import InnError
from inn_mobile.format import bundle, reference

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

SECONDS = 5.0
HEADROOM = 2 << 30  # address space a case may add: far below what an unbounded size asks for


@pytest.fixture(scope="module")
def cases() -> tuple[bytes, list[Case]]:
    good = base_bundle()
    return good, corpus(good, bundle.encode(bundle.decode(good), node_dtype="i8"))


@contextlib.contextmanager
def bounded_memory() -> Iterator[None]:
    """Cap this process's address space at its current size plus HEADROOM, so a case that asks for a
    huge buffer fails with MemoryError (reported as a failure) instead of paging the machine to death."""
    vm = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
              if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(vm + HEADROOM, hard) if hard > 0 else vm + HEADROOM, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def outcome(fn: Callable[[bytes], object], data: bytes) -> str:
    """``"ok"``, ``"rejected"`` (the library's error), or what else escaped (a bug); and whether it
    took too long."""
    t = time.perf_counter()
    try:
        fn(data)
        result = "ok"
    except InnError:
        result = "rejected"
    except Exception as e:  # noqa: BLE001 - anything else is what this test exists to find
        result = f"{type(e).__name__}: {e}"[:300]
    took = time.perf_counter() - t
    return result if took <= SECONDS else f"{result}, but took {took:.1f} s"


def python_reader(data: bytes) -> None:
    """The Python reader, every graph rebuilt as :func:`inn_mobile.format.reference.fill` does."""
    b = bundle.decode(data)
    for k, rt in b.graphs:
        reference.fill(b, k, rt)


def load_litert(data: bytes) -> None:
    runtime.open_model(data, "litert")


def c_reader(data: bytes) -> None:
    """The C reader through its binding, every graph filled."""
    nb = native.NativeBundle(data)
    for k, rt in nb.graphs():
        nb.fill(k, rt)


def _layer_names_repeated(data: bytes) -> bool:
    """The Python reader rejects ``data`` for two layers of one name (only it keys layers by name)."""
    try:
        bundle.decode(data)
    except InnError as e:
        return "two layers named" in str(e)
    return False


@pytest.mark.slow
def test_readers_and_loader_end_cleanly_and_agree(cases):
    good, corpus_cases = cases
    assert len(corpus_cases) >= 300 and {c.family for c in corpus_cases} == {
        "truncation", "flip", "flip-unsealed", "field", "graph", "meta"}
    unclean, disagree, counts = [], [], {"ok": 0, "rejected": 0}
    with bounded_memory():
        for c in corpus_cases:
            py, cc = outcome(python_reader, c.data), outcome(c_reader, c.data)
            # META of the wrong shape through the loader: test_loader_rejects_meta_of_the_wrong_shape
            loaded = "ok" if c.meta_only else outcome(load_litert, c.data)
            for who, got in (("python", py), ("c", cc), ("open_model", loaded)):
                if got not in counts:
                    unclean.append(f"{c.name} ({who}): {got}")
            intended = c.meta_only or _layer_names_repeated(c.data)
            if py != cc and not (intended and (py, cc) == ("rejected", "ok")):
                disagree.append(f"{c.name}: python {py}, c {cc}")
            counts[py] = counts.get(py, 0) + 1
    assert not unclean, "\n".join(unclean)
    assert not disagree, "\n".join(disagree)
    assert counts["rejected"] > 200 and counts["ok"] > 50  # the corpus reaches past the first checks


def test_loader_rejects_meta_of_the_wrong_shape(cases):
    """The loader reads bucket names from the binary tables and checks META where it reads it
    (``NativeBundle.meta``: ``bundle.check_meta``): a META of the wrong shape loads or is rejected cleanly."""
    _, corpus_cases = cases
    for c in corpus_cases:
        if c.meta_only:
            assert outcome(load_litert, c.data) in ("ok", "rejected"), c.name


@pytest.mark.slow
def test_cli_prints_one_error_line(cases, tmp_path, capsys):
    """``inspect`` and ``run`` in-process on every case: exit 0, or exit 1 with one ``error:`` line."""
    _, corpus_cases = cases
    path = tmp_path / "case.innb"
    bad = []
    with bounded_memory():
        for c in corpus_cases:
            path.write_bytes(c.data)
            for argv in (["inspect", str(path)], ["run", str(path), "--runtime", "litert", "--memory-budget", "1G"]):
                t = time.perf_counter()
                code = cli.main(argv)
                took = time.perf_counter() - t
                err = capsys.readouterr().err.strip()
                if not (code == 0 or (code == 1 and err.startswith("error: ") and "\n" not in err)) or took > SECONDS:
                    bad.append(f"{c.name}: {argv[0]} exit {code} in {took:.1f} s: {err[-300:]}")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_cli_exit_codes_in_a_real_process(cases, tmp_path):
    """A few cases through a real ``inn-mobile`` process: exit codes, and no traceback on stderr."""
    good, corpus_cases = cases
    picks = {"good": good}
    for family in ("meta", "field"):  # rejected as a whole (a bad graph leaves the other widths to run)
        c = next(c for c in corpus_cases if c.family == family and outcome(bundle.decode, c.data) != "ok")
        picks[c.name] = c.data
    for name, data in picks.items():
        path = tmp_path / "case.innb"
        path.write_bytes(data)
        r = subprocess.run([sys.executable, "-m", "inn_mobile.app.cli", "run", str(path), "--runtime", "litert",
                            "--memory-budget", "1G"], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in r.stderr, (name, r.stderr)
        if name == "good":
            assert r.returncode == 0 and "chose" in r.stdout, r.stderr
        else:
            errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
            assert r.returncode == 1 and len(errors) == 1, (name, r.stderr)
