"""``report.md``, ``results.csv`` and the figures of a benchmark folder, from its database.

:func:`build_report` reads only the store (and draws the activation shapes, which need no
data) and trains nothing, so ``sepneuron report DIR`` rebuilds the same report at any time;
the one-neuron demo figure (:data:`NEURON_TUNING`) is trained and drawn by
``sepneuron bench``, once per folder, and the report links it when it is there. It
covers the runs of the last ``bench`` selection recorded in the store (all rows if none).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_open
from .markdown import md_table, sci
from .methods import METHODS
from .stats import method_order, task_order
from .store import ResultStore

__all__ = ["build_report", "REPORT_NAME"]

REPORT_NAME = "report.md"
NEURON_TUNING = "neuron_tuning.png"  # the one figure that needs training: drawn by bench


def _peers_section(rows, budget_text: str) -> list[str]:
    from .analysis import peer_stats

    stats = peer_stats(rows)
    out = ["## All methods at equal budget", "",
           f"Final test RMSE (standardised target) after {budget_text}; median and min-max "
           "over seeds, sorted by median. `n`: finished runs; errors and skipped runs are "
           "listed at the end.", ""]
    for task in sorted(stats, key=task_order):
        out.append(f"### {task}")
        out.append("")
        body = []
        for method, s in sorted(stats[task].items(),
                                key=lambda kv: (math.isnan(kv[1]["median"]), kv[1]["median"])):
            body.append([
                f"`{method}`", sci(s["median"]), f"{sci(s['min'])}-{sci(s['max'])}", s["n"],
                "n/a" if math.isnan(s["steps"]) else f"{s['steps']:.0f}",
                ", ".join(str(p) for p in s["n_params"]) or "n/a",
                "" if not (s["errors"] or s["skipped"]) else
                f"{s['errors']} error, {s['skipped']} skipped",
            ])
        out += md_table(["method", "median RMSE", "min-max", "n", "median steps", "parameters",
                       "not ok"], body)
        out.append("")
    return out


def _dead_section(rows) -> list[str]:
    from .analysis import dead_stats

    stats = dead_stats(rows)
    out = ["## Dead neurons", "",
           "A neuron is dead when its activation's derivative is zero on every training "
           "point (`History.dead_fraction`, at the end of training). Per method over all its "
           "runs: the fraction of dead hidden neurons (mean over layers), the largest "
           "single-layer value at the end, and the largest single-layer value seen at any "
           "evaluation. The paper cites more than 90% dead ReLU neurons in some setups.", ""]
    if not stats:
        return out + ["No dead-neuron data.", ""]
    body = [[f"`{m}`", f"{s['median']:.1%}", f"{s['max']:.1%}", f"{s['layer_max']:.1%}",
             "n/a" if math.isnan(s["during_max"]) else f"{s['during_max']:.1%}", s["n"]]
            for m, s in sorted(stats.items(), key=lambda kv: method_order(kv[0]))]
    out += md_table(["method", "median", "max (run)", "max (one layer)",
                   "max during training", "runs"], body)
    return out + [""]


def _models_lines(ok: list[dict[str, Any]]) -> list[str]:
    """Per method (registry order): each hidden-width list (as first stored) with the
    parameter counts and the tasks that have them (the last run of a task counts)."""
    import pandas as pd  # the bench extra, as for every analysis of the report

    df = pd.DataFrame([(r["method"], str(list(r["config"]["model"]["hidden"])), r["task"],
                        r["n_params"]) for r in ok], columns=["method", "hidden", "task", "n"])
    last = df.drop_duplicates(["method", "hidden", "task"], keep="last")
    out = []
    for method in sorted(df["method"].unique(), key=method_order):
        desc = METHODS[method].description if method in METHODS else ""
        parts = []
        for hidden in df.loc[df["method"] == method, "hidden"].unique():
            sub = last[(last["method"] == method) & (last["hidden"] == hidden)]
            parts.append(f"{hidden}: " + "; ".join(
                f"{n} ({', '.join(sorted(g['task']))})" for n, g in sub.groupby("n")))
        out.append(f"  - `{method}` {' / '.join(parts)} -- {desc}")
    return out


def _time_budgets(budgets: list[str]) -> bool:
    """Whether every stored budget label is a time (``"8s"``, not ``"2000 steps"``)."""
    return all(b.endswith("s") and not b.endswith("steps") for b in budgets)


def _setup_section(
    rows, selection: dict[str, Any] | None, last: dict[str, Any] | None
) -> list[str]:
    ok = [r for r in rows if r["status"] == "ok"]
    n_err = sum(1 for r in rows if r["status"] == "error")
    n_skip = sum(1 for r in rows if r["status"] == "skipped")
    out = ["## Setup", ""]
    if selection:
        out.append(f"- Command: `{selection.get('command', 'n/a')}`")
        expected = len(selection.get("keys", []))
        missing = expected - len(rows)
        out.append(f"- Runs: {expected} selected ({len(selection.get('tasks', []))} tasks x "
                   f"{len(selection.get('methods', []))} methods x "
                   f"{len(selection.get('seeds', []))} seeds); {len(ok)} ok, {n_err} error, "
                   f"{n_skip} skipped" + (f", **{missing} not run yet** (interrupted? run "
                                          "the same command again to resume)" if missing else ""))
    else:
        out.append(f"- Runs: {len(rows)} in the database; {len(ok)} ok, {n_err} error, "
                   f"{n_skip} skipped")
    budgets = sorted({r["budget"] for r in rows})
    out.append(f"- Budget per run: {', '.join(budgets)} "
               + ("of training time (evaluation excluded) for every method: equal wall time. "
                  "How many steps fit in it depends on the machine's load, so numbers move "
                  "between invocations; `--budget N` (steps) is deterministic"
                  if _time_budgets(budgets) else
                  "(equal optimizer steps: a step costs different time per method)"))
    if ok:
        cfg = ok[0]["config"]
        d = cfg["data"]
        out.append(f"- Data: {d['n_train']} training and {d['n_test']} held-out test points "
                   "per (task, seed), `tasks.make_data` with the seed: the same data for every "
                   "method. Inputs mapped to [-1, 1]^d, targets standardised with the training "
                   "mean and std; RMSEs are in those units (RMSE / std of the target).")
        threads = sorted({r["threads"] for r in ok})
        versions = ok[0].get("versions") or {}
        out.append(f"- float64, CPU, {', '.join(map(str, threads))} thread(s) per run; "
                   + ", ".join(f"{k} {v}" for k, v in versions.items()))
        if selection and selection.get("jobs"):
            out.append(f"- {selection['jobs']} runs in parallel (separate processes). Times are "
                       "measured inside each run; ratios compare runs from different processes "
                       "under similar load, not in one process.")
        out.append("- Models (hidden widths: parameters per task):")
        out += _models_lines(ok)
        seps = [r for r in ok if r["method"].startswith("sep_")]
        if seps:
            t = seps[0]["config"]["train"]
            out.append(f"- Tuner settings (TrainConfig defaults at run time): gamma {t['gamma']}, "
                       f"max_step {t['max_step']}, tune_curvature {t['tune_curvature']}; "
                       f"weights by {t['optimizer']} lr {t['lr']}")
    if last:
        out.append(f"- The last `bench` command took {last['wall_s']:.0f} s wall "
                   f"({last['ran']} runs trained, {last['skipped']} already in the database, "
                   + (f"on the Dask cluster at {last['scheduler']})." if last.get("scheduler")
                      else f"--jobs {last['jobs']}).")
                   + (f" {last['elsewhere']} runs were stored by another process meanwhile."
                      if last.get("elsewhere") else ""))
    return out + [""]


def _figures_section(folder: Path, figs: dict[str, list[Path]]) -> list[str]:
    out = ["## Figures", ""]
    for title, paths in figs.items():
        if not paths:
            continue
        out.append(f"### {title}")
        out.append("")
        for p in paths:
            out.append(f"![{p.stem}]({p.relative_to(folder).as_posix()})")
            out.append("")
    return out


def _errors_section(rows) -> list[str]:
    bad = [r for r in rows if r["status"] != "ok"]
    if not bad:
        return []
    out = ["## Runs that did not finish", ""]
    for r in bad:
        first = (r.get("error") or "").strip().splitlines()[:1]
        out.append(f"- {r['status']}: `{r['task']}/{r['method']}/s{r['seed']}`: "
                   f"{first[0] if first else ''}")
    return out + [""]


def build_report(folder: str | Path, *, figures: bool = True) -> Path:
    """Write ``report.md``, ``results.csv`` and the PNGs in ``folder``; return the report path."""
    folder = Path(folder)
    if not (folder / "results.sqlite").exists():
        raise FileNotFoundError(f"no results.sqlite in {folder}: run `sepneuron bench` first")
    with ResultStore(folder) as store:
        selection = store.get_meta("selection")
        last = store.get_meta("last_bench")
        keys = selection["keys"] if selection else None
        rows = store.rows(keys, with_grid=figures)
        store.export_csv(keys=keys)
    methods = sorted({r["method"] for r in rows}, key=method_order)
    budgets = sorted({r["budget"] for r in rows})
    budget_text = " / ".join(budgets) if budgets else "n/a"
    if budgets and _time_budgets(budgets):
        budget_text += " of training time per run (equal wall time)"
    lines = [
        "# sepneuron benchmark report",
        "",
        f"Built from `{folder.name}/results.sqlite` (`sepneuron report {folder}` rebuilds "
        f"it and trains nothing); flat results in `results.csv`.",
        "",
    ]
    lines += _setup_section(rows, selection, last)
    # the analyses need the bench extra (pandas): imported here, not with the package
    from .ablation import conditioning_ablation
    from .analysis import claims_cells
    from .report_ablation import ablation_section
    from .report_claims import claims_section
    from .report_compare import compare_sections

    lines += compare_sections(rows, budget_text)
    lines += claims_section(claims_cells(rows))
    ablation = conditioning_ablation(rows)
    if ablation:
        lines += ablation_section(ablation, budget_text)
    lines += _peers_section(rows, budget_text)
    lines += _dead_section(rows)
    if any(m == "kan" for m in (selection or {}).get("methods", [])) or any(
            r["method"] == "kan" for r in rows):
        skipped = [r for r in rows if r["method"] == "kan" and r["status"] == "skipped"]
        if skipped:
            lines += ["Note: KAN was skipped: " + (skipped[0].get("error") or "") + ".", ""]
        lines += ["KAN's test RMSE is measured only at the end (pykan's `fit` loop), so it "
                  "has no learning curve and no time to target.", ""]
    if figures:
        from .compare import headline
        from .plots import (
            plot_activations,
            plot_curves,
            plot_error_maps,
            plot_headline,
        )

        tuning = folder / NEURON_TUNING  # drawn by `sepneuron bench`: the report trains nothing

        figs = {
            "The default recipe against the best peer": plot_headline(headline(rows), folder),
            "Learning curves": plot_curves(rows, folder, methods),
            "Error of the best models over the domain (saved at run time)":
                plot_error_maps(rows, folder),
            "Shapes of the separated activations (paper Fig. 5)": [plot_activations(folder)],
            "One neuron being tuned (paper Figs. 3 and 6: the setting of tests/test_figure3.py, "
            "trained by `sepneuron bench` for this figure)": [tuning] if tuning.exists() else [],
        }
        lines += _figures_section(folder, figs)
    lines += _errors_section(rows)
    path = folder / REPORT_NAME
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
