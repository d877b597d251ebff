"""The issue-12 comparisons, from stored rows (pure functions on a pandas table, no I/O).

Every comparison is a ratio of *median final test RMSEs over seeds* of two methods on one
task, at the run budget (equal training time under a time budget). A failed run counts as
an infinite RMSE (so a method that fails on most seeds has an infinite median); skipped
runs (an optional package missing) are left out, and a method without any finished run on
a task is absent there.

* :func:`headline` -- the library's default recipe against the best of today's peers
  (:data:`~sepneuron.bench.methods.PEERS`, the lowest median among those present), with the
  verdict against the targets: at least :data:`TARGET_BETTER` (10x) lower RMSE on at least
  :data:`TARGET_SHARE` (2/3) of the smooth tasks (``Task.smooth``), and never more than
  :data:`TARGET_WORSE` (2x) worse on any task.
* :func:`pairwise` -- ratios of method pairs per task (the paper's question under the
  library's trainer: plain / separated; the estimator against scikit-learn).
* :func:`recipe_ablation_table` -- each option of the recipe switched back, against it.
* :func:`stages_table` -- test RMSE after each residual stage (precision mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..tasks import TASKS
from .methods import HEADLINE, PEERS, recipe_ablation
from .stats import geomean, runs_frame, task_order

__all__ = ["final_table", "median_matrix", "headline", "headline_verdict", "pairwise",
           "recipe_ablation_table", "stages_table", "TARGET_BETTER",
           "TARGET_WORSE", "TARGET_SHARE"]

TARGET_BETTER = 10.0   # at least this much lower RMSE than the best peer ...
TARGET_SHARE = 2 / 3   # ... on at least this share of the smooth tasks,
TARGET_WORSE = 2.0     # and never more than this much worse on any task


def final_table(rows: Sequence[dict[str, Any]]):
    """A DataFrame ``task, method, seed, final`` of every non-skipped run; ``final`` is
    the final test RMSE, ``inf`` for a failed run (error, or a non-finite RMSE)."""
    df = runs_frame([r for r in rows if r.get("status") != "skipped"])
    return df[["task", "method", "seed", "final"]]


def median_matrix(rows: Sequence[dict[str, Any]]):
    """Median final RMSE over seeds: a DataFrame indexed by task (registry order), one
    column per method; NaN where a method has no run on a task."""
    df = final_table(rows)
    m = df.groupby(["task", "method"])["final"].median().unstack("method")
    return m.reindex(sorted(m.index, key=task_order))


def _ratio(num, den):
    """``num / den`` elementwise with inf/inf and 0/0 as NaN (no information)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num / den
    return r.where(~((np.isinf(num) & np.isinf(den)) | ((num == 0) & (den == 0))))


def headline(rows: Sequence[dict[str, Any]], method: str = HEADLINE,
             peers: Sequence[str] = PEERS):
    """Per task: the headline's median RMSE, the best peer (lowest median of those present)
    and its median, ``ratio`` = best peer / headline (above 1: the headline is more
    accurate), ``smooth`` and the verdict. Empty if ``method`` or every peer is absent."""
    import pandas as pd

    m = median_matrix(rows)
    present = [p for p in peers if p in m.columns]
    cols = ["task", "smooth", "headline", "best_peer", "peer_rmse", "ratio", "verdict"]
    if method not in m.columns or not present:
        return pd.DataFrame(columns=cols)
    sub = m[present].replace(math.inf, np.nan)          # a peer that failed is no "best"
    has_peer = sub.notna().any(axis=1)
    m = m[has_peer & m[method].notna()]
    sub = sub.loc[m.index]
    best = sub.idxmin(axis=1)
    out = pd.DataFrame({
        "task": m.index,
        "smooth": [TASKS[t].smooth if t in TASKS else False for t in m.index],
        "headline": m[method].to_numpy(),
        "best_peer": best.to_numpy(),
        "peer_rmse": sub.min(axis=1).to_numpy(),
    })
    out["ratio"] = _ratio(out["peer_rmse"], out["headline"])
    out["verdict"] = [_task_verdict(r, s) for r, s in zip(out["ratio"], out["smooth"], strict=True)]
    return out.reset_index(drop=True)[cols]


