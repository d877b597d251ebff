"""The paper's claims, and every method's final RMSE and dead neurons, from stored rows
(pure functions on pandas tables, no I/O; the conditioning ablation: :mod:`.ablation`).

Time to target (:func:`~sepneuron.bench.stats.first_reach`): a run *reaches* a target RMSE
at the first evaluation whose test RMSE is ``<=`` the target; its time is the training time
(evaluation excluded) at that evaluation.
For the claims, the target of a (task, seed) is the final test RMSE of the plain-backprop
baseline of the same activation (``relu_adam`` for the ReLU analog, ``softplus_adam`` for
the SoftPlus analog) on that seed, and

    time ratio     = baseline's time to reach its own final RMSE / separated method's time
    step ratio     = the same with optimizer steps
    accuracy ratio = baseline final RMSE / separated final RMSE   (equal budget)

per seed; a separated run that never reaches the target has time ratio 0 ("never").
Medians over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from .methods import RULE_NAMES
from .stats import first_reach, geomean, median, runs_frame, spread, task_order

__all__ = [
    "CLAIMS", "ABLATION_RULES", "Claim", "ClaimCell", "claims_cells", "best_rules", "verdict",
    "peer_stats", "dead_stats",
]


class Claim(TypedDict):
    """The paper's claim for one analog: speed-up and accuracy ranges over its baseline."""

    time: tuple[float, float]
    accuracy: tuple[float, float]
    baseline: str


# The paper's claims: time 3-10x; accuracy 1.5-2 orders (30-100x) for the ReLU analog and
# up to 3 orders (1000x) for the SoftPlus analog. "holds" from the lower end of the range.
CLAIMS: dict[str, Claim] = {
    "relu": {"time": (3.0, 10.0), "accuracy": (30.0, 100.0), "baseline": "relu_adam"},
    "softplus": {"time": (3.0, 10.0), "accuracy": (30.0, 1000.0), "baseline": "softplus_adam"},
}

ABLATION_RULES = ("grad",)
"""Rules that are not separate tuning (``grad``: q, c, d by the weights' optimizer)."""


def _ratio(num: float, den: float) -> float:
    """``num / den``; for ``den <= 0`` (a time or RMSE of zero) inf, or 1 when both are."""
    if den <= 0:
        return math.inf if num > 0 else 1.0
    return num / den


@dataclass
class ClaimCell:
    """One (task, analog, rule): per-seed ratios and their medians."""

    task: str
    kind: str
    rule: str
    method: str
    seeds: list[int] = field(default_factory=list)
    time_ratio: list[float] = field(default_factory=list)   # 0.0: never reached
    step_ratio: list[float] = field(default_factory=list)
    acc_ratio: list[float] = field(default_factory=list)
    base_time: list[float] = field(default_factory=list)    # baseline's time to its final RMSE
    sep_time: list[float | None] = field(default_factory=list)

    @property
    def reached(self) -> int:
        return sum(1 for t in self.sep_time if t is not None)

    @property
    def time(self) -> float:
        return median(self.time_ratio)

    @property
    def steps(self) -> float:
        return median(self.step_ratio)

    @property
    def accuracy(self) -> float:
        return median(self.acc_ratio)


