"""ONNX export of a trained network, standardisation included.

The graph is built directly with ``onnx.helper`` from the module's weights (no tracing):
one *emitter* per module type writes the standard ONNX operators that compute that
module's forward pass. For an input ``X`` ``(batch, m)`` in the user's units the graph is::

    Z = (X - x_mean) / x_scale                    # skipped without a standardisation
    H = network(Z)                                 # Linear -> activation ... -> Linear
    Y = H * y_scale + y_mean                       # (batch, k); (batch,) with squeeze_output

Emitters (:data:`EMITTERS`, written in :mod:`sepneuron.onnx_emitters`; add one with
:func:`register_emitter`):

* ``nn.Linear``: ``Gemm(x, W, b, transB=1)``.
* :class:`~sepneuron.layers.SeparatedActivation`, ``v = c (a + q)``: the ReLU analog
  ``a + d |v|`` (``Abs``); the SoftPlus analog
  ``a + d (|v| + 2 log(1 + exp(-|v|)) - 2 ln 2)`` (``Abs``, ``Exp``, ``Log``), the
  overflow-free formula of :mod:`sepneuron.functional` (ONNX has no ``Log1p``; the
  absolute error of ``log(1 + t)`` for ``t <= 1`` is one rounding, 1e-16 in float64).
* Plain activations: ``ReLU``, ``Tanh``, ``Sigmoid``, ``LeakyReLU`` (``Where``: ONNX's
  ``LeakyRelu`` keeps its slope in float32), ``SiLU`` (``x Sigmoid(x)``), ``Softplus``
  (``beta``, ``threshold`` as in torch; built from ``Exp`` and ``Log`` because
  onnxruntime has no float64 ``Softplus`` kernel), ``Identity``.
* Containers: ``nn.Sequential``, :class:`~sepneuron.layers.LinearStack` (so ``SeparatedMLP``
  and ``PlainMLP``), and residual stages (:class:`~sepneuron.stages.StagedModel`: ``Sum``
  of ``Mul(stage(x), scale)``).

A module is matched by its type or the nearest registered base class whose ``forward`` it
does not override; anything else raises ``ValueError`` naming it. Dynamic batch dimension;
float64 or float32 graph (weights rounded to it). Float32 agrees with the float64 model to
~1e-6..1e-5 of the target's spread while the network is well conditioned; with large slopes
``1 +- c d`` or the exact output layer's large cancelling weights every float32 evaluation,
torch's too, loses digits: export float64 then. Needs ``pip install sepneuron[onnx]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from . import onnx_emitters  # noqa: F401  (registers the emitters)
from .onnx_graph import EMITTERS, OnnxGraph, emit, register_emitter, require_onnx

__all__ = ["EMITTERS", "OnnxGraph", "register_emitter", "emit", "to_onnx", "save_onnx"]

OPSET = 17      # operators used exist since opset 13; 17 is read by every current runtime
IR_VERSION = 8  # the IR version of opset 17 (newer IR versions are refused by older runtimes)


def _io_sizes(model: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)``: the model's attributes, else its first and last Linear."""
    n_in, n_out = getattr(model, "in_features", None), getattr(model, "out_features", None)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if n_in is None and linears:
        n_in = linears[0].in_features
    if n_out is None and linears:
        n_out = linears[-1].out_features
    if not (isinstance(n_in, int) and isinstance(n_out, int)):
        raise ValueError(f"cannot tell the input and output sizes of {type(model).__qualname__}: "
                         "give it in_features and out_features attributes")
    return n_in, n_out


