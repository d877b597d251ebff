"""The report's section on the conditioning ablation (markdown lines), from
:func:`~sepneuron.bench.ablation.conditioning_ablation`: per analog and rule, each variant
against none, per task in a fold-out, and the verdict per component pooled over them."""

from __future__ import annotations

import math
from typing import Any

from .ablation import ABLATION_MARGIN, AblationGroup, component_verdicts
from .markdown import KIND_NAMES, md_table, plain, sci
from .methods import ABLATION_VARIANTS
from .stats import median

__all__ = ["ablation_section"]


def ablation_section(groups: list[AblationGroup], budget_text: str) -> list[str]:
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
        out += [f"### {KIND_NAMES.get(g.kind, g.kind)} analog, rule `{g.rule}` "
                f"(none = `{g.base}`)", ""]
        body: list[list[Any]] = []
        for v in g.variants:
            sm = g.summary[v]
            n = sum(1 for t in g.tasks if g.cells[(t, v)].seeds)
            body.append([
                "none" if v == "none" else f"`{v}`", plain(sm.rmse),
                "-" if v == "none" else f"{sm.better}/{sm.tasks}",
                plain(sm.time), plain(sm.steps), f"{sm.reached}/{n}", plain(sm.per_step),
                "(reference)" if v == "none" else f"**{sm.verdict}**",
            ])
        out += md_table(["components", "RMSE ratio (geo. mean)", "better", "time ratio",
                       "step ratio", "reached", "s/step", "verdict"], body)
        out.append("")
        out += [f"<details><summary>Per task ({KIND_NAMES.get(g.kind, g.kind)} analog, rule "
                f"`{g.rule}`)</summary>", ""]
        body = []
        for t in g.tasks:
            for v in g.variants:
                c = g.cells[(t, v)]
                if not c.seeds:
                    continue
                body.append([
                    t, "none" if v == "none" else f"`{v}`", sci(c.median_final) if math.isfinite(
                        c.median_final) else "failed", plain(c.rmse_ratio), plain(c.median_time),
                    plain(c.time_ratio), plain(c.median_steps), plain(c.step_ratio),
                    f"{c.reached}/{len(c.seeds)}", c.failed,
                    "n/a" if not c.per_step else f"{1e3 * median(c.per_step):.2f} ms",
                ])
        out += md_table(["task", "components", "final RMSE (median)", "RMSE ratio",
                       "time to target, s", "time ratio", "steps to target", "step ratio",
                       "seeds reaching", "failed", "s/step"], body)
        out += ["", "Target per task: " + "; ".join(
            f"{t} {sci(g.cells[(t, 'none')].target)}" for t in g.tasks) + ".", "",
            "</details>", ""]
    pooled = component_verdicts(groups)
    if pooled:
        out += ["### Verdict per component", "",
                "Pooled over the analogs (and rules) above: every task x analog cell counts once.",
                ""]
        body = [["`all` (all together)" if v == "all" else f"`{v}`", plain(p["rmse"]),
                 f"{p['better']}/{p['cells']}", f"**{p['verdict']}**",
                 "on" if set(ABLATION_VARIANTS.get(v, (v,))) <= set(default) else "off"]
                for v, p in pooled.items()]
        out += md_table(["components", "RMSE ratio (geo. mean)", "cells better", "verdict",
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
