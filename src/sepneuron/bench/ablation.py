"""The conditioning ablation (issue #4), computed from stored rows (pure functions, no I/O).

Per (analog, rule) group: the base method ``sep_<kind>_<rule>`` ("none") and its
conditioning variants ``sep_<kind>_<rule>+<component>`` / ``+all``
(:data:`~sepneuron.bench.methods.ABLATION_VARIANTS`). Per task::

    target          = median over seeds of none's final test RMSE (the upper middle value
                      for an even number of seeds, so that more than half of none's runs
                      reach it and its median time to it is finite)
    RMSE ratio      = median final RMSE of the variant / median final RMSE of none
    time ratio      = median time-to-target of the variant / that of none
    step ratio      = the same in optimizer steps (independent of the machine's load)
    per-step ratio  = median training seconds per step of the variant / that of none

All ratios are variant / none: below 1 the variant is better (or cheaper). A run that
failed (error row, or no finite final RMSE) has final RMSE inf and never reaches the
target; a run that never reaches it has time inf, so a median over seeds is "never"
(inf) when half or more of the seeds never get there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .methods import ABLATION_VARIANTS, METHODS, ablation_parts
from .stats import first_reach, geomean, median, method_order, runs_frame, task_order

__all__ = ["AblationCell", "AblationSummary", "AblationGroup", "conditioning_ablation",
           "ablation_verdict", "component_verdicts", "ABLATION_MARGIN"]


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
        return median(self.final)

    @property
    def median_time(self) -> float:
        return median(self.time)

    @property
    def median_steps(self) -> float:
        return median(self.steps)

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
    gm, better, n = geomean(vals), sum(1 for r in vals if r < 1), len(vals)
    if gm < ABLATION_MARGIN and 3 * better >= 2 * n:
        return "helps"
    if gm >= ABLATION_MARGIN and 3 * better <= n:
        return "does not help"
    return "mixed"


def _variant_order(v: str) -> int:
    order = list(ABLATION_VARIANTS)
    return order.index(v) if v in order else len(order)


def _runs(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The runs of every ablation (skipped rows left out, the last row of a seed wins):
    ``base, variant, task, seed, final`` and ``per_step`` (training s / step of a finished
    run, NaN otherwise)."""
    df = runs_frame([r for r in rows if r.get("status") != "skipped"])
    parts = df["method"].map(ablation_parts)
    df = df[parts.notna()].copy()
    df["base"] = [p[0] for p in parts[parts.notna()]]
    df["variant"] = [p[1] for p in parts[parts.notna()]]
    usable = np.isfinite(df["final"]) & (df["steps"] > 0) & df["train_time"].notna()
    df["per_step"] = (df["train_time"] / df["steps"]).where(usable)
    return df.drop_duplicates(["base", "variant", "task", "seed"], keep="last")


