"""The width cache: a width's first start keeps its filled files, later starts load them as plain files.

One digits ResNet bundle (LiteRT and ExecuTorch at two widths) is packed once per module. The
tests open it as an app would, with a cache directory, and check that a later start loads the kept files
(``startup.cache == "hit"``) and answers exactly as a fill does, that any damage to an entry (a file's byte,
its length, its stamp, a file gone, another width's entry in its place) is found before the runtime sees
it and the width is filled again, and that a cache which cannot be written only costs the start its time.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("executorch")

from corpus import reseal  # noqa: E402

from inn_mobile import native  # noqa: E402
from inn_mobile.app import cli  # noqa: E402
from inn_mobile.core.convert import convert  # noqa: E402
from inn_mobile.export import pack  # noqa: E402
from inn_mobile.format import bundle  # noqa: E402
from inn_mobile.runtime import WidthCache, open_model  # noqa: E402
from inn_mobile.runtime.width_cache import STAMP  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def packed(digits_model, digits_data, tmp_path_factory):
    """(bundle path, a batch of inputs): litert and executorch at 50% and 100%, packed as the CLI packs."""
    x, _, xt, _ = digits_data
    im = convert(digits_model, xt[:2], calibration=x[:256])
    path = tmp_path_factory.mktemp("width_cache") / "digits.innb"
    pack.pack(im, xt[:1], ["litert", "executorch"], buckets=bundle.make_buckets(im, (0.5, 1.0), multiple_of=2),
              path=path)
    return path, xt[:16]


def _entry(cache: Path, runtime: str, bucket: int = 1) -> Path:
    (entry,) = cache.glob(f"*-b{bucket}-{runtime}")
    return entry


@pytest.mark.parametrize("runtime", ["litert", "executorch"])
def test_a_later_start_loads_the_kept_files_and_answers_as_a_fill_does(packed, tmp_path, runtime):
    path, x = packed
    want = open_model(path, runtime, 1)(x).numpy()
    cache = WidthCache(tmp_path)
    first = open_model(path, runtime, 1, cache_dir=cache)
    assert first.startup.cache == "storing" and cache.wait() == []
    later = open_model(path, runtime, 1, cache_dir=tmp_path)
    assert later.startup.cache == "hit"
    np.testing.assert_array_equal(first(x).numpy(), want)
    np.testing.assert_array_equal(later(x).numpy(), want)
    filled = native.NativeBundle.from_file(path).fill(1, runtime)
    entry = _entry(tmp_path, runtime)
    assert sorted(p.name for p in entry.iterdir()) == sorted([*filled, STAMP])
    assert all((entry / name).read_bytes() == data for name, data in filled.items())  # the fill, byte for byte


def _damage_a_byte(entry: Path) -> None:
    f = entry / "model.tflite"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x04
    f.write_bytes(bytes(data))


def _cut_short(entry: Path) -> None:
    f = entry / "model.tflite"
    f.write_bytes(f.read_bytes()[:-1])


def _damage_the_stamp(entry: Path) -> None:
    s = entry / STAMP
    data = bytearray(s.read_bytes())
    data[-9] ^= 0x80  # the file's CRC in the stamp
    s.write_bytes(bytes(data))


def _garbage_stamp(entry: Path) -> None:
    (entry / STAMP).write_bytes(b"not a stamp")


def _file_gone(entry: Path) -> None:
    (entry / "model.tflite").unlink()


def _another_widths_entry(entry: Path) -> None:
    """The 50% width's whole entry where the full width's belongs (what a stale entry looks like)."""
    other = _entry(entry.parent, "litert", bucket=0)
    shutil.rmtree(entry)
    shutil.copytree(other, entry)


@pytest.mark.parametrize("damage", [_damage_a_byte, _cut_short, _damage_the_stamp, _garbage_stamp, _file_gone,
                                    _another_widths_entry])
def test_a_damaged_or_stale_entry_is_never_loaded_and_is_filled_again(packed, tmp_path, damage):
    path, x = packed
    want = open_model(path, "litert", 1)(x).numpy()
    cache = WidthCache(tmp_path)
    open_model(path, "litert", 0, cache_dir=cache)
    open_model(path, "litert", 1, cache_dir=cache)
    assert cache.wait() == []
    damage(_entry(tmp_path, "litert"))
    again = open_model(path, "litert", 1, cache_dir=cache)
    assert again.startup.cache == "storing" and cache.wait() == []  # checked, refused, filled and kept anew
    np.testing.assert_array_equal(again(x).numpy(), want)
    assert open_model(path, "litert", 1, cache_dir=tmp_path).startup.cache == "hit"
    assert open_model(path, "litert", 0, cache_dir=tmp_path).startup.cache == "hit"  # the other entry is intact


def test_a_cache_that_cannot_be_written_leaves_the_start_in_memory(packed, tmp_path):
    path, x = packed
    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"")  # a directory cannot be made here (root ignores permissions, not this)
    cache = WidthCache(blocked)
    net = open_model(path, "litert", 1, cache_dir=cache)
    (why,) = cache.wait()
    assert net.startup.cache == "storing" and why.startswith("litert width 1: ") and blocked.read_bytes() == b""
    np.testing.assert_array_equal(net(x).numpy(), open_model(path, "litert", 1)(x).numpy())
    assert cache.wait() == []  # each failure is told once


def test_a_full_disk_leaves_nothing_in_the_cache(packed, tmp_path, monkeypatch):
    """The disk fills up in the middle of the entry's second file: the start has its model, the cache has no
    temporary directory, no partial entry, and the next start fills again."""
    import errno
    import os

    from inn_mobile.runtime import width_cache

    path, x = packed
    written: list[str] = []

    def full_after_one(p: Path, data: bytes) -> None:
        if written:
            p.write_bytes(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(p.name)
        p.write_bytes(data)

    monkeypatch.setattr(width_cache, "_write", full_after_one)
    cache = WidthCache(tmp_path)
    net = open_model(path, "executorch", 1, cache_dir=cache)
    (why,) = cache.wait()
    assert "No space left" in why and written
    assert not any(tmp_path.iterdir())  # the temporary entry is gone
    np.testing.assert_array_equal(net(x).numpy(), open_model(path, "executorch", 1)(x).numpy())
    assert open_model(path, "executorch", 1, cache_dir=tmp_path).startup.cache == "storing"  # a miss again


def test_starts_racing_to_keep_the_same_width_leave_one_whole_entry(packed, tmp_path):
    path, _ = packed
    nb = native.NativeBundle.from_file(path)
    files = nb.fill(1, "litert")
    cache = WidthCache(tmp_path)
    errors: list[BaseException] = []

    def keep() -> None:
        try:
            cache.store(nb, 1, "litert", files)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=keep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.load(nb, 1, "litert") is not None
    assert [p.name for p in tmp_path.iterdir()] == [_entry(tmp_path, "litert").name]  # no temporary left


@pytest.mark.parametrize("name", ["../xy.tflite", "/x/yz.tflite", ".xyzw.tflite", "a\\bcd.tflite"])
def test_a_graph_whose_file_name_is_a_path_writes_nothing_anywhere(packed, tmp_path, name):
    """Graph file names are the bundle's (untrusted) words: the cache keeps only plain file names (the core
    checks them before a byte is written), so a hostile bundle cannot write outside the cache directory."""
    path, _ = packed
    data = path.read_bytes()
    assert data.count(b"model.tflite") == 2 and len(name) == len("model.tflite")  # the litert graphs' files
    evil = tmp_path / "work" / "evil.innb"
    evil.parent.mkdir()
    evil.write_bytes(reseal(data.replace(b"model.tflite", name.encode())))
    cache = WidthCache(tmp_path / "work" / "cache")
    with pytest.raises(bundle.BundleError, match="has no model.tflite"):  # the loader's own refusal, after
        open_model(evil, "litert", 1, cache_dir=cache)
    (why,) = cache.wait()
    assert "not kept in a width cache" in why
    nb = native.NativeBundle.from_file(evil)
    with pytest.raises(bundle.BundleError, match="not kept in a width cache"):
        cache.store(nb, 1, "litert", nb.fill(1, "litert"))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["work", "work/evil.innb"]


def test_the_reference_fill_is_not_kept(packed, tmp_path):
    from inn_mobile.runtime.litert import LiteRTModel

    with pytest.raises(ValueError, match="cannot be used with reference=True"):
        LiteRTModel.open(packed[0], bucket=1, reference=True, cache=WidthCache(tmp_path))


def test_the_command_line_runs_from_the_cache_on_the_second_start(packed, tmp_path, capsys):
    path, _ = packed
    argv = ["run", str(path), "--runtime", "litert", "--memory-budget", "1G", "--cache-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    assert "width cache: stored for the next start" in capsys.readouterr().out
    assert cli.main(argv) == 0
    assert "width cache checked" in capsys.readouterr().out


# What every fill writes for the shared test vectors, per INN_FILL_VERSION: a kept entry names the version
# that filled it, so a core whose fill writes other bytes must bump the version, or later starts would load
# the files of the old fill. When the vectors change with the fill (make_test_vectors.py), bump
# INN_FILL_VERSION in inn.h and add its row here.
FILLS = {
    1: ("24031a864ab95e546174c726ba2f060372a56324e82ec05ba9771d878f097e10",
        "9076c7addd9974d4ae9e072d8af043bf96c86fd836e34170ded8970cc141a818"),
}


def test_the_fill_version_names_the_bytes_a_fill_writes():
    version = int(re.search(r"#define INN_FILL_VERSION (\d+)u", (ROOT / "inn_mobile/csrc/inn.h").read_text())[1])
    vectors = ROOT / "tests/vectors"
    got = tuple(hashlib.sha256((vectors / f).read_bytes()).hexdigest()
                for f in ("expected_graphs.bin", "expected_graphs_i8.bin"))
    assert FILLS.get(version) == got, (
        f"the shared vectors' fills are {got}, not those of INN_FILL_VERSION {version}: if the fill's bytes "
        f"changed, bump INN_FILL_VERSION (inn.h) and add its row to FILLS")
