r"""Per-sample Jacobians of a network's output and the chunked normal equations.

For a model ``f(x; p)`` with ``k`` outputs and the residuals ``r = (f(X) - Y).reshape(-1)``
(row ``i * k + j`` for sample ``i``, output ``j``), :func:`network_jacobian` returns
``J = d r / d p`` of shape ``(n k, P)`` for the chosen parameters ``p`` (in their order).

*Analytic path* (:func:`has_analytic_jacobian`): a stack ``Linear -> activation -> ...
-> Linear`` (a :class:`~sepneuron.layers.LinearStack`, e.g. ``SeparatedMLP`` or
``PlainMLP``, or an ``nn.Sequential`` of the same) with activations ``Tanh``, ``Softplus``,
``ReLU``, ``LeakyReLU``, ``SiLU`` or :class:`~sepneuron.layers.SeparatedActivation`. One
forward pass stores ``z_l = W_l h_{l-1} + b_l`` and ``h_l = act(z_l)``; then, per output
``j``, back-propagation *per sample*: ``g = W_L[j]``, and for each hidden layer
``delta_l = g * act'(z_l)``, ``dr/dW_l = delta_l h_{l-1}^T`` (an outer product per
sample), ``dr/db_l = delta_l``, ``g <- delta_l W_l``. For a separated activation
``o = a + d base(v)``, ``v = c (a + q)``, ``c = exp(log_c)``:
``do/da = 1 + c d base'(v)``, ``do/dq = c d base'(v)``, ``do/dlog_c = d base'(v) v``,
``do/dd = base(v)``. No autograd is involved, so the separate tuner's captures are not
touched. Cost ``O(n P)`` time and memory per chunk.

*Fallback* (any other model): ``torch.func.jacrev`` of one sample's output, ``vmap``-ed
over the samples (samples must not interact inside the model).

:func:`normal_equations` accumulates ``J^T J`` ``(P, P)`` and ``J^T r`` ``(P,)`` in float64
over chunks of ``chunk_size`` samples, so memory is ``O(chunk_size * P + P^2)`` whatever
``n`` is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from ..functional import base, base_slope
from ..layers import LinearStack, SeparatedActivation

__all__ = ["has_analytic_jacobian", "network_jacobian", "normal_equations", "sequential_of",
           "add_gram_", "symmetrize_upper_"]

_ELEMENTWISE = (nn.Tanh, nn.Softplus, nn.ReLU, nn.LeakyReLU, nn.SiLU, SeparatedActivation)


def sequential_of(model: nn.Module) -> nn.Sequential | None:
    """The ``nn.Sequential`` body of ``model`` (a ``LinearStack``'s ``net``, or the model)."""
    if isinstance(model, LinearStack):
        return model.net
    if isinstance(model, nn.Sequential):
        return model
    return None


def has_analytic_jacobian(model: nn.Module) -> bool:
    """Whether ``model`` is ``Linear (-> supported activation -> Linear)*`` (see module doc)."""
    seq = sequential_of(model)
    if seq is None or len(seq) % 2 != 1:
        return False
    return all(isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, _ELEMENTWISE)
               for i, m in enumerate(seq))


def _activation(m: nn.Module, z: Tensor) -> tuple[Tensor, Tensor, dict[int, Tensor]]:
    """``(h, dh/dz, {id(param): dh/dparam})`` of an elementwise activation; shapes of ``z``."""
    if isinstance(m, nn.Tanh):
        h = torch.tanh(z)
        return h, 1 - h * h, {}
    if isinstance(m, nn.Softplus):
        bz = m.beta * z
        h = F.softplus(z, m.beta, m.threshold)
        return h, torch.where(bz > m.threshold, torch.ones_like(z), torch.sigmoid(bz)), {}
    if isinstance(m, nn.ReLU):
        return torch.relu(z), (z > 0).to(z.dtype), {}
    if isinstance(m, nn.LeakyReLU):
        slope = torch.where(z > 0, torch.ones_like(z), torch.full_like(z, m.negative_slope))
        return F.leaky_relu(z, m.negative_slope), slope, {}
    if isinstance(m, nn.SiLU):
        s = torch.sigmoid(z)
        return z * s, s * (1 + z * (1 - s)), {}
    assert isinstance(m, SeparatedActivation)
    c, d = m.c, m.d
    v = c * (z + m.q)
    b, bs = base(v, m.kind), base_slope(v, m.kind)
    h = z + d * b
    cdbs = c * d * bs
    return h, 1 + cdbs, {id(m.q): cdbs, id(m.log_c): d * bs * v, id(m.d): b}


