"""One ONNX emitter per module type: the standard operators of its forward pass.

Each ``emitter(graph, module, x) -> y`` (registered in :data:`sepneuron.onnx_graph.EMITTERS`)
appends the nodes of ``y = module(x)``; the formulas are listed in :mod:`sepneuron.export`.
Importing this module registers them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import LinearStack, SeparatedActivation
from .onnx_graph import OnnxGraph, emit, register_emitter
from .stages import ScaledStage, StagedModel

__all__: list[str] = []


@register_emitter(nn.Linear)
def _linear(g: OnnxGraph, m: nn.Linear, x: str) -> str:
    inputs = [x, g.const(m.weight, "weight")]  # (out, in): Gemm computes x W^T + b
    if m.bias is not None:
        inputs.append(g.const(m.bias, "bias"))
    return g.op("Gemm", *inputs, transB=1)


@register_emitter(SeparatedActivation)
def _separated(g: OnnxGraph, m: SeparatedActivation, a: str) -> str:
    with torch.no_grad():
        c = m.c  # exp(log_c) in the module's dtype, as its forward computes it
    v = g.op("Mul", g.const(c, "c"), g.op("Add", a, g.const(m.q, "q")))
    av = g.op("Abs", v)
    if m.kind == "relu":
        phi = av
    else:  # |v| + 2 log(1 + exp(-|v|)) - 2 ln 2 = 2 ln cosh(v / 2)
        soft = g.op("Log", g.op("Add", g.const(1.0, "one"), g.op("Exp", g.op("Neg", av))))
        phi = g.op("Sub", g.op("Add", av, g.op("Mul", g.const(2.0, "two"), soft)),
                   g.const(2.0 * math.log(2.0), "two_ln2"))
    return g.op("Add", a, g.op("Mul", g.const(m.d, "d"), phi))


@register_emitter(nn.ReLU)
def _relu(g: OnnxGraph, m: nn.Module, x: str) -> str:
    return g.op("Relu", x)


@register_emitter(nn.Tanh)
def _tanh(g: OnnxGraph, m: nn.Module, x: str) -> str:
    return g.op("Tanh", x)


@register_emitter(nn.Sigmoid)
def _sigmoid(g: OnnxGraph, m: nn.Module, x: str) -> str:
    return g.op("Sigmoid", x)


@register_emitter(nn.SiLU)
def _silu(g: OnnxGraph, m: nn.Module, x: str) -> str:
    return g.op("Mul", x, g.op("Sigmoid", x))


@register_emitter(nn.LeakyReLU)
def _leaky_relu(g: OnnxGraph, m: nn.LeakyReLU, x: str) -> str:
    # not ONNX LeakyRelu: its alpha is a float32 attribute, 2e-10 off the slope in float64
    above = g.op("Greater", x, g.const(0.0, "zero"))
    return g.op("Where", above, x, g.op("Mul", x, g.const(float(m.negative_slope), "slope")))


@register_emitter(nn.Softplus)
def _softplus(g: OnnxGraph, m: nn.Softplus, x: str) -> str:
    """torch: ``x`` where ``beta x > threshold``, else ``log(1 + exp(beta x)) / beta``,
    here as ``(max(bx, 0) + log(1 + exp(-|bx|))) / beta`` (no overflow)."""
    beta = float(m.beta)
    bx = x if beta == 1.0 else g.op("Mul", x, g.const(beta, "beta"))
    tail = g.op("Log", g.op("Add", g.const(1.0, "one"), g.op("Exp", g.op("Neg", g.op("Abs", bx)))))
    soft = g.op("Add", g.op("Relu", bx), tail)
    if beta != 1.0:
        soft = g.op("Div", soft, g.const(beta, "beta"))
    above = g.op("Greater", bx, g.const(float(m.threshold), "threshold"))
    return g.op("Where", above, x, soft)


@register_emitter(nn.Identity)
def _identity(g: OnnxGraph, m: nn.Module, x: str) -> str:
    return x


@register_emitter(nn.Sequential)
def _sequential(g: OnnxGraph, m: nn.Sequential, x: str) -> str:
    for child in m:
        x = emit(g, child, x)
    return x


@register_emitter(LinearStack)
def _linear_stack(g: OnnxGraph, m: LinearStack, x: str) -> str:
    return emit(g, m.net, x)


@register_emitter(ScaledStage)
def _scaled_stage(g: OnnxGraph, m: ScaledStage, x: str) -> str:
    return g.op("Mul", emit(g, m.net, x), g.const(m.scale, "stage_scale"))  # (batch, out)


@register_emitter(StagedModel)
def _staged_model(g: OnnxGraph, m: StagedModel, x: str) -> str:
    outs = [emit(g, stage, x) for stage in m.stages]
    return outs[0] if len(outs) == 1 else g.op("Sum", *outs)  # sum of the scaled stages
