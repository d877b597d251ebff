"""Layers: the separated activation (an ``nn.PReLU``-like module) and the separated MLP."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init

from .autograd import separated_activation
from .functional import check_kind

__all__ = [
    "SeparatedActivation", "SeparatedMLP", "LinearStack",
    "activation_parameter_ids", "check_sizes", "empty_linear", "init_linear_",
]

_Init = float | Tensor


def _init_vector(value: _Init, n: int, name: str, device, dtype) -> Tensor:
    """A ``(n,)`` tensor from a scalar or a ``(n,)`` tensor, with a clear error."""
    t = torch.as_tensor(value, device=device, dtype=dtype)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t.clone()


class SeparatedActivation(nn.Module):
    r"""Per-neuron separated nonlinearity, paper eqs. (13)-(16).

    .. math::
        v = c\,(a + q), \qquad o = a + \varphi(v), \qquad
        \varphi_{relu}(v) = d\,|v|, \qquad \varphi_{softplus}(v) = 2 d \ln\cosh(v/2)

    Parameters ``q`` (offset), ``d`` (angle, any sign) and ``c = exp(log_c) > 0``
    (slope / curvature) have shape ``(num_neurons,)``. ``c`` is stored through its
    logarithm, so it is positive whatever an optimizer does; read it as ``.c``.
    For the ReLU analog only the product ``c d`` matters and the tuning rules keep ``c``.

    Shape: input ``(..., num_neurons)``, output the same.

    The forward pass computes this and nothing else (one fused autograd function,
    :func:`sepneuron.autograd.separated_activation`); the separate tuner records what it
    needs through hooks of its own (:class:`~sepneuron.tuning.SeparatedTuner`).
    """

    def __init__(
        self,
        num_neurons: int,
        kind: str = "softplus",
        *,
        q_init: _Init = 0.0,
        c_init: _Init = 1.0,
        d_init: _Init = 0.5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_neurons, int) or isinstance(num_neurons, bool) or num_neurons < 1:
            raise ValueError(f"num_neurons must be a positive int, got {num_neurons!r}")
        self.num_neurons = num_neurons
        self.kind = check_kind(kind)
        self.q = nn.Parameter(torch.empty(num_neurons, device=device, dtype=dtype))
        self.log_c = nn.Parameter(torch.empty(num_neurons, device=device, dtype=dtype))
        self.d = nn.Parameter(torch.empty(num_neurons, device=device, dtype=dtype))
        # Keep the validated initial values (not parameters, not saved) for reset_parameters().
        self._inits = (q_init, c_init, d_init)
        self._check_c(c_init)
        self.reset_parameters()

    @staticmethod
    def _check_c(c_init: _Init) -> None:
        if not bool((torch.as_tensor(c_init) > 0).all()):
            raise ValueError(f"c_init must be > 0 (c is a positive slope), got {c_init!r}")

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Set q, c, d back to their initial values."""
        q_init, c_init, d_init = self._inits
        n, dev, dt = self.num_neurons, self.q.device, self.q.dtype
        self.q.copy_(_init_vector(q_init, n, "q_init", dev, dt))
        self.log_c.copy_(_init_vector(c_init, n, "c_init", dev, dt).log())
        self.d.copy_(_init_vector(d_init, n, "d_init", dev, dt))

    @property
    def c(self) -> Tensor:
        """The positive slope / curvature ``exp(log_c)``, shape ``(num_neurons,)``."""
        return self.log_c.exp()

    def forward(self, a: Tensor) -> Tensor:
        if a.ndim == 0 or a.shape[-1] != self.num_neurons:
            raise ValueError(
                f"SeparatedActivation expects input of shape (..., {self.num_neurons}), "
                f"got {tuple(a.shape)}"
            )
        return separated_activation(a, self.q, self.log_c, self.d, self.kind)

    def extra_repr(self) -> str:
        return f"{self.num_neurons}, kind={self.kind!r}"


def activation_parameter_ids(module: nn.Module) -> set[int]:
    """``id`` of every ``q``, ``log_c``, ``d`` of the :class:`SeparatedActivation` layers in
    ``module`` (any module, not only a :class:`SeparatedMLP`)."""
    return {id(p) for m in module.modules() if isinstance(m, SeparatedActivation)
            for p in m.parameters()}


