"""Finding the coupled channel axes of a traced network: the channel *groups*.

The model is traced (``tracing.trace_module``) and every node is given to its channel rule
(``rules``): rules describe each tensor's channel axis as pieces of *base* axes, create bases,
demand equalities (residual add, gating multiply, concat members of a non-channel concat), cuts
(grouped conv, splits, slices), and declare the parameterised layers.

Solving those constraints yields atomic *segments* (base, start, stop), and the union of segments
that must stay identical is a **group**: one continuous axis with one partition. A concat output is
simply a sequence of several groups (a composite group). Groups touching the model input or output,
or an operation without a rule (*opaque*), stay discrete: ``Group.why`` says why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from inn_mobile.core import rules
from inn_mobile.core.rules import Axis, Desc, LayerSite, Piece
from inn_mobile.core.tracing import record_values, trace_module
from inn_mobile.errors import UnsupportedGraphError

__all__ = ["Axis", "ChannelGraph", "Desc", "Group", "LayerSite", "Piece", "Rewrite", "UnsupportedGraphError", "trace"]


@dataclass
class Group:
    """One continuous channel axis shared by several tensors."""

    id: int
    size: int
    resizable: bool
    members: list[str] = field(default_factory=list)
    why: str = ""  # for a fixed group: model input / output, opaque node, too small, constant


@dataclass(frozen=True)
class Rewrite:
    """A constant in node ``node``'s arguments (at ``path``) that counts channels: at any width it
    becomes ``scale * sum(sizes[g] for g in groups)`` (slice bounds, split sizes, reshape sizes)."""

    node: str
    path: tuple
    groups: tuple[int, ...]
    scale: int = 1

    def value(self, sizes: dict[int, int]) -> int:
        return self.scale * sum(sizes[g] for g in self.groups)


@dataclass
class ChannelGraph:
    """The traced graph, its parameterised layers, and their channel axes as group sequences."""

    module: fx.GraphModule
    groups: list[Group]
    layers: list[LayerSite]
    segments: dict[Desc, tuple[int, ...]]
    rewrites: list[Rewrite] = field(default_factory=list)
    opaque: dict[str, str] = field(default_factory=dict)  # node name -> why its channels stay fixed

    def axis_groups(self, desc: Desc) -> tuple[int, ...]:
        return self.segments[desc]

    def table(self) -> str:
        """A readable table of the groups: id, size, resizable (or why fixed), members."""
        rows = [f"{'group':>5}  {'size':>5}  {'resize':>6}  members"]
        for g in self.groups:
            members = ", ".join(g.members[:6]) + (f", ... (+{len(g.members) - 6})" if len(g.members) > 6 else "")
            why = f"  [fixed: {g.why}]" if not g.resizable and g.why else ""
            rows.append(f"{g.id:>5}  {g.size:>5}  {'yes' if g.resizable else 'fixed':>6}  {members}{why}")
        return "\n".join(rows)


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


class _Params:
    """Direct parameter reads (``get_attr``, e.g. ConvNeXt's layer scale ``gamma``): a per-channel
    vector bound by elementwise ops to an axis resizes with it; one read anywhere else stays fixed."""

    def __init__(self) -> None:
        self.view: dict[fx.Node, tuple[str, int]] = {}  # node -> (parameter target, its vector dim here)
        self.bound: dict[str, list[Axis]] = {}
        self.escaped: set[str] = set()
        self.shape: dict[str, tuple[int, ...]] = {}


_VIEW_LIKE = {"reshape", "view", "unsqueeze", "squeeze", "to", "float", "type_as", "contiguous", "__getitem__",
              "getitem", "flatten", "expand"}


class _Context:
    """The :class:`rules.RuleContext` the rules talk to while walking the graph."""

    def __init__(self, values: dict[fx.Node, Any], modules: dict[str, nn.Module]) -> None:
        self.values = values
        self.modules = modules
        self.solver = _Solver()
        self.axes: dict[fx.Node, Any] = {}
        self.spatials: dict[fx.Node, int] = {}
        self.layers: list[LayerSite] = []
        self.fixed: list[tuple[Desc, str]] = []
        self.rewrites: list[tuple[str, tuple, Desc, int]] = []
        self.opaque_nodes: dict[str, str] = {}
        self.params = _Params()
        self.current: fx.Node | None = None

    # ---- reads
    def value(self, arg: Any) -> Any:
        return self.values.get(arg) if isinstance(arg, fx.Node) else arg

    def axis(self, arg: Any) -> Any:
        return self.axes.get(arg) if isinstance(arg, fx.Node) else None

    def spatial(self, arg: Any) -> int:
        return self.spatials.get(arg, 1) if isinstance(arg, fx.Node) else 1

    def axis_or_fixed(self, arg: Any, dim: int = 1) -> Axis:
        a = self.axis(arg)
        if isinstance(a, Axis):
            return a
        v = self.value(arg)
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else ()
        dim = dim % len(shape) if shape else 0
        a = self.new(shape[dim] if shape else 1, dim)
        self.fix(a, f"{getattr(arg, 'name', 'a constant')} (not a traced channel axis)")
        return a

    # ---- writes
    def new(self, size: int, dim: int) -> Axis:
        return Axis(self.solver.new_base(size), dim)

    def set(self, node: fx.Node, axis: Any) -> None:
        if axis is not None and not self._fits(self.values.get(node), axis, self.spatials.get(node, 1)):
            return self.opaque(node, "its channel rule does not match the traced shape")
        self.axes[node] = axis

    def set_spatial(self, node: fx.Node, hw: int) -> None:
        if hw > 1:
            self.spatials[node] = hw

    def same(self, a: Axis, b: Axis) -> None:
        self.solver.same(a.desc, b.desc)

    def cut(self, axis: Axis, position: int) -> None:
        self.solver.cut(axis.desc, position)

    def fix(self, axis: Axis, why: str | None = None) -> None:
        node = self.current.name if self.current is not None else "?"
        self.fixed.append((axis.desc, why or f"{node} (constant over the channels)"))

    def layer(self, site: LayerSite) -> None:
        self.layers.append(site)

    def rewrite(self, node: fx.Node, path: tuple, desc: Desc, scale: int = 1) -> None:
        self.rewrites.append((node.name, path, desc, scale))

    def bind_param(self, arg: Any, axis: Axis, out_rank: int) -> bool:
        view = self.params.view.get(arg) if isinstance(arg, fx.Node) else None
        if view is None:
            return False
        target, vdim = view
        v = self.values[arg]
        if vdim + out_rank - v.dim() != axis.dim or v.shape[vdim] != axis.size:
            self.params.escaped.add(target)
            return False
        self.params.bound.setdefault(target, []).append(axis)
        return True

    def opaque(self, node: fx.Node, why: str) -> None:
        where = node.target if node.op == "call_module" else node.name
        reason = f"{where}: {why}"
        self.opaque_nodes[node.name] = why
        for a in _flat_args(node):
            ax = self.axes.get(a)
            for x in ax if isinstance(ax, tuple) else (ax,):
                if isinstance(x, Axis):
                    self.fixed.append((x.desc, reason))
            if a in self.params.view:
                self.params.escaped.add(self.params.view[a][0])
        out = self.values.get(node)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        made = []
        for o in outs:
            if isinstance(o, torch.Tensor) and o.dim() >= 1:
                dim = 1 if o.dim() >= 2 else 0
                a = self.new(o.shape[dim], dim)
                self.fixed.append((a.desc, reason))
                made.append(a)
            else:
                made.append(None)
        self.axes[node] = tuple(made) if isinstance(out, (tuple, list)) else made[0]

    @staticmethod
    def _fits(value: Any, axis: Any, spatial: int = 1) -> bool:
        """Does the traced value have ``axis.size`` channels (times the flattened ``spatial``) there?"""
        if isinstance(axis, tuple):
            return isinstance(value, (tuple, list)) and len(value) == len(axis) and all(
                a is None or _Context._fits(v, a) for v, a in zip(value, axis))
        return (isinstance(value, torch.Tensor) and 0 <= axis.dim < value.dim()
                and value.shape[axis.dim] == axis.size * spatial)

    # ---- parameter reads
    def track_params(self, node: fx.Node) -> bool:
        """Follow parameter vectors through view-like ops; returns True if the node was one of those."""
        src = [a for a in _flat_args(node) if a in self.params.view]
        if not src:
            return False
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        v = self.values.get(node)
        if node.args and node.args[0] in self.params.view and name in _VIEW_LIKE and isinstance(v, torch.Tensor):
            target, _ = self.params.view[node.args[0]]
            size = self.params.shape[target]
            big = [d for d in range(v.dim()) if v.shape[d] != 1]
            if len(big) == 1 and v.shape[big[0]] == max(size):
                self.params.view[node] = (target, big[0])
                return True
        if rules.node_rule(node) not in (rules._broadcast,):
            for a in src:
                self.params.escaped.add(self.params.view[a][0])
        return False


def _flat_args(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda a: out.append(a))
    return out


def trace(model: nn.Module, example_input: torch.Tensor, *, min_group_size: int = 4) -> ChannelGraph:
    """Trace ``model`` and find its channel groups.

    ``model`` may be an ``fx.GraphModule`` (used as is) or any module (traced on a copy, see
    ``tracing``). Groups smaller than ``min_group_size`` channels stay discrete (too few nodes to
    interpolate); so do the channels of operations without a rule (``ChannelGraph.opaque``).
    """
    if isinstance(model, fx.GraphModule):
        gm, opaque = model, {}
    else:
        gm, opaque = trace_module(copy.deepcopy(model).eval(), (example_input,))
    return analyse(gm, example_input, min_group_size=min_group_size, opaque_modules=opaque)


def analyse(gm: fx.GraphModule, example_input: torch.Tensor, *, min_group_size: int = 4,
            opaque_modules: dict[str, str] | None = None) -> ChannelGraph:
    """Run the channel rules over a traced graph (see :func:`trace`)."""
    gm.eval()
    values = record_values(gm, (example_input,))
    modules = dict(gm.named_modules())
    ctx = _Context(values, modules)
    forced = set(opaque_modules or {})
    for n in gm.graph.nodes:
        ctx.current = n
        v = values.get(n)
        if n.op == "placeholder":
            if isinstance(v, torch.Tensor):
                a = ctx.new(v.shape[1] if v.dim() > 1 else (v.shape[0] if v.dim() else 1), 1 if v.dim() > 1 else 0)
                ctx.axes[n] = a
                ctx.fixed.append((a.desc, "model input"))
        elif n.op == "output":
            for a in _flat_args(n):
                ax = ctx.axes.get(a)
                for x in ax if isinstance(ax, tuple) else (ax,):
                    if isinstance(x, Axis):
                        ctx.fixed.append((x.desc, "model output"))
                if a in ctx.params.view:
                    ctx.params.escaped.add(ctx.params.view[a][0])
        elif n.op == "get_attr":
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and sum(s != 1 for s in v.shape) == 1:
                ctx.params.view[n] = (n.target, next(d for d in range(v.dim()) if v.shape[d] != 1))
                ctx.params.shape[n.target] = tuple(v.shape)
        elif n.op == "call_module":
            m = modules[n.target]
            rule = None if n.target in forced else rules.module_rule(m)
            if rule is None:
                ctx.opaque(n, f"opaque module {type(m).__name__}" + (f" ({opaque_modules[n.target]})"
                                                                     if n.target in forced else ""))
            else:
                rule(ctx, n, m)
        else:
            if ctx.track_params(n):
                continue
            rule = rules.node_rule(n)
            touches = any(isinstance(ctx.axes.get(a), (Axis, tuple)) for a in _flat_args(n))
            if rule is not None:
                rule(ctx, n)
            elif touches:
                ctx.opaque(n, f"no channel rule for {n.op} {getattr(n.target, '__name__', n.target)}")
    gm.recompile()
    return _build(gm, ctx, min_group_size)


def _build(gm: fx.GraphModule, ctx: _Context, min_group_size: int) -> ChannelGraph:
    solver = ctx.solver
    layers = list(ctx.layers)
    for target, axes in ctx.params.bound.items():
        if target in ctx.params.escaped:
            ctx.fixed.extend((a.desc, f"parameter {target} also used elsewhere") for a in axes)
            continue
        for a in axes[1:]:
            solver.same(axes[0].desc, a.desc)
        shape = ctx.params.shape[target]
        vdim = next(d for d in range(len(shape)) if shape[d] != 1)
        layers.append(LayerSite(target, None, "depthwise", axes[0].desc,
                                param_shape=tuple(-1 if d == vdim else s for d, s in enumerate(shape))))
    descs = [a for ax in ctx.axes.values() for a in (ax if isinstance(ax, tuple) else (ax,)) if isinstance(a, Axis)]
    for d in [a.desc for a in descs] + [s.in_desc for s in layers] + [d for d, _ in ctx.fixed]:
        solver.register(d)
    for _, _, d, _ in ctx.rewrites:
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

    for d, why in ctx.fixed:
        for g in to_groups(d):
            if groups[g].resizable:
                groups[g].resizable, groups[g].why = False, why
    for g in groups:
        if g.size < min_group_size and g.resizable:
            g.resizable, g.why = False, f"fewer than {min_group_size} channels"
    for site in layers:
        for g in to_groups(site.out_desc):
            groups[g].members.append(f"{site.name}.out")
        for g in to_groups(site.in_desc):
            groups[g].members.append(f"{site.name}.in")
    for a in descs:
        to_groups(a.desc)
    rewrites = [Rewrite(node, path, to_groups(d), scale) for node, path, d, scale in ctx.rewrites]
    return ChannelGraph(gm, groups, layers, cache, rewrites, dict(ctx.opaque_nodes))
