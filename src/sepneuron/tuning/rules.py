r"""Rules that turn a layer's statistics into steps of ``q``, ``d`` and ``log c``.

Every rule has the signature ``rule(stats, q, c, d, ctx) -> (dq, dd, dlogc)``, all
``(N,)``, vectorised over the neurons of a layer. ``stats`` is a
:class:`~sepneuron.tuning.statistics.Stats`; ``ctx`` a :class:`RuleContext`.
The tuner bounds the steps afterwards (trust region), so rules need not.

Notation (per neuron): ``S_L, S_R`` half-sums of ``delta = dE/da`` left/right of the
kink, ``n_L, n_R`` counts, ``A_L, A_R`` sums of ``|a + q|``, ``G`` sums of
``g = dE/do``, ``J`` sums of ``do/d(q, d, log c)``. ``h`` is the downstream sensitivity
(Gauss-Newton diagonal, see the tuner): ``delta / h`` and ``g / h`` are in the units of
the network's residual, which the paper's single-neuron derivation assumes.

``paper`` -- the formulas as printed (eqs. 20-24), read in ``a``-space:

.. math::
    r_L = 1 - cd,\ r_R = 1 + cd,\qquad
    \Delta q_s = -\gamma \frac{S_s}{n_s r_s},\qquad
    \Delta d_s = -\gamma \frac{S_s}{c A_s},\qquad
    \Delta = \frac{\Delta_L |S_L| + \Delta_R |S_R|}{|S_L| + |S_R|}.

Eq. (24) prints ``delta * o_j`` in its numerator; ``d`` is one scalar per neuron and ``j``
is free there, so we read it as ``delta`` alone (a slip). For the SoftPlus analog the
paper asks for ``c`` to be tuned too but gives no formula; we use the same form on the
bend region ``B``: ``dlog c = -gamma S_B / sum_B do/dlog c``.

``newton`` -- per neuron, the step ``theta = (dq, dd[, dlog c])`` whose first-order change
of each group's mean output cancels ``gamma`` times that group's mean residual:

.. math::
    \bar J_G \, \theta = -\gamma\, \bar g_G / h, \quad G \in \{L, R\}\ (\cup \{B\}),

solved in the least-squares sense with Levenberg-Marquardt damping
``(A^T A + lambda diag(A^T A) + mu I) theta = A^T b``. Groups without samples drop out.
For the SoftPlus analog the bend group ``B = {|v| < bend}`` adds the curvature equation:
the residual near the bend, which the asymptotes cannot explain, is what ``c`` fixes.

``grad`` -- plain gradient descent, ``theta = -gamma dE/dtheta`` (mean over samples): the
"learnable activation" ablation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .statistics import STAT_NAMES, Stats

__all__ = [
    "RuleContext", "Rule", "RULES", "get_rule",
    "paper_rule", "newton_rule", "gauss_newton_rule", "grad_rule",
]


@dataclass(frozen=True)
class RuleContext:
    """Settings a rule reads. ``h`` is ``(N,)``, the downstream sensitivity (>= 0)."""

    kind: str
    gamma: float
    h: Tensor
    tune_curvature: bool = True   # SoftPlus only: move c as well
    damping: float = 1e-3         # newton: Levenberg-Marquardt lambda


Rule = Callable[[Stats, Tensor, Tensor, Tensor, RuleContext], tuple[Tensor, Tensor, Tensor]]


def safe_div(num: Tensor, den: Tensor, eps: float = 1e-12) -> Tensor:
    """``num / den`` where ``|den| > eps``, else 0: an empty or degenerate group adds nothing."""
    ok = den.abs() > eps
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _weighted_sides(step_l: Tensor, step_r: Tensor, w_l: Tensor, w_r: Tensor) -> Tensor:
    """Eq. (23): the |S|-weighted average of the two sides' steps."""
    return safe_div(step_l * w_l + step_r * w_r, w_l + w_r)


def _curvature_on(ctx: RuleContext) -> bool:
    return ctx.kind == "softplus" and ctx.tune_curvature


def paper_rule(st: Stats, q: Tensor, c: Tensor, d: Tensor, ctx: RuleContext):
    """The paper's eqs. (20)-(24); see the module docstring."""
    h = ctx.h
    s_l, s_r = safe_div(st.S_L, h), safe_div(st.S_R, h)
    cd = c * d
    r_l, r_r = 1.0 - cd, 1.0 + cd
    dq_l = -ctx.gamma * safe_div(s_l, st.n_L * r_l, 1e-6)
    dq_r = -ctx.gamma * safe_div(s_r, st.n_R * r_r, 1e-6)
    dd_l = -ctx.gamma * safe_div(s_l, c * st.A_L)
    dd_r = -ctx.gamma * safe_div(s_r, c * st.A_R)
    w_l, w_r = s_l.abs(), s_r.abs()
    dq = _weighted_sides(dq_l, dq_r, w_l, w_r)
    dd = _weighted_sides(dd_l, dd_r, w_l, w_r)
    if _curvature_on(ctx):
        dlogc = -ctx.gamma * safe_div(safe_div(st.S_B, h), st.Jc_B)
    else:
        dlogc = torch.zeros_like(dq)
    return dq, dd, dlogc