def _to_target(run: pd.Series) -> tuple[float, float]:
    """``(time, steps)`` of a run to its task's target; ``(inf, inf)``: never (or failed)."""
    hit = None
    if math.isfinite(run["final"]) and not math.isnan(run["target"]) and run["row"].get("curve"):
        hit = first_reach(run["row"]["curve"], run["target"])
    return (math.inf, math.inf) if hit is None else (hit[0], float(hit[1]))


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den with inf for a never/failed numerator; NaN when den is not usable."""
    return (num / den).where(num.notna() & (den > 0) & np.isfinite(den))


def _group(base: str, runs: pd.DataFrame) -> AblationGroup:
    """One (analog, rule) group from its runs (see the module docstring)."""
    m = METHODS[base]
    variants = sorted(set(runs["variant"]) | {"none"}, key=_variant_order)
    tasks = sorted(runs["task"].unique(), key=task_order)
    none = runs[(runs["variant"] == "none") & np.isfinite(runs["final"])]
    targets = none.groupby("task")["final"].quantile(0.5, interpolation="higher")  # upper median
    runs = runs.assign(target=runs["task"].map(targets).astype(float)).sort_values("seed")
    hits = [_to_target(r) for _, r in runs.iterrows()]
    runs["time"] = [h[0] for h in hits]
    runs["to_steps"] = [h[1] for h in hits]
    by = runs.groupby(["task", "variant"])
    med = by[["final", "time", "to_steps", "per_step"]].agg(median)
    task_of = med.index.get_level_values("task")
    none_cells = pd.MultiIndex.from_arrays([task_of, ["none"] * len(med)])
    ref = med.reindex(none_cells).set_axis(med.index)  # none's medians beside each cell
    ratios = pd.DataFrame({f"{name}_ratio": _ratio(med[col], ref[col]) for name, col in
                           (("rmse", "final"), ("time", "time"), ("step", "to_steps"),
                            ("per_step", "per_step"))})
    cells: dict[tuple[str, str], AblationCell] = {}
    for task in tasks:
        for variant in variants:
            method = base if variant == "none" else f"{base}+{variant}"
            cell = AblationCell(m.activation, m.rule, task, variant, method,
                                target=float(targets.get(task, math.nan)))
            if (task, variant) in ratios.index:
                g = by.get_group((task, variant))
                cell.seeds = [int(s) for s in g["seed"]]
                cell.final, cell.time = list(g["final"]), list(g["time"])
                cell.steps, cell.failed = list(g["to_steps"]), int((~np.isfinite(g["final"])).sum())
                cell.per_step = list(g["per_step"].dropna())
                for k, v in ratios.loc[(task, variant)].items():
                    setattr(cell, str(k), float(v))
            cells[(task, variant)] = cell
    summary = {v: _summary(v, base, [cells[(t, v)] for t in tasks if cells[(t, v)].seeds])
               for v in variants}
    return AblationGroup(m.activation, m.rule, base, tasks, variants, cells, summary)


def _summary(variant: str, base: str, cs: Sequence[AblationCell]) -> AblationSummary:
    """One variant over the tasks where it ran (see :class:`AblationSummary`)."""
    rm = [c.rmse_ratio for c in cs if not math.isnan(c.rmse_ratio)]
    reached = [c for c in cs if math.isfinite(c.time_ratio) and math.isfinite(c.step_ratio)]
    # over the tasks reached; "never" (inf) if the variant reached it in none of them
    never = not reached and any(math.isinf(c.time_ratio) for c in cs)
    return AblationSummary(
        variant, cs[0].method if cs else base, tasks=len(rm), rmse=geomean(rm),
        time=math.inf if never else geomean(c.time_ratio for c in reached),
        steps=math.inf if never else geomean(c.step_ratio for c in reached),
        per_step=geomean(c.per_step_ratio for c in cs),
        better=sum(1 for r in rm if r < 1), reached=len(reached),
        verdict="baseline" if variant == "none" else ablation_verdict(rm),
    )


def conditioning_ablation(rows: Sequence[dict[str, Any]]) -> list[AblationGroup]:
    """The conditioning ablation groups present in ``rows`` (see the module docstring).

    A group exists for every (analog, rule) with at least one conditioning variant in
    ``rows``; its "none" is the base method. Tasks where the base has no finished run
    have NaN ratios (no target). Skipped rows are ignored.
    """
    runs = _runs(rows)
    groups = []
    for base in sorted(runs["base"].unique(), key=method_order):
        sub = runs[runs["base"] == base]
        if set(sub["variant"]) <= {"none"}:
            continue  # the base alone: nothing is ablated
        groups.append(_group(str(base), sub))
    return groups


def component_verdicts(groups: Sequence[AblationGroup]) -> dict[str, dict[str, Any]]:
    """Per variant (not "none"), pooled over the groups (analogs, rules): the per-cell RMSE
    ratios' geometric mean, cells better / cells, and :func:`ablation_verdict`."""
    df = pd.DataFrame([(v, c.rmse_ratio) for g in groups for (_t, v), c in g.cells.items()
                       if v != "none" and c.seeds and not math.isnan(c.rmse_ratio)],
                      columns=["variant", "ratio"])
    out = {}
    for variant in sorted(df["variant"].unique(), key=_variant_order):
        rs = df.loc[df["variant"] == variant, "ratio"]
        out[str(variant)] = {"rmse": geomean(rs), "better": int((rs < 1).sum()),
                             "cells": len(rs), "verdict": ablation_verdict(list(rs))}
    return out
