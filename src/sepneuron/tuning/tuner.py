"""The separate tuner: a ``torch.optim``-style optimizer for ``q``, ``c``, ``d``.

Usage, beside any optimizer for the weights::

    model = SeparatedMLP(2, [32, 32], 1, kind="softplus")
    opt = torch.optim.Adam(model.linear_parameters(), lr=3e-3)
    tuner = SeparatedTuner(model, rule="newton", gamma=0.3)
    for x, y in batches:
        opt.zero_grad(); tuner.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()          # the tuner's hooks sum the statistics on the way back
        opt.step(); tuner.step()

The tuner installs a forward hook on each :class:`SeparatedActivation` (the layer itself
records nothing). For every forward pass that is back-propagated, outside ``torch.func``
transforms, a hook on the layer's output sums, during the backward pass, the statistics
that the rule declares (:mod:`~sepneuron.tuning.needed`); the gradient sums are the
autograd gradients of ``q, d, log c``. No extra forward or backward pass. With
``torch.distributed`` initialised, the statistics -- plain sums -- are all-reduced, so
every rank takes the same step as one process on the whole batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..autograd import saved_intermediates
from ..layers import SeparatedActivation, SeparatedMLP
from .batched import buckets, layer_steps
from .needed import GRADIENT_STATS, forward_stats, needed_stats, needs_g
from .rules import get_rule
from .sensitivity import downstream_sensitivity
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


def _under_transform() -> bool:
    """Whether we are inside a ``torch.func`` transform (vmap, grad, jacrev) or compiling."""
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and functorch.peek_interpreter_stack() is not None:
        return True
    return bool(torch.compiler.is_compiling())


class _Record:
    """Sums of one layer's recorded passes since the last step: name -> ``(N,)``."""

    __slots__ = ("sums", "passes", "rows")

    def __init__(self, sums: dict[str, Tensor], rows: int) -> None:
        self.sums, self.passes, self.rows = sums, 1, rows

    def add(self, sums: dict[str, Tensor], rows: int) -> None:
        for k, v in sums.items():
            self.sums[k] = self.sums[k] + v
        self.passes += 1
        self.rows += rows


