"""A directory of filled widths, so that every start after the first loads plain runtime files.

A bundle's startup pays for the fill: writing a width's weights into fresh memory costs about as much as
the runtime's own load on real networks, and the plain file it is compared with pays neither (its weights
sit in the page cache, mapped). An app starts the same width on the same phone again and again, so the first
start may keep the files the core filled, and later starts load those as plain files, from a memory map.

What makes the kept files safe to load is a stamp the core writes after them and checks before the runtime
sees them (``inn_cache_stamp`` / ``inn_cache_check``, FORMAT.md "Width cache stamps"): it names the bundle
(its header and the graph record's checksum), the width, the runtime and the fill's version, and each
file's size and CRC-32C. Every start checks every byte of the files against it, so a damaged or outdated
entry is never loaded: it is removed and the width filled again. The first start fills the width straight
into the entry's files (memory maps of them), so keeping the width costs little more than filling it; an
entry appears whole or not at all to other processes (written in a temporary directory, renamed into place).
The files are not synced to the disk (a first start would wait for it): after a power cut an entry may be
left with lost or stale pages, which the check on the next start finds like any other damage. A cache that cannot be
written (full or read-only disk) costs nothing but the time: the start goes on from memory.

One entry per (bundle, width, runtime): a directory named for them holding the runtime's files (names
from the graph record, which the core checks to be plain file names) and ``stamp.innc``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
from pathlib import Path

from inn_mobile.format import bundle, vocab
from inn_mobile.native import NativeBundle, NativeError

STAMP = vocab.CACHE_STAMP_FILE


class WidthCache:
    """Filled widths kept in ``directory`` (created when first written), checked on every load."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

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

    def fill(self, nb: NativeBundle, bucket: int, runtime: str) -> dict[str, Path]:
        """Fill graph (bucket, runtime) straight into a new entry's files and keep them with their stamp: the
        core writes the weights into memory maps of the files (page cache pages, which the runtime then maps
        again: no other copy, no fresh anonymous memory). Raises ``OSError`` when the disk refuses (its space
        is reserved before a byte is written, so a full disk is an error here, never a fault in the core) and
        :class:`~inn_mobile.format.bundle.BundleError` for a graph that is not kept (its file names are not
        plain names); nothing is left half-written either way."""
        try:
            entry = self.entry(nb, bucket, runtime)
        except NativeError as e:
            raise bundle.BundleError(f"the {runtime!r} graph is not kept in a width cache: {e}") from e
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.directory))
        try:
            with contextlib.ExitStack() as maps:
                files = nb.fill(bucket, runtime, into=lambda name, size: maps.enter_context(_new_map(tmp / name, size)))
                nb.release_pages()  # the runtime maps the files next: do not hold the nodes too
                stamp = nb.cache_stamp(bucket, runtime, files)
            (tmp / STAMP).write_bytes(stamp)  # last: it vouches for the files
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


@contextlib.contextmanager
def _new_map(path: Path, size: int):
    """A writable shared memory map of a new file of ``size`` bytes, its blocks reserved first: writing a
    mapped page the disk has no room for would be a fault (SIGBUS), not an error."""
    with open(path, "w+b") as f:
        if size == 0:
            yield bytearray()
            return
        os.posix_fallocate(f.fileno(), 0, size)
        m = mmap.mmap(f.fileno(), size)
    try:
        yield m
    finally:
        m.close()
