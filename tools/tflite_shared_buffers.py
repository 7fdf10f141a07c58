"""Constants a .tflite file stores once for several operators, and the bytes that saves.

    python tools/tflite_shared_buffers.py FILE.tflite [FILE.tflite ...]

The LiteRT converter stores byte-identical constants once: two layers with the same weights (timm's
``zero_init_last`` leaves the last conv of every residual block all zero, so equal-shaped blocks have
equal weights) then read one constant tensor, and the runtime's file, and its resident memory, are that
much smaller. A bundle cannot share them (each layer has its own hole, filled from its own nodes), so
this is what separates its peak RSS from the plain file's on such weights. Prints, per file: its size,
the constant bytes its operators read, and each constant read by more than one operator.
"""

from __future__ import annotations

import argparse
from collections import defaultdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    from ai_edge_litert import schema_py_generated as schema

    from inn_mobile.export.litert import _buffer_range  # a constant's bytes, inline or stored past 2 GB

    for path in args.files:
        with open(path, "rb") as f:
            flat = f.read()
        model = schema.Model.GetRootAs(flat, 0)
        readers: dict[tuple[int, int], int] = defaultdict(int)  # (subgraph, constant tensor) -> operators reading it
        size, shape = {}, {}
        for s in range(model.SubgraphsLength()):
            g = model.Subgraphs(s)
            for i in range(g.OperatorsLength()):
                op = g.Operators(i)
                for t in (op.Inputs(j) for j in range(op.InputsLength())):
                    nbytes = _buffer_range(model, g.Tensors(t))[1] if t >= 0 else 0  # -1: an omitted input
                    if nbytes:
                        readers[(s, t)] += 1
                        size[(s, t)], shape[(s, t)] = nbytes, g.Tensors(t).ShapeAsNumpy().tolist()
        read = sum(size[k] * n for k, n in readers.items())
        shared = {k: n for k, n in readers.items() if n > 1}
        saved = sum(size[k] * (n - 1) for k, n in shared.items())
        print(f"{path}: {len(flat) / 2**20:.1f} MiB; constants its operators read {read / 2**20:.1f} MiB, of which "
              f"{saved / 2**20:.2f} MiB are read by more than one operator but stored once")
        for k, n in sorted(shared.items(), key=lambda kv: -size[kv[0]]):
            print(f"  a {size[k] / 2**20:.2f} MiB constant of shape {shape[k]} read by {n} operators")


if __name__ == "__main__":
    main()
