"""Plots are optional (the ``plot`` extra): one place that finds matplotlib, headless, and saves figures."""

from __future__ import annotations

import os
from pathlib import Path

from inn_mobile import atomic


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or ``None`` (with a note) when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install 'inn-mobile[plot]')")
        return None
    return plt


def save(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` (format from the suffix, PNG by default) atomically, folders created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replace(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=120)
    print(f"plot: {path}")


def finish(fig, ax, path: str | os.PathLike, *, xlabel: str, ylabel: str, title: str,
           legend_size: float | None = None) -> None:
    """The house style of a one-axes plot, then :func:`save`: labels, title, legend, a light grid, a
    tight layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)
