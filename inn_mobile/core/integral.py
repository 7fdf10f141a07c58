"""``IntegralModel``: a network whose layers are continuous along their channel axes.

Every parameterised layer keeps *nodes* ``Λ`` instead of weights:

- ``dense`` (Conv2d incl. grouped, Linear): ``Λ[M_out, M_in / blocks, taps]``;
  ``W[o, i, t] = (Σ_b w_in[i, b] · Σ_a w_out[o, a] · Λ[idx_out[o, a], idx_in[i, b], t]) · q_i``
  (tap weights and quadrature computed in float64 and rounded to float32; the sums run in float32,
  output-axis sum first: exactly the C core's order, so both give identical bits. That order puts
  the gather-like input-axis pass on the ``n_out`` sampled rows instead of all ``M_out`` node rows).
- ``depthwise``: ``Λ[M, 1, taps]`` sampled along its single axis, no quadrature.
- ``affine`` (a BatchNorm not foldable into a conv, a LayerNorm/GroupNorm over channels): per-channel
  scale and shift vectors.
- ``depthwise`` with module ``param``: a bare per-channel parameter read by the graph (a layer
  scale), ``Λ[M, 1, 1]``.
- biases and affine vectors are 1-D functions of the output axis (no quadrature).

Constants in the graph that count channels (slice bounds, split sizes, reshape sizes) are
rewritten at every width (``rewrites``, from the channel tracer).

An axis is a sequence of channel groups (a concat produces several); each group is sampled with its
own partition, so sampling a layer means concatenating its groups' tap tables.

Per-width normalisation (``IntegralModel.norms``, made by ``finetune.fit(..., switchable=True)``):
at each calibrated width, a layer's output channel ``o`` is scaled by ``a[o]`` and shifted by
``c[o]`` after discretisation: ``W'[o] = W[o] · a[o]``, ``b'[o] = b[o] · a[o] + c[o]`` (float32, the
C core's order). That is a BatchNorm private to the width, folded; narrow widths need their own
statistics, which one shared set of nodes cannot give them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import fx, nn

from inn_mobile.core import kernel
from inn_mobile.core.channels import Group, Rewrite
from inn_mobile.core.graph_state import GraphState


class AxisSampler(NamedTuple):
    """How one group is sampled: tap table into its nodes and quadrature weights per sample."""

    idx: torch.Tensor  # [n, 4] int64, node indices local to the group
    w: torch.Tensor  # [n, 4] float64 tap weights
    q: torch.Tensor  # [n] float64 quadrature weights (1 for fixed groups)


@dataclass(frozen=True)
class LayerSpec:
    """One parameterised layer: which groups its axes are made of, and how to rebuild it."""

    name: str
    kind: str  # "dense" | "depthwise" | "affine"
    module: str  # "conv2d" | "linear" | "batchnorm" | "layernorm" | "groupnorm" | "param"
    out_groups: tuple[int, ...]
    in_groups: tuple[int, ...] = ()
    blocks: int = 1
    taps: int = 1
    in_spatial: int = 1
    has_bias: bool = False
    conv: dict = field(default_factory=dict)  # conv: kernel_size, stride, ...; norms: eps; param: shape

    def out_channels(self, sizes: dict[int, int]) -> int:
        """Output channels at complete per-group ``sizes`` (the sum over the output axis's groups)."""
        return sum(sizes[g] for g in self.out_groups)


def node_key(name: str, what: str) -> str:
    """The key of a layer's tensor (``weight``, ``bias``, ``scale``, ``shift``) in ``IntegralModel.nodes``
    (a ParameterDict, whose keys may not contain dots)."""
    return f"{name.replace('.', '__')}__{what}"


SizesKey = tuple[tuple[int, int], ...]
Norm = tuple[torch.Tensor, torch.Tensor]  # (a, c), float32 [n_out] each


def sizes_key(sizes: dict[int, int]) -> SizesKey:
    """A hashable form of complete per-group sizes (what per-width state is keyed by)."""
    return tuple(sorted(sizes.items()))


class IntegralModel(nn.Module):
    """A converted network: groups, layer specs, nodes (trainable), and an fx template to rebuild.

    Use :meth:`resize` to get an ordinary ``nn.Module`` at any width.
    """

    def __init__(
        self,
        template: fx.GraphModule | None,
        groups: list[Group],
        layers: list[LayerSpec],
        nodes: dict[str, torch.Tensor],
        *,
        quadrature: kernel.Quadrature = "trapezoid",
        rewrites: list[Rewrite] | None = None,
    ) -> None:
        super().__init__()
        if quadrature not in kernel.QUADRATURES:
            raise ValueError(f"unknown quadrature {quadrature!r}; choose one of {kernel.QUADRATURES}")
        self.template = template
        self.groups = groups
        self.layers = layers
        self.quadrature = quadrature
        self.rewrites = list(rewrites or [])
        self.nodes = nn.ParameterDict({k: nn.Parameter(v.detach().clone()) for k, v in nodes.items()})
        # trained partitions, float32, keyed by (group, width): a partition is tied to its point count
        self.partitions: dict[tuple[int, int], torch.Tensor] = {}
        # per-width normalisation, keyed by the complete sizes: {layer name: (a, c)} (module doc)
        self.norms: dict[SizesKey, dict[str, Norm]] = {}

    def __getstate__(self) -> dict:
        """Pickled with the template as its nodes (:class:`GraphState`: fx's own pickling renames them),
        without ``convert``'s ``channel_graph`` (the tracer's analysis, which holds the traced graph's
        nodes themselves; ``None`` once unpickled)."""
        state = dict(self.__dict__)
        if "channel_graph" in state:
            state["channel_graph"] = None
        state["_modules"] = dict(state["_modules"])
        if state["_modules"].get("template") is not None:
            state["_modules"]["template"] = GraphState.of(state["_modules"]["template"])
        return state

    def __setstate__(self, state: dict) -> None:
        template = state["_modules"].get("template")
        if isinstance(template, GraphState):
            state["_modules"]["template"] = template.rebuild()
        super().__setstate__(state)

    # ------------------------------------------------------------------ sizes
    def full_sizes(self) -> dict[int, int]:
        """Every group at its original width."""
        return {g.id: g.size for g in self.groups}

    def sizes_at(self, ratio: float, *, multiple_of: int = 1, min_size: int = 2) -> dict[int, int]:
        """Per-group widths for a global ``ratio`` (fixed groups keep their size).

        Each resizable group gets ``round(ratio * size)`` channels, rounded to ``multiple_of`` where
        the group is at least that large, and never below ``min_size``.
        """
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"width ratio must be in (0, 1], got {ratio}")
        sizes = {}
        for g in self.groups:
            if not g.resizable:
                sizes[g.id] = g.size
                continue
            n = max(min_size, round(ratio * g.size))
            if multiple_of > 1 and g.size >= multiple_of:
                n = max(multiple_of, int(round(n / multiple_of)) * multiple_of)
            sizes[g.id] = min(n, g.size)
        return sizes

    def check_sizes(self, sizes: dict[int, int]) -> dict[int, int]:
        """Complete ``sizes`` with full widths and validate it; returns the completed dict."""
        out = self.full_sizes()
        for gid, n in sizes.items():
            if gid not in out:
                raise ValueError(f"no group {gid}; the model has groups 0..{len(self.groups) - 1}")
            g = self.groups[gid]
            if not g.resizable and n != g.size:
                raise ValueError(f"group {gid} is fixed at {g.size} channels (model input/output or too small)")
            if n < 2 and g.resizable:
                raise ValueError(f"group {gid}: width must be at least 2, got {n}")
            out[gid] = int(n)
        return out

    def partition(self, gid: int, n: int) -> torch.Tensor:
        """The sample points of group ``gid`` at width ``n``: a stored trained partition or uniform."""
        p = self.partitions.get((gid, n))
        if p is None:
            return kernel.uniform_partition(n)
        if self.quadrature == "simpson":
            raise ValueError("simpson quadrature needs uniform partitions; use trapezoid with trained partitions")
        return p.to(torch.float64)

    def sampler(self, gid: int, n: int) -> AxisSampler:
        """Tap table and quadrature for group ``gid`` at width ``n``."""
        g = self.groups[gid]
        if not g.resizable:
            idx, w = kernel.identity_taps(g.size)
            return AxisSampler(idx, w, torch.ones(g.size, dtype=torch.float64))
        points = self.partition(gid, n)
        idx, w = kernel.taps(points, g.size)
        return AxisSampler(idx, w, kernel.quadrature(points, self.quadrature))

    # ------------------------------------------------------------ discretise
    def samplers(self, sizes: dict[int, int] | None = None) -> dict[int, AxisSampler]:
        sizes = self.check_sizes(sizes or {})
        return {gid: self.sampler(gid, n) for gid, n in sizes.items()}

    def discretize(self, samplers: dict[int, AxisSampler], *,
                   signed_zeros: bool = True) -> dict[str, dict[str, torch.Tensor]]:
        """Float32 weights of every layer for the given per-group samplers (differentiable).

        Returns ``{layer name: {"weight": W, "bias": b}}`` (affine layers: ``scale`` and ``shift``).
        ``signed_zeros=False``: the same values, a zero's sign aside (``kernel.resample``), in fewer
        operations, for training; what is shipped or compared with the core keeps the default.
        """
        out: dict[str, dict[str, torch.Tensor]] = {}
        for spec in self.layers:
            out[spec.name] = self._layer(spec, samplers, signed_zeros)
        return out

    def weights_at(self, sizes: dict[int, int] | None = None, *,
                   signed_zeros: bool = True) -> dict[str, dict[str, torch.Tensor]]:
        """The weights deployed at ``sizes`` (differentiable): :meth:`discretize`, then the width's
        normalisation if the model has per-width normalisation (only calibrated widths have one)."""
        sizes = self.check_sizes(sizes or {})
        weights = self.discretize(self.samplers(sizes), signed_zeros=signed_zeros)
        if not self.norms:
            return weights
        norm = self.norms.get(sizes_key(sizes))
        if norm is None:
            known = "; ".join(self.width_report(dict(k)) for k in self.norms)
            raise ValueError(f"this model has per-width normalisation, calibrated only at: {known}. "
                             f"{self.width_report(sizes)} is not one of them: use one of those widths, or "
                             "fine-tune with switchable=True including it")
        for name, (a, c) in norm.items():
            r = weights[name]
            r["weight"] = r["weight"] * a.reshape(-1, *([1] * (r["weight"].ndim - 1)))
            r["bias"] = r["bias"] * a + c
        return weights

    def calibrated_sizes(self) -> list[dict[int, int]]:
        """The widths that have per-width normalisation, widest first (empty without it)."""
        return sorted((dict(k) for k in self.norms), key=lambda s: -sum(s.values()))

    def axis(self, groups: tuple[int, ...], samplers: dict[int, AxisSampler]) -> AxisSampler:
        """The sampler of a layer axis made of several groups (concatenated pieces), node indices offset per piece."""
        idx, w, q = [], [], []
        offset = 0
        for gid in groups:
            s = samplers[gid]
            idx.append(s.idx + offset)
            w.append(s.w)
            q.append(s.q)
            offset += self.groups[gid].size
        return AxisSampler(torch.cat(idx), torch.cat(w), torch.cat(q))

    def _layer(self, spec: LayerSpec, samplers: dict[int, AxisSampler], signed_zeros: bool) -> dict[str, torch.Tensor]:
        out_axis = self.axis(spec.out_groups, samplers)
        result: dict[str, torch.Tensor] = {}

        def along_out(v: torch.Tensor) -> torch.Tensor:
            return kernel.resample(v, 0, out_axis.idx, out_axis.w.float(), signed_zeros=signed_zeros)

        if spec.kind == "affine":
            for what in ("scale", "shift"):
                result[what] = along_out(self.nodes[node_key(spec.name, what)])
            return result
        lam = self.nodes[node_key(spec.name, "weight")]
        if spec.kind == "depthwise":
            result["weight"] = along_out(lam)
        else:
            result["weight"] = discretize_dense(lam, out_axis, self.axis(spec.in_groups, samplers), spec.blocks,
                                                signed_zeros=signed_zeros)
        if spec.has_bias:
            result["bias"] = along_out(self.nodes[node_key(spec.name, "bias")])
        return result

    # ---------------------------------------------------------------- rebuild
    def resize(
        self, ratio: float | None = None, *, sizes: dict[int, int] | None = None, multiple_of: int = 1
    ) -> fx.GraphModule:
        """An ordinary network (plain ``Conv2d``/``Linear``/``BatchNorm``) at the requested width.

        Give either a global ``ratio`` in (0, 1] or explicit per-group ``sizes``.
        """
        if (ratio is None) == (sizes is None):
            raise ValueError("give exactly one of ratio= or sizes=")
        if ratio is not None:
            sizes = self.sizes_at(ratio, multiple_of=multiple_of)
        with torch.no_grad():
            weights = self.weights_at(sizes)
        return self.build(weights, self.check_sizes(sizes))

    def build(self, weights: dict[str, dict[str, torch.Tensor]], sizes: dict[int, int] | None = None) -> fx.GraphModule:
        """Rebuild the fx template with plain modules holding ``weights`` (as from :meth:`discretize`).

        ``sizes`` (complete per-group sizes) sets the graph's channel-counting constants; without
        it they are read off the weights' shapes."""
        if self.template is None:
            raise RuntimeError("this model was loaded from a bundle without its torch graph; resize the original")
        modules = dict(self.template.named_modules())
        root: dict[str, object] = {}
        for n in self.template.graph.nodes:
            if n.op == "call_module" and n.target not in root:
                root[n.target] = copy.deepcopy(modules[n.target])
            elif n.op == "get_attr" and n.target not in root:
                root[n.target] = copy.deepcopy(_fetch(self.template, n.target))
        for spec in self.layers:
            if spec.module == "param":
                shape = [-1 if s == -1 else s for s in spec.conv["shape"]]
                root[spec.name] = nn.Parameter(weights[spec.name]["weight"].detach().reshape(shape).clone())
            else:
                root[spec.name] = _plain_module(spec, weights[spec.name])
        graph = copy.deepcopy(self.template.graph)
        if self.rewrites:
            sizes = sizes if sizes is not None else self._sizes_from(weights)
            by_name = {n.name: n for n in graph.nodes}
            for r in self.rewrites:
                node = by_name[r.node]
                node.args = _replace(node.args, r.path, r.value(sizes))
        gm = fx.GraphModule(root, graph)
        return gm.eval()

    def _sizes_from(self, weights: dict[str, dict[str, torch.Tensor]]) -> dict[int, int]:
        """Per-group sizes read off discretised weights (axes made of one group tell its size)."""
        sizes = {g.id: g.size for g in self.groups if not g.resizable}
        for spec in self.layers:
            w = weights[spec.name]
            t = w["scale"] if spec.kind == "affine" else w["weight"]
            if len(spec.out_groups) == 1:
                sizes[spec.out_groups[0]] = t.shape[0]
            if len(spec.in_groups) == 1 and spec.kind == "dense":
                sizes[spec.in_groups[0]] = t.shape[1] * spec.blocks
        missing = sorted({g for r in self.rewrites for g in r.groups} - set(sizes))
        if missing:
            raise ValueError(f"cannot tell the sizes of groups {missing} from the weights; pass sizes= to build")
        return sizes

    def width_report(self, sizes: dict[int, int]) -> str:
        sizes = self.check_sizes(sizes)
        return ", ".join(f"g{g.id}:{sizes[g.id]}/{g.size}" for g in self.groups if g.resizable)


