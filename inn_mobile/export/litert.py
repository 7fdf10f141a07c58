"""LiteRT (TFLite) lowering: one ``.tflite`` per width bucket whose weight buffers are holes.

``litert-torch`` converts the bucket's plain network (BatchNorm already folded) to a flatbuffer once,
with sentinel weights (:mod:`inn_mobile.export.sentinel`); for int8, ``ai-edge-quantizer`` (recipe
``static_wi8_ai8``) then calibrates the activations of *this* bucket on host data, on that same
flatbuffer with the real weights written in, and quantizes it. Holes are located through the
flatbuffer's structure: every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED operator -> its weight
and bias tensors -> their buffers (and, int8, the ``QuantizationParameters`` scale vectors). Which
layer an operator computes is read off its sentinel weight, so zeros, ``-0.0``, duplicated layers,
dead channels and untrained BatchNorm (all-zero biases) are nothing special. Equal tensors (two
identical layers, the all-zero convs of ``zero_init_last``, the zero biases of untrained BatchNorm) get
equal sentinels, so the converter stores them once, as it does in a plain file of the real weights:
its weights take the room they take in the plain file, in the filled file, the fill and XNNPACK's
packing alike (the converter also drops an all-zero fully-connected bias, which a graph filled for every
set of weights cannot). For int8 graphs the
per-channel weight scales, the int32 bias and the bias scales become holes too, so the core writes
everything that depends on the weights consistently after discretisation; the activation scales and
zero points stay stored bytes (they are the per-bucket calibration). Tensor names (debug strings)
are blanked in place, which more than halves what a graph costs in the bundle.

Loud failures, not silent wrong graphs: each fp32 weight and bias buffer must be bit for bit the
sentinel in one of the core's layouts (the converter stored the tensor verbatim), and each int8
hole must hold what the core writes to within one quantisation step (the quantizer and the core
agree). The returned image carries the core's exact bytes in its holes.

fp32 and int8 graphs of a bucket come from the one conversion (:func:`lower_variants`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from inn_mobile.core.integral import IntegralModel
from inn_mobile.errors import LoweringError
from inn_mobile.export.sentinel import error, float_sentinels, seed_of
from inn_mobile.format import reference, runtime_file, vocab
from inn_mobile.format.bundle import Bucket
from inn_mobile.format.vocab import TFLITE_FILE

__all__ = ["FILE_NAME", "RUNTIME", "RUNTIME_I8", "LoweringError", "lower", "lower_variants", "runtime_name",
           "to_tflite"]

RUNTIME = vocab.runtime_name("litert", int8=False)
RUNTIME_I8 = vocab.runtime_name("litert", int8=True)
FILE_NAME = TFLITE_FILE
# builtin operator code -> weight layouts the converter may use for it (see FORMAT.md "Graph records")
_CONV_2D, _DEPTHWISE_CONV_2D, _FULLY_CONNECTED = 3, 4, 9
_WEIGHT_OPS = {_CONV_2D: ("oti", "ito"), _DEPTHWISE_CONV_2D: ("ito",), _FULLY_CONNECTED: ("oit", "oti")}
_OP_NAMES = {_CONV_2D: "CONV_2D", _DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D", _FULLY_CONNECTED: "FULLY_CONNECTED"}
# flatbuffer vtable slots: Buffer.data, QuantizationParameters.scale, Tensor.name (schema.fbs field order)
_BUFFER_DATA, _QUANT_SCALE, _TENSOR_NAME = 4, 8, 10
_TFL_INT8, _TFL_INT32, _TFL_FLOAT32 = 9, 2, 0


def runtime_name(int8: bool) -> str:
    """The runtime name a bundle stores LiteRT graphs under (``Bundle.graphs[(bucket, name)]``)."""
    return RUNTIME_I8 if int8 else RUNTIME


def lower(
    model: IntegralModel, bucket: Bucket, example_input: torch.Tensor, *, int8: bool = False,
    calibration: torch.Tensor | None = None,
) -> list[runtime_file.Image]:
    """The bucket's ``model.tflite`` with every weight-bearing byte range recorded as a hole.

    ``example_input`` fixes the graph's input shape (its batch size included). ``int8`` needs
    ``calibration`` (a few hundred representative inputs): activations are calibrated on the network
    at this bucket's width, since their ranges change with the width.
    """
    return lower_variants(model, bucket, example_input, (int8,), calibration=calibration)[int8]


def lower_variants(
    model: IntegralModel, bucket: Bucket, example_input: torch.Tensor, int8s: Iterable[bool] = (False, True), *,
    calibration: torch.Tensor | None = None,
) -> dict[bool, list[runtime_file.Image]]:
    """``{int8: [model.tflite]}`` for each of ``int8s``, from one litert-torch conversion of the bucket."""
    int8s = tuple(dict.fromkeys(int8s))
    affine = [s.name for s in model.layers if s.kind == "affine"]
    if affine:
        raise error(f"standalone BatchNorm layers {affine} have no LiteRT lowering yet (fold them first)")
    if True in int8s and calibration is None:
        raise ValueError("int8 lowering needs calibration inputs to set the activation scales")
    with torch.no_grad():
        weights = model.weights_at(bucket.sizes)
    # equal tensors stored alike get one sentinel: the converter then stores them once, as in a plain file. A
    # weight's layout depends on its layer's kind and taps; a bias is a plain vector in every layer
    kinds = {spec.name: (spec.kind, spec.taps) for spec in model.layers}
    sentinels = float_sentinels(weights, np.random.default_rng(seed_of(weights)),
                                share=lambda layer, tensor: kinds[layer] if tensor == "weight" else tensor)
    flat = _convert(model.build(sentinels), example_input)
    ops = _locate_float(flat, model, sentinels)
    real = bytearray(flat)
    holes = []
    for op in ops:
        for h in op.holes:
            real[h.offset:h.offset + h.size] = _expected(model, weights, h)
            holes.append(h)
    out = {}
    if False in int8s:
        out[False] = [runtime_file.Image(FILE_NAME, _erase_tensor_names(bytes(real)), _unique(holes))]
    if True in int8s:
        quantized = _quantize(bytes(real), calibration, example_input.shape[0])
        by_name: dict[bytes, list[_Located]] = {}
        for op in ops:
            if op not in by_name.setdefault(op.weight_name, []):
                by_name[op.weight_name].append(op)
        out[True] = [_int8_image(quantized, model, weights, by_name)]
    return out


def to_tflite(module: torch.nn.Module, example_input: torch.Tensor, *, int8: bool = False,
              calibration: torch.Tensor | None = None) -> bytes:
    """The conventional ``.tflite`` of a plain network (its real weights inside; same converter and, for
    int8, same quantizer recipe as :func:`lower`): what an app would ship per width without INN."""
    if int8 and calibration is None:
        raise ValueError("int8 lowering needs calibration inputs to set the activation scales")
    flat = _convert(module, example_input)
    if int8:
        flat = _quantize(flat, calibration, example_input.shape[0])
    return _erase_tensor_names(flat)


def _convert(module: torch.nn.Module, example_input: torch.Tensor) -> bytes:
    """litert-torch's float flatbuffer (tensor names kept: int8 lowering maps operators by them)."""
    import litert_torch

    with contextlib.redirect_stdout(io.StringIO()):  # litert-torch logs every conversion stage
        return bytes(litert_torch.convert(module.eval(), (example_input,)).model_content())


