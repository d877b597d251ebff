"""``report.md``, ``results.csv`` and the figures of a benchmark folder, from its database.

:func:`build_report` reads only the store (and draws the activation shapes, which need no
data) and trains nothing, so ``sepneuron report DIR`` rebuilds the same report at any time;
the one-neuron demo figure (:data:`NEURON_TUNING`) is trained and drawn by
``sepneuron bench``, once per folder, and the report links it when it is there. It
covers the runs of the last ``bench`` selection recorded in the store (all rows if none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .analysis import (
    ABLATION_MARGIN,
    ABLATION_RULES,
    CLAIMS,
    AblationGroup,
    ClaimCell,
    best_rules,
    claims_cells,
    component_verdicts,
    conditioning_ablation,
    dead_stats,
    median,
    method_order,
    peer_stats,
    verdict,
)
from .methods import ABLATION_VARIANTS, METHODS, RULE_NAMES
from .store import ResultStore

__all__ = ["build_report", "REPORT_NAME"]

REPORT_NAME = "report.md"
NEURON_TUNING = "neuron_tuning.png"  # the one figure that needs training: drawn by bench
_KIND_NAMES = {"relu": "ReLU", "softplus": "SoftPlus"}


def _x(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v == 0:
        return "never"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}x"


def _e(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2e}"


def _range(vals: Sequence[float], fmt=_x) -> str:
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    return f"{fmt(min(vals))}-{fmt(max(vals))}" if vals else "n/a"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _claim_row(cell: ClaimCell, with_rule: bool) -> list[str]:
    claim = CLAIMS[cell.kind]
    t, a, overall = verdict(cell)
    row = [cell.task] + ([cell.rule] if with_rule else [])
    row += [
        f"{_x(cell.time)} ({_range(cell.time_ratio)})",
        f"{_x(cell.steps)}",
        f"{cell.reached}/{len(cell.seeds)}",
        f"{_x(cell.accuracy)} ({_range(cell.acc_ratio)})",
        f"{claim['time'][0]:g}-{claim['time'][1]:g}x"
        f" / {claim['accuracy'][0]:g}-{claim['accuracy'][1]:g}x",
        f"time {t}, accuracy {a}: **{overall}**",
    ]
    return row


_CLAIM_HEADER = [
    "time ratio, median (range)", "step ratio", "seeds reaching target",
    "final-RMSE ratio, median (range)", "paper claims (time / accuracy)", "verdict",
]


def _claims_section(cells: list[ClaimCell]) -> list[str]:
    out = ["## The paper's claims", ""]
    if not cells:
        return out + ["No task has both separated runs and their plain-Adam baseline in this "
                      "selection: no claim can be checked.", ""]
    out += [
        "Per task and seed the target is the final test RMSE of the same-architecture "
        "plain-backprop baseline (ReLU MLP + Adam for the ReLU analog, SoftPlus MLP + Adam "
        "for the SoftPlus analog). *Time ratio* = the baseline's training time to first reach "
        "its own final RMSE / the separated net's time to first reach it (\"never\" if it does "
        "not within the budget; counted as 0 in the median). *Step ratio*: the same in "
        "optimizer steps (a separated step costs more than an Adam step, so the time ratio is "
        "the fair one). *Final-RMSE ratio* = baseline / separated at the end of the equal "
        "budget; above 1 the separated net is more accurate. Medians over seeds.",
        "",
        "Levels: a ratio at or above the lower end of the claimed range *holds*; above 1 but "
        "below it is *partly*; at most 1 (or never) is *no*. A row *holds* if both do, "
        "*does not hold* if neither beats the baseline, else *partly*.",
        "",
    ]
    best = best_rules(cells)
    for kind in CLAIMS:
        kc = [c for c in cells if c.kind == kind]
        if not kc:
            continue
        out.append(f"### {_KIND_NAMES[kind]} analog vs `{CLAIMS[kind]['baseline']}`")
        out.append("")
        if kind in best:
            rule, score = best[kind]
            run = sorted({c.rule for c in kc})
            others = [r for r in run if r != rule]
            candidates = [r for r in run if r not in ABLATION_RULES]
            out.append(
                f"The verdict uses rule **`{rule}`**: of the tuner rules run "
                f"({', '.join(f'`{r}`' for r in candidates)}) it has the "
                f"highest geometric mean over tasks of the median final-RMSE ratio "
                f"({score:.3g}x). One rule for every task, chosen by that single score; "
                f"every rule is shown below"
                + (f" ({', '.join(f'`{r}`' for r in others)} as well)" if others else "")
                + (". `grad` (q, c, d trained by Adam with the weights: a learnable "
                   "activation, not separate tuning) is an ablation and not a candidate."
                   if "grad" in run else ".")
            )
            out.append("")
            chosen = [c for c in kc if c.rule == rule]
            out += _table(["task", *_CLAIM_HEADER], [_claim_row(c, False) for c in chosen])
            out.append("")
            counts = {v: sum(1 for c in chosen if verdict(c)[2] == v)
                      for v in ("holds", "partly", "does not hold")}
            out.append(
                f"**Summary ({_KIND_NAMES[kind]} analog, rule `{rule}`):** the claim holds on "
                f"{counts['holds']} of {len(chosen)} tasks, partly on {counts['partly']}, and "
                f"does not hold on {counts['does not hold']}."
            )
            out.append("")
        out.append(f"All rules, {_KIND_NAMES[kind]} analog:")
        out.append("")
        order = {r: i for i, r in enumerate(RULE_NAMES)}
        kc = sorted(kc, key=lambda c: (order.get(c.rule, 99), c.task))
        out += _table(["task", "rule", *_CLAIM_HEADER], [_claim_row(c, True) for c in kc])
        out.append("")
    return out


def _r(v: float) -> str:
    """A ratio (or a time, steps) of the ablation: "never" for inf (never reached the
    target, or every run failed)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "never"
    return f"{v:.3g}"