def _vector(value: Any, n: int, name: str, *, positive: bool = False) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {np.shape(value)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if positive and not (arr > 0).all():
        raise ValueError(f"{name} must be > 0")
    return arr


def to_onnx(
    model: nn.Module,
    *,
    x_mean: Any = None,
    x_scale: Any = None,
    y_mean: Any = None,
    y_scale: Any = None,
    dtype: str = "float64",
    squeeze_output: bool = False,
    input_name: str = "X",
    output_name: str = "y",
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """The ``onnx.ModelProto`` of ``Y = model((X - x_mean) / x_scale) * y_scale + y_mean``.

    ``X`` is ``(batch, in_features)`` and ``Y`` ``(batch, out_features)`` (``(batch,)`` with
    ``squeeze_output`` for one output), both of ``dtype``, the batch size dynamic. The four
    vectors are optional (``None``: no shift / no scaling) and have the model's input or output
    width; scales must be positive. ``metadata`` goes into the file's ``metadata_props`` (as
    strings) beside ``sepneuron_version``, ``input_name``, ``output_name``, ``n_features``,
    ``n_outputs``, ``dtype`` and ``model``. The model is checked with ``onnx.checker``.
    """
    onnx = require_onnx()
    from onnx import helper

    from . import __version__

    n_in, n_out = _io_sizes(model)
    if squeeze_output and n_out != 1:
        raise ValueError(f"squeeze_output needs one output, the model has {n_out}")
    if not (input_name and output_name and input_name != output_name):
        raise ValueError("input_name and output_name must be two different non-empty strings")
    x_mean, y_mean = _vector(x_mean, n_in, "x_mean"), _vector(y_mean, n_out, "y_mean")
    x_scale = _vector(x_scale, n_in, "x_scale", positive=True)
    y_scale = _vector(y_scale, n_out, "y_scale", positive=True)
    g = OnnxGraph(dtype)
    h = input_name
    if x_mean is not None:
        h = g.op("Sub", h, g.const(x_mean, "x_mean"))
    if x_scale is not None:
        h = g.op("Div", h, g.const(x_scale, "x_scale"))
    h = emit(g, model, h)
    if y_scale is not None:
        h = g.op("Mul", h, g.const(y_scale, "y_scale"))
    if y_mean is not None:
        h = g.op("Add", h, g.const(y_mean, "y_mean"))
    if squeeze_output:
        h = g.op("Squeeze", h, g.const_int64([1], "axis"))
    g.nodes.append(helper.make_node("Identity", [h], [output_name]))

    elem = onnx.helper.np_dtype_to_tensor_dtype(g.np_dtype)
    out_shape: list[str | int] = ["batch"] if squeeze_output else ["batch", n_out]
    graph = helper.make_graph(
        g.nodes, "sepneuron", [helper.make_tensor_value_info(input_name, elem, ["batch", n_in])],
        [helper.make_tensor_value_info(output_name, elem, out_shape)], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sepneuron", producer_version=__version__)
    proto.ir_version = IR_VERSION
    proto.doc_string = (f"{type(model).__name__}: {input_name} (batch, {n_in}) -> {output_name} "
                        f"({'batch' if squeeze_output else f'batch, {n_out}'}), {dtype}, "
                        "standardisation included")
    props = {"sepneuron_version": __version__, "input_name": input_name,
             "output_name": output_name, "n_features": n_in, "n_outputs": n_out,
             "dtype": dtype, "model": _describe(model)}
    props.update(metadata or {})
    helper.set_model_props(proto, {str(k): _text(v) for k, v in props.items()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _text(v: Any) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return str(v)


def _describe(model: nn.Module) -> str:
    """``SeparatedMLP 2 -> 29,29 -> 1 (softplus)``-like, for the metadata."""
    name = type(model).__name__
    hidden = getattr(model, "hidden_sizes", None)
    if hidden is None:
        return name
    n_in, n_out = _io_sizes(model)
    act = getattr(model, "kind", None) or getattr(model, "activation", None)
    arch = f"{name} {n_in} -> {','.join(map(str, hidden))} -> {n_out}"
    return arch + (f" ({act})" if act else "")


def save_onnx(proto: Any, path: str | os.PathLike) -> Path:
    """Write ``proto`` to ``path`` atomically (:func:`sepneuron.checkpoint.atomic_open`)."""
    from .checkpoint import atomic_open

    with atomic_open(path, "wb") as f:
        f.write(proto.SerializeToString())
    return Path(path)
