"""LiteRT (TFLite) lowering: one ``.tflite`` per width bucket whose weight buffers are holes.

``litert-torch`` converts the bucket's plain network (BatchNorm already folded) to a flatbuffer; for
int8, ``ai-edge-quantizer`` (recipe ``static_wi8_ai8``) calibrates the activations of *this* bucket
on host data and quantizes it. We then walk every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
operator, find which layer each weight buffer belongs to by comparing its bytes with the Python
reference of what the core writes (:func:`inn_mobile.format.reference.hole_bytes`), and record the buffer's byte
range as a :class:`~inn_mobile.runtime_file.Hole`. For int8 graphs the per-channel weight scales, the int32
bias and the bias scales (flatbuffer ``QuantizationParameters`` vectors) become holes too, so the core
writes everything that depends on the weights consistently after discretisation; the activation
scales and zero points stay stored bytes (they are the per-bucket calibration). Tensor names (debug
strings) are blanked in place, which more than halves what a graph costs in the bundle.

Every hole is checked against the converter's own bytes (fp32: bit-exact; int8: within one
quantisation step), so a converter that folds or re-lays out weights fails here, loudly, instead of
producing a graph that silently computes something else.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch

from inn_mobile.core.integral import IntegralModel
from inn_mobile.errors import LoweringError
from inn_mobile.format import reference, runtime_file
from inn_mobile.format.bundle import Bucket
from inn_mobile.format.vocab import TFLITE_FILE
from inn_mobile.format.vocab import runtime_name as _runtime_name

RUNTIME = _runtime_name("litert", int8=False)
RUNTIME_I8 = _runtime_name("litert", int8=True)
FILE_NAME = TFLITE_FILE
# builtin operator code -> weight layouts the converter may use for it (see FORMAT.md "Graph records")
_CONV_2D, _DEPTHWISE_CONV_2D, _FULLY_CONNECTED = 3, 4, 9
_WEIGHT_OPS = {_CONV_2D: ("oti", "ito"), _DEPTHWISE_CONV_2D: ("ito",), _FULLY_CONNECTED: ("oit", "oti")}
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
    affine = [s.name for s in model.layers if s.kind == "affine"]
    if affine:
        raise LoweringError(f"standalone BatchNorm layers {affine} have no LiteRT lowering yet (fold them first)")
    with torch.no_grad():
        weights = model.weights_at(bucket.sizes)
        plain = model.build(weights)
    flat = to_tflite(plain, example_input, int8=int8, calibration=calibration)
    return [runtime_file.Image(FILE_NAME, flat, _holes(flat, model, weights, int8))]


def to_tflite(module: torch.nn.Module, example_input: torch.Tensor, *, int8: bool = False,
              calibration: torch.Tensor | None = None) -> bytes:
    """The ``.tflite`` of a plain network, exactly as :func:`lower` makes it before cutting the holes:
    what an app would ship per width without INN (the benchmark's baseline)."""
    import litert_torch

    if int8 and calibration is None:
        raise ValueError("int8 lowering needs calibration inputs to set the activation scales")
    with contextlib.redirect_stdout(io.StringIO()):  # litert-torch logs every conversion stage
        flat = bytes(litert_torch.convert(module.eval(), (example_input,)).model_content())
    if int8:
        flat = _quantize(flat, calibration, example_input.shape[0])
    return _erase_tensor_names(flat)


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

    code: int
    weight: object  # schema Tensor
    bias: object | None
    input_scale: float


def _holes(flat: bytes, model: IntegralModel, weights: dict, int8: bool) -> list[runtime_file.Hole]:
    """Locate and verify every layer's weight (and int8 scale/bias) ranges in ``flat``."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(flat, 0)
    holes: dict[int, tuple[runtime_file.Hole, bytes]] = {}
    found = set()
    for op in _weight_ops(root):
        layer, weight_hole = _match_weight(flat, root, op, model, weights, int8)
        found.add(layer)
        for h in [weight_hole, *_side_holes(flat, root, op, layer, int8)]:
            expected = _expected(model, weights, h)
            if len(expected) != h.size or not _close(flat[h.offset:h.offset + h.size], expected, h):
                raise LoweringError(f"layer {model.layers[layer].name!r}: the graph's {h.tensor} ({h.size} bytes) "
                                    "differs from the bucket's")
            _add(holes, h, expected)
    missing = [s.name for i, s in enumerate(model.layers) if i not in found]
    if missing:
        raise LoweringError(f"layers {missing} have no conv/depthwise/fully-connected weight in the graph "
                            "(the converter folded or split them)")
    return [h for h, _ in holes.values()]


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
            out.append(_Op(code, sg.Tensors(int(inputs[1])), bias, scale))
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


def _match_weight(flat: bytes, root, op: _Op, model: IntegralModel, weights: dict, int8: bool):
    """Which layer (and layout) this operator's weight buffer holds: the one whose reference bytes match."""
    start, size = _buffer_range(root, op.weight)
    want_type = _TFL_INT8 if int8 else _TFL_FLOAT32
    if op.weight.Type() != want_type or size == 0:
        raise LoweringError(f"operator {op.code}: its weight tensor is not a constant "
                            f"of type {want_type} (got type {op.weight.Type()}, {size} bytes)")
    actual = flat[start:start + size]
    itemsize = 1 if int8 else 4
    for i, spec in enumerate(model.layers):
        if weights[spec.name]["weight"].numel() * itemsize != size:
            continue
        for layout in _WEIGHT_OPS[op.code]:
            h = runtime_file.Hole(start, size, i, "weight", layout, "i8" if int8 else "f32")
            expected = _expected(model, weights, h)
            if len(expected) == size and _close(actual, expected, h):
                return i, h
    raise LoweringError(f"operator {op.code}: its weight ({size} bytes) matches no layer in the layouts "
                        f"{_WEIGHT_OPS[op.code]}: the converter transformed it")


def _side_holes(flat: bytes, root, op: _Op, layer: int, int8: bool) -> list[runtime_file.Hole]:
    """Bias, and for int8 the weight scales, int32 bias and bias scales, of a matched operator."""
    if op.bias is None:
        return []
    start, size = _buffer_range(root, op.bias)
    if not int8:
        return [runtime_file.Hole(start, size, layer, "bias", "oit", "f32")]
    if op.input_scale <= 0:
        raise LoweringError(f"int8 operator {op.code} has no per-tensor input scale")
    w_scale = _vector(op.weight.Quantization(), _QUANT_SCALE, 4)
    b_scale = _vector(op.bias.Quantization(), _QUANT_SCALE, 4)
    p = op.input_scale
    return [runtime_file.Hole(w_scale[0], w_scale[1], layer, "scale", "oit", "f32"),
            runtime_file.Hole(start, size, layer, "bias_i32", "oit", "i32", p),
            runtime_file.Hole(b_scale[0], b_scale[1], layer, "bias_scale", "oit", "f32", p)]


def _expected(model: IntegralModel, weights: dict, h: runtime_file.Hole) -> bytes:
    spec = model.layers[h.layer]
    return reference.hole_bytes(weights[spec.name], spec.kind, h, spec.taps)


def _close(actual: bytes, expected: bytes, h: runtime_file.Hole) -> bool:
    """fp32 weights/biases must be bit-exact; int8 values within one step of the core's rounding."""
    if h.dtype == "f32" and h.tensor in ("weight", "bias"):
        return actual == expected
    dtype = {"i8": np.int8, "i32": np.int32, "f32": np.float32}[h.dtype]
    a, e = np.frombuffer(actual, dtype).astype(np.float64), np.frombuffer(expected, dtype).astype(np.float64)
    if h.dtype == "f32":
        return bool(np.allclose(a, e, rtol=1e-5, atol=0))
    return bool(np.abs(a - e).max(initial=0) <= 1)


def _add(holes: dict[int, tuple[runtime_file.Hole, bytes]], h: runtime_file.Hole, expected: bytes) -> None:
    """Record ``h``; a buffer the converter shares between layers (identical constants are uniqued)
    stays one hole, which is sound only because both layers' tensors are the same bytes."""
    if h.offset in holes:
        prev, prev_bytes = holes[h.offset]
        if prev.size != h.size or prev_bytes != expected:
            raise LoweringError(f"layers {prev.layer} and {h.layer} share a buffer at byte {h.offset} "
                                "but need different contents")
        return
    holes[h.offset] = (h, expected)
