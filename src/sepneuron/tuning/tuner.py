"""The separate tuner: a ``torch.optim``-style optimizer for ``q``, ``c``, ``d``.

Usage, beside any optimizer for the weights::

    model = SeparatedMLP(2, [32, 32], 1, kind="softplus")
    opt = torch.optim.Adam(model.linear_parameters(), lr=3e-3)
    tuner = SeparatedTuner(model, rule="newton", gamma=0.3)
    for x, y in batches:
        opt.zero_grad(); tuner.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()          # the activations record (a, dE/do) on the way
        opt.step(); tuner.step()

The tuner costs one pass over the recorded tensors (:func:`compute_stats`), no extra
forward or backward. With ``torch.distributed`` initialised, the statistics -- plain sums
-- are all-reduced, so every rank takes the same step as one process on the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..layers import SeparatedActivation, SeparatedMLP
from .rules import RuleContext, get_rule
from .statistics import STAT_NAMES, Stats, compute_stats

__all__ = ["SeparatedTuner", "find_activations", "downstream_sensitivity"]

_REDUCTIONS = ("mean", "sum")
_SENSITIVITIES = ("auto", "gershgorin", "gauss_newton", "none")


def find_activations(obj: nn.Module | Iterable[SeparatedActivation]) -> list[SeparatedActivation]:
    """Every :class:`SeparatedActivation` in a module (in ``modules()`` order) or iterable."""
    if isinstance(obj, SeparatedActivation):
        return [obj]
    if isinstance(obj, nn.Module):
        return [m for m in obj.modules() if isinstance(m, SeparatedActivation)]
    acts = list(obj)
    if not all(isinstance(m, SeparatedActivation) for m in acts):
        raise ValueError("SeparatedTuner takes a module or an iterable of SeparatedActivation")
    return acts


def downstream_sensitivity(
    model: SeparatedMLP, mean_slopes: list[Tensor | None], mode: str = "diagonal"
) -> list[Tensor]:
    r"""Output sensitivity ``h_l`` of each hidden layer's neurons, shapes ``(N_l,)``.

    ``M_l = W_out diag(r_{L-1}) W_{L-1} ... diag(r_{l+1}) W_{l+1}`` is the linearised map
    from the outputs of hidden layer ``l`` to the network output, with ``r`` the RMS
    slope ``do/da`` of each neuron over the batch (``mean_slopes``; ``None`` means 1).

    * ``mode="diagonal"``: the Gauss-Newton diagonal ``h_i = ||M[:, i]||^2`` (exact for the
      last hidden layer, an approximation further in). Each neuron's step then cancels the
      residual as if it alone moved.
    * ``mode="gershgorin"``: ``h_i = L sum_j |M[:, i] . M[:, j]|`` with ``L`` the number of
      hidden layers: a Gershgorin bound of the coupling between the neurons of a layer
      (they all move at once) and between layers. Steps scaled by it do not overshoot
      when many neurons push the output the same way.
    """
    if mode not in ("diagonal", "gershgorin"):
        raise ValueError(f"mode must be 'diagonal' or 'gershgorin', got {mode!r}")
    linears = model.linears()
    n_hidden = len(linears) - 1
    sens: list[Tensor] = []
    m = linears[-1].weight.detach()                             # (out, N_{L-1})
    for layer in range(n_hidden - 1, -1, -1):
        if mode == "diagonal":
            sens.append((m * m).sum(0))
        else:
            sens.append(n_hidden * (m.T @ m).abs().sum(1))      # (N_l,)
        if layer > 0:
            r = mean_slopes[layer]
            scaled = m if r is None else m * r.unsqueeze(0)
            m = scaled @ linears[layer].weight.detach()           # (out, N_{l-1})
    return sens[::-1]


class SeparatedTuner(Optimizer):
    """Tunes the scalar-nonlinear parameters ``q``, ``d`` (and ``c``) of separated layers.

    Args:
        model: a module holding :class:`SeparatedActivation` layers (a
            :class:`SeparatedMLP`, a DDP wrapper of one, any ``nn.Module``), or an
            iterable of activations. Capture is switched on for each of them.
        rule: ``"paper"``, ``"newton"``, ``"gauss_newton"``, ``"grad"`` or a callable (see
            :mod:`sepneuron.tuning.rules`).
        gamma: step fraction (``> 0``), stored as the param group's ``"lr"`` so that
            ``torch.optim.lr_scheduler`` schedules it.
        max_step: trust region (``> 0``): per step ``|dq| <= max_step * spread(a)``,
            ``|c dd| <= max_step``, ``|dlog c| <= max_step``.
        reduction: ``"mean"`` if the loss averages over samples (then the recorded
            ``dE/do`` are multiplied by the batch size), ``"sum"`` if it sums; steps are
            then the same for both.
        tune_curvature: move ``c`` of SoftPlus layers (ReLU layers keep ``c``: only ``c d``
            matters there).
        damping: Levenberg-Marquardt ``lambda`` of the ``newton`` rule (``>= 0``).
        bend: half-width in ``v`` of the SoftPlus bend region used for ``c`` (``> 0``).
        sensitivity: how ``dE/do`` of a hidden neuron is turned into output-residual units
            (:func:`downstream_sensitivity`): ``"gershgorin"`` (the default, ``"auto"``, for a
            :class:`SeparatedMLP`), ``"gauss_newton"`` (the diagonal), or ``"none"``
            (``h = 1``; the default for other models, and right for a single neuron whose
            output is the network output).
        distributed: all-reduce the statistics when ``torch.distributed`` is initialised.
    """

    def __init__(
        self,
        model: nn.Module | Iterable[SeparatedActivation],
        rule="newton",
        gamma: float = 0.3,
        max_step: float = 0.2,
        *,
        reduction: str = "mean",
        tune_curvature: bool = True,
        damping: float = 1e-3,
        bend: float = 2.0,
        sensitivity: str = "auto",
        distributed: bool = True,
    ) -> None:
        get_rule(rule)
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        if not max_step > 0:
            raise ValueError(f"max_step must be > 0, got {max_step!r}")
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping!r}")
        if not bend > 0:
            raise ValueError(f"bend must be > 0, got {bend!r}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if sensitivity not in _SENSITIVITIES:
            raise ValueError(f"sensitivity must be one of {_SENSITIVITIES}, got {sensitivity!r}")
        inner = getattr(model, "module", model)  # unwrap DistributedDataParallel
        acts = find_activations(inner)
        if not acts:
            raise ValueError("no SeparatedActivation found: nothing for the tuner to tune")
        if sensitivity in ("gauss_newton", "gershgorin") and not isinstance(inner, SeparatedMLP):
            raise ValueError(f"sensitivity={sensitivity!r} needs a SeparatedMLP")
        self._mlp = inner if isinstance(inner, SeparatedMLP) and sensitivity != "none" else None
        self._sens_mode = "diagonal" if sensitivity == "gauss_newton" else "gershgorin"
        self._acts = acts
        self.distributed = distributed
        defaults = dict(
            rule=rule, lr=gamma, max_step=max_step, reduction=reduction,
            tune_curvature=tune_curvature, damping=damping, bend=bend,
        )
        groups = [{"params": [m.q, m.log_c, m.d]} for m in acts]
        super().__init__(groups, defaults)
        for m in acts:
            m.enable_capture(True)

    @property
    def activations(self) -> list[SeparatedActivation]:
        """The tuned layers, in param-group order."""
        return list(self._acts)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget recorded passes and clear the autograd grads of q, log c, d."""
        super().zero_grad(set_to_none)
        for m in self._acts:
            m.clear_captures()

    def release(self) -> None:
        """Switch capture off on every tuned layer (the tuner is done)."""
        for m in self._acts:
            m.enable_capture(False)

    @torch.no_grad()
    def layer_stats(self) -> list[Stats | None]:
        """Consume the recorded passes; one :class:`Stats` per layer (``None`` if none)."""
        out: list[Stats | None] = []
        for m, group in zip(self._acts, self.param_groups, strict=True):
            total = None
            q, c, d = m.q.detach(), m.c.detach(), m.d.detach()
            for a, g in m.pop_captures():
                if group["reduction"] == "mean":
                    g = g * a.shape[0]
                st = compute_stats(a, g, q, c, d, m.kind, bend=group["bend"])
                total = st if total is None else total + st
            out.append(total)
        dist = torch.distributed
        if self.distributed and dist.is_available() and dist.is_initialized():
            out = self._all_reduce(out)
        return out

    def _all_reduce(self, stats: list[Stats | None]) -> list[Stats | None]:
        flat = torch.cat([
            (st.data if st is not None else m.q.new_zeros(len(STAT_NAMES), m.num_neurons)).flatten()
            for st, m in zip(stats, self._acts, strict=True)
        ])
        torch.distributed.all_reduce(flat)
        out, offset = [], 0
        for m in self._acts:
            size = len(STAT_NAMES) * m.num_neurons
            chunk = flat[offset:offset + size].view(len(STAT_NAMES), m.num_neurons)
            out.append(Stats(chunk) if bool(chunk[-1].any()) else None)
            offset += size
        return out

    def _sensitivities(self, stats: list[Stats | None]) -> Sequence[Tensor | None]:
        if self._mlp is None:
            return [None] * len(stats)
        slopes = [None if st is None else (st.r2 / st.n.clamp_min(1.0)).sqrt() for st in stats]
        return downstream_sensitivity(self._mlp, slopes, self._sens_mode)

    @torch.no_grad()
    def step(self, closure=None):
        """Update q, d (and c) of every layer from the passes recorded since the last step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stats = self.layer_stats()
        sens = self._sensitivities(stats)
        for m, group, st, h in zip(self._acts, self.param_groups, stats, sens, strict=True):
            if st is None:
                continue
            q, c, d = m.q.detach(), m.c.detach(), m.d.detach()
            ctx = RuleContext(
                kind=m.kind, gamma=group["lr"],
                h=torch.ones_like(q) if h is None else h.to(q),
                tune_curvature=group["tune_curvature"], damping=group["damping"],
            )
            dq, dd, dlogc = get_rule(group["rule"])(st, q, c, d, ctx)
            dq, dd, dlogc = _trust_region(dq, dd, dlogc, st, c, d, group["max_step"])
            m.q.add_(dq)
            m.d.add_(dd)
            m.log_c.add_(dlogc)
            state = self.state[m.q]
            state["step"] = state.get("step", 0) + 1
        return loss


def _finite(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _trust_region(dq, dd, dlogc, st: Stats, c, d, max_step: float):
    """Clamp each step to the trust region of :class:`SeparatedTuner`; non-finite -> 0.

    The bounds do not grow with the parameters themselves (no runaway):
    ``|dq| <= max_step * scale(a)`` with ``scale`` the batch spread of ``a`` (floored at
    ``1e-3`` of its RMS), ``|c dd| <= max_step`` (each asymptotic slope ``1 -+ c d``
    moves by at most ``max_step``) and ``|dlog c| <= max_step``.
    """
    n = st.n.clamp_min(1.0)
    mean_u = st.u1 / n
    var_u = (st.u2 / n - mean_u * mean_u).clamp_min(0.0)
    tiny = torch.finfo(c.dtype).eps
    scale = torch.maximum(var_u.sqrt(), 1e-3 * (st.u2 / n).sqrt()) + tiny
    bound_q = max_step * scale
    bound_d = max_step / c
    dq = torch.maximum(torch.minimum(_finite(dq), bound_q), -bound_q)
    dd = torch.maximum(torch.minimum(_finite(dd), bound_d), -bound_d)
    dlogc = _finite(dlogc).clamp(-max_step, max_step)
    return dq, dd, dlogc
