"""``convert``: an ordinary PyTorch CNN in, an :class:`IntegralModel` out.

Steps: trace (``tracing``: fx with concrete values, library layers swapped for plain torch ones);
fold every BatchNorm that directly follows a conv/linear; find the channel groups (``channels`` and
its ``rules``); permute the channels of each resizable group for smoothness; divide the weights by
the full-width quadrature so that discretising at the original width gives the original model back;
check that it does, on the example input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from inn_mobile.core import kernel
from inn_mobile.core.channels import ChannelGraph, LayerSite, analyse
from inn_mobile.core.integral import IntegralModel, LayerSpec, node_key
from inn_mobile.core.permute import smooth_order
from inn_mobile.core.tracing import record_values, trace_module
from inn_mobile.errors import UnsupportedGraphError


@dataclass
class GroupSmoothness:
    """Mean neighbour distance of a group's normalised channel features, before/after permuting."""

    group: int
    before: float
    after: float


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold each BatchNorm whose input is a Conv2d/Linear used only by it (in place, eval mode)."""
    modules = dict(gm.named_modules())
    for n in list(gm.graph.nodes):
        bn = modules.get(n.target) if n.op == "call_module" else None
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or not isinstance(n.args[0], fx.Node):
            continue
        prev = n.args[0]
        layer = modules.get(prev.target) if prev.op == "call_module" else None
        if len(prev.users) != 1 or not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        fused = fuse_conv_bn_eval(layer, bn) if isinstance(layer, nn.Conv2d) else fuse_linear_bn_eval(layer, bn)
        _set_module(gm, prev.target, fused)
        n.replace_all_uses_with(prev)
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def convert(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    quadrature: kernel.Quadrature = "trapezoid",
    permute: bool = True,
    calibration: torch.Tensor | None = None,
    min_group_size: int = 4,
    check: bool = True,
) -> IntegralModel:
    """Turn ``model`` into an :class:`IntegralModel` whose full width reproduces ``model`` exactly.

    ``example_input`` is one batch the model accepts (used for tracing shapes only). The model is not
    modified. ``permute=False`` skips the smoothness ordering (faster; worse narrow widths).
    ``calibration`` (a few hundred unlabelled inputs) orders channels by how their *activations*
    correlate instead of by their weights: neighbours then carry similar signals, so sampling between
    them loses far less (measured in ``tools/bench_accuracy.py``). Full width is exact either way.
    The result has ``.channel_graph`` (print ``.channel_graph.table()``) and ``.smoothness``.
    ``check`` compares full width with ``model`` on ``example_input`` and raises
    :class:`UnsupportedGraphError` naming the module that differs.
    """
    gm, opaque = trace_module(copy.deepcopy(model).eval(), (example_input,))
    fold_batchnorm(gm)
    graph = analyse(gm, example_input, min_group_size=min_group_size, opaque_modules=opaque)
    specs = [_spec(graph, site) for site in graph.layers]
    tensors = {k: v for spec, site in zip(specs, graph.layers) for k, v in _tensors(spec, site, gm).items()}
    smoothness = []
    if permute:
        activations = _group_activations(gm, graph, specs, calibration) if calibration is not None else {}
        places: dict[int, list] = {}
        for spec in specs:  # one pass over the layers, not one per group (RegNet has ~800 groups)
            for gid, place in _places(spec, graph):
                places.setdefault(gid, []).append(place)
        for g in graph.groups:
            if g.resizable:
                smoothness.append(_permute_group(g.id, places[g.id], tensors, activations.get(g.id)))
    nodes = _init_nodes(specs, graph, tensors, quadrature)
    im = IntegralModel(gm, graph.groups, specs, nodes, quadrature=quadrature, rewrites=graph.rewrites)
    im.channel_graph = graph
    im.smoothness = smoothness
    if check:
        _check_full_width(im, model, example_input)
    return im


def _outputs(y) -> list[torch.Tensor]:
    """The tensors of a model output (a tensor, a tuple, or a dict such as a HuggingFace ModelOutput)."""
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        y = list(y.values())
    if isinstance(y, (tuple, list)):
        return [t for v in y for t in _outputs(v)]
    return []


@torch.no_grad()
def _check_full_width(im: IntegralModel, model: nn.Module, x: torch.Tensor, tol: float = 1e-4) -> None:
    """Full width must reproduce the model; if not, name the first node that differs (it needs a rule)."""
    want = _outputs(copy.deepcopy(model).eval()(x))
    got = _outputs(im.resize(1.0)(x))
    if len(want) == len(got) and all(a.shape == b.shape and _rel(a, b) <= tol for a, b in zip(got, want)):
        return
    plain = convert(model, x, permute=False, min_group_size=10**9, check=False)
    built = plain.resize(1.0)
    ref, mine = record_values(plain.template, (x,)), record_values(built, (x,))
    by_name = {n.name: v for n, v in mine.items()}
    for node, v in ref.items():
        w = by_name.get(node.name)
        if isinstance(v, torch.Tensor) and (not isinstance(w, torch.Tensor) or w.shape != v.shape or _rel(w, v) > tol):
            where = node.target if node.op == "call_module" else node.meta.get("nn_module_stack", {node.name: ""})
            path = where if isinstance(where, str) else next(reversed(where.values()), (node.name,))[0] or node.name
            raise UnsupportedGraphError(
                f"cannot reproduce {path!r} ({node.op} {getattr(node.target, '__name__', node.target)}) at full width; "
                "register a channel rule for it (inn_mobile.core.rules.register_module / register_function)")
    raise UnsupportedGraphError("the converted model does not reproduce the original outputs at full width")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def _spec(graph: ChannelGraph, site: LayerSite) -> LayerSpec:
    m = site.module
    out_groups = graph.axis_groups(site.out_desc)
    if m is None:  # a bare per-channel parameter: one sampled axis, like a depthwise kernel of one tap
        return LayerSpec(site.name, "depthwise", "param", out_groups, conv={"shape": site.param_shape})
    if isinstance(m, nn.Conv2d):
        conv = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                    padding_mode=m.padding_mode)
        taps = m.kernel_size[0] * m.kernel_size[1]
        in_groups = () if site.kind == "depthwise" else graph.axis_groups(site.in_desc)
        return LayerSpec(site.name, site.kind, "conv2d", out_groups, in_groups, site.blocks, taps, 1,
                         m.bias is not None, conv)
    if isinstance(m, nn.Linear):
        return LayerSpec(site.name, "dense", "linear", out_groups, graph.axis_groups(site.in_desc), 1,
                         site.in_spatial, site.in_spatial, m.bias is not None)
    if isinstance(m, nn.LayerNorm):
        return LayerSpec(site.name, "affine", "layernorm", out_groups, conv={"eps": m.eps})
    if isinstance(m, nn.GroupNorm):
        return LayerSpec(site.name, "affine", "groupnorm", out_groups, blocks=m.num_groups, conv={"eps": m.eps})
    dims = 2 if isinstance(m, nn.BatchNorm2d) else 1
    return LayerSpec(site.name, "affine", "batchnorm", out_groups, conv={"dims": dims})


def _tensors(spec: LayerSpec, site: LayerSite, gm: fx.GraphModule) -> dict[str, torch.Tensor]:
    """The layer's parameters in node layout, float64: weights ``[O, I/blocks, taps]``; a norm's
    per-channel ``scale`` and ``shift`` (BatchNorm: running statistics folded in)."""
    m = site.module
    if spec.module == "param":
        v = gm.get_parameter(spec.name) if spec.name in dict(gm.named_parameters()) else gm.get_buffer(spec.name)
        return {node_key(spec.name, "weight"): v.detach().double().reshape(-1, 1, 1)}
    if spec.kind == "affine":
        n = sum(p.size for p in site.out_desc)
        ones = torch.ones(n, dtype=torch.float64)
        weight = m.weight.detach().double() if m.weight is not None else ones
        bias = m.bias.detach().double() if m.bias is not None else torch.zeros_like(ones)
        if spec.module != "batchnorm":
            return {node_key(spec.name, "scale"): weight, node_key(spec.name, "shift"): bias}
        if m.running_var is None:
            raise UnsupportedGraphError(f"BatchNorm {spec.name!r} has no running statistics; convert a model "
                                        "with track_running_stats=True (eval statistics are folded)")
        scale = weight / torch.sqrt(m.running_var.double() + m.eps)
        shift = bias - m.running_mean.double() * scale
        return {node_key(spec.name, "scale"): scale, node_key(spec.name, "shift"): shift}
    w = m.weight.detach().double()
    out = {node_key(spec.name, "weight"): w.reshape(w.shape[0], -1, spec.taps)}
    if spec.has_bias:
        out[node_key(spec.name, "bias")] = m.bias.detach().double()
    return out


def _places(spec: LayerSpec, graph: ChannelGraph):
    """Every place a group occupies in this layer: ``(group, (key, rows, dim, positions))``."""
    sizes = [graph.groups[g].size for g in spec.out_groups]
    out_keys = ("scale", "shift") if spec.kind == "affine" else ("weight", "bias") if spec.has_bias else ("weight",)
    offset = 0
    for g, n in zip(spec.out_groups, sizes):
        for what in out_keys:
            yield g, (node_key(spec.name, what), None, 0, torch.arange(offset, offset + n))
        offset += n
    if not spec.in_groups:
        return
    m_in = sum(graph.groups[g].size for g in spec.in_groups) // spec.blocks
    m_out = sum(sizes) // spec.blocks
    offset = 0
    for g in spec.in_groups:
        n = graph.groups[g].size
        block = offset // m_in
        rows = slice(block * m_out, (block + 1) * m_out)
        start = offset - block * m_in
        yield g, (node_key(spec.name, "weight"), rows, 1, torch.arange(start, start + n))
        offset += n


def _group_activations(
    gm, graph, specs, calibration: torch.Tensor, max_samples: int = 65536
) -> dict[int, torch.Tensor]:
    """Per group, its channels' activations on ``calibration`` (``[channels, samples]``), read at the
    input of the first layer that consumes the group; each channel normalised to unit length."""
    found: dict[int, torch.Tensor] = {}
    hooks = []
    gen = torch.Generator().manual_seed(0)

    def hook_for(spec: LayerSpec):
        def hook(module, inputs, output):
            a = inputs[0].detach()
            a = a.transpose(0, 1).reshape(a.shape[1], -1)
            if a.shape[1] > max_samples:
                a = a[:, torch.randperm(a.shape[1], generator=gen)[:max_samples]]
            offset = 0
            for g in spec.in_groups:
                n = graph.groups[g].size
                if g not in found:
                    f = a[offset:offset + n].double()
                    found[g] = f / (f.norm(dim=1, keepdim=True) + 1e-12)
                offset += n
        return hook

    for spec in specs:
        if spec.kind == "dense" and spec.module == "conv2d":
            hooks.append(gm.get_submodule(spec.name).register_forward_hook(hook_for(spec)))
    try:
        with torch.no_grad():
            gm(calibration)
    finally:
        for h in hooks:
            h.remove()
    return found


def _permute_group(gid: int, places: list, tensors, activations: torch.Tensor | None = None) -> GroupSmoothness:
    feats = []
    for key, rows, dim, pos in places:
        t = tensors[key] if rows is None else tensors[key][rows]
        f = t.index_select(dim, pos).movedim(dim, 0).reshape(pos.numel(), -1)
        feats.append(f / (f.norm() + 1e-12))
    features = torch.cat(feats, 1)
    order = torch.from_numpy(smooth_order((features if activations is None else activations).numpy()))
    before = kernel.total_variation(features)
    after = kernel.total_variation(features[order])
    for key, rows, dim, pos in places:
        t = tensors[key] if rows is None else tensors[key][rows]
        t.index_copy_(dim, pos, t.index_select(dim, pos[order]))
    return GroupSmoothness(gid, before, after)


def _init_nodes(specs, graph, tensors, rule) -> dict[str, torch.Tensor]:
    """Divide by the full-width quadrature along each input axis: ``Λ = W / q``."""
    nodes = {k: v.float() for k, v in tensors.items()}
    for spec in specs:
        if spec.kind != "dense":
            continue
        q = torch.cat([
            kernel.quadrature(kernel.uniform_partition(graph.groups[g].size), rule)
            if graph.groups[g].resizable else torch.ones(graph.groups[g].size, dtype=torch.float64)
            for g in spec.in_groups
        ])
        key = node_key(spec.name, "weight")
        w = tensors[key]
        b = spec.blocks
        q = q.reshape(b, 1, -1, 1)
        nodes[key] = (w.reshape(b, w.shape[0] // b, w.shape[1], w.shape[2]) / q).reshape(w.shape).float()
    return nodes
