"""Channel rules: how each kind of layer or operation moves, ties and cuts channel axes.

A traced tensor's channel axis is an :class:`Axis`: a description (a sequence of :class:`Piece`,
runs of channels of some *base* axis: a model input, or the output axis of a conv/linear layer)
and the tensor dimension it lives in (1 for NCHW, the last one for channels-last). A rule reads
its node's input axes from the :class:`RuleContext` and either passes an axis through
(activations, BatchNorm, pooling, depthwise conv), builds a new one (concat, slice), creates a new
base (conv, linear), demands that two axes are the same channels (residual add, gating multiply),
cuts an axis (grouped conv, split), or declares a layer whose parameters follow the axes.

Rules live in three registries, keyed by module type (or ``"package.module.ClassName"`` for a
library we do not import), by function, and by tensor-method name, in the spirit of Torch-Pruning's
DepGraph handlers: a new layer kind is one entry, and users add their own::

    @rules.register_module(MyGate)
    def _my_gate(ctx, node, module):
        ctx.set(node, ctx.axis(node.args[0]))  # channels pass through unchanged

Anything without a rule is *opaque*: its input and output channels stay fixed (resizing never
changes what it sees), so an unknown layer costs resizability, never correctness.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import fx, nn


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


@dataclass(frozen=True)
class Axis:
    """Where a tensor's channels come from (``desc``) and which tensor dimension holds them (``dim``)."""

    desc: Desc
    dim: int

    @property
    def size(self) -> int:
        return sum(p.size for p in self.desc)

    def at(self, dim: int) -> Axis:
        return Axis(self.desc, dim)


def slice_desc(desc: Desc, start: int, stop: int) -> Desc:
    """Channels ``start:stop`` of a description, as pieces."""
    out, offset = [], 0
    for p in desc:
        lo, hi = max(start - offset, 0), min(stop - offset, p.size)
        if lo < hi:
            out.append(Piece(p.base, p.start + lo, p.start + hi))
        offset += p.size
    return tuple(out)


@dataclass
class LayerSite:
    """A parameterised layer found in the graph, with the channel axes it reads and writes.

    ``kind``: ``dense`` (conv, linear), ``depthwise`` (one axis, no quadrature; also a bare
    per-channel parameter, ``module`` ``None``), ``affine`` (a norm's per-channel scale and shift).
    """

    name: str
    module: nn.Module | None
    kind: str
    out_desc: Desc
    in_desc: Desc = ()
    blocks: int = 1
    in_spatial: int = 1  # Linear after flatten(N, C, H, W): H*W features per channel
    param_shape: tuple[int, ...] = ()  # bare parameter: its shape, the channel dimension as -1


class RuleContext(Protocol):
    """What a rule may ask and do (implemented by the channel tracer in ``channels.py``)."""

    def value(self, arg: Any) -> Any: ...
    def axis(self, arg: Any) -> Axis | None: ...
    def axis_or_fixed(self, arg: Any, dim: int = 1) -> Axis: ...
    def new(self, size: int, dim: int) -> Axis: ...
    def set(self, node: fx.Node, axis: Axis | tuple | None) -> None: ...  # after set_spatial
    def same(self, a: Axis, b: Axis) -> None: ...
    def cut(self, axis: Axis, position: int) -> None: ...
    def fix(self, axis: Axis) -> None: ...
    def layer(self, site: LayerSite) -> None: ...
    def opaque(self, node: fx.Node, why: str) -> None: ...
    def rewrite(self, node: fx.Node, path: tuple, desc: Desc, scale: int = 1) -> None: ...
    def bind_param(self, arg: Any, axis: Axis, out_rank: int) -> bool: ...
    def spatial(self, arg: Any) -> int: ...
    def set_spatial(self, node: fx.Node, hw: int) -> None: ...


ModuleRule = Callable[[RuleContext, fx.Node, nn.Module], None]
NodeRule = Callable[[RuleContext, fx.Node], None]

_MODULE_RULES: dict[type | str, ModuleRule] = {}
_FUNCTION_RULES: dict[Any, NodeRule] = {}
_METHOD_RULES: dict[str, NodeRule] = {}


def register_module(*keys: type | str) -> Callable[[ModuleRule], ModuleRule]:
    """Register ``rule(ctx, node, module)`` for modules of these types (or qualified class names).

    Registered modules are traced as one node. A subclass inherits its base's rule only if it
    does not override ``forward`` (otherwise it may compute something else)."""
    def deco(rule: ModuleRule) -> ModuleRule:
        for k in keys:
            _MODULE_RULES[k] = rule
        return rule
    return deco