def _ablation_section(groups: list[AblationGroup], budget_text: str) -> list[str]:
    """The conditioning ablation (issue #4): per analog, each variant against none."""
    from ..train import TrainConfig

    default = tuple(TrainConfig().conditioning)
    defaults = ("**All components are off by default** (`TrainConfig.conditioning = ()`): "
                "this measures what switching one on would do, and a component that does not "
                "help stays off." if not default else
                f"Default `TrainConfig.conditioning = {default!r}`; every other component is "
                "off by default.")
    margin = f"{ABLATION_MARGIN:g}"
    out = [
        "## Ablation of the conditioning components", "",
        "The separated networks with none, each one, and all of the conditioning components "
        "(`sepneuron.conditioning`, docs/conditioning.md; paper subtasks 3, 7-10), same tasks, "
        f"seeds and budget ({budget_text}). {defaults}", "",
        "Per task the *target* is the median over seeds of the no-component run's final test "
        "RMSE (the upper middle value for an even number of seeds). Every ratio is variant / "
        "none, so **below 1 is better**: *RMSE ratio* = median final test RMSE / none's; "
        "*time ratio* = median training time to first reach the target / none's (\"never\": "
        "half or more of the seeds never reach it); *step ratio* = the same in optimizer "
        "steps (independent of the machine's load); *s/step* = median training seconds per "
        "step / none's. A failed run has an infinite final RMSE and never reaches the target. "
        "Summaries are geometric means over tasks (time and step ratios over the tasks where "
        "the median run reached the target; *reached* counts them); *better* counts the "
        "tasks with RMSE ratio < 1.", "",
        f"Verdict from the per-task RMSE ratios: **helps** = geometric mean below {margin} "
        f"and better in at least 2/3 of the tasks; **does not help** = geometric mean {margin} "
        "or more and better in at most 1/3; **mixed** otherwise (a small gain, or gains on "
        "some tasks and losses on others).", "",
    ]
    for g in groups:
        out += [f"### {_KIND_NAMES.get(g.kind, g.kind)} analog, rule `{g.rule}` "
                f"(none = `{g.base}`)", ""]
        body: list[list[Any]] = []
        for v in g.variants:
            sm = g.summary[v]
            n = sum(1 for t in g.tasks if g.cells[(t, v)].seeds)
            body.append([
                "none" if v == "none" else f"`{v}`", _r(sm.rmse),
                "-" if v == "none" else f"{sm.better}/{sm.tasks}",
                _r(sm.time), _r(sm.steps), f"{sm.reached}/{n}", _r(sm.per_step),
                "(reference)" if v == "none" else f"**{sm.verdict}**",
            ])
        out += _table(["components", "RMSE ratio (geo. mean)", "better", "time ratio",
                       "step ratio", "reached", "s/step", "verdict"], body)
        out.append("")
        out += [f"<details><summary>Per task ({_KIND_NAMES.get(g.kind, g.kind)} analog, rule "
                f"`{g.rule}`)</summary>", ""]
        body = []
        for t in g.tasks:
            for v in g.variants:
                c = g.cells[(t, v)]
                if not c.seeds:
                    continue
                body.append([
                    t, "none" if v == "none" else f"`{v}`", _e(c.median_final) if math.isfinite(
                        c.median_final) else "failed", _r(c.rmse_ratio), _r(c.median_time),
                    _r(c.time_ratio), _r(c.median_steps), _r(c.step_ratio),
                    f"{c.reached}/{len(c.seeds)}", c.failed,
                    "n/a" if not c.per_step else f"{1e3 * median(c.per_step):.2f} ms",
                ])
        out += _table(["task", "components", "final RMSE (median)", "RMSE ratio",
                       "time to target, s", "time ratio", "steps to target", "step ratio",
                       "seeds reaching", "failed", "s/step"], body)
        out += ["", "Target per task: " + "; ".join(
            f"{t} {_e(g.cells[(t, 'none')].target)}" for t in g.tasks) + ".", "",
            "</details>", ""]
    pooled = component_verdicts(groups)
    if pooled:
        out += ["### Verdict per component", "",
                "Pooled over the analogs (and rules) above: every task x analog cell counts once.",
                ""]
        body = [["`all` (all together)" if v == "all" else f"`{v}`", _r(p["rmse"]),
                 f"{p['better']}/{p['cells']}", f"**{p['verdict']}**",
                 "on" if set(ABLATION_VARIANTS.get(v, (v,))) <= set(default) else "off"]
                for v, p in pooled.items()]
        out += _table(["components", "RMSE ratio (geo. mean)", "cells better", "verdict",
                       "default"], body)
        out.append("")
        helped = [v for v, p in pooled.items() if p["verdict"] == "helps" and v != "all"]
        out.append(
            ("Components that help here: " + ", ".join(f"`{v}`" for v in helped) + "; the "
             "others are mixed or do not help. " if helped else
             "No single component helps here. ")
            + ("All stay off by default; `TrainConfig(conditioning=(...))` switches them on."
               if not default else "`TrainConfig(conditioning=(...))` chooses them."))
        out.append("")
    return out


