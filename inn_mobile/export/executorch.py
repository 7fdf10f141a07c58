"""ExecuTorch lowering: one XNNPACK ``.pte`` per width bucket, its weights in an external ``.ptd`` left as holes.

Per bucket the plain network (``IntegralModel.build`` at the bucket's widths) is exported, its
constants tagged external, and lowered with the XNNPACK partitioner, giving ``model.pte`` (graph and
delegate blob) and ``weights.ptd`` (FlatTensor: the named constants). Every byte range that holds a
layer's weight, bias or int8 quantisation data is then recorded as an :class:`~inn_mobile.runtime_file.Hole`,
so a bundle ships the two files without their weights and the native core writes them at load time.

Holes are found by content, not by guessing the serialiser's layout: for each layer the exact bytes
the core will write (:func:`inn_mobile.format.reference.hole_bytes`, in every layout the runtime may have chosen:
XNNPACK stores convs OHWI, depthwise and single-input-channel convs 1HWO, linears [O, I]) must occur
exactly once across the files. Anything else (a tensor missing, found twice, or two layers sharing
bytes) fails loudly, because a wrong hole would silently run a different network.

int8 (PT2E, ``XNNPACKQuantizer`` symmetric per channel, static activations calibrated per bucket):
the graph's weight quantisation is replaced by the core's rule (:func:`reference.quantize_per_channel`)
and each float bias by the value of the core's int32 bias, so the lowered files are byte for byte what
the core rebuilds on device; the input activation scale of each layer becomes the holes' ``param``.
"""

from __future__ import annotations

import operator
import tempfile
from pathlib import Path

import torch
from torch import fx

from inn_mobile.core.integral import IntegralModel, LayerSpec
from inn_mobile.format import reference, runtime_file
from inn_mobile.format.bundle import Bucket
from inn_mobile.format.reference import quantize_per_channel
from inn_mobile.format.vocab import PTD_FILE, PTE_FILE, runtime_name

RUNTIME = runtime_name("executorch", int8=False)
RUNTIME_INT8 = runtime_name("executorch", int8=True)
PTE = PTE_FILE
PTD = PTD_FILE
_DATA_TAG = PTD.removesuffix(".ptd")
_LAYOUT_ORDER = ("oti", "ito", "oit")  # XNNPACK's usual choice first; identical byte strings are tried once
Weights = dict[str, dict[str, torch.Tensor]]


