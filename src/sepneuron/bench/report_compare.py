"""The report's issue-12 sections (markdown lines), from stored rows only: the headline
(default recipe vs the best peer), the estimator against scikit-learn, the paper's question
under the library's trainer, the recipe's ablation and the residual stages. Each section is
left out when its methods are not in the selection. The numbers: :mod:`.compare`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .compare import (
    TARGET_BETTER,
    TARGET_SHARE,
    TARGET_WORSE,
    headline,
    headline_verdict,
    pairwise,
    recipe_ablation_table,
    stages_table,
)
from .markdown import md_table, ratio, sci, times
from .methods import HEADLINE, METHODS, PAPER_QUESTION, PEERS, RECIPE_BASE, RECIPE_VARIANTS
from .stats import geomean

__all__ = ["compare_sections", "headline_section", "estimator_section",
           "paper_question_section", "recipe_section", "selection_section", "stages_section"]

ESTIMATOR = "estimator_default"
SKLEARN = ("sklearn_lbfgs_tanh_small", "sklearn_lbfgs_tanh")
"""scikit-learn's L-BFGS MLP on the estimator's default hidden sizes, then on the suite's."""
PRECISION_TARGET = 1e-6  # relative test RMSE the precision mode aims at (issue 12)


def _recipe(rows: Sequence[dict[str, Any]], method: str) -> str:
    """The optimisation fields of ``method``'s stored config, as the report states them."""
    for r in rows:
        if r["method"] == method and r.get("config"):
            t = r["config"].get("train", {})
            keys = ("optimizer", "lr", "output_layer", "init", "rule", "stages", "dtype")
            model = r["config"].get("model", {})
            return (f"{model.get('type')} {model.get('activation')} {model.get('hidden')}; "
                    + ", ".join(f"{k}={t[k]!r}" for k in keys if k in t))
    return "n/a"


def _hidden(rows: Sequence[dict[str, Any]], method: str) -> Any:
    """The hidden sizes in ``method``'s first stored config (``None`` if not stored)."""
    return next((r["config"].get("model", {}).get("hidden") for r in rows
                 if r["method"] == method and r.get("config")), None)


def _race(rows: Sequence[dict[str, Any]], method: str) -> str:
    """Words on ``method``'s race of hidden sizes (``""`` if its config has none)."""
    race = next((r["config"].get("select") for r in rows
                 if r["method"] == method and r.get("config")), None)
    if not race:
        return ""
    names = " and ".join(str(h) for h in race["hidden"])
    train: dict[str, Any] = next((r["config"].get("train", {}) for r in rows
                                 if r["method"] == method and r.get("config")), {})
    layer = ("; with `output_layer=\"auto\"` every candidate races with the exact output "
             "layer and the winner goes on as `\"auto\"` says: Levenberg-Marquardt on every "
             "parameter for a network of more than one hidden layer, the exact output layer "
             "for a network of one" if train.get("output_layer") == "auto" else "")
    return (f", its network chosen by a hold-out race of {names} as the estimator's "
            "`hidden_layer_sizes=\"auto\"` does (`fit_select`: each trained for "
            f"{race['share']:.0%} of the budget on {1 - race['validation_fraction']:.0%} of "
            f"the points, a later one chosen only with a {race['margin']:g}x lower "
            f"validation MSE, the winner trained on all points for the rest{layer})")


def selection_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per task and method with a race: how many seeds chose each hidden size."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        m = (r.get("metrics") or {}) if r.get("status") == "ok" else {}
        hidden = (m.get("selection") or {}).get("hidden", m.get("hidden"))
        if hidden is None or r["method"] not in (HEADLINE, "estimator_default"):
            continue
        cell = counts.setdefault((r["task"], r["method"]), {})
        cell[str(hidden)] = cell.get(str(hidden), 0) + 1
    if not counts:
        return []
    out = ["## The networks the race chose", "",
           "Seeds on which each hidden size won the hold-out race (`sepneuron.fit_select`; "
           "the estimator's `hidden_layer_sizes=\"auto\"`).", ""]
    body = [[t, f"`{m}`", ", ".join(f"{h}: {n}" for h, n in sorted(c.items()))]
            for (t, m), c in sorted(counts.items())]
    return out + md_table(["task", "method", "seeds per winner"], body) + [""]