def register_function(*targets: Any) -> Callable[[NodeRule], NodeRule]:
    """Register ``rule(ctx, node)`` for ``call_function`` nodes of these callables."""
    def deco(rule: NodeRule) -> NodeRule:
        for t in targets:
            _FUNCTION_RULES[t] = rule
        return rule
    return deco


def register_method(*names: str) -> Callable[[NodeRule], NodeRule]:
    """Register ``rule(ctx, node)`` for ``call_method`` nodes (tensor methods) of these names."""
    def deco(rule: NodeRule) -> NodeRule:
        for n in names:
            _METHOD_RULES[n] = rule
        return rule
    return deco


def module_rule(m: nn.Module) -> ModuleRule | None:
    """The rule for ``m``: its class's, else a base class's that ``m`` does not override."""
    cls = type(m)
    for base in cls.__mro__:
        rule = _MODULE_RULES.get(base) or _MODULE_RULES.get(f"{base.__module__}.{base.__qualname__}")
        if rule is not None:
            return rule if base is cls or cls.forward is base.forward else None
    return None


def node_rule(node: fx.Node) -> NodeRule | None:
    if node.op == "call_function":
        return _FUNCTION_RULES.get(node.target)
    if node.op == "call_method":
        return _METHOD_RULES.get(node.target)
    return None


# ------------------------------------------------------------------------------------ helpers
def _rank(ctx: RuleContext, arg: Any) -> int:
    v = ctx.value(arg)
    return v.dim() if isinstance(v, torch.Tensor) else 0


def _arg(node: fx.Node, i: int, name: str, default: Any = None) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def passthrough(ctx: RuleContext, node: fx.Node, *_: Any) -> None:
    """Same channels out as in (elementwise, pooling, dropout, copies, dtype changes)."""
    x = node.args[0] if node.args else next(iter(node.kwargs.values()))
    ctx.set_spatial(node, ctx.spatial(x))
    ctx.set(node, ctx.axis(x))


def opaque(ctx: RuleContext, node: fx.Node, *_: Any) -> None:
    """Unknown channel semantics: inputs and outputs stay at their traced width."""
    ctx.opaque(node, "no channel rule")


