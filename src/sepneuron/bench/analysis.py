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
from typing import Any, TypedDict

from .methods import METHODS, RULE_NAMES

__all__ = [
    "CLAIMS", "ABLATION_RULES", "first_reach", "ClaimCell", "claims_cells", "best_rules", "verdict",
    "peer_stats", "dead_stats", "median", "spread",
    "AblationCell", "AblationSummary", "AblationGroup", "conditioning_ablation",
    "ablation_verdict", "component_verdicts", "ABLATION_MARGIN",
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


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def spread(values: Iterable[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return (min(vals), max(vals)) if vals else (math.nan, math.nan)


def first_reach(curve: dict[str, Sequence[float]], target: float) -> tuple[float, int] | None:
    """``(training seconds, steps)`` at the first evaluation with test RMSE ``<= target``."""
    for t, s, r in zip(curve["eval_time"], curve["eval_step"], curve["test_rmse"], strict=True):
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
            rule = max(scored, key=scored.__getitem__)
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


# -- conditioning ablation ---------------------------------------------------------------------
#
# Per (analog, rule) group: the base method sep_<kind>_<rule> ("none") and its conditioning
# variants sep_<kind>_<rule>+<component> / +all (bench.methods.ABLATION_VARIANTS). Per task:
#
#     target          = median over seeds of none's final test RMSE (the upper middle value
#                       for an even number of seeds, so that more than half of none's runs
#                       reach it and its median time to it is finite)
#     RMSE ratio      = median final RMSE of the variant / median final RMSE of none
#     time ratio      = median time-to-target of the variant / that of none
#     step ratio      = the same in optimizer steps (independent of the machine's load)
#     per-step ratio  = median training seconds per step of the variant / that of none
#
# All ratios are variant / none: below 1 the variant is better (or cheaper). A run that
# failed (error row, or no finite final RMSE) has final RMSE inf and never reaches the
# target; a run that never reaches it has time inf, so a median over seeds is "never"
# (inf) when half or more of the seeds never get there.


@dataclass
class AblationCell:
    """One (analog, rule, task, variant) over seeds."""

    kind: str
    rule: str | None
    task: str
    variant: str                 # "none", a component name, or "all"
    method: str
    seeds: list[int] = field(default_factory=list)
    final: list[float] = field(default_factory=list)      # inf: failed run
    time: list[float] = field(default_factory=list)       # to the target; inf: never
    steps: list[float] = field(default_factory=list)      # to the target; inf: never
    per_step: list[float] = field(default_factory=list)   # training s / step (ok runs)
    failed: int = 0
    target: float = math.nan     # none's median final RMSE on this task
    rmse_ratio: float = math.nan
    time_ratio: float = math.nan
    step_ratio: float = math.nan
    per_step_ratio: float = math.nan

    @property
    def median_final(self) -> float:
        return _median_inf(self.final)

    @property
    def median_time(self) -> float:
        return _median_inf(self.time)

    @property
    def median_steps(self) -> float:
        return _median_inf(self.steps)

    @property
    def reached(self) -> int:
        return sum(1 for t in self.time if math.isfinite(t))


@dataclass
class AblationSummary:
    """One variant of one (analog, rule) over its tasks."""

    variant: str
    method: str
    tasks: int = 0               # tasks with a finite RMSE ratio (or inf: all failed)
    rmse: float = math.nan       # geometric mean over tasks of the RMSE ratio
    time: float = math.nan       # geometric mean over the tasks where the median run reached
    steps: float = math.nan      #   the target (time, steps): see `reached`; inf: in none
    per_step: float = math.nan   # geometric mean of the per-step time ratio
    better: int = 0              # tasks with RMSE ratio < 1
    reached: int = 0             # tasks whose median run reached the target
    verdict: str = "n/a"


@dataclass
class AblationGroup:
    """The ablation of one analog and tuner rule."""

    kind: str
    rule: str | None
    base: str                    # the "none" method
    tasks: list[str]
    variants: list[str]          # labels present, in ABLATION_VARIANTS order
    cells: dict[tuple[str, str], AblationCell]   # (task, variant) -> cell
    summary: dict[str, AblationSummary]          # variant -> summary


def _median_inf(values: Iterable[float]) -> float:
    """Median that keeps ``inf`` (never / failed) and drops NaN; NaN if nothing is left."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def _ablation_ratio(num: float, den: float) -> float:
    """num / den with inf for a never/failed numerator; NaN when den is not usable."""
    if math.isnan(num) or math.isnan(den) or not (0 < den < math.inf):
        return math.nan
    return num / den  # inf / finite = inf


def _geomean_inf(values: Iterable[float]) -> float:
    """Geometric mean of positive values; inf if any is inf; NaN if none is usable."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if any(math.isinf(v) for v in vals):
        return math.inf
    vals = [v for v in vals if v > 0]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


ABLATION_MARGIN = 0.95
"""A component *helps* only if it lowers the final RMSE by more than 5% on average."""


def ablation_verdict(ratios: Sequence[float]) -> str:
    """``helps`` / ``mixed`` / ``does not help`` from the per-cell RMSE ratios (variant /
    none; NaN cells ignored), with ``gm`` their geometric mean and ``better`` the cells
    with ratio < 1:

    * ``helps``: gm < :data:`ABLATION_MARGIN` (0.95) and better in at least 2/3 of the cells;
    * ``does not help``: gm >= 0.95 and better in at most 1/3 of them;
    * ``mixed``: anything else (a gain of under 5%, or gains and losses). ``n/a`` without
      any usable cell.
    """
    vals = [r for r in ratios if r is not None and not math.isnan(r)]
    if not vals:
        return "n/a"
    gm, better, n = _geomean_inf(vals), sum(1 for r in vals if r < 1), len(vals)
    if gm < ABLATION_MARGIN and 3 * better >= 2 * n:
        return "helps"
    if gm >= ABLATION_MARGIN and 3 * better <= n:
        return "does not help"
    return "mixed"


def conditioning_ablation(rows: Sequence[dict[str, Any]]) -> list[AblationGroup]:
    """The conditioning ablation groups present in ``rows`` (see the comment above).

    A group exists for every (analog, rule) with at least one conditioning variant in
    ``rows``; its "none" is the base method. Tasks where the base has no finished run
    have NaN ratios (no target). Skipped rows are ignored.
    """
    from .methods import ABLATION_VARIANTS, ablation_parts

    order = {v: i for i, v in enumerate(ABLATION_VARIANTS)}
    runs: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    present: dict[str, set[str]] = defaultdict(set)          # base -> variants in rows
    for r in rows:
        parts = ablation_parts(r["method"])
        if parts is None or r.get("status") == "skipped":
            continue
        base, variant = parts
        runs[(base, variant, r["task"])][r["seed"]] = r
        present[base].add(variant)
    groups = []
    for base in sorted(present, key=method_order):
        if present[base] <= {"none"}:
            continue  # the base alone: nothing is ablated
        m = METHODS[base]
        variants = sorted(present[base] | {"none"}, key=lambda v: order.get(v, len(order)))
        tasks = sorted({t for (b, _, t) in runs if b == base}, key=_task_order)
        cells: dict[tuple[str, str], AblationCell] = {}
        for task in tasks:
            none_runs = runs.get((base, "none", task), {})
            none_final = [_final(r) for r in none_runs.values()]
            finite = sorted(v for v in none_final if math.isfinite(v))
            target = statistics.median_high(finite) if finite else math.nan
            for variant in variants:
                method = base if variant == "none" else f"{base}+{variant}"
                cell = AblationCell(m.activation, m.rule, task, variant, method, target=target)
                for seed, r in sorted(runs.get((base, variant, task), {}).items()):
                    final = _final(r)
                    cell.seeds.append(seed)
                    cell.final.append(final)
                    cell.failed += not math.isfinite(final)
                    hit = None
                    if math.isfinite(final) and not math.isnan(target) and r.get("curve"):
                        hit = first_reach(r["curve"], target)
                    cell.time.append(math.inf if hit is None else hit[0])
                    cell.steps.append(math.inf if hit is None else float(hit[1]))
                    if math.isfinite(final) and r.get("steps") and r.get("train_time") is not None:
                        cell.per_step.append(r["train_time"] / r["steps"])
                cells[(task, variant)] = cell
            none = cells[(task, "none")]
            for variant in variants:
                cell = cells[(task, variant)]
                if not cell.seeds:
                    continue
                cell.rmse_ratio = _ablation_ratio(cell.median_final, none.median_final)
                cell.time_ratio = _ablation_ratio(cell.median_time, none.median_time)
                cell.step_ratio = _ablation_ratio(cell.median_steps, none.median_steps)
                cell.per_step_ratio = _ablation_ratio(median(cell.per_step), median(none.per_step))
        summary = {}
        for variant in variants:
            cs = [cells[(t, variant)] for t in tasks if cells[(t, variant)].seeds]
            rm = [c.rmse_ratio for c in cs if not math.isnan(c.rmse_ratio)]
            reached = [c for c in cs if math.isfinite(c.time_ratio) and math.isfinite(c.step_ratio)]
            # over the tasks reached; "never" (inf) if the variant reached it in none of them
            never = not reached and any(math.isinf(c.time_ratio) for c in cs)
            summary[variant] = AblationSummary(
                variant, cs[0].method if cs else base, tasks=len(rm), rmse=_geomean_inf(rm),
                time=math.inf if never else _geomean_inf(c.time_ratio for c in reached),
                steps=math.inf if never else _geomean_inf(c.step_ratio for c in reached),
                per_step=_geomean_inf(c.per_step_ratio for c in cs),
                better=sum(1 for r in rm if r < 1), reached=len(reached),
                verdict="baseline" if variant == "none" else ablation_verdict(rm),
            )
        groups.append(AblationGroup(m.activation, m.rule, base, tasks, variants, cells, summary))
    return groups


def _final(row: dict[str, Any]) -> float:
    """Final test RMSE of a run; inf for a failed run (error, or no finite RMSE)."""
    v = row.get("test_rmse")
    if row.get("status") != "ok" or v is None or not math.isfinite(v):
        return math.inf
    return float(v)


def component_verdicts(groups: Sequence[AblationGroup]) -> dict[str, dict[str, Any]]:
    """Per variant (not "none"), pooled over the groups (analogs, rules): the per-cell RMSE
    ratios' geometric mean, cells better / cells, and :func:`ablation_verdict`."""
    from .methods import ABLATION_VARIANTS

    pooled: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        for (_task, variant), c in g.cells.items():
            if variant != "none" and c.seeds and not math.isnan(c.rmse_ratio):
                pooled[variant].append(c.rmse_ratio)
    order = list(ABLATION_VARIANTS)
    out = {}
    for variant in sorted(pooled, key=lambda v: order.index(v) if v in order else len(order)):
        rs = pooled[variant]
        out[variant] = {"rmse": _geomean_inf(rs), "better": sum(1 for r in rs if r < 1),
                        "cells": len(rs), "verdict": ablation_verdict(rs)}
    return out
