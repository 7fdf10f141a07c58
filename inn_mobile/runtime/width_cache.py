"""A directory of filled widths, so that every start after the first loads plain runtime files.

A bundle's startup pays for the fill: writing a width's weights into fresh memory costs about as much as
the runtime's own load on real networks, and the plain file it is compared with pays neither (its weights
sit in the page cache, mapped). An app starts the same width on the same phone again and again, so the first
start may keep the files the core filled, and later starts load those as plain files, from a memory map.

What makes the kept files safe to load is a stamp the core writes after them and checks before the runtime
sees them (``inn_cache_stamp`` / ``inn_cache_check``, FORMAT.md "Width cache stamps"): it names the bundle
(its header and the graph record's checksum), the width, the runtime and the fill's version, and each
file's size and CRC-32C. Every start checks every byte of the files against it, so a damaged or outdated
entry is never loaded: it is removed and the width filled again.

The first start fills the width in memory, as a start without a cache does, and the runtime loads it from
there; the filled files are written to the cache by a thread of their own meanwhile (:meth:`WidthCache.
store_later`). Keeping a width then costs the first start nothing on its way to a ready model: writing the
files into the page cache took longer than the fill itself on this project's machine (ext4, a virtual disk),
and a fill into memory maps of the files (tried at stop 32) paid that cost inside the start. The runtime
holds the filled bytes anyway, so the thread adds no copy. An entry appears whole or not at all to other
processes (written in a temporary directory, renamed into place). The files are not synced to the disk:
after a power cut an entry may be left with lost or stale pages, which the check on the next start finds
like any other damage. A cache that cannot be written (full or read-only disk) costs nothing but the write:
the next start fills again, and :meth:`WidthCache.wait` says why.

One entry per (bundle, width, runtime): a directory named for them holding the runtime's files (names
from the graph record, which the core checks to be plain file names) and ``stamp.innc``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from inn_mobile.format import bundle, vocab
from inn_mobile.native import NativeBundle, NativeError

STAMP = vocab.CACHE_STAMP_FILE


class WidthCache:
    """Filled widths kept in ``directory`` (created when first written), checked on every load."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._pending: list[threading.Thread] = []  # stores started by store_later, not yet waited for
        self._failed: list[str] = []  # why those that ended refused, one line each

    def entry(self, nb: NativeBundle, bucket: int, runtime: str) -> Path:
        """The entry's directory, named by the core (``inn_cache_entry``): the bundle's section-table checksum
        and size, the bucket and the runtime. :class:`~inn_mobile.native.NativeError` (``FORMAT``) for a graph
        that names a file other than by a plain file name: it is not kept."""
        return self.directory / nb.cache_entry(bucket, runtime)

    def load(self, nb: NativeBundle, bucket: int, runtime: str) -> dict[str, Path] | None:
        """The entry's files, each checked byte for byte against its stamp; ``None`` when there is no whole,
        current entry (a damaged or outdated one is removed, so that the next :meth:`store` replaces it)."""
        try:
            entry = self.entry(nb, bucket, runtime)
        except NativeError:
            return None  # a graph that is never kept: fill it
        names = nb.image_names(bucket, runtime)
        try:
            stamp = (entry / STAMP).read_bytes()
        except OSError:
            return None  # no entry (or none readable): a miss
        try:
            with contextlib.ExitStack() as stack:
                files = {name: stack.enter_context(_mapped(entry / name)) for name in names}
                nb.cache_check(bucket, runtime, stamp, files)
        except (OSError, NativeError):  # a file missing or unreadable, damaged, or the stamp of other files
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return {name: entry / name for name in names}

    def store(self, nb: NativeBundle, bucket: int, runtime: str, files: Mapping[str, bytes]) -> dict[str, Path]:
        """Keep the filled ``files`` of graph (bucket, runtime) with the stamp the core computes from them, and
        return the kept files' paths. Raises ``OSError`` when the disk refuses and
        :class:`~inn_mobile.format.bundle.BundleError` for a graph that is not kept (its file names are not
        plain names: nothing is written then); nothing is left half-written either way."""
        try:
            entry = self.entry(nb, bucket, runtime)
        except NativeError as e:
            raise bundle.BundleError(f"the {runtime!r} graph is not kept in a width cache: {e}") from e
        stamp = nb.cache_stamp(bucket, runtime, dict(files))
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.directory))
        try:
            for name, data in (*files.items(), (STAMP, stamp)):  # the stamp last: it vouches for the files
                _write(tmp / name, data)
            for _ in range(2):  # the entry's place is free (load removed a bad entry), unless another start won
                try:
                    os.rename(tmp, entry)
                    return {name: entry / name for name in files}
                except OSError:
                    theirs = self.load(nb, bucket, runtime)  # checked like any entry (and removed if bad)
                    if theirs is not None:
                        return theirs
            raise OSError(f"cannot put {tmp.name} in place of {entry}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def store_later(self, nb: NativeBundle, bucket: int, runtime: str, files: Mapping[str, bytes]) -> None:
        """:meth:`store` in a thread of its own, so that the start goes on to the runtime's load at once.
        ``files`` must not change until it ends (the runtimes only read them); :meth:`wait` joins it. The
        thread is not a daemon: a process that exits first waits for its entry to be whole."""
        files = dict(files)  # the loaders take files out of their own dict

        def run() -> None:
            try:
                self.store(nb, bucket, runtime, files)
            except (OSError, bundle.BundleError, NativeError) as e:
                with self._lock:
                    self._failed.append(f"{runtime} width {bucket}: {e}")

        thread = threading.Thread(target=run, name="inn-width-cache")
        with self._lock:
            self._pending.append(thread)
        thread.start()

    def wait(self) -> list[str]:
        """Wait for the stores :meth:`store_later` started; why each that failed since the last wait did (one
        line each; an empty list when every width was kept)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for thread in pending:
            thread.join()
        with self._lock:
            failed, self._failed = self._failed, []
        return failed


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (a full disk is an ``OSError`` here)."""
    with open(path, "xb") as f:
        f.write(data)


@contextlib.contextmanager
def _mapped(path: Path):
    """A read-only memory map of ``path`` (an empty file: empty bytes, which ``mmap`` cannot map)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield m
    finally:
        m.close()