def _erase_tensor_names(flat: bytes) -> bytes:
    """Blank every tensor name in place (length 0, bytes zeroed; offsets and size unchanged).

    The names are the converter's module paths, debug strings nothing reads at run time (inputs and
    outputs are found through the signature's own names), yet 60% of a graph's non-weight bytes on
    the reference ResNet. Zeroed runs are not stored in a bundle's graph record.
    """
    from ai_edge_litert import schema_py_generated as schema

    out = bytearray(flat)
    root = schema.Model.GetRootAs(flat, 0)
    for g in range(root.SubgraphsLength()):
        sg = root.Subgraphs(g)
        for i in range(sg.TensorsLength()):
            tab = sg.Tensors(i)._tab
            o = tab.Offset(_TENSOR_NAME)
            if o:
                start = tab.Indirect(tab.Pos + o)
                n = int.from_bytes(flat[start:start + 4], "little")
                out[start:start + 4 + n] = bytes(4 + n)
    return bytes(out)


def _quantize(flat: bytes, calibration: torch.Tensor, batch: int) -> bytes:
    """Static int8 (weights per channel, activations per tensor) calibrated on ``calibration``.

    Activation ranges are the absolute min/max over all calibration inputs. The quantizer's default
    (a moving average of per-input extremes, 0.95 smoothing) clips the largest activations: on the
    Fashion-MNIST reference at 75% width it gave 98.8% top-1 agreement with fp32, min/max 99.2%.
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    (key, sig), = Interpreter(model_content=flat).get_signature_list().items()
    (input_name,) = sig["inputs"]
    chunks = [c.numpy() for c in calibration.float().split(batch) if len(c) == batch]
    if not chunks:
        raise ValueError(f"calibration needs at least one batch of {batch} inputs (the graph's batch size)")
    rules = recipe_manager.RecipeManager()
    rules.load_quantization_recipe(recipe.static_wi8_ai8())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cal = calibrator.Calibrator(flat, num_threads=torch.get_num_threads(), qsv_update_func=qsv_utils.min_max_update)
        cal.calibrate({key: [{input_name: c} for c in chunks]}, rules)
        q = quantizer.Quantizer(bytearray(flat), rules.get_quantization_recipe())
        return bytes(q.quantize(cal.get_model_qsvs(), enable_progress_report=False).quantized_model)


@dataclass
class _Op:
    """One weight-bearing operator: its tensors and, for int8, the input activation scale."""

    index: int  # among the weight-bearing operators, in graph order
    code: int
    weight: object  # schema Tensor
    bias: object | None
    input_scale: float

    @property
    def what(self) -> str:
        shape = list(self.weight.ShapeAsNumpy()) if self.weight.ShapeLength() else []
        return f"operator {self.index} ({_OP_NAMES[self.code]}, weight {shape})"


@dataclass
class _Located:
    """A float operator matched to its layer through the sentinel in its weight buffer."""

    layer: int
    layout: str
    weight_name: bytes
    holes: list[runtime_file.Hole]


def _weight_ops(root) -> list[_Op]:
    out = []
    for g in range(root.SubgraphsLength()):
        sg = root.Subgraphs(g)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            opcode = root.OperatorCodes(op.OpcodeIndex())
            code = max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())
            if code not in _WEIGHT_OPS:
                continue
            inputs = op.InputsAsNumpy()
            bias = sg.Tensors(int(inputs[2])) if len(inputs) > 2 and inputs[2] >= 0 else None
            act = sg.Tensors(int(inputs[0])).Quantization()
            scale = float(act.Scale(0)) if act is not None and act.ScaleLength() == 1 else 0.0
            out.append(_Op(len(out), code, sg.Tensors(int(inputs[1])), bias, scale))
    return out


def _buffer_range(root, tensor) -> tuple[int, int]:
    """Byte range of a constant tensor's data in the file (inline vector, or offset/size for > 2 GB)."""
    buf = root.Buffers(tensor.Buffer())
    if buf.Offset() > 1:
        return buf.Offset(), buf.Size()
    return _vector(buf, _BUFFER_DATA, 1)