def lower(
    model: IntegralModel,
    bucket: Bucket,
    example_input: torch.Tensor,
    *,
    int8: bool = False,
    calibration: torch.Tensor | None = None,
) -> list[runtime_file.Image]:
    """``[model.pte, weights.ptd]`` of one bucket, every weight-bearing range a hole.

    ``example_input`` fixes the input shape (batch included) the ``.pte`` accepts. ``int8`` needs
    ``calibration``: unlabelled inputs, run in batches of ``example_input``'s size, that set the
    static activation ranges of this bucket.
    """
    with torch.no_grad():
        weights = model.weights_at(bucket.sizes)
    plain = model.build(weights)
    params: dict[str, float] = {}
    if int8:
        plain, params = _quantize(plain, example_input, calibration, weights, model.layers)
    pte, ptd = _to_executorch(plain, example_input)
    files = {PTE: pte, PTD: ptd}
    holes = locate_holes(files, model.layers, weights, int8=int8, input_scales=params)
    return [runtime_file.Image(name, data, holes[name]) for name, data in files.items()]


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
    ep = torch.export.export(module, (example_input,))
    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def _to_executorch(module: torch.nn.Module, example_input: torch.Tensor) -> tuple[bytes, bytes]:
    """Lower with XNNPACK, every constant (delegated or not) moved into one external ``.ptd``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes.external_constants_pass import delegate_external_constants_pass_unlifted

    # Delegate constants are tagged on the unlifted module (get_attr nodes), hence export twice.
    unlifted = torch.export.export(module, (example_input,)).module()
    delegate_external_constants_pass_unlifted(module=unlifted, gen_tag_fn=lambda _: _DATA_TAG)
    program = to_edge_transform_and_lower(
        torch.export.export(unlifted, (example_input,)), partitioner=[XnnpackPartitioner()]
    ).to_executorch(ExecutorchBackendConfig(external_constants=lambda _: _DATA_TAG))
    with tempfile.TemporaryDirectory() as d:
        program.write_tensor_data_to_file(d)
        written = sorted(p.name for p in Path(d).iterdir())
        if written != [PTD]:
            raise RuntimeError(f"ExecuTorch wrote data files {written}, expected only {PTD}")
        ptd = Path(d, PTD).read_bytes()
    return program.buffer, ptd


# ------------------------------------------------------------------------------------------------ int8
def _quantize(
    plain: fx.GraphModule, example_input: torch.Tensor, calibration: torch.Tensor, weights: Weights,
    layers: list[LayerSpec],
) -> tuple[fx.GraphModule, dict[str, float]]:
    """PT2E static int8 with the core's weight quantisation; returns the module and each layer's input scale."""
    converted = _calibrated(plain, example_input, calibration)
    specs = {s.name: s for s in layers if s.kind != "affine"}
    params = {}
    for node in converted.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            spec = specs[_module_path(node)]
            params[spec.name] = _requantize(converted, node, spec, weights[spec.name])
    if set(params) != set(specs):
        raise RuntimeError(f"layers missing from the quantized graph: {sorted(set(specs) - set(params))}")
    return converted, params


def _calibrated(module: torch.nn.Module, example_input: torch.Tensor, calibration: torch.Tensor) -> fx.GraphModule:
    """PT2E: XNNPACK's symmetric per-channel config, activation ranges observed on ``calibration``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class FoldedQuantizer(XNNPACKQuantizer):
        # conv+BatchNorm patterns cannot match (convert() folded every foldable BN) and cost seconds of matching
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if "_bn" not in p.name]

    if calibration is None:
        raise ValueError("int8 lowering needs calibration= inputs to set the activation ranges")
    quantizer = FoldedQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module, (example_input,)).module(), quantizer)
    batch = example_input.shape[0]
    with torch.no_grad():
        for chunk in calibration.split(batch):
            if chunk.shape[0] == batch:  # the exported graph has a fixed batch size
                prepared(chunk)
    return convert_pt2e(prepared)