def _ok_runs(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The finished runs with a final RMSE and a curve, one per (task, method, seed) (the
    last stored wins)."""
    df = runs_frame(rows)
    ok = (df["status"] == "ok") & df["test_rmse"].notna() & df["row"].map(
        lambda r: bool(r.get("curve")))
    return df[ok].drop_duplicates(["task", "method", "seed"], keep="last")


def _seed_ratios(run: pd.Series) -> dict[str, Any]:
    """One seed of a claim cell (a separated run beside its baseline's ``*_base`` columns):
    the baseline's time to its own final RMSE, the separated run's time to it (None:
    never) and the three ratios (0.0 for never)."""
    target = run["test_rmse_base"]
    b = first_reach(run["row_base"]["curve"], target)
    if b is None:  # cannot happen for a complete curve; be safe
        b = (run["train_time_base"], run["steps_base"])
    s = first_reach(run["row"]["curve"], target)
    return {"base_time": b[0], "sep_time": None if s is None else s[0],
            "time_ratio": 0.0 if s is None else _ratio(b[0], s[0]),
            "step_ratio": 0.0 if s is None else _ratio(b[1], s[1]),
            "acc_ratio": _ratio(target, run["test_rmse"])}


def claims_cells(rows: Sequence[dict[str, Any]]) -> list[ClaimCell]:
    """Every (task, analog, rule) with both the separated runs and their baseline, in task
    (registry), analog and rule order; seeds ascending."""
    ok = _ok_runs(rows)
    recs = []  # one per (separated run, its baseline's run on that seed)
    for k, (kind, claim) in enumerate(CLAIMS.items()):
        rules = {f"sep_{kind}_{rule}": (i, rule) for i, rule in enumerate(RULE_NAMES)}
        base = ok[ok["method"] == claim["baseline"]]
        sep = ok[ok["method"].isin(list(rules))].merge(
            base[["task", "seed", "test_rmse", "train_time", "steps", "row"]],
            on=["task", "seed"], suffixes=("", "_base"))
        for _, run in sep.iterrows():
            i, rule = rules[run["method"]]
            recs.append({"order": (task_order(run["task"]), k, i, run["seed"]),
                          "task": run["task"], "kind": kind, "rule": rule,
                          "method": run["method"], "seed": int(run["seed"]),
                          **_seed_ratios(run)})
    if not recs:
        return []
    per_seed = pd.DataFrame(sorted(recs, key=lambda c: c["order"]))
    out = []
    for (task, kind, rule, method), g in per_seed.groupby(["task", "kind", "rule", "method"],
                                                          sort=False):
        cell = ClaimCell(str(task), str(kind), str(rule), str(method),
                         seeds=[int(v) for v in g["seed"]])
        for name in ("time_ratio", "step_ratio", "acc_ratio", "base_time"):
            setattr(cell, name, list(g[name]))
        cell.sep_time = [None if pd.isna(t) else t for t in g["sep_time"]]
        out.append(cell)
    return out


def best_rules(cells: Sequence[ClaimCell], *,
               exclude: Sequence[str] = ABLATION_RULES) -> dict[str, tuple[str, float]]:
    """Per analog: the rule with the highest geometric mean (over tasks, finite values) of
    the median accuracy ratio, and that mean. One rule for all tasks: no per-task picking.
    The ablation ``grad`` is not a candidate: the paper's claim is about separate tuning."""
    df = pd.DataFrame([(c.kind, c.rule, c.accuracy) for c in cells if c.rule not in exclude],
                      columns=["kind", "rule", "accuracy"])
    df = df[np.isfinite(df["accuracy"].astype(float))]
    out: dict[str, tuple[str, float]] = {}
    for kind, g in df.groupby("kind", sort=False):
        scores = g.groupby("rule")["accuracy"].agg(geomean).dropna()
        scores = scores.reindex([r for r in RULE_NAMES if r in scores.index])
        if not scores.empty:
            rule = str(scores.idxmax())
            out[str(kind)] = (rule, float(scores[rule]))
    return {k: out[k] for k in CLAIMS if k in out}


def _level(ratio: float, low: float) -> str:
    if math.isnan(ratio):
        return "n/a"
    if ratio >= low:
        return "holds"
    return "partly" if ratio > 1.0 else "no"


def verdict(cell: ClaimCell) -> tuple[str, str, str]:
    """``(time level, accuracy level, overall)``: levels are holds / partly / no;
    overall is "holds" (both hold), "does not hold" (neither better than the baseline)
    or "partly"."""
    claim = CLAIMS[cell.kind]
    t = _level(cell.time, claim["time"][0])
    a = _level(cell.accuracy, claim["accuracy"][0])
    if t == "holds" and a == "holds":
        overall = "holds"
    elif t in ("no", "n/a") and a in ("no", "n/a"):
        overall = "does not hold"
    else:
        overall = "partly"
    return t, a, overall


def peer_stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {method: {median, min, max, n, steps, n_params, errors, skipped,
    train_time}}}`` of the final test RMSE over seeds (finished runs; errors and skipped
    runs counted), in the rows' order."""
    df = runs_frame(rows)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, method), g in df.groupby(["task", "method"], sort=False):
        ok = g[(g["status"] == "ok") & g["test_rmse"].notna()]
        lo, hi = spread(ok["test_rmse"])
        out.setdefault(str(task), {})[str(method)] = {
            "median": median(ok["test_rmse"]), "min": lo, "max": hi, "n": len(ok),
            "errors": int((g["status"] == "error").sum()),
            "skipped": int((g["status"] == "skipped").sum()),
            "steps": median(ok["steps"]),
            "n_params": sorted(int(n) for n in ok["n_params"].dropna().unique()),
            "train_time": median(ok["train_time"]),
        }
    return out


def dead_stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per method over its ok runs: median / max of the final dead fraction (mean over
    layers), the largest single-layer final value and the largest seen during training."""
    recs = [{"method": r["method"], "mean": float(np.mean(r["dead_fraction"])),
             "layer_max": max(r["dead_fraction"]),
             "during": (r.get("metrics") or {}).get("dead_max")}
            for r in rows if r["status"] == "ok" and r.get("dead_fraction")]
    df = pd.DataFrame(recs, columns=["method", "mean", "layer_max", "during"])
    df["during"] = pd.to_numeric(df["during"], errors="coerce")
    out = {}
    for method, g in df.groupby("method", sort=False):
        out[str(method)] = {
            "median": median(g["mean"]), "max": float(g["mean"].max()),
            "layer_max": float(g["layer_max"].max()),
            "during_max": float(g["during"].max()) if g["during"].notna().any() else math.nan,
            "n": len(g),
        }
    return out