def _task_verdict(ratio: float, smooth: bool) -> str:
    if math.isnan(ratio):
        return "n/a"
    if ratio < 1 / TARGET_WORSE:
        return f"more than {TARGET_WORSE:g}x worse: misses"
    if not smooth:
        return f"within {TARGET_WORSE:g}x: meets" if ratio < 1 else "better: meets"
    if ratio >= TARGET_BETTER:
        return f"{TARGET_BETTER:g}x or more better: meets"
    return "better, under 10x" if ratio > 1 else f"worse, within {TARGET_WORSE:g}x"


def headline_verdict(table) -> dict[str, Any]:
    """The targets over a :func:`headline` table: smooth tasks at 10x or better (and how
    many that must be), tasks more than 2x worse, and whether both targets are met."""
    valid = table[table["ratio"].notna()]
    smooth = valid[valid["smooth"]]
    better = int((smooth["ratio"] >= TARGET_BETTER).sum())
    need = math.ceil(TARGET_SHARE * len(smooth) - 1e-9)
    worse = valid[valid["ratio"] < 1 / TARGET_WORSE]["task"].tolist()
    return {"smooth": len(smooth), "better": better, "need": need, "worse": worse,
            "tasks": len(valid), "share_met": len(smooth) > 0 and better >= need,
            "worse_met": not worse, "met": len(smooth) > 0 and better >= need and not worse}


def pairwise(rows: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]]):
    """Per task, for each ``(reference, method)`` pair with both present: ``reference
    median / method median`` (above 1: ``method`` is more accurate) in a column
    ``"method vs reference"``, and the seeds where ``method`` beats ``reference`` in
    ``"method vs reference: seeds"`` as ``"k/n"``. Tasks in registry order."""
    import pandas as pd

    m = median_matrix(rows)
    df = final_table(rows)
    per_seed = df.pivot_table(index=["task", "seed"], columns="method", values="final",
                              aggfunc="first")
    out = pd.DataFrame(index=m.index)
    for ref, meth in pairs:
        if ref not in m.columns or meth not in m.columns:
            continue
        col = f"{meth} vs {ref}"
        out[col] = _ratio(m[ref], m[meth])
        both = per_seed[[ref, meth]].dropna()
        wins = (both[meth] < both[ref]).groupby(level="task").agg(["sum", "count"])
        out[col + ": seeds"] = [
            f"{int(wins.loc[t, 'sum'])}/{int(wins.loc[t, 'count'])}" if t in wins.index else "n/a"
            for t in out.index]
    return out.dropna(how="all", subset=[c for c in out.columns if not c.endswith("seeds")])


def recipe_ablation_table(rows: Sequence[dict[str, Any]]):
    """The recipe with one option switched back at a time: per variant label (present in
    ``rows`` with the base), per task ``variant median / recipe median`` (above 1: the
    option that was switched back helps), their geometric mean and the verdict of
    :func:`~sepneuron.bench.ablation.ablation_verdict` on ``recipe / variant``."""
    import pandas as pd

    from .ablation import ablation_verdict

    m = median_matrix(rows)
    names = recipe_ablation()
    base = names["none"]
    if base not in m.columns:
        return pd.DataFrame()
    recs = []
    for label, meth in names.items():
        if label == "none" or meth not in m.columns:
            continue
        r = _ratio(m[meth], m[base]).dropna()
        if r.empty:
            continue
        inv = [1 / v if v > 0 else math.inf for v in r]
        recs.append({"variant": label, "method": meth, **r.to_dict(), "geomean": geomean(r),
                     "verdict": ablation_verdict(inv)})
    return pd.DataFrame(recs)


def stages_table(rows: Sequence[dict[str, Any]]):
    """Median over seeds of the test (and train) RMSE after each residual stage, per
    (task, method) with stage records (``metrics["stages"]``: one dict per stage with
    ``test_rmse``, ``train_rmse`` and ``time``, the training seconds at its end)."""
    import pandas as pd

    recs = []
    for r in rows:
        stages = (r.get("metrics") or {}).get("stages") if r.get("status") == "ok" else None
        for i, st in enumerate(stages or [], start=1):
            recs.append({"task": r["task"], "method": r["method"], "seed": r["seed"],
                         "stage": i, "test_rmse": st.get("test_rmse", math.nan),
                         "train_rmse": st.get("train_rmse", math.nan),
                         "time": st.get("time", math.nan)})
    cols = ["task", "method", "stage", "test_rmse", "train_rmse", "time", "seeds"]
    if not recs:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(recs)
    g = df.groupby(["task", "method", "stage"])
    out = g[["test_rmse", "train_rmse", "time"]].median()
    out["seeds"] = g["seed"].nunique()
    return out.reset_index()[cols]