# --------------------------------------------------------------------------------- modules
@register_module(nn.Conv2d)
def _conv(ctx: RuleContext, node: fx.Node, m: nn.Conv2d) -> None:
    x = ctx.axis_or_fixed(node.args[0])
    if x.dim != 1:
        return ctx.opaque(node, "conv input channels not in dimension 1")
    c_in, c_out, g = m.in_channels, m.out_channels, m.groups
    if g == 1:
        out = ctx.new(c_out, 1)
        ctx.layer(LayerSite(node.target, m, "dense", out.desc, x.desc))
    elif g == c_in == c_out:
        out = x
        ctx.layer(LayerSite(node.target, m, "depthwise", out.desc))
    else:  # grouped: every block is its own axis pair (depthwise with a multiplier included)
        for k in range(1, g):
            ctx.cut(x, k * c_in // g)
        out = ctx.new(c_out, 1)
        for k in range(1, g):
            ctx.cut(out, k * c_out // g)
        ctx.layer(LayerSite(node.target, m, "dense", out.desc, x.desc, g))
    ctx.set(node, out)


@register_module(nn.Linear)
def _linear(ctx: RuleContext, node: fx.Node, m: nn.Linear) -> None:
    x_node = node.args[0]
    rank = _rank(ctx, x_node)
    x = ctx.axis_or_fixed(x_node, rank - 1)
    hw = ctx.spatial(x_node)
    if x.dim != rank - 1 or x.size * hw != m.in_features:
        return ctx.opaque(node, "cannot map its input features to channels")
    out = ctx.new(m.out_features, rank - 1)
    ctx.layer(LayerSite(node.target, m, "dense", out.desc, x.desc, 1, hw))
    ctx.set(node, out)


@register_module(nn.BatchNorm1d, nn.BatchNorm2d)
def _batchnorm(ctx: RuleContext, node: fx.Node, m: nn.Module) -> None:
    x = ctx.axis_or_fixed(node.args[0])
    if x.dim != 1:
        return ctx.opaque(node, "batch norm over a dimension other than 1")
    if m.affine or m.track_running_stats:
        ctx.layer(LayerSite(node.target, m, "affine", x.desc))
    ctx.set(node, x)


@register_module(nn.LayerNorm)
def _layernorm(ctx: RuleContext, node: fx.Node, m: nn.LayerNorm) -> None:
    x_node = node.args[0]
    x = ctx.axis_or_fixed(x_node, _rank(ctx, x_node) - 1)
    if len(m.normalized_shape) != 1 or x.dim != _rank(ctx, x_node) - 1:
        return ctx.opaque(node, "layer norm over more than the channel axis")
    if m.elementwise_affine:
        ctx.layer(LayerSite(node.target, m, "affine", x.desc))
    ctx.set(node, x)


@register_module(nn.GroupNorm)
def _groupnorm(ctx: RuleContext, node: fx.Node, m: nn.GroupNorm) -> None:
    x = ctx.axis_or_fixed(node.args[0])
    if x.dim != 1:
        return ctx.opaque(node, "group norm over a dimension other than 1")
    for k in range(1, m.num_groups):
        ctx.cut(x, k * m.num_channels // m.num_groups)
    if m.affine:
        ctx.layer(LayerSite(node.target, m, "affine", x.desc, blocks=m.num_groups))
    ctx.set(node, x)


register_module(
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU,
    nn.ELU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.Upsample,
    nn.Hardtanh, nn.SELU, nn.Softplus, nn.CELU, nn.Tanhshrink,
)(passthrough)


@register_module(nn.Flatten)
def _flatten_module(ctx: RuleContext, node: fx.Node, m: nn.Flatten) -> None:
    _flatten(ctx, node, node.args[0], m.start_dim, m.end_dim)


@register_module(nn.Softmax, nn.LogSoftmax)
def _softmax_module(ctx: RuleContext, node: fx.Node, m: nn.Module) -> None:
    _softmax_dim(ctx, node, m.dim)


@register_module(nn.MultiheadAttention)
def _attention_module(ctx: RuleContext, node: fx.Node, m: nn.Module) -> None:
    ctx.opaque(node, "attention: its inner axes stay fixed")


# ------------------------------------------------------------------------------- functions
_ELEMENTWISE = [
    F.relu, F.relu6, F.silu, F.hardswish, F.hardsigmoid, F.gelu, F.leaky_relu, F.elu, F.mish, F.hardtanh,
    F.dropout, F.dropout2d, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate,
    F.sigmoid, F.tanh, F.softplus, F.selu, F.celu, torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.clip,
    torch.neg, torch.exp, torch.sqrt, torch.rsqrt, torch.abs, torch.erf, torch.square, operator.neg, operator.pos,
    operator.abs, torch.nn.functional.relu_, torch.clamp_min, torch.clamp_max, torch.pow, operator.pow,
]
register_function(*_ELEMENTWISE)(passthrough)
register_method(
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp", "clamp_", "clip", "contiguous", "clone", "neg",
    "float", "double", "half", "to", "type", "type_as", "detach", "exp", "sqrt", "rsqrt", "abs", "pow", "erf",
    "square", "hardswish", "clamp_min", "clamp_max", "requires_grad_", "softplus",
)(passthrough)


def _broadcast(ctx: RuleContext, node: fx.Node) -> None:
    """Elementwise ops of several tensors (residual add, gating multiply, layer scale): operands whose
    channel dimension is not broadcast must be the same channels; a per-channel parameter is bound
    to the axis (resized with it); a constant tensor spanning the channels fixes the axis."""
    out = ctx.value(node)
    if not isinstance(out, torch.Tensor):
        return
    r = out.dim()
    operands = [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, fx.Node)]
    axes = [(a, ctx.axis(a)) for a in operands]
    with_axis = [(a, x) for a, x in axes if x is not None]
    if not with_axis:
        return
    first = with_axis[0][1]
    dim = first.dim + r - _rank(ctx, with_axis[0][0])
    result = first.at(dim)
    for a, x in with_axis[1:]:
        d = x.dim + r - _rank(ctx, a)
        if d != dim:
            return ctx.opaque(node, "operands keep their channels in different dimensions")
        ctx.same(result, x.at(d))
    for a, x in axes:
        if x is not None:
            continue
        v = ctx.value(a)
        if not isinstance(v, torch.Tensor):
            continue
        d = dim - (r - v.dim())
        if d >= 0 and v.shape[d] > 1 and not ctx.bind_param(a, result, r):
            ctx.fix(result)  # a constant tensor over the channels: it cannot resize
    ctx.set(node, result)


register_function(operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
                  operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub, torch.div, torch.where,
                  torch.maximum, torch.minimum, torch.addcmul)(_broadcast)
register_method("add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "maximum", "minimum",
                "expand_as")(_broadcast)


@register_function(torch.cat, torch.concat)
def _cat(ctx: RuleContext, node: fx.Node) -> None:
    parts = _arg(node, 0, "tensors")
    dim = _arg(node, 1, "dim", 0)
    rank = ctx.value(node).dim()
    axes = [ctx.axis_or_fixed(t) for t in parts]
    if any(a.dim != axes[0].dim for a in axes):
        return ctx.opaque(node, "concatenated tensors keep channels in different dimensions")
    if dim % rank == axes[0].dim:
        ctx.set(node, Axis(tuple(p for a in axes for p in a.desc), axes[0].dim))
    else:
        for a in axes[1:]:
            ctx.same(axes[0], a)
        ctx.set(node, axes[0])


@register_function(torch.stack)
def _stack(ctx: RuleContext, node: fx.Node) -> None:
    parts = _arg(node, 0, "tensors")
    dim = _arg(node, 1, "dim", 0) % ctx.value(node).dim()
    axes = [ctx.axis_or_fixed(t) for t in parts]
    for a in axes[1:]:
        ctx.same(axes[0], a)
    ctx.set(node, axes[0].at(axes[0].dim + (1 if dim <= axes[0].dim else 0)))


def _flatten(ctx: RuleContext, node: fx.Node, x_node: Any, start: int, end: int = -1) -> None:
    """flatten(x, start, end): channels at ``start`` followed by spatial dims become features of one
    dimension (channel-major, as a Linear head reads them); flattening other dims moves the axis."""
    x = ctx.axis(x_node)
    if x is None:
        return
    shape = tuple(ctx.value(x_node).shape)
    rank = len(shape)
    start, end = start % rank, end % rank if rank else 0
    if x.dim < start:
        return ctx.set(node, x)
    if x.dim > end:
        return ctx.set(node, x.at(x.dim - (end - start)))
    if x.dim != start:
        return ctx.opaque(node, "flatten mixes the channel axis with dimensions before it")
    hw = 1
    for d in shape[start + 1:end + 1]:
        hw *= d
    ctx.set_spatial(node, hw * ctx.spatial(x_node))
    ctx.set(node, x)


@register_function(torch.flatten)
def _flatten_function(ctx: RuleContext, node: fx.Node) -> None:
    _flatten(ctx, node, node.args[0], _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))


@register_method("flatten")
def _flatten_method(ctx: RuleContext, node: fx.Node) -> None:
    _flatten(ctx, node, node.args[0], _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))