class SeparatedTuner(Optimizer):
    """Tunes the scalar-nonlinear parameters ``q``, ``d`` (and ``c``) of separated layers.

    Args:
        model: a module holding :class:`SeparatedActivation` layers (a
            :class:`SeparatedMLP`, a DDP wrapper of one, any ``nn.Module``), or an
            iterable of activations. The tuner hooks each of them until :meth:`release`.
        rule: ``"paper"``, ``"newton"``, ``"gauss_newton"``, ``"grad"`` or a callable (see
            :mod:`sepneuron.tuning.rules`; a callable gets every statistic).
        gamma: step fraction (``> 0``), stored as the param group's ``"lr"`` so that
            ``torch.optim.lr_scheduler`` schedules it.
        max_step: trust region (``> 0``): per step ``|dq| <= max_step * spread(a)``,
            ``|c dd| <= max_step``, ``|dlog c| <= max_step``.
        reduction: ``"mean"`` if the loss averages over samples (then ``dE/do`` and the
            gradients of ``q, d, log c`` are multiplied by the batch size; passes summed
            between two steps are taken to have equal batches), ``"sum"`` if it sums;
            steps are then the same for both.
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

    Each param group holds ``[q, log_c, d]`` of one layer; the tuner finds the layer from
    the group's own parameters, so groups and layers cannot fall out of step.

    ``recording`` (``True`` at construction): while ``False`` the hooks sum nothing, so a
    pass that no :meth:`step` will read costs no statistics (``fit`` with ``tune_every =
    k`` records only the passes of every ``k``-th step; a step after unrecorded passes
    alone moves nothing). It is not part of :meth:`state_dict`.
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
        self.distributed = distributed
        defaults = dict(
            rule=rule, lr=gamma, max_step=max_step, reduction=reduction,
            tune_curvature=tune_curvature, damping=damping, bend=bend,
        )
        super().__init__([{"params": [m.q, m.log_c, m.d]} for m in acts], defaults)
        self._owner = {id(m.q): m for m in acts}        # a group's q -> its layer
        self._records: dict[SeparatedActivation, _Record] = {}
        # one entry per pass seen inside torch.compile since zero_grad (a list: dynamo
        # replays a list's mutation, not an attribute's assignment)
        self._compiled_passes: list[int] = []
        self.recording = True
        ref = weakref.ref(self)

        def on_forward(module: nn.Module, args: tuple, out: Any) -> None:
            tuner = ref()
            if tuner is not None:
                tuner._on_forward(module, args, out)

        self._handles = [m.register_forward_hook(on_forward) for m in acts]

    # -- layers and groups ------------------------------------------------------------
    def _layer(self, group: dict) -> SeparatedActivation:
        params = group["params"]
        m = self._owner.get(id(params[0])) if len(params) == 3 else None
        if m is None or params[1] is not m.log_c or params[2] is not m.d:
            raise ValueError("a SeparatedTuner param group must hold [q, log_c, d] of one layer")
        return m

    def _group(self, module: SeparatedActivation) -> dict:
        for group in self.param_groups:
            if group["params"][0] is module.q:
                return group
        raise ValueError("this layer is not tuned by this tuner")

    @property
    def activations(self) -> list[SeparatedActivation]:
        """The tuned layers, in param-group order."""
        return [self._layer(g) for g in self.param_groups]

    def _names(self, module: SeparatedActivation, group: dict) -> frozenset[str]:
        curvature = module.kind == "softplus" and group["tune_curvature"]
        return needed_stats(group["rule"], curvature, self._mlp is not None)

    # -- recording --------------------------------------------------------------------
    def _on_forward(self, module: nn.Module, args: tuple, out: Any) -> None:
        if not (self.recording and torch.is_grad_enabled() and isinstance(out, Tensor)
                and out.requires_grad):
            return
        if _under_transform():   # vmap / jacrev / compile: nothing may escape
            if torch.compiler.is_compiling():
                self._compiled_passes.append(1)   # step() refuses: it would get nothing
            return
        assert isinstance(module, SeparatedActivation)
        a = args[0].detach()
        node = out.grad_fn            # the fused function's node: its saved u or v, base, t
        ref = weakref.ref(self)

        def on_grad(g: Tensor) -> None:
            tuner = ref()
            if tuner is not None and tuner._handles:
                tuner._record(module, a, g.detach(), saved_intermediates(node))

        out.register_hook(on_grad)

    @torch.no_grad()
    def _record(self, m: SeparatedActivation, a: Tensor, g: Tensor,
                inner: tuple[Tensor, ...] | None = None) -> None:
        """Sum the statistics of one back-propagated pass ``(a, dE/do)`` of layer ``m``.

        ``inner``: the activation's saved intermediates (else recomputed from ``a``).
        """
        group = self._group(m)
        names = self._names(m, group)
        a = a.reshape(-1, m.num_neurons)
        rows = a.shape[0]
        q, c, d = m.q.detach(), m.log_c.detach().exp(), m.d.detach()
        if names == _ALL or needs_g(names):
            g = g.reshape(-1, m.num_neurons)
            if group["reduction"] == "mean":
                g = g * rows
        if names == _ALL:   # a rule given as a callable: the reference pass, every sum
            sums = {"all": compute_stats(a, g, q, c, d, m.kind, bend=group["bend"]).data}
        else:
            if inner is not None:
                inner = tuple(t.reshape(-1, m.num_neurons) for t in inner)
            sums = forward_stats(a, g if needs_g(names) else None, q, c, d, m.kind, names,
                                 group["bend"], inner)
        rec = self._records.get(m)
        if rec is None:
            self._records[m] = _Record(sums, rows)
        else:
            rec.add(sums, rows)

    def _assemble(self, m: SeparatedActivation, group: dict, rec: _Record) -> Tensor:
        """The ``(len(STAT_NAMES), N)`` statistics of a record; unread names stay 0."""
        if "all" in rec.sums:
            return rec.sums["all"]
        rows = dict(rec.sums)
        scale = rec.rows / rec.passes if group["reduction"] == "mean" else 1.0
        names = self._names(m, group)
        for name, p in zip(GRADIENT_STATS, (m.q, m.d, m.log_c), strict=True):
            if name in names:
                rows[name] = p.grad.detach() * scale if p.grad is not None \
                    else torch.zeros_like(m.q.detach())
                p.grad = None   # consumed with the record, so a step never reads them twice
        zero = m.q.new_zeros(m.num_neurons)
        return torch.stack([rows.get(name, zero) for name in STAT_NAMES])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget recorded passes and clear the autograd grads of q, log c, d."""
        super().zero_grad(set_to_none)
        self._records.clear()
        self._compiled_passes.clear()

    def release(self) -> None:
        """Remove the tuner's hooks from every tuned layer (the tuner is done)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._records.clear()

    # -- statistics and the step ------------------------------------------------------
    @torch.no_grad()
    def layer_stats(self) -> list[Stats | None]:
        """Consume the recorded passes; one :class:`Stats` per param group (``None`` if none).

        Only the statistics the rule reads (and ``n, u1, u2, r2``) are filled in; under
        ``torch.distributed`` every layer gets its all-reduced sums (``n = 0``: no pass).
        """
        out: list[Stats | None] = []
        for group in self.param_groups:
            m = self._layer(group)
            rec = self._records.pop(m, None)
            out.append(None if rec is None else Stats(self._assemble(m, group, rec)))
        if self._reduces():
            out = self._all_reduce(out)
        return out

    def _reduces(self) -> bool:
        return bool(self.distributed and torch.distributed.is_available()
                    and torch.distributed.is_initialized())

    def _all_reduce(self, stats: list[Stats | None]) -> list[Stats | None]:
        layers = [self._layer(g) for g in self.param_groups]
        flat = torch.cat([
            (st.data if st is not None else m.q.new_zeros(len(STAT_NAMES), m.num_neurons)).flatten()
            for st, m in zip(stats, layers, strict=True)
        ])
        torch.distributed.all_reduce(flat)
        out: list[Stats | None] = []
        offset = 0
        for m in layers:
            size = len(STAT_NAMES) * m.num_neurons
            out.append(Stats(flat[offset:offset + size].view(len(STAT_NAMES), m.num_neurons)))
            offset += size
        return out

    def _sensitivities(self, stats: dict[SeparatedActivation, Stats]) -> dict:
        if self._mlp is None:
            return {}
        chain = self._mlp.activations()
        slopes = [None if m not in stats else (stats[m].r2 / stats[m].n.clamp_min(1.0)).sqrt()
                  for m in chain]
        sens = downstream_sensitivity(self._mlp, slopes, self._sens_mode)
        return dict(zip(chain, sens, strict=True))

    @torch.no_grad()
    def step(self, closure=None):
        """Update q, d (and c) of every layer from the passes recorded since the last step.

        Layers with the same kind and settings and a named rule are stepped together: their
        per-neuron statistics are concatenated and the rule, the trust region and the update
        run once for all of them (every rule is per neuron, so this is the same step). No
        host synchronisation: layers without a recorded pass anywhere (``n = 0`` after an
        all-reduce) get a zero step by a mask, not by a branch.

        ``RuntimeError`` if a pass since the last :meth:`zero_grad` ran inside
        ``torch.compile``: the tuner's hooks record nothing there, so ``q, c, d`` would
        silently stay where they are.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._compiled_passes:
            self._compiled_passes.clear()
            raise RuntimeError(
                "SeparatedTuner.step: the model ran inside torch.compile, where the tuner's "
                "hooks record no statistics, so q, c, d would not move; run the separated "
                "model uncompiled when a tuner trains it (docs/scaling.md)")
        groups = self.param_groups
        layers = [self._layer(g) for g in groups]
        stats = self.layer_stats()
        by_layer = {m: st for m, st in zip(layers, stats, strict=True) if st is not None}
        sens = self._sensitivities(by_layer)
        reduced = self._reduces()
        for items in buckets(layers, groups, stats):
            acts = [m for m, _, _ in items]
            params = [p for m in acts for p in (m.q, m.log_c, m.d)]
            torch._foreach_add_(params, layer_steps(items, sens, reduced))  # type: ignore[arg-type]
            for m in acts:
                state = self.state[m.q]
                state["step"] = state.get("step", 0) + 1
        return loss


_ALL = frozenset(STAT_NAMES)
