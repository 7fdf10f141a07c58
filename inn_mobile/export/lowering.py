"""Lowering one bucket for one or more runtimes: the exporters behind one call, errors as one line.

Lowering work is shared where the runtimes allow it: a family whose exporter has ``lower_variants``
(LiteRT: fp32 and int8 come from one conversion) is lowered once per bucket for all its requested
runtimes. Failures are :class:`~inn_mobile.errors.LoweringError` with a one-line message (at most 300
characters) naming the runtime, the width and, where the exporter knows it, the layer; a converter's
own exception is wrapped the same way (its traceback stays on ``__cause__``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from inn_mobile import runtime
from inn_mobile.core.integral import IntegralModel
from inn_mobile.errors import LoweringError
from inn_mobile.export import exporter
from inn_mobile.export.sentinel import error
from inn_mobile.format import bundle, runtime_file
from inn_mobile.format.vocab import Runtime


def lower(model: IntegralModel, bucket: bundle.Bucket, example_input: torch.Tensor, runtime_name: str, *,
          calibration: torch.Tensor | None = None) -> list[runtime_file.Image]:
    """One bucket's files for one runtime (``litert``, ``litert-i8``, ``executorch``, ``executorch-i8``)."""
    return lower_runtimes(model, bucket, example_input, [runtime_name], calibration=calibration)[runtime_name]


def lower_runtimes(model: IntegralModel, bucket: bundle.Bucket, example_input: torch.Tensor,
                   runtime_names: Sequence[str], *, calibration: torch.Tensor | None = None,
                   ) -> dict[str, list[runtime_file.Image]]:
    """One bucket's files for each of ``runtime_names``, sharing one lowering per family where possible."""
    out: dict[str, list[runtime_file.Image]] = {}
    for members in families(runtime_names):
        mod = exporter(members[0].family)
        with _one_line(", ".join(rt.name for rt in members), bucket.name):
            if hasattr(mod, "lower_variants"):
                by_int8 = mod.lower_variants(model, bucket, example_input, [rt.int8 for rt in members],
                                             calibration=calibration)
                out.update({rt.name: by_int8[rt.int8] for rt in members})
            else:
                for rt in members:
                    out[rt.name] = mod.lower(model, bucket, example_input, int8=rt.int8, calibration=calibration)
    return out


def families(runtime_names: Sequence[str]) -> list[list[Runtime]]:
    """The runtimes (each once, checked) grouped by family, in the order first named: one lowering each."""
    rts = [runtime.check_runtime(name) for name in dict.fromkeys(runtime_names)]
    return [[rt for rt in rts if rt.family == family] for family in dict.fromkeys(rt.family for rt in rts)]


@contextlib.contextmanager
def _one_line(runtimes: str, width: str) -> Iterator[None]:
    """Lowering errors as one line that says which runtime and width (the layer is in the exporter's text)."""
    try:
        yield
    except LoweringError as e:
        raise error(f"{runtimes} at {width}: {e}") from e
    except (ValueError, TypeError, ImportError):
        raise  # the caller's mistake or a missing package: their messages already say what to do
    except Exception as e:  # noqa: BLE001 - a converter's internals: one line, the traceback kept as __cause__
        raise error(f"{runtimes} at {width}: the converter failed: {type(e).__name__}: {e}") from e
