"""Plots are optional (the ``plot`` extra): one place that finds matplotlib, headless."""

from __future__ import annotations


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
