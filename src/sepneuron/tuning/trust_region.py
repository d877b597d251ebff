"""The tuner's trust region: bounds on each step of ``q``, ``d`` and ``log c``."""

from __future__ import annotations

import torch
from torch import Tensor

from .statistics import Stats

__all__ = ["trust_region"]


def _finite(x: Tensor) -> Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def trust_region(dq, dd, dlogc, st: Stats, c, d, max_step: float):
    """Clamp each step to the trust region of :class:`SeparatedTuner`; non-finite -> 0.

    The bounds do not grow with the parameters themselves (no runaway):
    ``|dq| <= max_step * scale(a)`` with ``scale`` the batch spread of ``a`` (floored at
    ``1e-3`` of its RMS), ``|c dd| <= max_step`` (each asymptotic slope ``1 -+ c d``
    moves by at most ``max_step``) and ``|dlog c| <= max_step``.
    """
    n = st.n.clamp_min(1.0)
    mean_u = st.u1 / n
    mean_u2 = st.u2 / n
    var_u = (mean_u2 - mean_u * mean_u).clamp_min_(0.0)
    tiny = torch.finfo(c.dtype).eps
    scale = torch.maximum(var_u.sqrt_(), mean_u2.sqrt_().mul_(1e-3)).add_(tiny)
    bound_q = scale.mul_(max_step)
    bound_d = max_step / c
    dq = _finite(dq).clamp_(-bound_q, bound_q)
    dd = _finite(dd).clamp_(-bound_d, bound_d)
    dlogc = _finite(dlogc).clamp_(-max_step, max_step)
    return dq, dd, dlogc
