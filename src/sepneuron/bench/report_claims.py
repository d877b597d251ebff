"""The report's section on the paper's claims (markdown lines), from
:func:`~sepneuron.bench.analysis.claims_cells`: per analog, the verdict under the best rule
and every rule's table."""

from __future__ import annotations

from .analysis import ABLATION_RULES, CLAIMS, ClaimCell, best_rules, verdict
from .markdown import KIND_NAMES, md_table, times, value_range
from .methods import RULE_NAMES

__all__ = ["claims_section"]


def _claim_row(cell: ClaimCell, with_rule: bool) -> list[str]:
    claim = CLAIMS[cell.kind]
    t, a, overall = verdict(cell)
    row = [cell.task] + ([cell.rule] if with_rule else [])
    row += [
        f"{times(cell.time)} ({value_range(cell.time_ratio)})",
        f"{times(cell.steps)}",
        f"{cell.reached}/{len(cell.seeds)}",
        f"{times(cell.accuracy)} ({value_range(cell.acc_ratio)})",
        f"{claim['time'][0]:g}-{claim['time'][1]:g}x"
        f" / {claim['accuracy'][0]:g}-{claim['accuracy'][1]:g}x",
        f"time {t}, accuracy {a}: **{overall}**",
    ]
    return row


_CLAIM_HEADER = [
    "time ratio, median (range)", "step ratio", "seeds reaching target",
    "final-RMSE ratio, median (range)", "paper claims (time / accuracy)", "verdict",
]


def claims_section(cells: list[ClaimCell]) -> list[str]:
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
        out.append(f"### {KIND_NAMES[kind]} analog vs `{CLAIMS[kind]['baseline']}`")
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
            out += md_table(["task", *_CLAIM_HEADER], [_claim_row(c, False) for c in chosen])
            out.append("")
            counts = {v: sum(1 for c in chosen if verdict(c)[2] == v)
                      for v in ("holds", "partly", "does not hold")}
            out.append(
                f"**Summary ({KIND_NAMES[kind]} analog, rule `{rule}`):** the claim holds on "
                f"{counts['holds']} of {len(chosen)} tasks, partly on {counts['partly']}, and "
                f"does not hold on {counts['does not hold']}."
            )
            out.append("")
        out.append(f"All rules, {KIND_NAMES[kind]} analog:")
        out.append("")
        order = {r: i for i, r in enumerate(RULE_NAMES)}
        kc = sorted(kc, key=lambda c: (order.get(c.rule, 99), c.task))
        out += md_table(["task", "rule", *_CLAIM_HEADER], [_claim_row(c, True) for c in kc])
        out.append("")
    return out
