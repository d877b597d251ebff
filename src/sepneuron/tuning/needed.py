r"""Only the statistics a rule reads, in few passes: the tuner's fast path.

:func:`~sepneuron.tuning.statistics.compute_stats` (the reference) forms every one of the
``len(STAT_NAMES)`` sums with about 60 passes over ``(batch, N)``. Each rule declares the
names it reads (:data:`RULE_STATS`); the tuner adds ``n, u1, u2`` (trust region) and
``r2`` (downstream sensitivity). This module computes those, and the rest stays zero.

Notation as in :mod:`~sepneuron.tuning.statistics`: ``u = a + q``, ``v = c u``,
``s = base'(v)``, ``J_q = c d s``, ``J_d = base(v)``, ``J_logc = d v s``. Per-neuron factors
are taken out of the sums, and the analogs' identities do the rest:

* ReLU analog: ``s = +-1`` and ``base(v) = c|u|``, so ``sum J_q^2 = (cd)^2 n``,
  ``sum J_q J_d = cd c sum u``, ``sum J_d^2 = c^2 u2``, ``r2 = n (1 + (cd)^2) + 2 cd sum s``;
  a group sum of ``delta = g r`` is ``(1 -+ cd)`` times the group sum of ``g``.
* SoftPlus analog: with ``t = tanh(v/2)`` and ``w = v t``, the Gauss-Newton block is
  ``(cd)^2 sum t^2``, ``cd sum t base``, ``cd d sum t w``, ``sum base^2``, ``d sum base w``,
  ``d^2 sum w^2``.

Rules without side groups (``gauss_newton``, ``grad``) take their sums from the saved
intermediates (:func:`_gram_stats`): one column sum per per-sample feature (``u, u^2,
[u >= 0]``, or ``u, u^2, t, t^2, t base, base^2, t w, base w, w^2``) and row block.

The gradient sums ``grad_q, grad_d, grad_c`` (``sum g J``) are the autograd gradients of
``q, d, log c``, which the backward pass forms anyway; the tuner reads them there
(:func:`gradient_rows`). Only ``newton`` and ``paper`` read ``g`` itself (group sums).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..autograd import _row_slices
from ..functional import softplus_base
from .statistics import STAT_NAMES

__all__ = ["RULE_STATS", "GRADIENT_STATS", "needed_stats", "needs_g", "forward_stats"]

_GROUPS = ("L", "R", "B")
RULE_STATS: dict[str, frozenset[str]] = {
    "paper": frozenset({"S_L", "S_R", "S_B", "n_L", "n_R", "A_L", "A_R", "Jc_B"}),
    "newton": frozenset({f"{x}_{grp}" for x in ("n", "G", "Jq", "Jd", "Jc") for grp in _GROUPS}),
    "gauss_newton": frozenset({"grad_q", "grad_d", "grad_c", "qq", "qd", "qc", "dd", "dc", "cc"}),
    "grad": frozenset({"grad_q", "grad_d", "grad_c", "n"}),
}
"""The statistics each named rule reads (a rule given as a callable reads all of them)."""

GRADIENT_STATS = ("grad_q", "grad_d", "grad_c")
_CURVATURE_ONLY = frozenset({"grad_c", "qc", "dc", "cc", "Jc_L", "Jc_R", "n_B", "S_B", "G_B",
                             "Jq_B", "Jd_B", "Jc_B"})


@functools.lru_cache(maxsize=256)
def needed_stats(rule: object, curvature: bool, sensitivity: bool) -> frozenset[str]:
    """The names to compute for ``rule`` (a name or a callable).

    ``curvature``: ``c`` is tuned (SoftPlus analog with ``tune_curvature``); otherwise the
    ``c`` and bend statistics are never read. ``sensitivity``: the tuner needs ``r2``.
    """
    names = RULE_STATS.get(rule, frozenset(STAT_NAMES)) if isinstance(rule, str) else \
        frozenset(STAT_NAMES)
    names = names | {"n", "u1", "u2"} | ({"r2"} if sensitivity else set())
    if not curvature and names != frozenset(STAT_NAMES):
        names = names - _CURVATURE_ONLY
    return names


def needs_g(names: frozenset[str]) -> bool:
    """Whether any name but the gradient sums reads ``dE/do`` (group sums of g or delta)."""
    return any(n[0] in "SG" and n[1] == "_" for n in names)


def _total(t: Tensor) -> Tensor:
    return t.sum(0)


def _sq(t: Tensor) -> Tensor:
    return (t * t).sum(0)


def _dot(x: Tensor, y: Tensor, buf: Tensor) -> Tensor:
    """``sum_b x y`` per column, the product written into the scratch ``buf``."""
    return torch.mul(x, y, out=buf).sum(0)


def forward_stats(a: Tensor, g: Tensor | None, q: Tensor, c: Tensor, d: Tensor, kind: str,
                  names: frozenset[str], bend: float,
                  inner: tuple[Tensor, ...] | None = None) -> dict[str, Tensor]:
    """The non-gradient statistics among ``names`` of one pass, each ``(N,)``.

    ``a``, ``g`` ``(B, N)`` (``g`` in sum-reduction units; ``None`` when no name reads it).
    ``inner``: the activation's saved ``(u,)`` or ``(v, base, t)``, each ``(B, N)``
    (:func:`sepneuron.autograd.saved_intermediates`), else they are recomputed. On the
    CPU the rows are summed in chunks of about 64k elements, so that the temporaries stay
    in cache.
    """
    if inner is not None and not names & _GROUP_NAMES:
        return _gram_stats(a, q, c, d, kind, names, inner)
    blocks = _row_slices(a)
    if blocks is None:
        return _chunk_stats(a, g, q, c, d, kind, names, bend, inner)
    total: dict[str, Tensor] = {}
    for part in blocks:
        sums = _chunk_stats(a[part], None if g is None else g[part], q, c, d, kind, names,
                            bend, None if inner is None else tuple(t[part] for t in inner))
        total = sums if not total else {k: total[k] + v for k, v in sums.items()}
    return total


def _chunk_stats(a, g, q, c, d, kind, names, bend, inner) -> dict[str, Tensor]:
    n_rows = a.shape[0]
    cd = c * d
    if kind == "relu":
        u = a + q if inner is None else inner[0]
        buf = torch.empty_like(u)
        out: dict[str, Tensor] = {"u1": _total(u), "u2": _dot(u, u, buf)}
        _relu_stats(out, u, g, c, cd, names, float(n_rows))
    else:
        u = a + q
        out = {"u1": _total(u), "u2": _sq(u)}
        _softplus_stats(out, u, g, c, d, cd, names, bend, inner)
    out["n"] = torch.full_like(q, float(n_rows))
    return {k: v for k, v in out.items() if k in names}


_GROUP_NAMES = frozenset(n for n in STAT_NAMES if n[-2:] in ("_L", "_R", "_B"))
_CURVATURE_GRAM = frozenset({"qc", "dc", "cc"})


def _gram_stats(a: Tensor, q: Tensor, c: Tensor, d: Tensor, kind: str, names: frozenset[str],
                inner: tuple[Tensor, ...]) -> dict[str, Tensor]:
    """The sums of a rule without side groups (``gauss_newton``, ``grad``) from the saved
    intermediates: one reduction per per-sample feature and row block.

    The features are ``u, u^2, [u >= 0]`` (ReLU analog; ``u`` is the saved one) or
    ``u, u^2, t, t^2, t base, base^2`` and, when ``c`` is tuned, ``t w, base w, w^2``
    (SoftPlus, ``w = v t``); the per-neuron factors are applied at the end.
    """
    curvature = kind != "relu" and bool(names & _CURVATURE_GRAM)
    blocks = _row_slices(a)
    if blocks is None:
        total = _feature_sums(a, q, inner, kind, curvature)
    else:
        total = []
        for part in blocks:
            block = _feature_sums(a[part], q, tuple(x[part] for x in inner), kind, curvature)
            total = block if not total else [x.add_(y) for x, y in zip(total, block, strict=True)]
    n = float(a.shape[0])
    cd = c * d
    out: dict[str, Tensor] = {"n": torch.full_like(q, n), "u1": total[0], "u2": total[1]}
    if kind == "relu":
        n_right = total[2]
        out["n_R"] = n_right
        out["r2"] = n * (1 + cd * cd) + 2 * cd * (2 * n_right - n)
        out["qq"], out["qd"], out["dd"] = cd * cd * n, cd * c * out["u1"], c * c * out["u2"]
    else:
        sq_t = total[3]
        out["r2"] = n + 2 * cd * total[2] + cd * cd * sq_t
        out["qq"] = cd * cd * sq_t
        out["qd"] = cd * total[4]
        out["dd"] = total[5]
        if curvature:
            out["qc"] = cd * d * total[6]
            out["dc"] = d * total[7]
            out["cc"] = d * d * total[8]
    return {key: val for key, val in out.items() if key in names}


def _feature_sums(a: Tensor, q: Tensor, inner: tuple[Tensor, ...], kind: str,
                  curvature: bool) -> list[Tensor]:
    """The column sums of :func:`_gram_stats`'s features over one row block, each ``(N,)``."""
    if kind == "relu":
        (u,) = inner
        # [u >= 0] = min(sign u + 1, 1): exact, also at u = 0 and u = -0.0
        return [u.sum(0), (u * u).sum(0), u.sign().add_(1.0).clamp_(max=1.0).sum(0)]
    v, base, t = inner
    u = a + q
    out = [u.sum(0), u.mul_(u).sum(0), t.sum(0), (t * t).sum(0)]
    tb = t * base
    out += [tb.sum(0), (base * base).sum(0)]
    if curvature:
        w = v * t
        out += [tb.copy_(t).mul_(w).sum(0), (base * w).sum(0), w.mul_(w).sum(0)]
    return out