def _params(ctx: RuleContext) -> tuple[str, ...]:
    return ("q", "d", "c") if _curvature_on(ctx) else ("q", "d")


def _damped_solve(normal: Tensor, rhs: Tensor, damping: float) -> Tensor:
    """Solve ``(M + lambda diag(M) + mu I) x = rhs`` batched over neurons; non-finite -> 0.

    ``normal`` ``(N, P, P)``, ``rhs`` ``(N, P)``; ``mu`` is a tiny relative floor so that a
    parameter with no effect (e.g. ``q`` when ``d = 0``) gets a zero step, not a NaN.
    """
    diag = torch.diagonal(normal, dim1=-2, dim2=-1)                              # (N, P)
    tiny = torch.finfo(normal.dtype).tiny ** 0.5
    mu = diag.mean(-1, keepdim=True).mul_(1e-9).add_(tiny)                       # (N, 1)
    damped = normal.clone()
    torch.diagonal(damped, dim1=-2, dim2=-1).add_(diag * damping + mu)
    # solve_ex: no error check, hence no host synchronisation on a GPU; a singular
    # system gives non-finite entries, which become 0 below.
    theta = torch.linalg.solve_ex(damped, rhs.unsqueeze(-1))[0].squeeze(-1)       # (N, P)
    return theta.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def _split(theta: Tensor, ctx: RuleContext):
    dq, dd = theta[..., 0], theta[..., 1]
    dlogc = theta[..., 2] if _curvature_on(ctx) else torch.zeros_like(dq)
    return dq, dd, dlogc


@functools.lru_cache(maxsize=8)
def _gauss_newton_rows(names: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Rows of ``STAT_NAMES`` holding the block ``sum J_i J_j`` (row-major ``P x P``) and
    the gradient sums ``sum g J_i``, for the parameters ``names``."""
    pair = [STAT_NAMES.index("".join(sorted((i, j), key=names.index)))
            for i in names for j in names]
    return pair, [STAT_NAMES.index(f"grad_{p}") for p in names]


def gauss_newton_rule(st: Stats, q: Tensor, c: Tensor, d: Tensor, ctx: RuleContext):
    """Per-neuron Gauss-Newton block: ``theta = -gamma (h sum J J^T)^-1 sum g J``."""
    names = _params(ctx)
    pair, grad_rows = _gauss_newton_rows(names)
    p = len(names)
    data = st.data   # rows gathered by Python ints: views, no index tensor to copy to a GPU
    normal = (torch.stack([data[i] for i in pair]) * ctx.h).T.reshape(-1, p, p)  # (N, P, P)
    grad = torch.stack([data[i] for i in grad_rows], dim=1)                      # (N, P)
    return _split(_damped_solve(normal, grad * -ctx.gamma, ctx.damping), ctx)


def newton_rule(st: Stats, q: Tensor, c: Tensor, d: Tensor, ctx: RuleContext):
    """Cancel each group's mean residual to first order (damped least squares)."""
    groups = ("L", "R", "B") if _curvature_on(ctx) else ("L", "R")
    cols = tuple(f"J{p}" for p in _params(ctx))
    counts = torch.stack([getattr(st, f"n_{g}") for g in groups], dim=-1)        # (N, G)
    valid = (counts > 0).to(q.dtype)
    safe_counts = counts.clamp_min(1.0)
    # (N, G, P): mean Jacobian of each group; (N, G): target mean change of each group.
    jac = torch.stack(
        [torch.stack([getattr(st, f"{col}_{g}") for col in cols], dim=-1) for g in groups],
        dim=-2,
    ) / safe_counts.unsqueeze(-1)
    target = -ctx.gamma * safe_div(
        torch.stack([getattr(st, f"G_{g}") for g in groups], dim=-1), ctx.h.unsqueeze(-1)
    ) / safe_counts
    jac = jac * valid.unsqueeze(-1)
    target = target * valid
    normal = jac.transpose(-1, -2) @ jac                                          # (N, P, P)
    rhs = (jac.transpose(-1, -2) @ target.unsqueeze(-1)).squeeze(-1)              # (N, P)
    return _split(_damped_solve(normal, rhs, ctx.damping), ctx)


def grad_rule(st: Stats, q: Tensor, c: Tensor, d: Tensor, ctx: RuleContext):
    """``-gamma * mean-loss gradient``; ``c`` moves for the SoftPlus analog only."""
    n = st.n.clamp_min(1.0)
    dq = -ctx.gamma * st.grad_q / n
    dd = -ctx.gamma * st.grad_d / n
    dlogc = -ctx.gamma * st.grad_c / n if _curvature_on(ctx) else torch.zeros_like(dq)
    return dq, dd, dlogc


RULES: dict[str, Rule] = {
    "paper": paper_rule,
    "newton": newton_rule,
    "gauss_newton": gauss_newton_rule,
    "grad": grad_rule,
}


def get_rule(rule: str | Rule) -> Rule:
    """Look a rule up by name, or accept a callable with the rule signature."""
    if callable(rule):
        return rule
    try:
        return RULES[rule]
    except KeyError:
        raise ValueError(f"unknown rule {rule!r}; known rules: {sorted(RULES)}") from None
