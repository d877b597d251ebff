"""The one-neuron tanh net ``1.0 * tanh(1.0 * x + 0) + 0`` that the LM tests compare with
scipy's ``least_squares`` (shared by test_solvers and test_solvers_fast)."""

from __future__ import annotations

import torch

from sepneuron.baselines import PlainMLP

START = (1.0, 0.0, 1.0, 0.0)
"""Its parameters, in ``model.parameters()`` order: w1, b1, w2, b2."""


def one_tanh_neuron() -> PlainMLP:
    """``PlainMLP(1, [1], 1, "tanh")`` in float64 at :data:`START`."""
    m = PlainMLP(1, [1], 1, "tanh", dtype=torch.float64)
    with torch.no_grad():
        for p, v in zip(m.parameters(), START, strict=True):
            p.fill_(v)
    return m
