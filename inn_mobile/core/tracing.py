"""Tracing the models people ship into an fx graph we can rebuild at any width.

Plain ``fx.symbolic_trace`` stops at the first Python ``if`` on a tensor, ``len(x)``, ``math.ceil``
of a size, or a library's own Conv/BatchNorm subclass. We trace with fx anyway (not torch.export):
the rebuilt network must run at *other* channel counts, so shapes have to stay computations
(``x.shape[1]``), not the constants an exported ATen graph specialises them to. Three things make
fx read real models:

- **Concrete values.** Every traced node is also executed on the example input, so control flow,
  ``len`` and ``int()`` of a traced value take their real value (specialised, as torch.export
  would) while shape arithmetic stays in the graph.
- **Leaves from the channel rules.** A module with a registered rule (``rules.module_rule``) is one
  ``call_module`` node; a library's subclass of a torch layer that only adds a padding rule or an
  activation (timm's ``Conv2dSame``, ``BatchNormAct2d``, its ``Linear``) is replaced by plain torch
  modules after checking, on the example input, that they compute the same thing.
- **Opaque fallback.** A module whose forward still cannot be traced becomes one opaque leaf: its
  channels stay fixed (reported in the group table), the rest of the network still resizes.
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx, nn

from inn_mobile.core import rules
from inn_mobile.errors import UnsupportedGraphError


class _ConcreteProxy(fx.Proxy):
    """A proxy that answers Python's questions (``bool``, ``len``, ``int``, ``math.ceil``) with the
    traced value, so control flow follows the example input."""

    def _value(self) -> Any:
        return self.tracer.values[self.node]

    def __len__(self) -> int:
        return len(self._value())

    def __index__(self) -> int:
        return operator.index(self._value())

    def __int__(self) -> int:
        return int(self._value())

    def __float__(self) -> float:
        return float(self._value())

    def __ceil__(self) -> int:
        return math.ceil(self._value())

    def __floor__(self) -> int:
        return math.floor(self._value())

    def __trunc__(self) -> int:
        return math.trunc(self._value())

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self._value(), ndigits)


def _concrete(x: Any, values: dict[fx.Node, Any]) -> Any:
    return fx.node.map_aggregate(x, lambda a: values[a.node] if isinstance(a, fx.Proxy) else a)


class ConcreteTracer(fx.Tracer):
    """fx tracer that runs every node on the example input (see the module doc).

    ``opaque`` maps module paths that could not be traced into to the reason.
    """

    def __init__(self, example_inputs: tuple[Any, ...]) -> None:
        super().__init__(autowrap_modules=(math,), param_shapes_constant=True)
        self.example_inputs = list(example_inputs)
        self.values: dict[fx.Node, Any] = {}
        self.opaque: dict[str, str] = {}
        self._forced_leaves: set[str] = set()
        self._executing = 0

    @contextmanager
    def executing(self):
        """Run modules for real inside: fx patches ``nn.Module.__call__`` and parameter reads while
        tracing, which must not turn this execution into more graph."""
        self._executing += 1
        try:
            yield
        finally:
            self._executing -= 1

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        return attr_val if self._executing else super().getattr(attr, attr_val, parameter_proxy_cache)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.values[obj.node])

    def iter(self, obj: fx.Proxy):
        return iter([obj[i] for i in range(len(self.values[obj.node]))])

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        a, kw = _concrete(args, self.values), _concrete(kwargs, self.values)
        if kind == "placeholder":
            value = self.example_inputs.pop(0) if self.example_inputs else kw.get("default", a[0] if a else None)
        elif kind == "get_attr":
            with self.executing():  # fx patches module attribute reads too
                value = _fetch(self.root, target)
        elif kind == "call_function":
            value = target(*a, **kw)
        elif kind == "call_method":
            value = getattr(a[0], target)(*a[1:], **kw)
        elif kind == "call_module":
            with self.executing():
                value = self.root.get_submodule(target)(*a, **kw)
        else:  # output
            value = a[0] if a else None
        self.values[proxy.node] = value
        return proxy

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self._forced_leaves or rules.module_rule(m) is not None

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if self._executing:
            return forward(*args, **kwargs)
        path = self.path_of_module(m)
        if not self.is_leaf_module(m, path):
            with self.executing():
                plain = _plain_equivalent(m, _concrete(args, self.values), _concrete(kwargs, self.values))
            if plain is not None:
                _install(self.root, path, plain)
                for name, child in plain.named_modules():
                    self.submodule_paths[child] = f"{path}.{name}" if name else path
                return super().call_module(plain, plain.forward, args, kwargs)
        last = self.graph._root.prev
        stack = OrderedDict(self.module_stack)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:  # noqa: BLE001 - any failure inside makes the module one opaque leaf
            if not path:
                raise
            _drop_nodes_after(self.graph, last, self.values)
            self.module_stack = stack
            self.opaque[path] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self._forced_leaves.add(path)
            return super().call_module(m, forward, args, kwargs)


def _fetch(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _install(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _drop_nodes_after(graph: fx.Graph, last: fx.Node, values: dict[fx.Node, Any]) -> None:
    """Erase what a failed module forward added, newest first. Parameter reads stay: fx caches their
    proxies for later reads, and unused ones are removed at the end."""
    created = []
    node = last.next
    while node is not graph._root:
        created.append(node)
        node = node.next
    for node in reversed(created):
        if node.op != "get_attr" and not node.users:
            graph.erase_node(node)
            values.pop(node, None)


# ------------------------------------------------------------ library subclasses of torch layers
def _plain_equivalent(m: nn.Module, args: tuple, kwargs: dict) -> nn.Module | None:
    """Plain torch modules computing what ``m`` computes on this input, or ``None``.

    For a library's subclass of Conv2d / Linear / a norm layer that overrides ``forward`` (so we
    cannot trust its base class's meaning), try the readings a library uses (the base layer as is;
    a conv with TensorFlow "same" padding, static for the traced input size; a norm followed by its
    child modules, as fused norm+activation layers do; a LayerNorm over the channels of an NCHW
    tensor) and keep the first that reproduces ``m`` on the example input.
    """
    base = next((b for b in (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)
                 if isinstance(m, b) and type(m) is not b), None)
    if base is None or kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    with torch.no_grad():
        want = m(x)
        for candidate in _readings(m, base, x):
            try:
                got = candidate.eval()(x)
            except RuntimeError:  # this reading does not even accept the input
                continue
            if got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max())):
                return candidate
    return None


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module (torch has none): a channels-first LayerNorm is a LayerNorm
    between two of these."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


def _readings(m: nn.Module, base: type, x: torch.Tensor):
    plain = _as_base(m, base)
    children = [c for _, c in m.named_children()]
    yield plain if not children else nn.Sequential(plain, *children)
    if children:
        yield plain
    if base is nn.LayerNorm and x.dim() == 4:  # a LayerNorm over the channels of an NCHW tensor
        yield nn.Sequential(Permute(0, 2, 3, 1), plain, Permute(0, 3, 1, 2), *children)
    if base is nn.Conv2d:
        pads = _tf_same_padding(m, x.shape[-2:])
        conv = _as_base(m, base, padding=0)
        yield nn.Sequential(nn.ZeroPad2d(pads), conv) if any(pads) else conv


def _as_base(m: nn.Module, base: type, **override) -> nn.Module:
    """A ``base`` instance with ``m``'s configuration and (shared) parameters and buffers."""
    if base is nn.Conv2d:
        out = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                        padding=override.get("padding", m.padding), dilation=m.dilation, groups=m.groups,
                        bias=m.bias is not None, padding_mode=m.padding_mode)
    elif base is nn.Linear:
        out = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    elif base is nn.LayerNorm:
        out = nn.LayerNorm(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine,
                           bias=getattr(m, "bias", None) is not None)
    elif base is nn.GroupNorm:
        out = nn.GroupNorm(m.num_groups, m.num_channels, eps=m.eps, affine=m.affine)
    else:
        out = base(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats)
    for name, p in list(out.named_parameters(recurse=False)):
        setattr(out, name, getattr(m, name))
        del p
    for name, _ in list(out.named_buffers(recurse=False)):
        out.register_buffer(name, getattr(m, name))
    return out.train(m.training)


