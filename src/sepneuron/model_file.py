"""Reading a trained model file (``sepneuron train --out MODEL.pt``) for export and prediction.

The file (see :mod:`sepneuron.cli.train_output`) holds the constructor arguments and state dict of
a :class:`~sepneuron.layers.SeparatedMLP`, the :class:`~sepneuron.train.TrainConfig` and a
description of the data. ``sepneuron train`` trains on the data as given, so the model maps
raw inputs to outputs in the data's units and there is no standardisation to apply; an
optional ``"standardization"`` entry (``x_mean``, ``x_scale``, ``y_mean``, ``y_scale``)
is applied when present. The final train / test RMSE come from the file's ``"final"`` entry
or else from ``<MODEL>.history.json`` beside it.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["TrainedModel", "read_model"]


@dataclass
class TrainedModel:
    """A model read from a file, with what export and prediction need beside it."""

    model: nn.Module
    dtype: str                      # "float32" | "float64": the training precision
    n_features: int
    n_outputs: int
    # x_mean, x_scale, y_mean, y_scale (absent: none); train_rmse, test_rmse, ...
    standardization: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, X: Any) -> Any:
        """``(n, n_features)`` float64 array -> ``(n, n_outputs)`` float64 array."""
        import numpy as np

        s = self.standardization
        X = np.asarray(X, dtype=np.float64)
        if "x_mean" in s:
            X = (X - s["x_mean"]) / s["x_scale"]
        param = next(self.model.parameters())
        # torch.tensor copies: X may be a read-only buffer
        out = self.model(torch.tensor(X, dtype=param.dtype, device=param.device))
        Y = out.to("cpu", torch.float64).numpy()
        if "y_mean" in s:
            Y = Y * s["y_scale"] + s["y_mean"]
        return Y


def _history_rmse(path: Path) -> dict[str, float]:
    from .cli.train_output import history_path

    try:
        h = json.loads(history_path(path).read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for key in ("train_rmse", "test_rmse"):
        vals = h.get(key) or []
        if vals and isinstance(vals[-1], (int, float)):
            out[key] = float(vals[-1])
    return out


def read_model(path: str | os.PathLike, *, device: str = "cpu") -> TrainedModel:
    """Read ``path`` (written by ``sepneuron train --out``); ``ValueError`` with a one-line
    reason when it is missing or not such a file."""
    import numpy as np

    from .cli.train_output import FORMAT
    from .layers import SeparatedMLP

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        d = torch.load(p, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: not a model written by `sepneuron train --out` "
                         f"({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path}: not a model written by `sepneuron train --out` "
                         f"(no format {FORMAT!r})")
    try:
        dtype = d["config"]["dtype"]
        model = SeparatedMLP(**d["model_args"], dtype=getattr(torch, dtype), device=device)
        model.load_state_dict(d["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ValueError(f"{path}: damaged model file ({type(e).__name__}: {e})") from None
    model.eval()
    std = {k: np.asarray(v, dtype=np.float64)
           for k, v in (d.get("standardization") or {}).items()}
    meta: dict[str, Any] = {"rmse_units": "target units (trained on the data as given)"
                            if not std else "standardised"}
    final = d.get("final") or _history_rmse(p)
    meta.update({k: v for k, v in final.items() if isinstance(v, float) and math.isfinite(v)})
    meta["steps"] = d.get("steps")
    for k in ("task", "data"):
        if k in (d.get("data") or {}):
            meta[k] = d["data"][k]
    return TrainedModel(model, dtype, model.in_features, model.out_features, std, meta)
