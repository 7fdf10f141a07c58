"""An fx ``GraphModule`` as picklable state that rebuilds the same graph, node names included.

``GraphModule`` pickles itself as generated Python code and traces that code again when unpickled:
the nodes come back renamed (an ``IntegralModel`` finds its layers and channel-counting constants by
node name), the tracer class is instantiated without arguments (``ConcreteTracer`` needs the example
inputs), and a postponed annotation (``x: "torch.Tensor"`` under ``from __future__ import
annotations``, as timm writes) cannot even be written. This keeps the graph as its nodes instead:
op, name, target, arguments (other nodes by name), annotation and metadata (the tracer's
``nn_module_stack``, which exporters name things by, its module types by name), with the graph
module's children and attributes, which pickle as they are. What it is for: sending a converted
model to worker processes (``pack(..., jobs=N)``) and ``torch.save`` / ``pickle`` of an
``IntegralModel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import fx, nn


@dataclass(frozen=True)
class _Ref:
    """Another node of the graph, by name, inside a node's arguments."""

    name: str


def _portable(meta: dict) -> dict:
    """A node's metadata with the module types of ``nn_module_stack`` as their qualified names (what
    ``torch.export`` itself records): unpickling it then imports no model library (timm, ...) beyond the
    modules the graph calls. The exporters lower the same bytes either way (checked for LiteRT and
    ExecuTorch on timm's ResNet-18)."""
    stack = meta.get("nn_module_stack")
    if not stack:
        return dict(meta)
    names = {key: (path, t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}")
             for key, (path, t) in stack.items()}
    return {**meta, "nn_module_stack": type(stack)(names)}


@dataclass
class GraphState:
    """What :meth:`rebuild` needs: the class name, the modules and attributes, and the nodes in order."""

    class_name: str
    root: nn.Module  # the graph module's children and the attributes its get_attr nodes start from
    nodes: list[tuple]  # (op, name, target, args, kwargs, type, meta), other nodes as _Ref
    codegen: Any

    @classmethod
    def of(cls, gm: fx.GraphModule) -> GraphState:
        # the module's own children and attributes, in their order: rebuilt the way fx built the original
        # (submodules copied in the order the nodes use them), the modules register in the same order, so
        # an export of the rebuilt module lays out its constants the same, byte for byte
        root = nn.Module()
        for name, child in gm.named_children():
            root.add_module(name, child)
        nodes = []
        for n in gm.graph.nodes:
            head = n.target.split(".")[0] if n.op == "get_attr" else None
            if head is not None and not hasattr(root, head):
                setattr(root, head, getattr(gm, head))
            args = fx.map_arg(n.args, lambda a: _Ref(a.name))
            kwargs = fx.map_arg(n.kwargs, lambda a: _Ref(a.name))
            nodes.append((n.op, n.name, n.target, args, kwargs, n.type, _portable(n.meta)))
        return cls(type(gm).__name__, root, nodes, gm.graph._codegen)

    def rebuild(self) -> fx.GraphModule:
        graph = fx.Graph()
        graph._codegen = self.codegen
        env: dict[str, fx.Node] = {}

        def resolve(a):
            return env[a.name] if isinstance(a, _Ref) else a

        for op, name, target, args, kwargs, type_expr, meta in self.nodes:
            node = graph.create_node(op, target, fx.node.map_aggregate(args, resolve),
                                     fx.node.map_aggregate(kwargs, resolve), name=name, type_expr=type_expr)
            if node.name != name:
                raise ValueError(f"graph node {name!r} came back as {node.name!r}")
            node.meta.update(meta)
            env[name] = node
        return fx.GraphModule(self.root, graph, self.class_name)
