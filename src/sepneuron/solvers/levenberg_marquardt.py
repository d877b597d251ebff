r"""Levenberg–Marquardt for small networks, as a closure-only ``torch.optim.Optimizer``.

For residuals ``r(x)`` (shape ``(n,)``) of the flattened parameters ``x`` (``(P,)``), one
step solves the damped Gauss–Newton system

.. math::
    (J^T J + \lambda D)\,\Delta x = -J^T r, \qquad J = \partial r / \partial x \in R^{n \times P}

with ``D = diag(J^T J)`` (Marquardt's scaling, ``damping_mode="marquardt"``, the default)
or ``D = I`` (Levenberg's, ``"levenberg"``), and tries ``x + lr * Δx``. The trial is
accepted only if the sum of squares ``0.5 ||r||^2`` decreases, and then
``λ <- max(λ * damping_down, min_damping)``; otherwise the parameters are restored,
``λ <- min(λ * damping_up, max_damping)`` and the system is solved again, at most
``max_attempts`` times per step. The system is assembled and solved in float64 whatever
the parameters' dtype (Cholesky, falling back to least squares when it fails).

Cost per step: building ``J``, an ``O(n P^2)`` product and an ``O(P^3)`` solve. A plain
closure gets ``J`` by one reverse pass per residual (batched with ``vmap``, ``O(n^2 P)``);
the :class:`ResidualClosure` made by :func:`residual_closure` supplies it per sample with
``torch.func`` (``O(n P)``), which is much faster. Meant for networks of a few hundred to a
few thousand parameters and up to a few thousand samples.

The loss it minimises is ``0.5 ||r||^2``; with ``r = model(X) - y`` over ``n`` samples the
mean squared error is ``||r||^2 / n``. :func:`residual_closure` builds that closure.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap
from torch.optim import Optimizer

__all__ = [
    "LevenbergMarquardt",
    "ResidualClosure",
    "residual_closure",
    "jacobian",
    "damped_solve",
    "lstsq_solve",
    "flatten",
    "assign_",
]

DAMPING_MODES = ("marquardt", "levenberg")


def flatten(params: list[Tensor]) -> Tensor:
    """The parameters as one ``(P,)`` vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def assign_(params: list[Tensor], flat: Tensor) -> None:
    """Copy the ``(P,)`` vector ``flat`` back into ``params`` in place (inverse of flatten)."""
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def jacobian(residuals: Tensor, params: list[Tensor], *, chunk_size: int = 1024) -> Tensor:
    """``J = d residuals / d params``, shape ``(n, P)`` with ``P`` the total parameter count.

    ``residuals`` must be a ``(n,)`` tensor still attached to the graph of ``params``.
    Rows are computed ``chunk_size`` at a time with batched reverse mode
    (``is_grads_batched``); parameters the residuals do not depend on give zero columns.
    """
    n = residuals.numel()
    flat = residuals.reshape(-1)
    total = sum(p.numel() for p in params)
    jac = flat.new_zeros(n, total)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = torch.arange(stop - start, device=flat.device)
        eye = torch.zeros(stop - start, n, dtype=flat.dtype, device=flat.device)
        eye[rows, rows + start] = 1.0  # (rows, n): one unit vector per row
        grads = torch.autograd.grad(
            flat, params, grad_outputs=eye, retain_graph=True,
            is_grads_batched=True, allow_unused=True,
        )
        col = 0
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                jac[start:stop, col : col + p.numel()] = g.reshape(stop - start, -1)
            col += p.numel()
    return jac


def lstsq_solve(a: Tensor, b: Tensor) -> Tensor:
    """The least-squares solution ``x`` of ``a x = b`` (``(P, P)``, ``(P, k)`` -> ``(P, k)``),
    the fallback where a Cholesky factorisation failed.

    On the CPU by the SVD driver ``gelsd`` (the minimum-norm solution when ``a`` is rank
    deficient): the default ``gelsy`` once returned 0 for ``diag(1, 0, 0) x = (-1, 0, 0)``
    in one full test run here (it passed alone). Elsewhere torch's default driver.
    """
    driver = "gelsd" if a.device.type == "cpu" else None
    return torch.linalg.lstsq(a, b, driver=driver).solution