def discretize_dense(lam: torch.Tensor, out_axis: AxisSampler, in_axis: AxisSampler, blocks: int, *,
                     signed_zeros: bool = True) -> torch.Tensor:
    """Sample a dense layer's nodes ``Λ[M_out, M_in/blocks, taps]`` on both axes (see module doc;
    ``signed_zeros``: :func:`kernel.resample`)."""
    m_in = lam.shape[1]
    n_out, n_in = out_axis.idx.shape[0] // blocks, in_axis.idx.shape[0] // blocks
    parts = []
    for j in range(blocks):
        rows = slice(j * n_out, (j + 1) * n_out)
        cols = slice(j * n_in, (j + 1) * n_in)
        outer = kernel.resample(lam, 0, out_axis.idx[rows], out_axis.w[rows].float(), signed_zeros=signed_zeros)
        inner = kernel.resample(outer, 1, in_axis.idx[cols] - j * m_in, in_axis.w[cols].float(),
                                signed_zeros=signed_zeros)
        parts.append(inner * in_axis.q[cols].float().reshape(1, -1, 1))
    return torch.cat(parts, 0) if blocks > 1 else parts[0]


def _fetch(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _replace(args, path: tuple, value: int):
    """``args`` with the entry at ``path`` (indices into tuples/lists, ``start``/``stop`` of a slice) set."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(args, slice):
        parts = {"start": args.start, "stop": args.stop, "step": args.step}
        parts[head] = _replace(parts[head], rest, value)
        return slice(parts["start"], parts["stop"], parts["step"])
    items = list(args)
    items[head] = _replace(items[head], rest, value)
    return type(args)(items) if isinstance(args, (tuple, list)) else items


def _plain_module(spec: LayerSpec, w: dict[str, torch.Tensor]) -> nn.Module:
    if spec.module in ("layernorm", "groupnorm"):
        n = w["scale"].numel()
        norm = (nn.LayerNorm(n, eps=spec.conv["eps"]) if spec.module == "layernorm"
                else nn.GroupNorm(spec.blocks, n, eps=spec.conv["eps"]))
        norm.weight.data.copy_(w["scale"])
        norm.bias.data.copy_(w["shift"])
        return norm.eval()
    if spec.module == "batchnorm":
        n = w["scale"].numel()
        bn = nn.BatchNorm2d(n, eps=0.0) if spec.conv.get("dims", 2) == 2 else nn.BatchNorm1d(n, eps=0.0)
        bn.weight.data.copy_(w["scale"])
        bn.bias.data.copy_(w["shift"])
        return bn.eval()
    weight = w["weight"]
    n_out = weight.shape[0]
    bias = w.get("bias")
    if spec.module == "linear":
        mod = nn.Linear(weight.shape[1] * weight.shape[2], n_out, bias=bias is not None)
        mod.weight.data.copy_(weight.reshape(n_out, -1))
    else:
        c = spec.conv
        groups = n_out if spec.kind == "depthwise" else spec.blocks
        n_in = n_out if spec.kind == "depthwise" else weight.shape[1] * spec.blocks
        mod = nn.Conv2d(n_in, n_out, c["kernel_size"], stride=c["stride"], padding=c["padding"],
                        dilation=c["dilation"], groups=groups, bias=bias is not None, padding_mode=c["padding_mode"])
        mod.weight.data.copy_(weight.reshape(mod.weight.shape))
    if bias is not None:
        mod.bias.data.copy_(bias)
    return mod.eval()
