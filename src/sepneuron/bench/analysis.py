"""Numbers the report states, computed from stored rows (pure functions, no I/O).

Time to target: a run *reaches* a target RMSE at the first evaluation whose test RMSE is
``<=`` the target; its time is the training time (evaluation excluded) at that evaluation.
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
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .methods import METHODS, RULE_NAMES

__all__ = [
    "CLAIMS", "ABLATION_RULES", "first_reach", "ClaimCell", "claims_cells", "best_rules", "verdict",
    "peer_stats", "dead_stats", "median", "spread",
]

# The paper's claims: time 3-10x; accuracy 1.5-2 orders (30-100x) for the ReLU analog and
# up to 3 orders (1000x) for the SoftPlus analog. "holds" from the lower end of the range.
CLAIMS = {
    "relu": {"time": (3.0, 10.0), "accuracy": (30.0, 100.0), "baseline": "relu_adam"},
    "softplus": {"time": (3.0, 10.0), "accuracy": (30.0, 1000.0), "baseline": "softplus_adam"},
}


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def spread(values: Iterable[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return (min(vals), max(vals)) if vals else (math.nan, math.nan)


def first_reach(curve: dict[str, Sequence[float]], target: float) -> tuple[float, int] | None:
    """``(training seconds, steps)`` at the first evaluation with test RMSE ``<= target``."""
    for t, s, r in zip(curve["eval_time"], curve["eval_step"], curve["test_rmse"]):
        if r is not None and r <= target:
            return float(t), int(s)
    return None


def _ratio(num: float, den: float) -> float:
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


def _ok_by(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["task"], r["method"], r["seed"]): r for r in rows
            if r["status"] == "ok" and r.get("test_rmse") is not None and r.get("curve")}


def claims_cells(rows: Sequence[dict[str, Any]]) -> list[ClaimCell]:
    """Every (task, analog, rule) with both the separated runs and their baseline."""
    by = _ok_by(rows)
    tasks = sorted({k[0] for k in by}, key=_task_order)
    cells = []
    for task in tasks:
        for kind, claim in CLAIMS.items():
            for rule in RULE_NAMES:
                method = f"sep_{kind}_{rule}"
                cell = ClaimCell(task, kind, rule, method)
                seeds = sorted({k[2] for k in by if k[0] == task and k[1] == method})
                for seed in seeds:
                    base = by.get((task, claim["baseline"], seed))
                    sep = by.get((task, method, seed))
                    if base is None or sep is None:
                        continue
                    target = base["test_rmse"]
                    b = first_reach(base["curve"], target)
                    if b is None:  # cannot happen for a complete curve; be safe
                        b = (base["train_time"], base["steps"])
                    s = first_reach(sep["curve"], target)
                    cell.seeds.append(seed)
                    cell.base_time.append(b[0])
                    cell.sep_time.append(None if s is None else s[0])
                    cell.time_ratio.append(0.0 if s is None else _ratio(b[0], s[0]))
                    cell.step_ratio.append(0.0 if s is None else _ratio(b[1], s[1]))
                    cell.acc_ratio.append(_ratio(target, sep["test_rmse"]))
                if cell.seeds:
                    cells.append(cell)
    return cells


def _geomean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


ABLATION_RULES = ("grad",)
"""Rules that are not separate tuning (``grad``: q, c, d by the weights' optimizer)."""


def best_rules(cells: Sequence[ClaimCell], *,
               exclude: Sequence[str] = ABLATION_RULES) -> dict[str, tuple[str, float]]:
    """Per analog: the rule with the highest geometric mean (over tasks) of the median
    accuracy ratio, and that mean. One rule for all tasks: no per-task picking. The
    ablation ``grad`` is not a candidate: the paper's claim is about separate tuning."""
    out: dict[str, tuple[str, float]] = {}
    for kind in CLAIMS:
        scores = {}
        for rule in (r for r in RULE_NAMES if r not in exclude):
            accs = [c.accuracy for c in cells if c.kind == kind and c.rule == rule]
            if accs:
                scores[rule] = _geomean(accs)
        scored = {r: s for r, s in scores.items() if not math.isnan(s)}
        if scored:
            rule = max(scored, key=scored.get)
            out[kind] = (rule, scored[rule])
    return out


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
    """``{task: {method: {median, min, max, n, steps, n_params, errors}}}`` of final test RMSE."""
    acc: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        acc[(r["task"], r["method"])].append(r)
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, method), rs in acc.items():
        ok = [r for r in rs if r["status"] == "ok" and r.get("test_rmse") is not None]
        vals = [r["test_rmse"] for r in ok]
        lo, hi = spread(vals)
        out[task][method] = {
            "median": median(vals), "min": lo, "max": hi, "n": len(ok),
            "errors": sum(1 for r in rs if r["status"] == "error"),
            "skipped": sum(1 for r in rs if r["status"] == "skipped"),
            "steps": median(r["steps"] for r in ok),
            "n_params": sorted({r["n_params"] for r in ok if r.get("n_params") is not None}),
            "train_time": median(r["train_time"] for r in ok),
        }
    return dict(out)


def dead_stats(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per method over its ok runs: median / max of the final dead fraction (mean over
    layers), the largest single-layer final value and the largest seen during training."""
    acc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok" and r.get("dead_fraction"):
            acc[r["method"]].append(r)
    out = {}
    for method, rs in acc.items():
        means = [sum(r["dead_fraction"]) / len(r["dead_fraction"]) for r in rs]
        layer_max = max(max(r["dead_fraction"]) for r in rs)
        during = [r["metrics"].get("dead_max") for r in rs if r.get("metrics")]
        during = [d for d in during if d is not None]
        out[method] = {
            "median": median(means), "max": max(means), "layer_max": layer_max,
            "during_max": max(during) if during else math.nan, "n": len(rs),
        }
    return out


def _task_order(name: str) -> int:
    from ..tasks import TASKS

    names = list(TASKS)
    return names.index(name) if name in names else len(names)


def method_order(name: str) -> int:
    names = list(METHODS)
    return names.index(name) if name in names else len(names)
