"""The errors inn-mobile raises on purpose, under one root: ``except InnError`` catches every one.

Each also derives from the built-in a caller would guess (``ValueError`` for bad input, ``KeyError``
for a missing width, ``RuntimeError`` for a failed lowering), so code written against those keeps
working. Messages are one line and say what to do next.
"""

from __future__ import annotations


class InnError(Exception):
    """Root of every error inn-mobile raises deliberately."""


class BundleError(InnError, ValueError):
    """A bundle (or a graph record, or a packed span inside one) is malformed, corrupted or inconsistent.

    ``status`` is the C core's status name (``"CHECKSUM"``, ``"FORMAT"``, ...) when the core found
    it, else ``None`` (the Python reader found it; the message says which check failed)."""

    status: str | None = None


class UnsupportedGraphError(InnError, ValueError):
    """The network uses an operation whose effect on channels cannot be reproduced even at full width."""


class LoweringError(InnError, RuntimeError):
    """A runtime's converter did not produce a graph whose weights the bundle can rebuild exactly."""


class BudgetError(InnError, ValueError):
    """No width of the bundle fits the memory (or latency) budget; the message names the smallest need."""


class NotInBundleError(InnError, KeyError):
    """The bundle has no such width, or no graph for the runtime at that width (the message lists
    what it has)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