def _vector(table, slot: int, itemsize: int) -> tuple[int, int]:
    """Start and byte length of a table's vector field (generated code exposes only copies/views)."""
    o = table._tab.Offset(slot)
    if not o:
        return 0, 0
    return table._tab.Vector(o), table._tab.VectorLen(o) * itemsize


def _locate_float(flat: bytes, model: IntegralModel, sentinels: dict) -> list[_Located]:
    """Every weight operator of the sentinel float graph, its layer and its weight/bias holes.

    A weight buffer must be exactly one layer's sentinel in a layout the operator allows; a layer
    with a bias must have it, verbatim, as the operator's bias buffer. Every layer must be found.
    Layers with equal weights share a sentinel (:func:`~inn_mobile.export.sentinel.float_sentinels`): an
    operator is then the first of them whose bias is its bias, and finds all of those (their real
    tensors are equal: any of them fills the holes with the same values; the converter may have
    merged their operators or buffers).
    """
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(flat, 0)
    by_bytes: dict[bytes, list[tuple[int, str]]] = {}
    for i, spec in enumerate(model.layers):
        for layout in reference.LAYOUTS:
            data = reference.hole_bytes(sentinels[spec.name], spec.kind, _probe("weight", layout), spec.taps)
            by_bytes.setdefault(data, []).append((i, layout))
    located, found = [], set()
    for op in _weight_ops(root):
        start, size = _buffer_range(root, op.weight)
        if op.weight.Type() != _TFL_FLOAT32 or size == 0:
            raise error(f"{op.what}: its weight is not a float32 constant (type {op.weight.Type()}, {size} bytes)")
        hits = [(i, lay) for i, lay in by_bytes.get(flat[start:start + size], []) if lay in _WEIGHT_OPS[op.code]]
        if not hits:
            raise error(f"{op.what}: its weight is no layer's tensor in the layouts {_WEIGHT_OPS[op.code]}: "
                        "the converter transformed a weight (folded, scaled or re-laid it out)")
        bias = _buffer_range(root, op.bias) if op.bias is not None else None
        same = [(i, lay) for i, lay in hits if not model.layers[i].has_bias or
                (bias is not None and flat[bias[0]:bias[0] + bias[1]] == reference.hole_bytes(
                    sentinels[model.layers[i].name], model.layers[i].kind, _probe("bias"), model.layers[i].taps))]
        if not same:
            spec = model.layers[hits[0][0]]
            if bias is None:
                raise error(f"layer {spec.name!r}: its {_OP_NAMES[op.code]} has no bias input (the converter "
                            "moved the bias into another operator)")
            raise error(f"layer {spec.name!r}: the bias of its {_OP_NAMES[op.code]} is not the layer's bias "
                        f"({bias[1]} bytes): the converter transformed it")
        layer, layout = same[0]
        holes = [runtime_file.Hole(start, size, layer, "weight", layout, "f32")]
        if model.layers[layer].has_bias:
            holes.append(runtime_file.Hole(bias[0], bias[1], layer, "bias", "oit", "f32"))
        found.update(i for i, _ in same)
        located.append(_Located(layer, layout, op.weight.Name(), holes))
    missing = [s.name for i, s in enumerate(model.layers) if i not in found]
    if missing:
        raise error(f"layers {missing} have no conv/depthwise/fully-connected operator in the graph "
                    "(the converter folded or split them)")
    return located


