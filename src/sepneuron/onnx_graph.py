"""The ONNX graph being built and the registry of per-module emitters.

:class:`OnnxGraph` collects nodes and constants in one float dtype; :data:`EMITTERS` maps a
module type to the function that writes its forward pass as ONNX nodes (the emitters
themselves: :mod:`sepneuron.onnx_emitters`); :func:`emit` looks one up by the module's type or
the nearest registered base class whose ``forward`` it does not override. The graph's
inputs, outputs and metadata: :mod:`sepneuron.export`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EMITTERS", "Emitter", "OnnxGraph", "register_emitter", "emit", "require_onnx"]

_DTYPES = {"float64": np.float64, "float32": np.float32}


def require_onnx():
    """The ``onnx`` module; ``ImportError`` naming the extra to install without it."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - exercised only without onnx
        raise ImportError("ONNX export needs the onnx package: "
                          "pip install sepneuron[onnx]") from None
    return onnx


class OnnxGraph:
    """The nodes and constant tensors of a graph being built, all in one float ``dtype``.

    :meth:`const` adds a constant (rounded to the graph's dtype) and :meth:`op` a node; both
    return the name of their output, so emitters read like the formulas they implement.
    """

    def __init__(self, dtype: str = "float64") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.np_dtype = np.dtype(_DTYPES[dtype])
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: Any, hint: str = "const") -> str:
        """A constant tensor (scalar, vector or matrix; a torch tensor or array-like)."""
        onnx = require_onnx()
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value, dtype=self.np_dtype)
        if not np.isfinite(arr).all():
            raise ValueError(f"cannot export {hint}: it holds NaN or Inf")
        name = self._name(hint)
        self.initializers.append(onnx.numpy_helper.from_array(arr, name))
        return name

    def const_int64(self, values: list[int], hint: str) -> str:
        """A constant int64 vector (shapes, axes)."""
        onnx = require_onnx()
        name = self._name(hint)
        self.initializers.append(onnx.numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        """Append node ``op_type(inputs)`` with ``attrs``; returns its output's name."""
        onnx = require_onnx()
        out = self._name(op_type.lower())
        self.nodes.append(onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


Emitter = Callable[[OnnxGraph, Any, str], str]
EMITTERS: dict[type, Emitter] = {}
"""Module type -> ``emitter(graph, module, x) -> y``: the ONNX nodes of ``module(x)``."""


def register_emitter(cls: type) -> Callable[[Emitter], Emitter]:
    """Decorator: use the function for modules of type ``cls`` (and subclasses that keep
    its ``forward``)."""
    def add(fn: Emitter) -> Emitter:
        EMITTERS[cls] = fn
        return fn
    return add


def emit(g: OnnxGraph, module: nn.Module, x: str) -> str:
    """The nodes of ``module(x)``; ``ValueError`` for a module without an emitter."""
    for cls in type(module).__mro__:
        fn = EMITTERS.get(cls)
        if fn is None:
            continue
        own, registered = getattr(type(module), "forward", None), getattr(cls, "forward", None)
        if cls is type(module) or own is registered:
            return fn(g, module, x)
        break  # a subclass that computes something else: refuse rather than guess
    known = ", ".join(sorted(c.__name__ for c in EMITTERS))
    raise ValueError(f"cannot export {type(module).__qualname__} to ONNX: no emitter for it "
                     f"(supported modules: {known})")
