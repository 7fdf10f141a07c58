"""Atomic file output: the one way the package writes a file a user asked for (bundles, device
profiles, checkpoints, plots).

Readers see either the old file or the complete new one, never a partial write, and a crash leaves
no half-written target. The bytes go to a fresh temporary file in the target's folder, created
exclusively by :func:`tempfile.mkstemp` under a random name (so a file or symlink planted at a
predictable ``<out>.tmp`` is never followed or overwritten), are flushed and fsynced, and then
``os.replace`` puts the file in place; the folder is fsynced too, so the rename itself survives a
power loss. On any failure the temporary file is removed. (Only a SIGKILL or a power loss between
creating and renaming it can leave one behind: a hidden ``.<name>.*.tmp`` that nothing reuses.)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# mkstemp creates files 0600; a finished output gets the mode an ordinary open() would give it.
# Reading the umask means setting it, so it is read once, at import (before any writer thread runs).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def replace(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with replace(path) as f: f.write(...)``: ``path`` gets the bytes written to ``f`` once the
    block finishes without an exception, atomically (module docstring); on an exception it is left
    as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`replace`)."""
    with replace(path) as f:
        f.write(data)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable. Some systems cannot open or fsync a folder (Windows, some
    network filesystems): there the rename is as durable as the system makes it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