def _shape_arg(node: fx.Node) -> tuple[list[Any], tuple]:
    """The requested shape of a reshape/view node and the path of its first entry in ``node.args``."""
    if node.op == "call_function":
        shape = _arg(node, 1, "shape")
        return list(shape), (1,)
    if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)):
        return list(node.args[1]), (1,)
    return list(node.args[1:]), ()


@register_function(torch.reshape)
@register_method("reshape", "view")
def _reshape(ctx: RuleContext, node: fx.Node) -> None:
    """Reshapes that keep the channel axis whole: as its own dimension (dims before it unchanged in
    product), or flattened with the dims after it (channel-major features). A constant written for
    the channel dimension is rewritten at every width."""
    x_node = node.args[0]
    x = ctx.axis(x_node)
    if x is None:
        return
    s_in, s_out = tuple(ctx.value(x_node).shape), tuple(ctx.value(node).shape)
    before = _prod(s_in[:x.dim])
    acc, d_out = 1, 0
    while d_out < len(s_out) and acc < before:
        acc *= s_out[d_out]
        d_out += 1
    if acc != before or d_out >= len(s_out):
        return ctx.opaque(node, f"reshape {s_in} -> {s_out} mixes the channel axis")
    after_in = s_in[x.dim + 1:]
    if s_out[d_out] == x.size * _prod(after_in) and _prod(s_out[d_out + 1:]) == 1 and after_in:
        hw = _prod(after_in)  # flatten of channels with everything after them
    elif s_out[d_out] == x.size:
        hw = 1
    else:
        return ctx.opaque(node, f"reshape {s_in} -> {s_out} splits the channel axis")
    entries, path = _shape_arg(node)
    if len(entries) == len(s_out) and isinstance(entries[d_out], int) and entries[d_out] != -1:
        ctx.rewrite(node, (*path, d_out) if path else (1 + d_out,), x.desc, hw)
    ctx.set_spatial(node, hw * ctx.spatial(x_node))
    ctx.set(node, x.at(d_out))