def _int8_image(flat: bytes, model: IntegralModel, weights: dict,
                by_name: dict[bytes, list[_Located]]) -> runtime_file.Image:
    """The quantized graph's holes (weight, scales, int32 bias, bias scales) found through its
    operators' tensors, checked against the core's bytes and then overwritten with them. A weight tensor
    several float operators share (equal weights, different biases) is the layer whose bytes the
    operator's quantized bias holds."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(flat, 0)
    out = bytearray(flat)
    holes: dict[int, tuple[runtime_file.Hole, bytes]] = {}
    for op in _weight_ops(root):
        candidates = by_name.get(op.weight.Name())
        if not candidates:
            raise error(f"{op.what}: the quantizer's weight tensor {op.weight.Name()!r} is in no float operator")
        if op.weight.Type() != _TFL_INT8:
            raise error(f"layer {model.layers[candidates[0].layer].name!r}: the quantizer left its weight as type "
                        f"{op.weight.Type()}, not int8")
        found = None
        for loc in candidates:
            expected = [(h, _expected(model, weights, h)) for h in _int8_holes(root, op, loc, model)]
            bad = next((h for h, e in expected if len(e) != h.size or
                        not _close(flat[h.offset:h.offset + h.size], e, h)), None)
            if bad is None:
                found, spec = expected, model.layers[loc.layer]
                break
        if found is None:
            raise error(f"layer {model.layers[candidates[0].layer].name!r}: the quantized graph's {bad.tensor} "
                        f"({bad.size} bytes) differs from what the core writes (more than one quantisation step)")
        for h, expected in found:
            prev = holes.get(h.offset)
            if prev is not None and (prev[0].size != h.size or prev[1] != expected):
                raise error(f"layers {model.layers[prev[0].layer].name!r} and {spec.name!r} share a buffer at byte "
                            f"{h.offset} but need different contents")
            holes[h.offset] = (h, expected)
            out[h.offset:h.offset + h.size] = expected
    return runtime_file.Image(FILE_NAME, _erase_tensor_names(bytes(out)), [h for h, _ in holes.values()])


def _int8_holes(root, op: _Op, loc: _Located, model: IntegralModel) -> list[runtime_file.Hole]:
    """The holes of an int8 operator computing ``loc``'s layer: its weight and, with a bias, the weight
    scales, the int32 bias and the bias scales (which depend on the operator's input scale)."""
    start, size = _buffer_range(root, op.weight)
    holes = [runtime_file.Hole(start, size, loc.layer, "weight", loc.layout, "i8")]
    if op.bias is None:
        return holes
    if op.input_scale <= 0:
        raise error(f"layer {model.layers[loc.layer].name!r}: its int8 operator has no per-tensor input scale")
    w_scale = _vector(op.weight.Quantization(), _QUANT_SCALE, 4)
    b_scale = _vector(op.bias.Quantization(), _QUANT_SCALE, 4)
    b_start, b_size = _buffer_range(root, op.bias)
    p = op.input_scale
    return holes + [runtime_file.Hole(w_scale[0], w_scale[1], loc.layer, "scale", "oit", "f32"),
                    runtime_file.Hole(b_start, b_size, loc.layer, "bias_i32", "oit", "i32", p),
                    runtime_file.Hole(b_scale[0], b_scale[1], loc.layer, "bias_scale", "oit", "f32", p)]


def _probe(tensor: str, layout: str = "oit") -> runtime_file.Hole:
    """A hole description used only to ask :func:`reference.hole_bytes` for a tensor's bytes."""
    return runtime_file.Hole(0, 1, 0, tensor, layout, "f32")


def _unique(holes: list[runtime_file.Hole]) -> list[runtime_file.Hole]:
    """One hole per byte range (an operator reused twice points at the same buffers)."""
    return list({h.offset: h for h in holes}.values())


def _expected(model: IntegralModel, weights: dict, h: runtime_file.Hole) -> bytes:
    spec = model.layers[h.layer]
    return reference.hole_bytes(weights[spec.name], spec.kind, h, spec.taps)


def _close(actual: bytes, expected: bytes, h: runtime_file.Hole) -> bool:
    """The quantizer's int8/int32 values within one step of the core's, its scales within 1e-5. An int32
    bias the core saturates (a near-dead channel's tiny weight scale) may be at either end of the range
    in the quantizer's file: it casts the out-of-range value without saturating (seen on the real
    EfficientNet-Lite0 at 75% width, +2^31-1 from the core against -2^31); the core's value is written."""
    dtype = {"i8": np.int8, "i32": np.int32, "f32": np.float32}[h.dtype]
    a, e = np.frombuffer(actual, dtype).astype(np.float64), np.frombuffer(expected, dtype).astype(np.float64)
    if h.dtype == "f32":
        return bool(np.allclose(a, e, rtol=1e-5, atol=0))
    close = np.abs(a - e) <= 1
    if h.dtype == "i32":
        ends = np.array([-(2.0 ** 31), 2.0 ** 31 - 1])
        close |= np.isin(e, ends) & np.isin(a, ends)
    return bool(close.all())
