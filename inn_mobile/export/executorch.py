"""ExecuTorch lowering: one XNNPACK ``.pte`` per width bucket, its weights in an external ``.ptd`` left as holes.

Per bucket the plain network (``IntegralModel.build`` at the bucket's widths) is exported, its
constants tagged external, and lowered with the XNNPACK partitioner, giving ``model.pte`` (graph and
delegate blob) and ``weights.ptd`` (FlatTensor: the named constants). Every byte range that holds a
layer's weight, bias or int8 quantisation data is recorded as a :class:`~inn_mobile.format.runtime_file.Hole`,
so a bundle ships the two files without their weights and the native core writes them at load time.

Holes are found by identity, not by value: the bucket is lowered with sentinel tensors
(:mod:`inn_mobile.export.sentinel`: pseudo-random, distinct per layer and tensor) in place of the
real ones, each sentinel must then occur exactly once across the two files in one of the core's
layouts (XNNPACK stores convs OHWI, depthwise and single-input-channel convs 1HWO, linears [O, I]),
and the real tensors are written where the sentinels were. Real weights may be all zeros, repeat
between layers or share bytes with the graph; sentinels never do, so a sentinel that is missing,
found twice or transformed means the lowering moved or changed a tensor, and lowering fails loudly
(one line naming the layer) rather than ship a graph that would run a different network. XNNPACK's
constant keys are hashes of the bytes it saw (the sentinels'): only names, ExecuTorch does not
check them, and seeded from the real weights they differ between models and widths.

int8 (PT2E, ``XNNPACKQuantizer`` symmetric per channel, min/max activation ranges): activations are
calibrated per bucket on the *real* network; then each layer's int8 weight, weight scales and float
bias are replaced by sentinels (the bias chosen as an integer multiple of its scale, so XNNPACK's own
bias quantisation at lowering yields a known int32 sentinel). The input activation scale of each layer
becomes the holes' ``param``; the core writes its own int8 rule (:func:`reference.quantize_per_channel`)
and int32 biases there.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import fx

from inn_mobile.core.integral import IntegralModel, LayerSpec
from inn_mobile.errors import LoweringError
from inn_mobile.export.sentinel import error, float_sentinels, seed_of
from inn_mobile.format import reference, runtime_file
from inn_mobile.format.bundle import Bucket
from inn_mobile.format.vocab import PTD_FILE, PTE_FILE, runtime_name

__all__ = ["PTD", "PTE", "RUNTIME", "RUNTIME_INT8", "LoweringError", "float_wanted", "locate_holes", "lower",
           "plain_pte"]

RUNTIME = runtime_name("executorch", int8=False)
RUNTIME_INT8 = runtime_name("executorch", int8=True)
PTE = PTE_FILE
PTD = PTD_FILE
_DATA_TAG = PTD.removesuffix(".ptd")
_LAYOUT_ORDER = ("oti", "ito", "oit")  # XNNPACK's usual choice first; identical byte strings are tried once
_BIAS_SENTINEL = 1 << 20  # |int32 bias sentinel| below this: q * scale survives float32 exactly enough
Weights = dict[str, dict[str, torch.Tensor]]
# per layer: (layer index, per tensor: the (probe hole, sentinel bytes) variants that may hold it)
Wanted = list[tuple[int, list[list[tuple[runtime_file.Hole, bytes]]]]]
# Unbounded caches of the lowering libraries whose keys are the graphs or modules of one lowering: each entry
# keeps a whole graph alive, the quantizers' a whole network with its weights, for the life of the process
_GRAPH_CACHES = (("torchao.utils", "_assert_and_get_unique_device"),
                 ("torch.ao.quantization.fx.utils", "assert_and_get_unique_device"),
                 ("executorch.exir.backend.utils", "is_same_node"))


def _forgets_its_graphs(lower_fn: Callable) -> Callable:
    """``lower_fn``, after which the caches of :data:`_GRAPH_CACHES` keep nothing of the graphs it made.

    Without this, packing many widths in one process (``pack`` with ``jobs=1``, or a worker's run of
    buckets) kept every lowering's networks, an int8 one with the width's float weights and more.
    Their entries are never hit again (the next lowering makes new graphs), so dropping them costs nothing.
    A cache that a library version renames or removes is skipped.
    """

    @functools.wraps(lower_fn)
    def wrapper(*args, **kwargs):
        try:
            return lower_fn(*args, **kwargs)
        finally:
            for module, name in _GRAPH_CACHES:
                cached = getattr(sys.modules.get(module), name, None)
                if hasattr(cached, "cache_clear"):
                    cached.cache_clear()

    return wrapper


@_forgets_its_graphs
def lower(
    model: IntegralModel,
    bucket: Bucket,
    example_input: torch.Tensor,
    *,
    int8: bool = False,
    calibration: torch.Tensor | None = None,
) -> list[runtime_file.Image]:
    """``[model.pte, weights.ptd]`` of one bucket, every weight-bearing range a hole holding the core's bytes.

    ``example_input`` fixes the input shape (batch included) the ``.pte`` accepts. ``int8`` needs
    ``calibration``: unlabelled inputs, run in batches of ``example_input``'s size, that set the
    static activation ranges of this bucket.
    """
    with torch.no_grad():
        weights = model.weights_at(bucket.sizes)
    rng = np.random.default_rng(seed_of(weights))
    if int8:
        module, wanted = _quantize(model.build(weights), example_input, calibration, model.layers, rng)
    else:
        sentinels = float_sentinels(weights, rng)
        module, wanted = model.build(sentinels), float_wanted(model.layers, sentinels)
    pte, ptd = _to_executorch(module, example_input)
    files = {PTE: pte, PTD: ptd}
    holes = locate_holes(files, model.layers, wanted)
    images = []
    for name, data in files.items():
        real = bytearray(data)
        for h in holes[name]:
            spec = model.layers[h.layer]
            real[h.offset:h.offset + h.size] = reference.hole_bytes(weights[spec.name], spec.kind, h, spec.taps)
        images.append(runtime_file.Image(name, bytes(real), holes[name]))
    return images


@_forgets_its_graphs
def plain_pte(
    module: torch.nn.Module, example_input: torch.Tensor, *, int8: bool = False,
    calibration: torch.Tensor | None = None,
) -> bytes:
    """The conventional single-file ``.pte`` (weights inside) of a plain network: what a bundle replaces.

    Same XNNPACK lowering and, for int8, the same PT2E flow as :func:`lower`, with PT2E's own weight
    quantisation; used as the baseline for size and speed.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if int8:
        module = _calibrated(module, example_input, calibration)
    with _shared_provenance():
        ep = torch.export.export(module, (example_input,))
        return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def _to_executorch(module: torch.nn.Module, example_input: torch.Tensor) -> tuple[bytes, bytes]:
    """Lower with XNNPACK, every constant (delegated or not) moved into one external ``.ptd``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    # Tag the constant placeholders of the exported program itself: one export. (Tagging an unlifted
    # module's get_attr nodes and exporting again loses the tag of every parameter whose name starts
    # with a digit, such as nn.Sequential's "0.weight": those constants then stay inside the .pte.)
    with _shared_provenance():
        ep = torch.export.export(module, (example_input,))
        sig = ep.graph_signature
        constants = {*sig.inputs_to_parameters, *sig.inputs_to_buffers, *sig.inputs_to_lifted_tensor_constants}
        for node in ep.graph.nodes:
            if node.op == "placeholder" and node.name in constants:
                node.meta.setdefault("custom", {})["delegate_constant_tag"] = _DATA_TAG
        program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch(
            ExecutorchBackendConfig(external_constants=lambda _: _DATA_TAG))
    with tempfile.TemporaryDirectory() as d:
        program.write_tensor_data_to_file(d)
        written = sorted(p.name for p in Path(d).iterdir())
        if written != [PTD]:
            raise RuntimeError(f"ExecuTorch wrote data files {written}, expected only {PTD}")
        ptd = Path(d, PTD).read_bytes()
    return program.buffer, ptd


@contextlib.contextmanager
def _shared_provenance() -> Iterator[None]:
    """While lowering, fx passes share a node's provenance history instead of deep-copying it.

    Every fx pass records in each node it creates a deep copy of the whole history of the node it
    came from (``meta["from_node"]``: which pass made it from what), so each of the ~60 passes of a
    lowering (export, PT2E prepare and convert, export, the edge and XNNPACK passes) copies a
    history one pass longer than the last: a fifth of an int8 lowering of EfficientNet-Lite0. A
    recorded history is never modified (only its lazily built caches are set), so sharing it is
    equivalent; the change to ``NodeSource`` lasts only for the block.
    """
    from torch.fx.traceback import NodeSource

    before = NodeSource.__dict__.get("__deepcopy__")
    NodeSource.__deepcopy__ = lambda self, memo: self
    try:
        yield
    finally:
        if before is None:
            del NodeSource.__deepcopy__
        else:
            NodeSource.__deepcopy__ = before


# ------------------------------------------------------------------------------------------------ int8
def _quantize(
    plain: fx.GraphModule, example_input: torch.Tensor, calibration: torch.Tensor | None, layers: list[LayerSpec],
    rng: np.random.Generator,
) -> tuple[fx.GraphModule, Wanted]:
    """PT2E static int8 calibrated on the real network, then every layer's quantized constants
    replaced by sentinels; returns the module and what to look for."""
    converted = _calibrated(plain, example_input, calibration)
    specs = {s.name: (i, s) for i, s in enumerate(layers) if s.kind != "affine"}
    wanted: dict[str, tuple[int, list]] = {}
    for node in converted.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            path = _module_path(node)
            if path not in specs:
                raise error(f"{node.name}: quantized conv/linear from {path!r}, which is no layer of the model")
            if path not in wanted:  # a module called twice shares its constants
                index, spec = specs[path]
                wanted[path] = (index, _sentinel_int8(converted, node, spec, rng))
    missing = sorted(set(specs) - set(wanted))
    if missing:
        raise error(f"layers missing from the quantized graph: {missing}")
    return converted, list(wanted.values())


def _calibrated(module: torch.nn.Module, example_input: torch.Tensor,
                calibration: torch.Tensor | None) -> fx.GraphModule:
    """PT2E: XNNPACK's symmetric per-channel config, activation ranges observed on ``calibration``
    (:func:`_quantization_config`: the absolute min/max, the LiteRT quantizer's rule)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class FoldedQuantizer(XNNPACKQuantizer):
        # conv+BatchNorm patterns cannot match (convert() folded every foldable BN) and cost seconds of matching
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if "_bn" not in p.name]

        def annotate(self, model: fx.GraphModule) -> fx.GraphModule:
            _annotate_clamped(model, self.global_config)  # first: XNNPACK's own patterns skip annotated nodes
            return super().annotate(model)

    if calibration is None:
        raise ValueError("int8 lowering needs calibration= inputs to set the activation ranges")
    quantizer = FoldedQuantizer().set_global(_quantization_config())
    with _shared_provenance():
        prepared = prepare_pt2e(torch.export.export(module, (example_input,)).module(), quantizer)
        batch = example_input.shape[0]
        with torch.no_grad(), _one_thread():
            for chunk in calibration.split(batch):
                if chunk.shape[0] == batch:  # the exported graph has a fixed batch size
                    prepared(chunk)
        return convert_pt2e(prepared)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the calibration's forward passes: a reduction split over threads rounds
    differently, so the observed ranges (and every int8 scale) would depend on the thread count, and
    ``pack(..., jobs=N)``'s workers, with their share of the threads, would write other bytes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _annotate_clamped(gm: fx.GraphModule, config) -> None:
    """Quantise every conv/linear whose only user is a ``hardtanh`` (ReLU6) as one fused operator.

    XNNPACK's quantizer fuses conv/linear + ReLU but not + ReLU6: the conv's output got its own
    observer (the pre-activation range, on EfficientNet-Lite0 many times the clamp's [0, 6]) and the
    hardtanh shares it, so its [0, 6] output was quantised in steps several times too coarse. Here
    the pair is annotated like XNNPACK's conv+ReLU (inputs and weights on the conv, the output
    observer after the clamp), which XNNPACK runs as one int8 conv with a fused output clamp, as
    the LiteRT converter does.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    key = "quantization_annotation"
    clamps = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
    ops = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
    for act in gm.graph.nodes:
        op = act.args[0] if act.op == "call_function" and act.target in clamps else None
        if not (isinstance(op, fx.Node) and op.target in ops and len(op.users) == 1) or key in op.meta:
            continue
        x, w, b = op.args[0], op.args[1], op.args[2] if len(op.args) > 2 else None
        qspecs = {x: get_input_act_qspec(config), w: get_weight_qspec(config)}
        if isinstance(b, fx.Node):
            qspecs[b] = get_bias_qspec(config)
        op.meta[key] = QuantizationAnnotation(input_qspec_map=qspecs, _annotated=True)
        act.meta[key] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config), _annotated=True)
        for n in (w, b):
            if isinstance(n, fx.Node):
                n.meta[key] = QuantizationAnnotation(_annotated=True)


def _quantization_config():
    """XNNPACK's symmetric int8 config (weights per channel) with min/max activation observers.

    The absolute min/max over the calibration inputs is the LiteRT recipe's rule, so a bucket's
    int8 graphs for both runtimes are calibrated alike (on the real EfficientNet-Lite0, with ReLU6
    fused, both then agree with the float model's top-1 on 87.5% of 120 held-out photo crops); it
    is also far cheaper to observe than XNNPACK's default, a histogram searched for the range of
    least squared error (most of the calibration time).
    """
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    act = config.input_activation
    act = dataclasses.replace(act, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _module_path(node: fx.Node) -> str:
    """The module path (``LayerSpec.name``) a conv/linear node came from."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        raise error(f"{node.name}: no nn_module_stack, cannot tell which layer it is")
    return list(stack.values())[-1][0]


def _sentinel_int8(gm: fx.GraphModule, node: fx.Node, spec: LayerSpec,
                   rng: np.random.Generator) -> list[list[tuple[runtime_file.Hole, bytes]]]:
    """Put sentinels in one quantized conv/linear's int8 weight, weight scales and float bias.

    The float bias becomes ``k * bias_scale`` for random integers ``|k| < 2**20``, so XNNPACK's
    bias quantisation at lowering (``round(b * (1 / bias_scale))``, float32) gives exactly ``k``.
    Returns what each of the layer's holes looks like in the lowered files.
    """
    x, weight = node.args[0], node.args[1]
    if getattr(weight, "target", None) != torch.ops.quantized_decomposed.dequantize_per_channel.default:
        raise error(f"layer {spec.name!r}: weight is not per-channel quantized ({weight})")
    if getattr(x, "target", None) != torch.ops.quantized_decomposed.dequantize_per_tensor.default:
        raise error(f"layer {spec.name!r}: input is not statically quantized ({x})")
    input_scale = float(x.args[1])
    q_attr = operator.attrgetter(weight.args[0].target)(gm)
    scale_attr = operator.attrgetter(weight.args[1].target)(gm)
    n_out = q_attr.shape[0]
    q = rng.integers(-127, 128, q_attr.numel()).astype(np.int8)
    scales = rng.uniform(1e-3, 1e-2, n_out).astype(np.float32)
    bias_scale = torch.tensor(input_scale, dtype=torch.float32) * torch.from_numpy(scales)  # as XNNPACK computes it
    with torch.no_grad():
        q_attr.copy_(torch.from_numpy(q).reshape(q_attr.shape))
        scale_attr.copy_(torch.from_numpy(scales))
    q3 = q.reshape(n_out, -1, spec.taps)
    out = [[(_probe("weight", layout=lay, dtype="i8"), _layout_bytes(q3, lay)) for lay in _LAYOUT_ORDER],
           [(_probe("scale"), scales.tobytes())]]
    if len(node.args) > 2 and node.args[2] is not None:
        k = rng.integers(-_BIAS_SENTINEL, _BIAS_SENTINEL, n_out)
        with torch.no_grad():
            operator.attrgetter(node.args[2].target)(gm).copy_(torch.from_numpy(k).double() * bias_scale.double())
        out += [[(_probe("bias_i32", input_scale, dtype="i32"), k.astype("<i4").tobytes())],
                [(_probe("bias_scale", input_scale), bias_scale.numpy().tobytes())]]
    return out


# ------------------------------------------------------------------------------------------- holes
def _probe(tensor: str, param: float = 0.0, layout: str = "oit", dtype: str = "f32") -> runtime_file.Hole:
    """A hole description: what a found range holds (its offset and size are filled in when found)."""
    return runtime_file.Hole(0, 1, 0, tensor, layout, dtype, param)


def _layout_bytes(w3: np.ndarray, layout: str) -> bytes:
    return np.ascontiguousarray(reference.to_layout(w3, layout)).tobytes()


def float_wanted(layers: list[LayerSpec], sentinels: Weights) -> Wanted:
    """Per layer, the bytes of each float tensor in every layout the runtime may have chosen."""
    out = []
    for index, spec in enumerate(layers):
        w = sentinels[spec.name]
        if spec.kind == "affine":
            tensors = [[_probe("weight")], [_probe("bias")]]
        else:
            tensors = [[_probe("weight", layout=lay) for lay in _LAYOUT_ORDER]] + ([[_probe("bias")]]
                                                                               if spec.has_bias else [])
        out.append((index, [[(p, reference.hole_bytes(w, spec.kind, p, spec.taps)) for p in variants]
                            for variants in tensors]))
    return out


def locate_holes(
    files: dict[str, bytes], layers: list[LayerSpec], wanted: Wanted,
) -> dict[str, list[runtime_file.Hole]]:
    """Find every wanted tensor's bytes exactly once across ``files``; ``{file name: holes}``."""
    holes: dict[str, list[runtime_file.Hole]] = {name: [] for name in files}
    for index, tensors in wanted:
        for variants in tensors:
            name, offset, probe, data = _find_once(files, layers[index], variants)
            holes[name].append(runtime_file.Hole(offset, len(data), index, probe.tensor, probe.layout, probe.dtype,
                                                 probe.param))
    for name, hs in holes.items():
        try:
            runtime_file.Image(name, files[name], hs)  # validates: no two tensors claim overlapping bytes
        except ValueError as e:
            raise error(f"{name}: {e}") from None
    return holes


def _find_once(
    files: dict[str, bytes], spec: LayerSpec, variants: list[tuple[runtime_file.Hole, bytes]],
) -> tuple[str, int, runtime_file.Hole, bytes]:
    hits, tried = [], set()
    for probe, data in variants:
        if data in tried:
            continue
        tried.add(data)
        for name, blob in files.items():
            hits += [(name, off, probe, data) for off in _occurrences(blob, data)]
    first = variants[0][0]
    what = f"layer {spec.name!r} {first.tensor} ({first.dtype}, {len(variants[0][1])} bytes)"
    if not hits:
        raise error(f"{what}: not in {sorted(files)} in the layouts {[p.layout for p, _ in variants]}: "
                    "the lowering transformed the tensor or kept it elsewhere")
    if len(hits) > 1:
        raise error(f"{what}: occurs {len(hits)} times ({[(n, o) for n, o, *_ in hits]}): "
                    "the lowering duplicated it")
    return hits[0]


def _occurrences(blob: bytes, data: bytes) -> list[int]:
    out, at = [], blob.find(data)
    while at >= 0:
        out.append(at)
        at = blob.find(data, at + 1)
    return out
