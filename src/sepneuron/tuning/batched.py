"""One rule call for several layers: their per-neuron statistics side by side.

Every rule, the trust region and the update act per neuron, so the layers of one tuner
that share kind and settings (and a named rule) can be stepped as one layer of
``sum N_l`` neurons: the ``(len(STAT_NAMES), N_l)`` statistics are concatenated along the
neurons, the rule runs once, and the steps are split back. On small layers this divides
the number of small tensor operations per step by the number of layers.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..layers import SeparatedActivation
from .rules import RuleContext, get_rule
from .statistics import Stats
from .trust_region import trust_region

__all__ = ["buckets", "layer_steps"]

Item = tuple[SeparatedActivation, dict, Stats]


def buckets(layers: Iterable[SeparatedActivation], groups: Iterable[dict],
            stats: Iterable[Stats | None]) -> list[list[Item]]:
    """The recorded layers, grouped by kind and settings; a callable rule gets its own."""
    out: dict[tuple, list[Item]] = {}
    for m, group, st in zip(layers, groups, stats, strict=True):
        if st is None:
            continue
        rule = group["rule"]
        key = (m.kind, rule, group["lr"], group["tune_curvature"], group["damping"],
               group["max_step"]) if isinstance(rule, str) else (id(m),)
        out.setdefault(key, []).append((m, group, st))
    return list(out.values())


def layer_steps(items: list[Item], sens: dict, reduced: bool) -> list[Tensor]:
    """``[dq, dlog c, dd]`` of each layer of ``items`` (equal settings), in that order.

    ``sens``: layer -> downstream sensitivity ``(N_l,)`` (all layers or none: ``h = 1``);
    ``reduced``: the statistics are all-reduced, so a layer with ``n = 0`` gets no step.
    """
    m0, group, st0 = items[0]
    acts = [m for m, _, _ in items]
    if len(items) == 1:
        st = st0
        q, log_c, d = m0.q.detach(), m0.log_c.detach(), m0.d.detach()
    else:
        st = Stats(torch.cat([s.data for _, _, s in items], dim=1))
        q, log_c, d = (torch.cat([getattr(m, k).detach() for m in acts])
                       for k in ("q", "log_c", "d"))
    c = log_c.exp()
    hs = [sens[m] for m in acts if m in sens]
    h = torch.ones_like(q) if len(hs) < len(acts) else \
        (hs[0] if len(hs) == 1 else torch.cat(hs)).to(q)
    ctx = RuleContext(kind=m0.kind, gamma=group["lr"], h=h,
                      tune_curvature=group["tune_curvature"], damping=group["damping"])
    dq, dd, dlogc = get_rule(group["rule"])(st, q, c, d, ctx)
    dq, dd, dlogc = trust_region(dq, dd, dlogc, st, c, d, group["max_step"])
    if reduced:  # a layer no rank recorded has n = 0: no step
        seen = st.n > 0
        dq, dd, dlogc = (torch.where(seen, x, torch.zeros_like(x)) for x in (dq, dd, dlogc))
    if len(items) == 1:
        return [dq, dlogc, dd]
    sizes = [m.num_neurons for m in acts]
    return [x for triple in zip(dq.split(sizes), dlogc.split(sizes), dd.split(sizes),
                                strict=True) for x in triple]
