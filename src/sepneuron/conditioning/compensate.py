r"""Subtask 7: compensate the output layer's step for the changes made to earlier layers.

In one training step every layer moves at once: the output layer ``f = H W^T + b`` takes
its step ``-eta g`` with ``g = dE/d(W, b)`` computed on the features ``H`` *before* the
hidden layers moved, but it is applied to the features ``H'`` the hidden layers produce
*after* their gradient steps, the tuner's ``q, c, d`` steps and every other component's
edits. On ``H'`` the step is no longer along the negative gradient.

Compensation makes it so again. After all other edits of the step, with the output layer
still at its old ``(W, b)``:

.. math::
    f' = H' W^T + b, \qquad
    \delta'_L = \delta_L + \tfrac{2}{N m}(f' - f), \qquad
    g' = (\delta_L'^T H',\; \mathbf{1}^T \delta'_L),

where ``delta_L = dE/df`` was recorded in the backward pass (``N m`` entries of ``f``).
The addition to the output delta is exact for the mean squared error that
:func:`sepneuron.fit` minimises (``dE/df`` is affine in ``f`` with slope ``2/(N m)``), so
``g'`` is the exact gradient at the point where the output layer moves. The output
layer's step ``Delta`` taken by the optimizer is then replaced by
``Delta - eta (g' - g)``, with ``eta = -<Delta, g> / |g|^2`` the optimizer's step length
along ``g``. For plain SGD (``Delta = -lr g``) the result is exactly ``-lr g'``: the
output layer moves along the negative gradient of the loss at the parameters it moves
from. For momentum or Adam it is the optimizer's own step plus the same first-order
correction for the change of the gradient.

Cost: one forward pass without autograd. No-op for steps where the gradient was
evaluated more than once (L-BFGS line searches) or never (Levenberg-Marquardt).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._common import Component, find_blocks

__all__ = ["Compensate"]


class Compensate(Component):
    """``compensate``: put the output layer's step on the negative gradient at the new features.

    Runs after every other component (``order`` 100). Assumes the loss is the mean
    squared error of the model output (what :func:`sepneuron.fit` uses).

    After each step, :attr:`last_correction` holds ``|eta (g' - g)| / |Delta|`` (0 when
    skipped).
    """

    name = "compensate"
    order = 100

    def __init__(self, every: int = 1) -> None:
        super().__init__(every)
        self._out: nn.Linear | None = None
        self._x: Any = None               # model input of the last training forward
        self._h: Tensor | None = None     # (batch, hidden) input of the output layer
        self._f: Tensor | None = None     # (batch, out) output of the output layer
        self._delta: Tensor | None = None  # (batch, out) dE/df
        self._evals = 0                   # gradient evaluations since the last step
        self._snap: list[Tensor] | None = None
        self.last_correction = 0.0

    def attach(self, model: nn.Module) -> None:
        blocks = find_blocks(model)
        if blocks[-1].act is not None:
            raise ValueError("compensate needs a model whose last layer is a plain nn.Linear")
        self._out = out = blocks[-1].linear

        def model_input(mod: nn.Module, args: tuple[Any, ...]) -> None:
            if torch.is_grad_enabled() and args:
                self._x = args[0].detach() if isinstance(args[0], Tensor) else None

        def output_layer(mod: nn.Module, args: tuple[Tensor, ...], f: Tensor) -> None:
            if torch.is_grad_enabled() and f.requires_grad:
                self._h, self._f, self._delta = args[0].detach(), f.detach(), None

                def record(g: Tensor) -> None:
                    self._delta = g.detach()

                f.register_hook(record)

        self._handles += [model.register_forward_pre_hook(model_input),
                          out.register_forward_hook(output_layer)]

    def detach(self) -> None:
        super().detach()
        self._x = self._h = self._f = self._delta = None
        self._snap = None

    def _params(self) -> list[Tensor]:
        assert self._out is not None
        return [p for p in (self._out.weight, self._out.bias) if p is not None]

    @torch.no_grad()
    def before_update(self, model: nn.Module) -> None:
        self._evals += 1
        params = self._params()
        grads = [p.grad for p in params if p.grad is not None]
        if (self._evals == 1 and self.active and self._delta is not None
                and len(grads) == len(params)):
            self._snap = [t.detach().clone()
                          for p, g in zip(params, grads, strict=True) for t in (p, g)]
        else:
            self._snap = None

    @torch.no_grad()
    def after_update(self, model: nn.Module) -> None:
        self.last_correction = 0.0
        if self._snap is not None and self._evals == 1 and self._x is not None:
            self._compensate(model)
        self._evals, self._snap = 0, None
        super().after_update(model)

    def _new_features(self, model: nn.Module) -> Tensor:
        assert self._out is not None
        seen: list[Tensor] = []
        handle = self._out.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
        try:
            model(self._x)
        finally:
            handle.remove()
        return seen[-1]

    def _compensate(self, model: nn.Module) -> None:
        params = self._params()
        h, f, delta = self._h, self._f, self._delta
        # before_update snapshots only after a forward (h, f) and backward (delta)
        assert self._snap is not None and h is not None and f is not None and delta is not None
        old, grads = self._snap[0::2], self._snap[1::2]
        h_new = self._new_features(model).reshape(h.shape)
        w_old = old[0]
        b_old = old[1] if len(old) > 1 else None
        f_new = torch.nn.functional.linear(h_new, w_old, b_old)         # (batch, out)
        delta_new = delta + (2.0 / f.numel()) * (f_new - f)             # MSE: dE/df is affine
        d2 = delta_new.reshape(-1, delta_new.shape[-1])
        g_new = [d2.T @ h_new.reshape(-1, h_new.shape[-1])]             # (out, hidden)
        if b_old is not None:
            g_new.append(d2.sum(0))
        step = [p.detach() - o for p, o in zip(params, old, strict=True)]
        gg = torch.stack([(g * g).sum() for g in grads]).sum()  # 1-2 terms: exact sums
        sg = torch.stack([(s * g).sum() for s, g in zip(step, grads, strict=True)]).sum()
        eta = -sg / gg if gg > 0 else gg.new_zeros(())
        fix = [eta * (gn - g) for gn, g in zip(g_new, grads, strict=True)]
        if not (torch.isfinite(eta) and eta > 0 and all(torch.isfinite(t).all() for t in fix)):
            return
        step_norm = torch.stack([(s * s).sum() for s in step]).sum().sqrt()
        for p, t in zip(params, fix, strict=True):
            p.sub_(t)
        fix_norm = torch.stack([(t * t).sum() for t in fix]).sum().sqrt()
        self.last_correction = float(fix_norm / step_norm) if step_norm > 0 else 0.0