def _peers_section(rows, budget_text: str) -> list[str]:
    stats = peer_stats(rows)
    out = ["## All methods at equal budget", "",
           f"Final test RMSE (standardised target) after {budget_text}; median and min-max "
           "over seeds, sorted by median. `n`: finished runs; errors and skipped runs are "
           "listed at the end.", ""]
    for task in sorted(stats, key=lambda t: _task_index(t)):
        out.append(f"### {task}")
        out.append("")
        body = []
        for method, s in sorted(stats[task].items(),
                                key=lambda kv: (math.isnan(kv[1]["median"]), kv[1]["median"])):
            body.append([
                f"`{method}`", _e(s["median"]), f"{_e(s['min'])}-{_e(s['max'])}", s["n"],
                "n/a" if math.isnan(s["steps"]) else f"{s['steps']:.0f}",
                ", ".join(str(p) for p in s["n_params"]) or "n/a",
                "" if not (s["errors"] or s["skipped"]) else
                f"{s['errors']} error, {s['skipped']} skipped",
            ])
        out += _table(["method", "median RMSE", "min-max", "n", "median steps", "parameters",
                       "not ok"], body)
        out.append("")
    return out


def _dead_section(rows) -> list[str]:
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
    out += _table(["method", "median", "max (run)", "max (one layer)",
                   "max during training", "runs"], body)
    return out + [""]


def _task_index(name: str) -> int:
    from ..tasks import TASKS

    names = list(TASKS)
    return names.index(name) if name in names else len(names)


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
                  if all(b.endswith("s") and not b.endswith("steps") for b in budgets) else
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
        seen: dict[str, dict[tuple[int, ...], dict[str, int]]] = {}
        for r in ok:
            hidden = tuple(r["config"]["model"]["hidden"])
            seen.setdefault(r["method"], {}).setdefault(hidden, {})[r["task"]] = r["n_params"]
        for method in sorted(seen, key=method_order):
            desc = METHODS[method].description if method in METHODS else ""
            parts = []
            for hidden, counts in seen[method].items():
                by_count: dict[int, list[str]] = {}
                for task, n in counts.items():
                    by_count.setdefault(n, []).append(task)
                parts.append(f"{list(hidden)}: " + "; ".join(
                    f"{n} ({', '.join(sorted(ts))})" for n, ts in sorted(by_count.items())))
            out.append(f"  - `{method}` {' / '.join(parts)} -- {desc}")
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
    cells = claims_cells(rows)
    methods = sorted({r["method"] for r in rows}, key=method_order)
    budgets = sorted({r["budget"] for r in rows})
    budget_text = " / ".join(budgets) if budgets else "n/a"
    if budgets and all(b.endswith("s") and not b.endswith("steps") for b in budgets):
        budget_text += " of training time per run (equal wall time)"
    lines = [
        "# sepneuron benchmark report",
        "",
        f"Rebuilt from `{folder.name}/results.sqlite` by `sepneuron report {folder}`; "
        f"flat results in `results.csv`.",
        "",
    ]
    lines += _setup_section(rows, selection, last)
    from .report_compare import compare_sections

    lines += compare_sections(rows, budget_text)
    lines += _claims_section(cells)
    ablation = conditioning_ablation(rows)
    if ablation:
        lines += _ablation_section(ablation, budget_text)
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
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
