"""The tuner's trust region: bounds on each step of ``q``, ``d`` and ``log c``."""

from __future__ import annotations

import torch
from torch import Tensor

from .statistics import Stats

__all__ = ["trust_region"]


def _finite(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def trust_region(dq, dd, dlogc, st: Stats, c, d, max_step: float):
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
