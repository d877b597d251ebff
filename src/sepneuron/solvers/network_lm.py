r"""Levenberg-Marquardt for networks, optionally on the reduced (variable-projection) problem.

:class:`NetworkLM` minimises ``0.5 ||r||^2``, ``r = (model(X) - Y).reshape(-1)``, over its
parameters ``theta`` (the LM vector). Each :meth:`NetworkLM.step`:

1. with ``projected=True`` sets the output ``Linear`` to its exact least-squares solution
   (:func:`~sepneuron.solvers.varpro.solve_output_layer`); its parameters must then not be
   in ``theta``;
2. accumulates, chunk by chunk (:func:`~sepneuron.solvers.jacobian.normal_equations`), the
   float64 normal equations of ``J = [J_theta, J_L]`` (``J_L``: the output layer's columns,
   only when projected);
3. forms the Gauss-Newton matrix and gradient of the reduced problem in Kaufman's
   approximation, the Schur complement of the output-layer block
   (``alpha``: the ridge of step 1; ``J_L^T r + alpha B = 0`` at the exact solution):

   .. math::
       S = J_\theta^T J_\theta - J_\theta^T J_L (J_L^T J_L + \alpha I)^{-1} J_L^T J_\theta,
       \qquad g = J_\theta^T r

   (``S = J^T J``, ``g = J^T r`` when not projected);
4. solves ``(S + lambda D) delta = -g`` with Marquardt's scaling ``D = diag(S)``
   (:func:`~sepneuron.solvers.levenberg_marquardt.damped_solve`), tries
   ``theta + lr delta`` (re-solving the output layer when projected) and keeps it if the
   loss fell. Damping follows Nielsen's rule: with the gain ratio
   ``rho = (L(theta) - L(trial)) / (0.5 delta^T (lambda D delta - g))``, an accepted step sets
   ``lambda <- lambda max(1/3, 1 - (2 rho - 1)^3)``, ``nu <- 2``; a rejected one
   ``lambda <- lambda nu``, ``nu <- 2 nu`` and solves again (at most ``max_attempts`` times;
   then the parameters stay as they were). A trial that moves a separated activation's
   ``q``, ``log c`` or ``d`` (when they are in ``theta``) by more than
   ``max_activation_step`` counts as rejected too: the Gauss-Newton model of these
   coordinates holds only near the current point (``c = exp(log c)``), and a small damping
   once took ``log c`` from 0 to 60 in one accepted step, after which ``J^T J`` overflowed.

When projected, every trial of a step minimises one objective, the ridged sum of squares
``0.5 ||r||^2 + 0.5 alpha ||B||^2`` with the ``alpha`` of the step's first solve: it is what
the output-layer solve minimises, so ``g`` is its exact gradient (the output layer's
partial derivative vanishes at its minimiser) and the accept test compares like with like.
(Comparing ``0.5 ||r||^2`` alone, as before, refused every step once the ridge term was of
the size of the residual: the damping ran to ``1e16`` and training stopped near ``1e-5``.)
If a projected step still fails ``max_attempts`` times (rounding limits how exact the
solve is once the features are nearly dependent), the optimizer goes on with plain LM on
``theta`` and the output layer together (``J = [J_theta, J_L]``, no solve, the damping back
at its initial value); that switch is kept in the state.

With ``weight_decay = w > 0`` the objective is ``0.5 ||r||^2 + 0.5 mu ||theta||^2`` with
``mu = w m``, ``m = n k`` the number of residuals, i.e. ``m/2 (MSE + w ||theta||^2)``: the
same trade-off whatever the number of samples (``S + mu I``, ``g + mu theta``, and the
penalty in every loss compared; never on the output layer, also when it is in the LM vector
unprojected: the exact layer's weights can be large, and a term on them made LM trade the
fit for their norm when ``fit_select``'s winner went on from its race with every parameter
in LM -- its MSE rose 20x on ``radial_sin_6pi`` and 10^8x on ``friedman2``). With
``relative_weight_decay = rho > 0`` the weight follows the fit: each step uses
``w = weight_decay + rho MSE(theta_k)``, the MSE at the step's start (fixed within the
step, so its trials compare one objective). The term then conditions the early steps as a
fixed ``w`` does but fades as the residual does, so it sets no floor on the error a fixed
``w`` reaches (``w = 1e-9`` stopped tanh nets near RMSE 1e-5 on 2-D targets the plain
net fits to 1e-7; docs/varpro.md).

Memory ``O(chunk_size * P + P^2)``; time ``O(n P^2 + P^3)`` per step (``J^T J`` by its
upper column blocks, :func:`~sepneuron.solvers.jacobian.add_gram_`). The state
(``damping``, ``nu``, ``joint``) is in ``state_dict``, so checkpoints resume exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..layers import activation_parameter_ids
from .jacobian import normal_equations
from .levenberg_marquardt import assign_, flatten, lstsq_solve
from .varpro import half_sse, output_layer_of, solve_output_layer

__all__ = ["NetworkLM", "damping_after_success"]


def _damped_solve(s: Tensor, g: Tensor, damping: Tensor) -> Tensor:
    """``delta`` solving ``(s + diag(damping)) delta = -g`` (Cholesky; else least squares)."""
    a = s.clone()
    a.diagonal().add_(damping)
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(-g.unsqueeze(1), chol).squeeze(1)
    if not torch.isfinite(a).all():
        return torch.full_like(g, float("nan"))
    return lstsq_solve(a, -g.unsqueeze(1)).squeeze(1)


class NetworkLM(Optimizer):
    """Levenberg-Marquardt on ``params`` of a network (see the module docstring).

    Args:
        params: the LM vector ``theta`` (one parameter group).
        lr: scale of an accepted step (``1``: plain LM).
        damping: initial ``lambda`` (``> 0``).
        max_attempts: damped solves per step before giving up.
        projected: solve the output layer exactly (variable projection) at every step.
        ridge: relative ridge of that solve (``>= 0``).
        chunk_size: samples per chunk of the normal equations.
        weight_decay: ``w >= 0``: minimise ``MSE + w ||theta||^2`` instead of the MSE
            (Tikhonov on the LM vector but the output layer that
            :func:`~sepneuron.solvers.varpro.output_layer_of` finds:
            ``0.5 ||r||^2 + 0.5 w m ||theta||^2``, ``m`` the
            number of residuals; ``0``: none).
        relative_weight_decay: ``rho >= 0``: add ``rho * MSE`` (the MSE at each step's
            start) to ``w`` (``0``: a fixed ``w``).
        max_activation_step: the most one step may move any ``q``, ``log c`` or ``d`` of
            a :class:`~sepneuron.layers.SeparatedActivation` in ``theta`` (``> 0``).

    ``step(model, X, Y)`` returns the MSE ``||r||^2 / (n k)`` *before* the step (after the
    output-layer solve when projected) as a 0-d tensor; NaN if it was not finite.
    """

    def __init__(self, params, *, lr: float = 1.0, damping: float = 1e-3, max_attempts: int = 10,
                 projected: bool = False, ridge: float = 1e-12, chunk_size: int = 4096,
                 weight_decay: float = 0.0, relative_weight_decay: float = 0.0,
                 max_activation_step: float = 1.0) -> None:
        for name, v in (("lr", lr), ("damping", damping),
                        ("max_activation_step", max_activation_step)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        for name, v in (("ridge", ridge), ("weight_decay", weight_decay),
                        ("relative_weight_decay", relative_weight_decay)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name, v in (("max_attempts", max_attempts), ("chunk_size", chunk_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        defaults = dict(lr=lr, damping=damping, max_attempts=max_attempts, projected=projected,
                        ridge=ridge, chunk_size=chunk_size, weight_decay=weight_decay,
                        relative_weight_decay=relative_weight_decay,
                        max_activation_step=max_activation_step)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("NetworkLM takes one parameter group")
        self._params: list[Tensor] = self.param_groups[0]["params"]

    def _state(self) -> dict:
        st = self.state[self._params[0]]
        st.setdefault("damping", float(self.param_groups[0]["damping"]))
        st.setdefault("nu", 2.0)
        return st

    @torch.no_grad()
    def step(self, model: nn.Module, X: Tensor, Y: Tensor) -> Tensor:  # type: ignore[override]
        group, st = self.param_groups[0], self._state()
        projected, chunk = group["projected"], group["chunk_size"]
        joint = projected and bool(st.get("joint", False))
        count = Y.numel()
        lin_params: list[Tensor] = []
        alpha = 0.0
        if projected:
            _, out = output_layer_of(model)
            lin_params = list(out.parameters())
            theta_ids = {id(p) for p in self._params}
            if any(id(p) in theta_ids for p in lin_params):
                raise ValueError("with projected=True the output layer must not be in the "
                                 "LM vector")
            if not joint:
                alpha = solve_output_layer(model, X, Y, ridge=group["ridge"], chunk_size=65536)
        n_theta = sum(p.numel() for p in self._params)
        if n_theta == 0 and not joint:  # nothing but the output layer: the solve was the step
            return X.new_tensor(2 * half_sse(model, X, Y) / count)
        jtj, jtr, loss0 = normal_equations(model, X, Y, [*self._params, *lin_params],
                                           chunk_size=chunk)
        mse0 = 2 * loss0 / count
        before = X.new_tensor(mse0)
        if not (math.isfinite(loss0) and torch.isfinite(jtr).all() and torch.isfinite(jtj).all()):
            return X.new_tensor(float("nan"))
        vec = [*self._params, *lin_params] if joint else self._params
        s, g = (jtj, jtr) if joint else (jtj[:n_theta, :n_theta], jtr[:n_theta])
        if projected and not joint:
            s = _reduced_matrix(jtj, n_theta, alpha)
            loss0 += 0.5 * alpha * _squared_norm(lin_params)
        x0 = flatten(vec)
        w = (float(group.get("weight_decay", 0.0))
             + float(group.get("relative_weight_decay", 0.0)) * mse0)
        mu = w * count                              # per residual: mu = w m
        pen = torch.zeros_like(g)
        pen[:n_theta] = mu                          # Tikhonov on theta, never on the output layer
        if mu > 0 and not projected:                # ... also when it is in the LM vector
            pen[_output_layer_mask(model, vec, g.device)] = 0.0
        if mu > 0:  # the objective is 0.5 ||r||^2 + 0.5 mu ||theta||^2
            s = s + torch.diag(pen)
            x0g = x0.to(g.dtype)
            g = g + pen * x0g
            loss0 += 0.5 * float((pen * x0g) @ x0g)
        if not bool(g.abs().max() > 0):
            return before
        lin0 = [p.detach().clone() for p in lin_params]
        bounded = _activation_mask(model, vec, g.device)
        diag = s.diagonal().clamp_min(1e-12 * float(s.diagonal().max().clamp_min(1e-300)))
        lam, nu = st["damping"], st["nu"]
        for _ in range(group["max_attempts"]):
            delta = _damped_solve(s, g, lam * diag)                   # (len(vec),)
            if torch.isfinite(delta).all() and _within(group["lr"] * delta, bounded,
                                                       group["max_activation_step"]):
                assign_(vec, x0 + (group["lr"] * delta).to(x0.dtype))
                loss = 0.0
                if projected and not joint:
                    solve_output_layer(model, X, Y, alpha=alpha, chunk_size=65536)
                    loss = 0.5 * alpha * _squared_norm(lin_params)
                loss += half_sse(model, X, Y)
                if mu > 0:
                    x1 = flatten(vec).to(g.dtype)
                    loss += 0.5 * float((pen * x1) @ x1)
                predicted = 0.5 * float(delta @ (lam * diag * delta - g))
                if loss < loss0:  # False for NaN
                    rho = (loss0 - loss) / predicted if predicted > 0 else 1.0
                    st["damping"] = damping_after_success(lam, rho)
                    st["nu"] = 2.0
                    return before
                for p, v in zip(lin_params, lin0, strict=True):
                    p.copy_(v)
            lam, nu = min(lam * nu, 1e16), nu * 2
        assign_(vec, x0)
        if projected and not joint:
            # The reduced problem stalled: its step rests on the output layer being the exact
            # minimiser, which rounding limits once the features are nearly dependent. Go on
            # with LM on theta and the output layer together (from this exact solve).
            st["joint"], st["damping"], st["nu"] = True, float(group["damping"]), 2.0
        else:
            st["damping"], st["nu"] = lam, nu
        return before


def damping_after_success(lam: float, rho: float) -> float:
    r"""Nielsen's update of the damping after an accepted step of gain ratio ``rho > 0``:
    :math:`\lambda \max(1/3, 1 - (2\rho - 1)^3)`, at least ``1e-15``.

    ``rho`` is clipped to 1 first (the same value: the factor is 1/3 for every
    ``rho >= 1``), so that a gain ratio of ``1e200`` (a predicted reduction that rounds to
    almost nothing) does not overflow the cube.
    """
    r = min(rho, 1.0)
    return max(lam * max(1 / 3, 1 - (2 * r - 1) ** 3), 1e-15)


def _output_layer_mask(model: nn.Module, vec: list[Tensor], device: torch.device) -> Tensor:
    """Boolean ``(sum of numels,)`` over ``vec``: True on the entries of the model's output
    ``Linear`` (all False for a model :func:`~sepneuron.solvers.varpro.output_layer_of`
    cannot split)."""
    try:
        out_ids = {id(p) for p in output_layer_of(model)[1].parameters()}
    except ValueError:
        out_ids = set()
    return torch.cat([torch.full((p.numel(),), id(p) in out_ids, dtype=torch.bool, device=device)
                      for p in vec])


def _activation_mask(model: nn.Module, vec: list[Tensor], device: torch.device) -> Tensor | None:
    """Boolean ``(sum of numels,)`` over ``vec``: True on the entries of separated
    activations' ``q``, ``log c``, ``d``; ``None`` when there are none."""
    owned = activation_parameter_ids(model)
    if not any(id(p) in owned for p in vec):
        return None
    return torch.cat([torch.full((p.numel(),), id(p) in owned, dtype=torch.bool, device=device)
                      for p in vec])


def _within(step: Tensor, mask: Tensor | None, bound: float) -> bool:
    """Whether ``step`` moves no masked entry by more than ``bound``."""
    return mask is None or not bool(step[mask].abs().max() > bound)


def _squared_norm(params: list[Tensor]) -> float:
    return float(sum((p.detach().to(torch.float64) ** 2).sum() for p in params))


def _reduced_matrix(jtj: Tensor, n_theta: int, alpha: float) -> Tensor:
    """Kaufman's Gauss-Newton matrix of the reduced problem: the Schur complement of the
    output-layer block ``J_L^T J_L + alpha I`` in ``jtj`` (the theta block comes first)."""
    s, cross = jtj[:n_theta, :n_theta], jtj[:n_theta, n_theta:]
    c_mat = jtj[n_theta:, n_theta:] + alpha * torch.eye(jtj.shape[0] - n_theta, dtype=jtj.dtype,
                                                         device=jtj.device)
    chol, info = torch.linalg.cholesky_ex(c_mat)
    if int(info) == 0:
        s = s - cross @ torch.cholesky_solve(cross.T, chol)
    else:
        s = s - cross @ lstsq_solve(c_mat, cross.T)
    return 0.5 * (s + s.T)