def _prod(xs) -> int:
    p = 1
    for v in xs:
        p *= v
    return p


@register_function(torch.permute)
@register_method("permute")
def _permute(ctx: RuleContext, node: fx.Node) -> None:
    x = ctx.axis(node.args[0])
    if x is None:
        return
    dims = _arg(node, 1, "dims") if node.op == "call_function" else node.args[1:]
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    rank = _rank(ctx, node.args[0])
    dims = [d % rank for d in dims]
    ctx.set(node, x.at(dims.index(x.dim)))


@register_function(torch.transpose, torch.swapaxes)
@register_method("transpose", "swapaxes")
def _transpose(ctx: RuleContext, node: fx.Node) -> None:
    x = ctx.axis(node.args[0])
    if x is None:
        return
    rank = _rank(ctx, node.args[0])
    a, b = node.args[1] % rank, node.args[2] % rank
    ctx.set(node, x.at(b if x.dim == a else a if x.dim == b else x.dim))


@register_function(torch.unsqueeze)
@register_method("unsqueeze")
def _unsqueeze(ctx: RuleContext, node: fx.Node) -> None:
    x = ctx.axis(node.args[0])
    if x is None:
        return
    d = node.args[1] % ctx.value(node).dim()
    ctx.set(node, x.at(x.dim + 1 if d <= x.dim else x.dim))


@register_function(torch.squeeze)
@register_method("squeeze")
def _squeeze(ctx: RuleContext, node: fx.Node) -> None:
    x = ctx.axis(node.args[0])
    if x is None:
        return
    s_in = tuple(ctx.value(node.args[0]).shape)
    dims = node.args[1] if len(node.args) > 1 else None
    dims = range(len(s_in)) if dims is None else (dims,) if isinstance(dims, int) else dims
    gone = {d % len(s_in) for d in dims if s_in[d] == 1}
    if x.dim in gone:
        return ctx.opaque(node, "squeezes a single channel away")
    ctx.set(node, x.at(x.dim - sum(1 for d in gone if d < x.dim)))


def _reduce(ctx: RuleContext, node: fx.Node) -> None:
    """mean/sum/amax over dims: over spatial dims channels pass (global pooling); over the channel
    axis the result has no channel axis (a statistic, as in a hand-written channel LayerNorm)."""
    x_node = node.args[0]
    x = ctx.axis(x_node)
    if x is None:
        return
    rank = _rank(ctx, x_node)
    dims = _arg(node, 1, "dim")
    keep = _arg(node, 2, "keepdim", False)
    dims = tuple(range(rank)) if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
    dims = tuple(d % rank for d in dims)
    if x.dim in dims:
        return ctx.set(node, None)
    ctx.set(node, x if keep else x.at(x.dim - sum(1 for d in dims if d < x.dim)))


register_function(torch.mean, torch.sum, torch.amax, torch.amin, torch.var, torch.std)(_reduce)
register_method("mean", "sum", "amax", "amin", "var", "std")(_reduce)


def _softmax_dim(ctx: RuleContext, node: fx.Node, dim: int) -> None:
    x = ctx.axis(node.args[0])
    if x is not None and dim % _rank(ctx, node.args[0]) == x.dim:
        return ctx.opaque(node, "softmax over the channel axis")
    passthrough(ctx, node)


@register_function(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)
@register_method("softmax", "log_softmax")
def _softmax(ctx: RuleContext, node: fx.Node) -> None:
    _softmax_dim(ctx, node, _arg(node, 1, "dim"))


@register_function(F.pad)
def _pad(ctx: RuleContext, node: fx.Node) -> None:
    x = ctx.axis(node.args[0])
    pads = _arg(node, 1, "pad")
    if x is not None:
        rank = _rank(ctx, node.args[0])
        k = rank - 1 - x.dim  # pads come in (before, after) pairs from the last dimension backwards
        if len(pads) > 2 * k and any(pads[2 * k:2 * k + 2]):
            return ctx.opaque(node, "pads the channel axis")
    passthrough(ctx, node)