def _relu_stats(out, u, g, c, cd, names, n) -> None:
    pos = u >= 0
    if names & {"r2", "n_L", "n_R", "Jq_L", "Jq_R"}:
        n_right = pos.sum(0).to(u.dtype)
        out["n_R"] = n_right
        if "r2" in names:
            out["r2"] = n * (1 + cd * cd) + 2 * cd * (2 * n_right - n)
        if names & {"n_L", "Jq_L", "Jq_R"}:
            out["n_L"] = n - n_right
            out["Jq_L"], out["Jq_R"] = -cd * out["n_L"], cd * n_right
    if names & {"qq", "qd", "dd"}:
        out["qq"], out["qd"], out["dd"] = cd * cd * n, cd * c * out["u1"], c * c * out["u2"]
    if names & {"A_L", "A_R", "Jd_L", "Jd_R"}:
        zero = u.new_zeros(())
        out["A_R"] = _total(torch.where(pos, u, zero))
        out["A_L"] = -_total(torch.where(pos, zero, u))
        out["Jd_L"], out["Jd_R"] = c * out["A_L"], c * out["A_R"]
    if g is not None:
        zero = g.new_zeros(())
        out["G_R"] = _total(torch.where(pos, g, zero))
        out["G_L"] = _total(torch.where(pos, zero, g))
        out["S_L"], out["S_R"] = (1 - cd) * out["G_L"], (1 + cd) * out["G_R"]