def headline_section(rows: Sequence[dict[str, Any]], budget_text: str) -> list[str]:
    table = headline(rows)
    if table.empty:
        return []
    v = headline_verdict(table)
    present = sorted({r["method"] for r in rows if r["method"] in PEERS})
    out = [
        "## Headline: the default recipe against the best of today's peers", "",
        f"`{HEADLINE}` is the library's default recipe: `TrainConfig()`'s defaults, only the "
        f"budget set ({_recipe(rows, HEADLINE)}){_race(rows, HEADLINE)}, with residual "
        "stages after a plateau as the estimator's `stages=\"auto\"` does "
        "(`fit_stages(..., schedule=\"plateau\")`: a second network on the rescaled "
        "residual only when the first stops improving, in the same budget). Per task, the "
        "*best peer* is the peer with the lowest median final test RMSE among those run "
        "here (" + ", ".join(f"`{p}`" for p in present)
        + f"); *ratio* = best peer's median / `{HEADLINE}`'s median at {budget_text}: above "
        "1 the default recipe is more accurate. Medians over seeds; a failed run counts as "
        "an infinite RMSE.", "",
        f"Targets (issue 12): at least {TARGET_BETTER:g}x lower RMSE on at least "
        f"{TARGET_SHARE:.0%} of the *smooth* tasks (`Task.smooth`: no kink), and never more "
        f"than {TARGET_WORSE:g}x worse on any task.", "",
    ]
    body = [[r.task, "smooth" if r.smooth else "kink", sci(r.headline), f"`{r.best_peer}`",
             sci(r.peer_rmse), ratio(r.ratio), r.verdict] for r in table.itertuples()]
    out += md_table(["task", "kind", f"`{HEADLINE}`", "best peer", "its RMSE",
                   "ratio (peer / default)", "verdict"], body)
    out.append("")
    worse = ", ".join(f"`{t}`" for t in v["worse"]) or "none"
    out.append(
        f"**Verdict:** {TARGET_BETTER:g}x or better on {v['better']} of {v['smooth']} smooth "
        f"tasks (target: {v['need']}): **{'met' if v['share_met'] else 'not met'}**; more than "
        f"{TARGET_WORSE:g}x worse on: {worse}: **{'met' if v['worse_met'] else 'not met'}**. "
        f"Over {v['tasks']} tasks of this selection (the targets are stated for the paper "
        "suite's 13).")
    return out + [""]