def _module_path(node: fx.Node) -> str:
    """The module path (``LayerSpec.name``) a conv/linear node came from."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        raise RuntimeError(f"{node.name}: no nn_module_stack, cannot tell which layer it is")
    return list(stack.values())[-1][0]


def _requantize(gm: fx.GraphModule, node: fx.Node, spec: LayerSpec, w: dict[str, torch.Tensor]) -> float:
    """Write the core's int8 weight/scales and its int32-exact bias into one quantized conv/linear.

    Returns the layer's input activation scale (the ``param`` of its bias holes). The float bias is
    replaced by ``q_bias * bias_scale`` so that XNNPACK's own bias quantisation at lowering lands
    exactly on the integer the core writes.
    """
    x, weight = node.args[0], node.args[1]
    if getattr(weight, "target", None) != torch.ops.quantized_decomposed.dequantize_per_channel.default:
        raise RuntimeError(f"layer {spec.name!r}: weight is not per-channel quantized ({weight})")
    if getattr(x, "target", None) != torch.ops.quantized_decomposed.dequantize_per_tensor.default:
        raise RuntimeError(f"layer {spec.name!r}: input is not statically quantized ({x})")
    q_attr, scale_attr = weight.args[0], weight.args[1]
    q, scales = quantize_per_channel(w["weight"].reshape(w["weight"].shape[0], -1, spec.taps))
    input_scale = float(x.args[1])
    with torch.no_grad():
        target_q = operator.attrgetter(q_attr.target)(gm)
        target_q.copy_(q.reshape(target_q.shape))
        operator.attrgetter(scale_attr.target)(gm).copy_(scales)
        if len(node.args) > 2 and node.args[2] is not None:
            bias_scale = torch.tensor(input_scale, dtype=torch.float32) * scales
            q_bias = torch.frombuffer(bytearray(reference.hole_bytes(w, spec.kind, _probe("bias_i32", input_scale),
                                                                 spec.taps)), dtype=torch.int32)
            operator.attrgetter(node.args[2].target)(gm).copy_(q_bias.double() * bias_scale.double())
    return input_scale


# ------------------------------------------------------------------------------------------- holes
def _probe(tensor: str, param: float = 0.0, layout: str = "oit", dtype: str = "f32") -> runtime_file.Hole:
    """A hole description used only to ask :func:`reference.hole_bytes` what the core writes."""
    return runtime_file.Hole(0, 1, 0, tensor, layout, dtype, param)


def _wanted(spec: LayerSpec, int8: bool, input_scale: float) -> list[list[runtime_file.Hole]]:
    """Per tensor of a layer, the hole variants (layouts) that may hold it."""
    if spec.kind == "affine":
        return [[_probe("weight")], [_probe("bias")]]
    dtype = "i8" if int8 else "f32"
    out = [[_probe("weight", layout=lay, dtype=dtype) for lay in _LAYOUT_ORDER]]
    if int8:
        out.append([_probe("scale")])
    if spec.has_bias:
        out += [[_probe("bias_i32", input_scale, dtype="i32")], [_probe("bias_scale", input_scale)]] if int8 else \
            [[_probe("bias")]]
    return out


def locate_holes(
    files: dict[str, bytes], layers: list[LayerSpec], weights: Weights, *, int8: bool = False,
    input_scales: dict[str, float] | None = None,
) -> dict[str, list[runtime_file.Hole]]:
    """Find every layer tensor's bytes exactly once across ``files``; ``{file name: holes}``."""
    holes: dict[str, list[runtime_file.Hole]] = {name: [] for name in files}
    for index, spec in enumerate(layers):
        scale = (input_scales or {}).get(spec.name, 0.0)
        for variants in _wanted(spec, int8, scale):
            name, offset, probe, data = _find_once(files, spec, weights[spec.name], variants)
            holes[name].append(runtime_file.Hole(offset, len(data), index, probe.tensor, probe.layout, probe.dtype,
                                          probe.param))
    for name, hs in holes.items():
        runtime_file.Image(name, files[name], hs)  # validates: no two layers claim overlapping bytes
    return holes


def _find_once(
    files: dict[str, bytes], spec: LayerSpec, w: dict[str, torch.Tensor], variants: list[runtime_file.Hole],
) -> tuple[str, int, runtime_file.Hole, bytes]:
    hits, tried = [], set()
    for probe in variants:
        data = reference.hole_bytes(w, spec.kind, probe, spec.taps)
        if data in tried:
            continue
        tried.add(data)
        for name, blob in files.items():
            hits += [(name, off, probe, data) for off in _occurrences(blob, data)]
    what = f"layer {spec.name!r} {variants[0].tensor} ({variants[0].dtype})"
    if not hits:
        raise RuntimeError(f"{what}: its bytes are in none of {sorted(files)} (layouts tried: "
                           f"{[v.layout for v in variants]}); the lowering changed the tensor or kept it elsewhere")
    if len(hits) > 1:
        raise RuntimeError(f"{what}: its bytes occur {len(hits)} times ({[(n, o) for n, o, *_ in hits]}), "
                           "cannot tell which is the layer's")
    return hits[0]


def _occurrences(blob: bytes, data: bytes) -> list[int]:
    out, at = [], blob.find(data)
    while at >= 0:
        out.append(at)
        at = blob.find(data, at + 1)
    return out