def _softplus_stats(out, u, g, c, d, cd, names, bend, inner) -> None:
    v, base_saved, t = (u * c, None, None) if inner is None else inner
    if t is None:
        t = torch.tanh(0.5 * v)
    if names & {"r2", "qq"}:
        sq_t = _sq(t)
        out["r2"] = float(u.shape[0]) + 2 * cd * _total(t) + cd * cd * sq_t
        out["qq"] = cd * cd * sq_t
    need_base = names & {"qd", "dd", "dc", "Jd_L", "Jd_R", "Jd_B"}
    base = (softplus_base(v) if base_saved is None else base_saved) if need_base else None
    w = v * t if names & {"qc", "dc", "cc", "Jc_L", "Jc_R", "Jc_B"} else None
    if base is not None and names & {"qd", "dd"}:
        out["qd"] = cd * _total(t * base)
        out["dd"] = _sq(base)
    if base is not None and w is not None and names & {"qc", "dc", "cc"}:
        out["qc"] = cd * d * _total(t * w)
        out["dc"] = d * _total(base * w)
        out["cc"] = d * d * _sq(w)
    group_names = {x for x in names if x[-2:] in ("_L", "_R", "_B")}
    if not group_names:
        return
    masks = {"R": v >= 0, "L": v < 0, "B": v.abs() < bend}
    zero = u.new_zeros(())
    gt = g * t if g is not None else None
    for grp, m in masks.items():
        if not any(x.endswith("_" + grp) for x in group_names):
            continue
        out[f"n_{grp}"] = m.sum(0).to(u.dtype)
        out[f"Jq_{grp}"] = cd * _total(torch.where(m, t, zero))
        if base is not None:
            out[f"Jd_{grp}"] = _total(torch.where(m, base, zero))
        if w is not None:
            out[f"Jc_{grp}"] = d * _total(torch.where(m, w, zero))
        if grp != "B":
            sign = 1.0 if grp == "R" else -1.0
            out[f"A_{grp}"] = sign * _total(torch.where(m, u, zero))
        if g is not None and gt is not None:
            out[f"G_{grp}"] = _total(torch.where(m, g, zero))
            out[f"S_{grp}"] = out[f"G_{grp}"] + cd * _total(torch.where(m, gt, zero))