def estimator_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The estimator against each scikit-learn L-BFGS peer present (:data:`SKLEARN`, the
    one of the estimator's own hidden sizes first): one ratio and seeds column per peer."""
    present = {r["method"] for r in rows}
    table = pairwise(rows, [(p, ESTIMATOR) for p in SKLEARN if p in present])
    cols = {p: f"{ESTIMATOR} vs {p}" for p in SKLEARN if f"{ESTIMATOR} vs {p}" in table.columns}
    if table.empty or not cols:
        return []
    est = _hidden(rows, ESTIMATOR)
    race = next((r["config"]["model"]["race"] for r in rows if r["method"] == ESTIMATOR
                 and "race" in (r.get("config") or {}).get("model", {})), None)
    hidden = {p: _hidden(rows, p) for p in cols}

    def size(peer: str) -> str:
        h = hidden[peer]
        if race is not None:
            same = "the first network the estimator races" if h == est else "not one it races"
            return (f"hidden sizes {h} ({same}: its `hidden_layer_sizes=\"auto\"` races "
                    + " and ".join(str(c) for c in race["hidden"]) + ")")
        return (f"hidden sizes {h}: the same as the estimator's" if h == est else
                f"hidden sizes {h} (the estimator's default network is {est}: not the same "
                "size)")

    out = [
        "## The estimator against scikit-learn", "",
        f"`{ESTIMATOR}`: `SeparatedMLPRegressor(max_time=budget, random_state=seed)` with "
        "every other parameter at its default, fitted on the raw data (it standardises "
        "itself), scored in the bench's standardised units. Against "
        "`MLPRegressor(solver=\"lbfgs\", activation=\"tanh\")` on the standardised data, "
        "stopped by time in warm-started chunks (`sepneuron.bench.fitters`): "
        + "; ".join(f"`{p}`, {size(p)}" for p in cols)
        + ". Ratio = scikit-learn's median / the estimator's: above 1 the estimator is more "
        "accurate. *Seeds*: seeds on which the estimator's RMSE is lower.", "",
    ]
    head = ["task"]
    for p in cols:
        head += [f"ratio (`{p}` / estimator)", "seeds", "verdict"]
    body = []
    for t in table.index:
        cells = [t]
        for c in cols.values():
            v = table.loc[t, c]
            cells += [ratio(v), table.loc[t, c + ": seeds"],
                      "beats" if v > 1 else "**does not beat**"]
        body.append(cells)
    out += md_table(head, body)
    out.append("")
    for p, c in cols.items():
        target = (" (target: every quick-suite task, against the same size)."
                  if hidden[p] == est else ".")
        out.append(f"**The estimator beats `{p}` on {int((table[c] > 1).sum())} of "
                   f"{int(table[c].notna().sum())} tasks**{target}")
    return out + [""]


RECIPE_FIELDS = {"optimizer": "lm", "output_layer": "lstsq", "init": "data"}
"""The recipe's settings, as stored in a run's ``config["train"]``."""


def plain_under_recipe(rows: Sequence[dict[str, Any]], method: str) -> bool:
    """Whether ``method``'s stored runs are a plain MLP trained by the recipe (read from
    their configs): then the default recipe can stand for ``tanh_vplm`` when that is not
    run (the quick and paper suites, where it would repeat the default recipe's runs)."""
    cfgs = [r.get("config") or {} for r in rows if r["method"] == method]
    return bool(cfgs) and all(
        c.get("model", {}).get("type") == "plain"
        and all(c.get("train", {}).get(k) == v for k, v in RECIPE_FIELDS.items())
        for c in cfgs)


def same_budget(rows: Sequence[dict[str, Any]], method: str, others: Sequence[str],
                tol: float = 0.05) -> bool:
    """Whether ``method``'s networks have the parameter count of each of ``others``' on every
    task both ran (within ``tol``, relative; rows without ``n_params`` do not count)."""
    counts: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.get("n_params"):
            counts[(r["method"], r["task"])] = float(r["n_params"])
    return all(abs(counts[(method, task)] / n - 1) <= tol
               for (m, task), n in counts.items() if m in others and (method, task) in counts)


def paper_question_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {r["method"] for r in rows}
    plain = [p for p in PAPER_QUESTION["plain"] if p in present]
    tanh_recipe = PAPER_QUESTION["plain"][0]  # tanh_vplm: the default recipe's own network
    stand_in = (tanh_recipe not in present and plain_under_recipe(rows, HEADLINE)
                and same_budget(rows, HEADLINE, PAPER_QUESTION["separated"]))
    if stand_in:
        plain = [HEADLINE, *plain]
    pairs = [(p, s) for s in PAPER_QUESTION["separated"] for p in plain]
    table = pairwise(rows, pairs)
    cols = [c for c in table.columns if not c.endswith(": seeds")]
    if table.empty or not cols:
        return []
    out = [
        "## The paper's question under the library's trainer", "",
        "Separated neurons against plain tanh and SoftPlus neurons trained by the *same* "
        "recipe -- exact least-squares output layer, Levenberg-Marquardt on the rest, "
        "initialisation in the data -- with the same parameter count and the same time. "
        "Ratio = plain net's median RMSE / separated net's: above 1 the separated net is "
        "more accurate, below 1 the plain one; *seeds*: seeds the separated net wins. The "
        "last row is the geometric mean over tasks.", "",
    ]
    if stand_in:
        out += [f"`{HEADLINE}` stands for the plain net here: its stored runs are a plain "
                f"{_recipe(rows, HEADLINE)} MLP under the same recipe.", ""]
    body = [[t] + [f"{ratio(table.loc[t, c])} ({table.loc[t, c + ': seeds']})" for c in cols]
            for t in table.index]
    body.append(["**geometric mean**"] + [ratio(geomean(table[c])) for c in cols])
    out += md_table(["task"] + [f"`{c.split(' vs ')[0]}` vs `{c.split(' vs ')[1]}`"
                              for c in cols], body)
    return out + [""]


def _what(label: str) -> str:
    """A recipe variant in words: the method it is, or the settings it changes."""
    v = RECIPE_VARIANTS.get(label)
    if isinstance(v, str):
        return f"`{v}`"
    return ", ".join(f"`{a}={b!r}`" for a, b in (v or {}).items())


def recipe_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    table = recipe_ablation_table(rows)
    if table.empty:
        return []
    tasks = [c for c in table.columns if c not in ("variant", "method", "geomean", "verdict")]
    out = [
        "## Ablation of the recipe", "",
        f"`{RECIPE_BASE}` ({METHODS[RECIPE_BASE].description}) with one option switched back "
        "at a time. Ratio = the variant's median final test RMSE / the recipe's: **above 1 "
        "the option that was switched back helps**. Verdict on the per-task ratios: *helps* = "
        "geometric mean above 1/0.95 and worse without it on at least 2/3 of the tasks; "
        "*does not help* = geometric mean at most 1/0.95 and worse without it on at most "
        "1/3; *mixed* otherwise.", "",
    ]
    body = [[f"`{r['variant']}`", _what(r["variant"])]
            + [ratio(r.get(t, math.nan), "recipe failed", "variant failed") for t in tasks]
            + [ratio(r["geomean"]), f"**{r['verdict']}**"] for _, r in table.iterrows()]
    out += md_table(["switched back", "variant"] + tasks + ["geo. mean", "the option"], body)
    return out + [""]


def stages_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    table = stages_table(rows)
    if table.empty:
        return []
    out = [
        "## Residual stages", "",
        "Each stage fits a new network to the rescaled residual of the previous ones (float64). "
        "Under the plateau schedule (`sepneuron_default`, the estimator's `stages=\"auto\"`) a "
        "stage after the first runs only on the seeds where the one before stopped on a "
        "plateau: *seeds* counts them; the even schedule (precision mode) runs every stage. "
        "Per stage: median over seeds of the test and training RMSE of the sum after that "
        "stage (standardised target, so these are relative RMSEs) and the training seconds "
        f"at its end. The precision target is a relative test RMSE of {PRECISION_TARGET:g}. "
        "Reading the limit: a test RMSE far above the training RMSE means the data (too few "
        "points to pin the function down between them); both falling together until the "
        "time ends means time; both stalling means conditioning (the stage cannot fit its "
        "residual).", "",
    ]
    body = [[r.task, f"`{r.method}`", r.stage, sci(r.test_rmse), sci(r.train_rmse),
             "n/a" if math.isnan(r.time) else f"{r.time:.1f}",
             times(r.test_rmse / r.train_rmse) if r.train_rmse > 0 else "n/a", r.seeds,
             "yes" if r.test_rmse <= PRECISION_TARGET else "no"]
            for r in table.itertuples()]
    out += md_table(["task", "method", "stage", "test RMSE", "train RMSE", "time, s",
                   "test / train", "seeds", f"<= {PRECISION_TARGET:g}"], body)
    return out + [""]


def compare_sections(rows: Sequence[dict[str, Any]], budget_text: str) -> list[str]:
    """Every issue-12 section that the selection's methods allow, in report order."""
    return (headline_section(rows, budget_text) + selection_section(rows)
            + estimator_section(rows)
            + paper_question_section(rows) + stages_section(rows) + recipe_section(rows))