def empty_linear(fan_in: int, fan_out: int, *, device=None, dtype=None) -> nn.Linear:
    """An uninitialised ``nn.Linear`` (``skip_init``), so the global RNG is not drawn."""
    if device is None:
        device = torch.empty(0).device  # the default device
    return skip_init(nn.Linear, fan_in, fan_out, device=device, dtype=dtype)


@torch.no_grad()
def init_linear_(linear: nn.Linear, generator: torch.Generator | None = None) -> nn.Linear:
    """PyTorch's default ``nn.Linear`` init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
    drawn from ``generator`` instead of the global RNG."""
    bound = 1.0 / math.sqrt(linear.in_features)
    linear.weight.uniform_(-bound, bound, generator=generator)
    if linear.bias is not None:
        linear.bias.uniform_(-bound, bound, generator=generator)
    return linear


def check_sizes(in_features: int, hidden_sizes: Sequence[int], out_features: int) -> None:
    """Raise ``ValueError`` unless every size is a positive int."""
    named = [("in_features", in_features), ("out_features", out_features)]
    named += [("hidden_sizes", h) for h in hidden_sizes]
    for name, s in named:
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise ValueError(f"{name} must hold positive ints, got {s!r}")


class LinearStack(nn.Module):
    """``Linear -> make_activation(width)`` for each hidden layer, then a plain ``Linear``.

    The common body of :class:`SeparatedMLP` and :class:`~sepneuron.baselines.PlainMLP`.
    Linear layers are created uninitialised; subclasses draw them in ``reset_parameters``.
    Shapes: input ``(batch, in_features)``, output ``(batch, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        make_activation: Callable[[int], nn.Module],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        hidden_sizes = tuple(hidden_sizes)
        check_sizes(in_features, hidden_sizes, out_features)
        self.in_features, self.out_features = in_features, out_features
        self.hidden_sizes = hidden_sizes
        sizes = [in_features, *hidden_sizes, out_features]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
            layers.append(empty_linear(fan_in, fan_out, device=device, dtype=dtype))
            layers.append(make_activation(fan_out))
        layers.append(empty_linear(sizes[-2], sizes[-1], device=device, dtype=dtype))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (batch, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        return self.net(x)

    def linears(self) -> list[nn.Linear]:
        """The linear layers, input side first; the last is the output layer."""
        return [m for m in self.net if isinstance(m, nn.Linear)]


class SeparatedMLP(LinearStack):
    """``Linear -> SeparatedActivation`` for each hidden layer, then a plain ``Linear``.

    The output layer has no nonlinearity and is trained by ordinary back-propagation
    only (paper sec. 12). Shapes: input ``(batch, in_features)``, output
    ``(batch, out_features)``.

    ``generator`` draws the linear weights (PyTorch's default init); the activations
    start at ``q_init``, ``c_init``, ``d_init``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        kind: str = "softplus",
        *,
        q_init: _Init = 0.0,
        c_init: _Init = 1.0,
        d_init: _Init = 0.5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        check_kind(kind)
        super().__init__(
            in_features, hidden_sizes, out_features,
            lambda width: SeparatedActivation(
                width, kind, q_init=q_init, c_init=c_init, d_init=d_init, device=device, dtype=dtype
            ),
            device=device, dtype=dtype,
        )
        self.kind = kind
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw linear weights from ``generator``; reset activations to their inits."""
        for m in self.net:
            if isinstance(m, nn.Linear):
                init_linear_(m, generator)
            elif isinstance(m, SeparatedActivation):
                m.reset_parameters()

    def activations(self) -> list[SeparatedActivation]:
        """The separated activations, input side first."""
        return [m for m in self.net if isinstance(m, SeparatedActivation)]

    def linear_parameters(self) -> Iterator[nn.Parameter]:
        """Weights and biases: the "vector-linear" parameters, trained by backprop."""
        for lin in self.linears():
            yield from lin.parameters()

    def activation_parameters(self) -> Iterator[nn.Parameter]:
        """``q``, ``log_c``, ``d`` of every hidden layer: the "scalar-nonlinear" parameters."""
        for act in self.activations():
            yield from act.parameters()