def damped_solve(jtj: Tensor, jtr: Tensor, damping: float, mode: str) -> Tensor:
    r"""``Δx`` solving ``(J^T J + λ D) Δx = -J^T r``; shapes ``(P, P)``, ``(P,)`` -> ``(P,)``.

    ``D = diag(J^T J)`` (floored at ``1e-12`` times its largest entry, so a dead
    parameter still gets damped) for ``mode="marquardt"``, ``D = I`` for ``"levenberg"``.
    Cholesky first; least squares (:func:`lstsq_solve`) if the factorisation fails.
    """
    if mode == "marquardt":
        diag = jtj.diagonal()
        floor = 1e-12 * float(diag.max().clamp_min(1e-300))
        scale = diag.clamp_min(floor)
    else:
        scale = torch.ones_like(jtr)
    a = jtj + torch.diag_embed(damping * scale)
    rhs = -jtr.unsqueeze(-1)  # (P, 1)
    chol, info = torch.linalg.cholesky_ex(a)
    step = torch.cholesky_solve(rhs, chol) if int(info) == 0 else lstsq_solve(a, rhs)
    return step.squeeze(-1)


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be > 0)")


class LevenbergMarquardt(Optimizer):
    """Levenberg–Marquardt on the residual vector returned by a closure.

    Args:
        params: the parameters to fit; a single parameter group (as ``torch.optim.LBFGS``).
        lr: scale of the accepted step, ``x <- x + lr * Δx`` (``1`` is plain LM).
        damping: initial ``λ``.
        damping_up: factor (``> 1``) applied to ``λ`` after a rejected trial.
        damping_down: factor (in ``(0, 1)``) applied to ``λ`` after an accepted one.
        min_damping, max_damping: bounds of ``λ``.
        max_attempts: trials per :meth:`step` before giving up (parameters unchanged).
        damping_mode: ``"marquardt"`` (``D = diag(J^T J)``) or ``"levenberg"`` (``D = I``).
        chunk_size: residual rows per batched backward pass when building ``J``.

    ``step(closure)``: ``closure()`` must return the residuals (any shape, flattened to
    ``(n,)``, any floating dtype) as a differentiable function of the parameters. It is
    called once with grad enabled to build ``J`` and once per trial under
    ``torch.no_grad()``; it need not call ``backward`` or ``zero_grad``. ``step`` returns
    the loss ``0.5 ||r||^2`` *before* the step (a detached 0-d tensor in the residuals'
    dtype, as ``torch.optim`` optimizers return the closure's loss).

    State (``state_dict`` round-trips it): ``damping`` (current ``λ``), ``loss`` (the
    ``0.5 ||r||^2`` after the step), ``accepted`` (whether the last step moved),
    ``n_evals`` (closure calls so far), ``n_steps``.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        damping: float = 1e-3,
        damping_up: float = 10.0,
        damping_down: float = 0.1,
        min_damping: float = 1e-12,
        max_damping: float = 1e10,
        max_attempts: int = 10,
        damping_mode: str = "marquardt",
        chunk_size: int = 1024,
    ) -> None:
        for name, v in (("lr", lr), ("damping", damping), ("min_damping", min_damping)):
            _check_positive(name, v)
        _check_positive("max_damping", max_damping)
        if not min_damping <= damping <= max_damping:
            raise ValueError(
                f"Invalid damping bounds: need min_damping <= damping <= max_damping, "
                f"got {min_damping!r} <= {damping!r} <= {max_damping!r}"
            )
        _check_positive("damping_up", damping_up)
        if not damping_up > 1.0:
            raise ValueError(f"Invalid damping_up: {damping_up!r} (must be > 1)")
        _check_positive("damping_down", damping_down)
        if not damping_down < 1.0:
            raise ValueError(f"Invalid damping_down: {damping_down!r} (must be in (0, 1))")
        for name, v in (("max_attempts", max_attempts), ("chunk_size", chunk_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Invalid {name}: {v!r} (must be a positive int)")
        if damping_mode not in DAMPING_MODES:
            raise ValueError(f"Invalid damping_mode: {damping_mode!r}; choose from {DAMPING_MODES}")
        defaults = dict(
            lr=lr, damping=damping, damping_up=damping_up, damping_down=damping_down,
            min_damping=min_damping, max_damping=max_damping, max_attempts=max_attempts,
            damping_mode=damping_mode, chunk_size=chunk_size,
        )
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                "LevenbergMarquardt doesn't support per-parameter options (parameter groups)"
            )
        self._params: list[Tensor] = self.param_groups[0]["params"]


    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """One LM step; returns ``0.5 ||r||^2`` before the step (see the class docstring)."""
        if closure is None:
            raise ValueError("LevenbergMarquardt requires a closure returning the residuals")
        group = self.param_groups[0]
        state = self.state[self._params[0]]
        state.setdefault("damping", float(group["damping"]))
        state.setdefault("n_evals", 0)
        state.setdefault("n_steps", 0)
        f64 = torch.float64

        if hasattr(closure, "residuals_and_jacobian"):  # a ResidualClosure: fast path
            residuals, jac = closure.residuals_and_jacobian(self._params)
        else:
            with torch.enable_grad():
                residuals = closure().reshape(-1)  # (n,)
                jac = jacobian(residuals, self._params, chunk_size=group["chunk_size"])
        # jac: (n, P)
        state["n_evals"] += 1
        state["n_steps"] += 1
        r = residuals.detach().to(f64)
        loss0 = 0.5 * float(r @ r)
        out = residuals.new_tensor(loss0).detach()
        jac = jac.to(f64)
        jtj = jac.T @ jac  # (P, P)
        jtr = jac.T @ r  # (P,)
        x0 = flatten(self._params)
        state["accepted"], state["loss"] = False, loss0
        if not torch.isfinite(r).all() or not bool(jtr.abs().max() > 0):
            return out  # nothing to improve, or nothing finite to improve on

        lam = state["damping"]
        for _ in range(group["max_attempts"]):
            dx = damped_solve(jtj, jtr, lam, group["damping_mode"])  # (P,)
            if torch.isfinite(dx).all():
                assign_(self._params, x0 + (group["lr"] * dx).to(x0.dtype))
                r_new = closure().detach().reshape(-1).to(f64)
                state["n_evals"] += 1
                loss = 0.5 * float(r_new @ r_new)
                if loss < loss0:  # False for NaN as well
                    state["damping"] = max(lam * group["damping_down"], group["min_damping"])
                    state["accepted"], state["loss"] = True, loss
                    return out
            lam = min(lam * group["damping_up"], group["max_damping"])
        assign_(self._params, x0)  # every trial failed: leave the parameters as they were
        state["damping"] = lam
        return out


class ResidualClosure:
    """Residuals ``(model(x) - y).reshape(-1)`` with a fast per-sample Jacobian.

    Calling it returns the ``(n * out,)`` residuals, a differentiable function of the
    model's parameters; :class:`LevenbergMarquardt` uses it like any closure.
    :meth:`residuals_and_jacobian` computes ``J`` with ``torch.func``: ``jacrev`` of one
    sample's residuals, ``vmap``-ed over the samples, which costs about one backward pass
    for the whole batch instead of one per residual. That is exact only when samples do
    not interact inside the model (no batch norm or the like): pass
    ``per_sample=False`` to :func:`residual_closure` otherwise.

    Shapes: ``x`` ``(n, in)``, ``y`` ``(n, out)`` (or ``(n,)``); ``0.5 ||r||^2`` equals
    ``0.5 * n * out * MSE``.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, per_sample: bool = True) -> None:
        if y.ndim == 1:
            y = y.unsqueeze(-1)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y need the same number of rows, got {x.shape[0]} and {y.shape[0]}"
            )
        self.model, self.x, self.y, self.per_sample = model, x, y, per_sample

    def __call__(self) -> Tensor:
        pred = self.model(self.x)
        if pred.shape != self.y.shape:
            raise ValueError(
                f"model output {tuple(pred.shape)} does not match y {tuple(self.y.shape)}"
            )
        return (pred - self.y).reshape(-1)

    def residuals_and_jacobian(self, params: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``(r, J)``: residuals ``(n * out,)``, ``J`` ``(n * out, P)`` in ``params`` order.

        ``params`` must be parameters of the model; the model's other parameters are held
        fixed. Without ``per_sample`` this falls back to :func:`jacobian`.
        """
        if not self.per_sample:
            with torch.enable_grad():
                r = self()
                return r.detach(), jacobian(r, params)
        names = {id(p): name for name, p in self.model.named_parameters()}
        missing = [i for i, p in enumerate(params) if id(p) not in names]
        if missing:
            raise ValueError(
                f"parameters {missing} of the optimizer are not parameters of the model"
            )
        chosen = {names[id(p)]: p.detach() for p in params}
        fixed = {n: p.detach() for n, p in self.model.named_parameters() if n not in chosen}
        model = self.model

        def one(sel: dict[str, Tensor], xi: Tensor, yi: Tensor) -> tuple[Tensor, Tensor]:
            r = (functional_call(model, {**fixed, **sel}, (xi.unsqueeze(0),)) - yi).reshape(-1)
            return r, r  # (out,) twice: jacrev differentiates the first, returns the second

        jac, r = vmap(jacrev(one, has_aux=True), in_dims=(None, 0, 0))(chosen, self.x, self.y)
        n_rows = r.numel()
        cols = [jac[names[id(p)]].reshape(n_rows, -1) for p in params]  # (n * out, numel)
        return r.reshape(-1), torch.cat(cols, dim=1)


def residual_closure(
    model: nn.Module, x: Tensor, y: Tensor, *, per_sample: bool = True
) -> ResidualClosure:
    """Closure ``() -> (model(x) - y).reshape(-1)`` for :class:`LevenbergMarquardt`.

    See :class:`ResidualClosure`; ``per_sample=False`` for models whose samples interact.
    """
    return ResidualClosure(model, x, y, per_sample=per_sample)
