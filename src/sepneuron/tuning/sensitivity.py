"""How a hidden neuron's ``dE/do`` turns into output-residual units: the downstream sensitivity."""

from __future__ import annotations

from torch import Tensor

from ..layers import SeparatedMLP

__all__ = ["downstream_sensitivity"]


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