def _tf_same_padding(conv: nn.Module, size) -> tuple[int, int, int, int]:
    """TensorFlow "SAME" padding for this input size: total ``max((ceil(i/s)-1)·s + (k-1)·d + 1 - i, 0)``
    per axis, the odd pixel on the right/bottom. Returned in ``F.pad`` order (left, right, top, bottom)."""
    pads = []
    for i, k, s, d in zip(size, conv.kernel_size, conv.stride, conv.dilation):
        total = max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return (left, right, top, bottom)


# --------------------------------------------------------------------------------- entry points
def trace_module(model: nn.Module, example_inputs: tuple[Any, ...]) -> tuple[fx.GraphModule, dict[str, str]]:
    """Trace ``model`` (modified in place: library layers are swapped for plain equivalents, so pass a
    copy) on ``example_inputs``. Returns the graph module and the opaque modules with the reason."""
    tracer = ConcreteTracer(example_inputs)
    sig_args = _positional_names(model)
    concrete_args = {name: default for name, default in sig_args[len(example_inputs):]}
    try:
        graph = tracer.trace(model, concrete_args=concrete_args or None)
    except Exception as e:  # noqa: BLE001 - the root forward itself: nothing smaller to make opaque
        raise UnsupportedGraphError(
            f"cannot trace {type(model).__name__}.forward ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "wrap the model in a module whose forward takes one tensor and returns tensors") from None
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:
            graph.erase_node(node)
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    return gm, tracer.opaque


def _positional_names(model: nn.Module) -> list[tuple[str, Any]]:
    import inspect

    params = inspect.signature(model.forward).parameters.values()
    return [(p.name, None if p.default is inspect.Parameter.empty else p.default) for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def record_values(gm: fx.GraphModule, example_inputs: tuple[Any, ...]) -> dict[fx.Node, Any]:
    """Run ``gm`` on the example and keep every node's value (what the channel rules read shapes from)."""
    values: dict[fx.Node, Any] = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            values[n] = out
            return out

    with torch.no_grad():
        _Recorder(gm).run(*example_inputs)
    return values