@register_function(F.layer_norm)
def _layer_norm_function(ctx: RuleContext, node: fx.Node) -> None:
    """A functional layer norm without parameters over the last (channel) axis; with parameters it
    is opaque unless they are module parameters (use nn.LayerNorm)."""
    x_node = node.args[0]
    x = ctx.axis(x_node)
    shape = _arg(node, 1, "normalized_shape")
    weight, bias = _arg(node, 2, "weight"), _arg(node, 3, "bias")
    if x is None or weight is not None or bias is not None or len(shape) != 1 or x.dim != _rank(ctx, x_node) - 1:
        return ctx.opaque(node, "functional layer norm with parameters or over several axes")
    ctx.rewrite(node, (1, 0), x.desc)
    ctx.set(node, x)


@register_function(operator.getitem)
def _getitem(ctx: RuleContext, node: fx.Node) -> None:
    """Tuple items (split outputs) and tensor indexing: slicing the channel axis with constants
    (ghost modules' ``out[:, :n]``) cuts the axis there and is rewritten at every width."""
    src, index = node.args
    v = ctx.value(src)
    if not isinstance(v, torch.Tensor):
        items = ctx.axis(src)
        if isinstance(items, tuple) and isinstance(index, int):
            ctx.set(node, items[index])
        return
    x = ctx.axis(src)
    if x is None:
        return
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in index) or index.count(...) > 1:
        return ctx.opaque(node, "advanced indexing")
    rank = v.dim()
    if ... in index:
        at = index.index(...)
        index = index[:at] + (slice(None),) * (rank - len(index) + 1 + index.count(None)) + index[at + 1:]
    d_in, d_out, result = 0, 0, None
    for k, i in enumerate(index):
        if i is None:
            d_out += 1
            continue
        if d_in == x.dim:
            if isinstance(i, int):
                return ctx.opaque(node, "selects one channel")
            start, stop, step = i.indices(x.size)
            if step != 1:
                return ctx.opaque(node, "strided channel slice")
            ctx.cut(x, start)
            ctx.cut(x, stop)
            sub = slice_desc(x.desc, start, stop)
            if (start, stop) != (0, x.size):
                ctx.rewrite(node, (1, k, "start"), slice_desc(x.desc, 0, start))
                ctx.rewrite(node, (1, k, "stop"), slice_desc(x.desc, 0, stop))
            result = Axis(sub, d_out)
        elif isinstance(i, int):
            d_in += 1
            continue
        d_in += 1
        d_out += 1
    ctx.set(node, result if result is not None else x.at(d_out + x.dim - d_in))


def _split(ctx: RuleContext, node: fx.Node) -> None:
    """split / chunk / tensor_split / unbind along the channel axis cut it; the node is rewritten as
    ``torch.split(x, sizes, dim)`` so the sizes follow the groups at every width."""
    x_node = node.args[0]
    x = ctx.axis(x_node)
    outs = ctx.value(node)
    if x is None:
        return
    rank = _rank(ctx, x_node)
    name = node.target if isinstance(node.target, str) else node.target.__name__
    dim = _arg(node, 1 if name == "unbind" else 2, "dim", 0) % rank
    if dim != x.dim:
        return ctx.set(node, tuple(x.at(x.dim - (1 if name == "unbind" and dim < x.dim else 0)) for _ in outs))
    if name == "unbind":
        return ctx.opaque(node, "unbinds the channel axis")
    sizes = [o.shape[dim] for o in outs]
    pieces, offset = [], 0
    for s in sizes:
        ctx.cut(x, offset)
        pieces.append(Axis(slice_desc(x.desc, offset, offset + s), x.dim))
        offset += s
    node.op, node.target, node.args, node.kwargs = "call_function", torch.split, (x_node, sizes, dim), {}
    for k, p in enumerate(pieces):
        ctx.rewrite(node, (1, k), p.desc)
    ctx.set(node, tuple(pieces))


register_function(torch.split, torch.chunk, torch.tensor_split, torch.unbind)(_split)
register_method("split", "chunk", "tensor_split", "unbind")(_split)


def _no_channels(ctx: RuleContext, node: fx.Node) -> None:
    """Sizes, dtypes, asserts: no tensor with channels comes out."""
    ctx.set(node, None)


register_method("size", "dim", "numel", "__len__")(_no_channels)
register_function(torch._assert, getattr, len, torch.numel)(_no_channels)