@torch.no_grad()
def _analytic(seq: nn.Sequential, x: Tensor, params: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``(prediction (c, k), J (c k, P))`` for a chunk ``x`` ``(c, in)`` of an analytic stack."""
    wanted = {id(p) for p in params}
    linears = [m for m in seq if isinstance(m, nn.Linear)]
    acts = [m for m in seq if not isinstance(m, nn.Linear)]
    h = x
    inputs, slopes, extras = [x], [], []
    for lin, act in zip(linears[:-1], acts, strict=True):
        h, slope, extra = _activation(act, F.linear(h, lin.weight, lin.bias))
        inputs.append(h)
        slopes.append(slope)
        extras.append(extra)
    out_layer = linears[-1]
    pred = F.linear(h, out_layer.weight, out_layer.bias)            # (c, k)
    n, k = pred.shape
    blocks: dict[int, Tensor] = {}                                  # id -> (c, k, numel)

    def put(p: Tensor | None, j: int, value: Tensor) -> None:
        if p is None or id(p) not in wanted:
            return
        if id(p) not in blocks:
            blocks[id(p)] = x.new_zeros(n, k, p.numel())
        blocks[id(p)][:, j] = value.reshape(n, -1)

    for j in range(k):
        if id(out_layer.weight) in wanted:  # dr_j/dW_L: h in row j, zeros elsewhere
            w_row = x.new_zeros(n, k, h.shape[1])
            w_row[:, j] = h
            put(out_layer.weight, j, w_row)
        if out_layer.bias is not None and id(out_layer.bias) in wanted:
            b_row = x.new_zeros(n, k)
            b_row[:, j] = 1.0
            put(out_layer.bias, j, b_row)
        g = out_layer.weight[j].expand(n, -1)                       # dr_j / dh_l, (c, width)
        for layer in range(len(linears) - 2, -1, -1):
            for pid, dh in extras[layer].items():
                if pid in wanted:
                    blocks.setdefault(pid, x.new_zeros(n, k, dh.shape[1]))[:, j] = g * dh
            delta = g * slopes[layer]                               # dr_j / dz_l
            lin = linears[layer]
            if id(lin.weight) in wanted:
                put(lin.weight, j, delta.unsqueeze(2) * inputs[layer].unsqueeze(1))
            put(lin.bias, j, delta)
            if layer > 0:
                g = delta @ lin.weight
    missing = [i for i, p in enumerate(params) if id(p) not in blocks]
    if missing:
        raise ValueError(f"parameters {missing} are not parameters of the model")
    jac = torch.cat([blocks[id(p)] for p in params], dim=2)         # (c, k, P)
    return pred, jac.reshape(n * k, -1)


def _functorch(model: nn.Module, x: Tensor, params: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``(prediction (c, k), J (c k, P))`` by ``vmap(jacrev)`` over the samples."""
    names = {id(p): name for name, p in model.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"parameters {missing} are not parameters of the model")
    chosen = {names[id(p)]: p.detach() for p in params}
    fixed = {nm: p.detach() for nm, p in model.named_parameters() if nm not in chosen}
    fixed.update(dict(model.named_buffers()))

    def one(sel: dict[str, Tensor], xi: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(model, {**fixed, **sel}, (xi.unsqueeze(0),)).reshape(-1)
        return out, out

    jac, pred = vmap(jacrev(one, has_aux=True), in_dims=(None, 0))(chosen, x)
    n, k = pred.shape
    cols = [jac[names[id(p)]].reshape(n * k, -1) for p in params]
    return pred.detach(), torch.cat(cols, dim=1).detach()


def network_jacobian(model: nn.Module, x: Tensor, params: list[Tensor], *,
                     analytic: bool | None = None) -> tuple[Tensor, Tensor]:
    """``(model(x) (n, k), J (n k, P))`` with ``J[i k + j] = d model(x)[i, j] / d params``.

    ``analytic=None`` takes the analytic path where :func:`has_analytic_jacobian`, else
    ``torch.func``; ``True`` / ``False`` force one (``True`` on an unsupported model is a
    ``ValueError``).
    """
    use = has_analytic_jacobian(model) if analytic is None else analytic
    if use:
        seq = sequential_of(model)
        if seq is None or not has_analytic_jacobian(model):
            raise ValueError(f"no analytic Jacobian for {type(model).__name__}")
        return _analytic(seq, x, params)
    return _functorch(model, x, params)


def _block_edges(p: int) -> list[int]:
    """Column-block edges for :func:`add_gram_`: blocks of about 150-300 columns, at most 8."""
    nb = max(1, min(8, p // 150))
    return [round(i * p / nb) for i in range(nb + 1)]


def add_gram_(acc: Tensor, jac: Tensor) -> Tensor:
    r"""Add ``jac^T jac`` to the *upper triangle* of ``acc`` ``(P, P)``; ``jac`` ``(m, P)``.

    Only the blocks on and above the diagonal of a partition of the columns into ``nb``
    blocks are formed (``acc[a, b:] += jac[:, a]^T jac[:, b:]``), about
    ``(nb + 1) / (2 nb)`` of the full product's work (a symmetric rank-``m`` update, which
    torch does not expose). The strictly lower blocks of ``acc`` are left untouched:
    :func:`symmetrize_upper_` completes the matrix once all chunks are in.
    """
    edges = _block_edges(jac.shape[1])
    for a0, a1 in zip(edges[:-1], edges[1:], strict=True):
        acc[a0:a1, a0:].addmm_(jac[:, a0:a1].T, jac[:, a0:])
    return acc


def symmetrize_upper_(acc: Tensor) -> Tensor:
    """Copy the upper blocks that :func:`add_gram_` filled onto the lower ones, in place."""
    edges = _block_edges(acc.shape[0])
    for a0, a1 in zip(edges[:-1], edges[1:], strict=True):
        acc[a1:, a0:a1] = acc[a0:a1, a1:].T
    return acc


def normal_equations(model: nn.Module, X: Tensor, Y: Tensor, params: list[Tensor], *,
                     chunk_size: int = 4096, analytic: bool | None = None
                     ) -> tuple[Tensor, Tensor, float]:
    """``(J^T J (P, P), J^T r (P,), 0.5 ||r||^2)`` in float64, ``r = (model(X) - Y).reshape(-1)``.

    Accumulated ``chunk_size`` samples at a time: memory ``O(chunk_size * k * P + P^2)``;
    ``J^T J`` by its upper blocks (:func:`add_gram_`), then mirrored.
    """
    f64 = torch.float64
    jtj = jtr = None
    half_sse = 0.0
    for start in range(0, X.shape[0], chunk_size):
        pred, jac = network_jacobian(model, X[start:start + chunk_size], params, analytic=analytic)
        r = (pred - Y[start:start + chunk_size]).reshape(-1).to(f64)
        jac = jac.to(f64)
        if jtj is None or jtr is None:
            jtj = jac.new_zeros(jac.shape[1], jac.shape[1])
            jtr = jac.new_zeros(jac.shape[1])
        add_gram_(jtj, jac)        # upper blocks only: half the work of jac.T @ jac
        jtr.addmv_(jac.T, r)
        half_sse += 0.5 * float(r @ r)
    if jtj is None or jtr is None:
        raise ValueError("X has no samples")
    return symmetrize_upper_(jtj), jtr, half_sse

