"""Finding the coupled channel axes of a traced network: the channel *groups*.

Every tensor in the traced graph gets a description of its channel axis as a sequence of
*pieces*, each a run of channels of some *base* axis (a model input, or the output axis of a
conv/linear layer). Operations then either pass a description through (activations, BN, pooling,
depthwise conv), build a new one (concat), create a new base (conv, linear), or demand that two
descriptions are the same axis (residual add, gating multiply). Grouped convolutions also demand
cuts at their block boundaries.

Solving those constraints yields atomic *segments* (base, start, stop), and the union of segments
that must stay identical is a **group**: one continuous axis with one partition. A concat output is
simply a sequence of several groups (a composite group). Groups touching the model input or output
stay discrete.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from inn_mobile.errors import UnsupportedGraphError


@dataclass(frozen=True)
class Piece:
    """Channels ``start:stop`` of base axis ``base``."""

    base: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


Desc = tuple[Piece, ...]


@dataclass
class LayerSite:
    """A parameterised module found in the graph, with the channel axes it reads and writes."""

    name: str
    module: nn.Module
    kind: str  # "dense" | "depthwise" | "affine"
    out_desc: Desc
    in_desc: Desc = ()
    blocks: int = 1
    in_spatial: int = 1  # Linear after flatten(N, C, H, W): H*W features per channel


@dataclass
class Group:
    """One continuous channel axis shared by several tensors."""

    id: int
    size: int
    resizable: bool
    members: list[str] = field(default_factory=list)


@dataclass
class ChannelGraph:
    """The traced graph, its parameterised layers, and their channel axes as group sequences."""

    module: fx.GraphModule
    groups: list[Group]
    layers: list[LayerSite]
    segments: dict[Desc, tuple[int, ...]]

    def axis_groups(self, desc: Desc) -> tuple[int, ...]:
        return self.segments[desc]

    def table(self) -> str:
        """A readable table of the groups: id, size, resizable, members."""
        rows = [f"{'group':>5}  {'size':>5}  {'resize':>6}  members"]
        for g in self.groups:
            members = ", ".join(g.members[:6]) + (f", ... (+{len(g.members) - 6})" if len(g.members) > 6 else "")
            rows.append(f"{g.id:>5}  {g.size:>5}  {'yes' if g.resizable else 'fixed':>6}  {members}")
        return "\n".join(rows)


_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.GELU,
    nn.LeakyReLU, nn.ELU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
    nn.ReplicationPad2d, nn.Upsample, nn.Hardtanh,
)
_PASS_FUNCTIONS = {
    F.relu, F.relu6, F.silu, F.hardswish, F.hardsigmoid, F.gelu, F.leaky_relu, F.elu, F.mish,
    F.hardtanh, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
    F.pad, F.interpolate, torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.nn.functional.sigmoid,
    operator.neg, torch.neg,
}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "clamp", "contiguous", "clone", "neg", "float", "relu_"}
_BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.truediv,
           torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "mul", "sub", "div", "add_", "mul_"}


class _Solver:
    """Cuts and equalities over base axes, solved to a fixpoint, then unioned into groups."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.cuts: list[set[int]] = []
        self.equal: list[tuple[int, int, int, int, int]] = []  # (base_a, start_a, base_b, start_b, len)

    def new_base(self, size: int) -> Desc:
        self.sizes.append(size)
        self.cuts.append({0, size})
        return (Piece(len(self.sizes) - 1, 0, size),)

    def cut(self, desc: Desc, position: int) -> None:
        for piece in desc:
            if 0 < position < piece.size:
                self.cuts[piece.base].add(piece.start + position)
            position -= piece.size

    def same(self, a: Desc, b: Desc) -> None:
        ia = ib = 0
        oa = ob = 0
        while ia < len(a) and ib < len(b):
            pa, pb = a[ia], b[ib]
            n = min(pa.size - oa, pb.size - ob)
            self.equal.append((pa.base, pa.start + oa, pb.base, pb.start + ob, n))
            oa += n
            ob += n
            if oa == pa.size:
                ia, oa = ia + 1, 0
            if ob == pb.size:
                ib, ob = ib + 1, 0

    def register(self, desc: Desc) -> None:
        for piece in desc:
            self.cuts[piece.base].update((piece.start, piece.stop))

    def solve(self) -> None:
        for base_a, start_a, base_b, start_b, n in self.equal:
            self.cuts[base_a].update((start_a, start_a + n))
            self.cuts[base_b].update((start_b, start_b + n))
        changed = True
        while changed:
            changed = False
            for base_a, start_a, base_b, start_b, n in self.equal:
                for src, s0, dst, d0 in ((base_a, start_a, base_b, start_b), (base_b, start_b, base_a, start_a)):
                    for c in [c for c in self.cuts[src] if s0 < c < s0 + n]:
                        if d0 + c - s0 not in self.cuts[dst]:
                            self.cuts[dst].add(d0 + c - s0)
                            changed = True

    def segments_of(self, base: int, start: int, stop: int) -> list[tuple[int, int, int]]:
        cuts = sorted(c for c in self.cuts[base] if start <= c <= stop)
        return [(base, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:])]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def trace(model: nn.Module, example_input: torch.Tensor, *, min_group_size: int = 4) -> ChannelGraph:
    """Trace ``model`` with torch.fx and find its channel groups.

    Groups smaller than ``min_group_size`` channels stay discrete (too few nodes to interpolate).
    Raises :class:`UnsupportedGraphError` naming the first node whose channel semantics are unknown.
    """
    gm = model if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model)
    gm.eval()
    ShapeProp(gm).propagate(example_input)
    solver = _Solver()
    descs: dict[fx.Node, Desc] = {}
    spatial: dict[fx.Node, int] = {}  # flatten(N,C,H,W) -> features = C * H*W: remembers H*W
    layers: list[LayerSite] = []
    fixed: list[Desc] = []
    modules = dict(gm.named_modules())

    def shape(n: fx.Node) -> tuple[int, ...]:
        meta = n.meta.get("tensor_meta")
        if meta is None or not hasattr(meta, "shape"):
            raise UnsupportedGraphError(f"node {n.name!r} ({n.op} {n.target}) does not produce one tensor")
        return tuple(meta.shape)

    def desc_of(arg) -> Desc | None:
        return descs.get(arg) if isinstance(arg, fx.Node) else None

    def unsupported(n: fx.Node, why: str) -> UnsupportedGraphError:
        return UnsupportedGraphError(f"cannot convert node {n.name!r} ({n.op} {n.target!r}): {why}")

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            s = shape(n)
            descs[n] = solver.new_base(s[1] if len(s) > 1 else 1)
            fixed.append(descs[n])
        elif n.op == "output":
            outs = n.args[0] if isinstance(n.args[0], (tuple, list)) else (n.args[0],)
            for o in outs:
                if desc_of(o) is not None:
                    fixed.append(descs[o])
        elif n.op == "get_attr":
            raise unsupported(n, "direct parameter access; wrap it in a module (Conv2d, Linear, BatchNorm)")
        elif n.op == "call_module":
            m = modules[n.target]
            x = desc_of(n.args[0])
            if x is None:
                raise unsupported(n, "its input is not a traced tensor")
            if isinstance(m, nn.Conv2d):
                c_in, c_out, g = m.in_channels, m.out_channels, m.groups
                if g == 1:
                    out = solver.new_base(c_out)
                    layers.append(LayerSite(n.target, m, "dense", out, x, 1))
                elif g == c_in == c_out:
                    out = x
                    layers.append(LayerSite(n.target, m, "depthwise", out))
                else:
                    for k in range(1, g):
                        solver.cut(x, k * c_in // g)
                    out = solver.new_base(c_out)
                    for k in range(1, g):
                        solver.cut(out, k * c_out // g)
                    layers.append(LayerSite(n.target, m, "dense", out, x, g))
                descs[n] = out
            elif isinstance(m, nn.Linear):
                if len(shape(n.args[0])) != 2:
                    raise unsupported(n, "Linear on a tensor that is not (batch, features)")
                hw = spatial.get(n.args[0], 1)
                if sum(p.size for p in x) * hw != m.in_features:
                    raise unsupported(n, "cannot map its input features to channels")
                out = solver.new_base(m.out_features)
                layers.append(LayerSite(n.target, m, "dense", out, x, 1, hw))
                descs[n] = out
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                layers.append(LayerSite(n.target, m, "affine", x))
                descs[n] = x
            elif isinstance(m, nn.Flatten):
                _flatten(n, x, m.start_dim, shape, descs, spatial, unsupported)
            elif isinstance(m, _PASS_MODULES):
                descs[n] = x
                if n.args[0] in spatial:
                    spatial[n] = spatial[n.args[0]]
            else:
                raise unsupported(n, f"module type {type(m).__name__} is not supported")
        elif n.op in ("call_function", "call_method"):
            _call(n, solver, descs, spatial, shape, unsupported)
        else:  # pragma: no cover - fx has no other ops
            raise unsupported(n, "unknown fx op")
    return _build(gm, solver, descs, layers, fixed, min_group_size)


def _flatten(n, x, start_dim, shape, descs, spatial, unsupported) -> None:
    s = shape(n.args[0])
    if start_dim != 1 or len(s) < 2:
        raise unsupported(n, "only flatten(x, 1) of a (N, C, ...) tensor is supported")
    hw = 1
    for d in s[2:]:
        hw *= d
    descs[n] = x
    spatial[n] = hw * spatial.get(n.args[0], 1)


def _call(n, solver, descs, spatial, shape, unsupported) -> None:
    target = n.target
    args = n.args
    flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else (a,))]
    tensor_args = [a for a in flat if isinstance(a, fx.Node) and a in descs]
    if n.op == "call_method" and target in ("size", "dim"):
        return
    if n.op == "call_function" and target is getattr and args[1] in ("shape",):
        return
    if n.op == "call_function" and target is operator.getitem and args[0] not in descs:
        return
    if not tensor_args:
        return  # arithmetic on sizes / constants
    x = descs[tensor_args[0]]
    if (n.op == "call_function" and target in _PASS_FUNCTIONS) or (n.op == "call_method" and target in _PASS_METHODS):
        descs[n] = x
        if tensor_args[0] in spatial:
            spatial[n] = spatial[tensor_args[0]]
        return
    if (n.op == "call_function" and target in _BINARY) or (n.op == "call_method" and target in _BINARY_METHODS):
        _binary(n, tensor_args, solver, descs, shape, unsupported)
        return
    if n.op == "call_function" and target is torch.cat:
        parts = args[0]
        dim = args[1] if len(args) > 1 else n.kwargs.get("dim", 0)
        rank = len(shape(n))
        if dim % rank == 1:
            descs[n] = tuple(p for t in parts for p in descs[t])
        else:
            for t in parts[1:]:
                solver.same(descs[parts[0]], descs[t])
            descs[n] = descs[parts[0]]
        return
    if (n.op == "call_function" and target is torch.flatten) or (n.op == "call_method" and target == "flatten"):
        start = args[1] if len(args) > 1 else n.kwargs.get("start_dim", 0 if n.op == "call_function" else 0)
        _flatten(n, x, start, shape, descs, spatial, unsupported)
        return
    if n.op == "call_method" and target in ("view", "reshape"):
        s_in, s_out = shape(args[0]), shape(n)
        if len(s_out) == 2 and s_out[0] == s_in[0]:
            _flatten(n, x, 1, shape, descs, spatial, unsupported)
            return
        raise unsupported(n, f"reshape {s_in} -> {s_out} mixes the channel axis")
    if (n.op == "call_method" and target in ("mean", "amax", "sum")) or (
        n.op == "call_function" and target in (torch.mean, torch.amax, torch.sum)
    ):
        dims = args[1] if len(args) > 1 else n.kwargs.get("dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        rank = len(shape(args[0]))
        if dims and all(d % rank >= 2 for d in dims):
            descs[n] = x
            return
        raise unsupported(n, "reduction over the channel axis")
    raise unsupported(n, "operation not supported by the channel tracer")


def _binary(n, tensor_args, solver, descs, shape, unsupported) -> None:
    if len(tensor_args) == 1:
        descs[n] = descs[tensor_args[0]]
        return
    a, b = tensor_args[:2]
    sa, sb, so = shape(a), shape(b), shape(n)
    ca = sa[1] if len(sa) > 1 else 1
    cb = sb[1] if len(sb) > 1 else 1
    if ca == cb:
        solver.same(descs[a], descs[b])
        descs[n] = descs[a]
    elif ca == 1 or cb == 1:
        descs[n] = descs[a] if ca != 1 else descs[b]
    else:
        raise unsupported(n, f"channel counts {ca} and {cb} do not broadcast")
    if len(so) > 1 and so[1] != sum(p.size for p in descs[n]):
        raise unsupported(n, "output channels do not match its inputs")


def _build(gm, solver, descs, layers, fixed, min_group_size) -> ChannelGraph:
    for d in list(descs.values()) + [s.in_desc for s in layers]:
        solver.register(d)
    solver.solve()
    uf = _UnionFind()
    for base_a, start_a, base_b, start_b, n in solver.equal:
        sa = solver.segments_of(base_a, start_a, start_a + n)
        sb = solver.segments_of(base_b, start_b, start_b + n)
        for x, y in zip(sa, sb):
            uf.union(x, y)
    all_segments = [seg for b, size in enumerate(solver.sizes) for seg in solver.segments_of(b, 0, size)]
    roots = sorted({uf.find(s) for s in all_segments})
    gid = {r: i for i, r in enumerate(roots)}
    group_of = {s: gid[uf.find(s)] for s in all_segments}
    groups = [Group(i, r[2] - r[1], True) for i, r in enumerate(roots)]

    cache: dict[Desc, tuple[int, ...]] = {}

    def to_groups(desc: Desc) -> tuple[int, ...]:
        if desc not in cache:
            cache[desc] = tuple(group_of[s] for p in desc for s in solver.segments_of(p.base, p.start, p.stop))
        return cache[desc]

    for d in fixed:
        for g in to_groups(d):
            groups[g].resizable = False
    for g in groups:
        if g.size < min_group_size:
            g.resizable = False
    for site in layers:
        for g in to_groups(site.out_desc):
            groups[g].members.append(f"{site.name}.out")
        for g in to_groups(site.in_desc):
            groups[g].members.append(f"{site.name}.in")
    for d in list(descs.values()):
        to_groups(d)
    return ChannelGraph(gm, groups, layers, cache)
