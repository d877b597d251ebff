"""Parameters declared once (``sepneuron.params``, ``sepneuron.settings.PARAMS``): the
checks, the messages, the CLI types and the estimator's constraints all derive from them."""

from __future__ import annotations

import argparse
import math
from dataclasses import fields

import numpy as np
import pytest

from sepneuron import TrainConfig
from sepneuron.params import Param
from sepneuron.settings import PARAMS

CASES = [  # (declaration, accepted, refused, the words of the message)
    (Param("int", low=0), [0, 3, np.int64(2)], [-1, 1.5, True, "3", None], "a non-negative int"),
    (Param("int", low=1, none=True), [None, 1], [0, 2.0], "None or a positive int"),
    (Param("int"), [-5, 0], [0.5, False], "an int"),
    (Param("real", low=0, low_open=True, finite=True), [1e-300, 2], [0, -1, math.inf, math.nan,
                                                                      True, "1"],
     "a positive finite number"),
    (Param("real", low=0, low_open=True, none=True), [None, math.inf, 3], [0, math.nan, "5"],
     "None or > 0"),
    (Param("real", low=0, high=1, high_open=True), [0, 0.5], [1, -0.1, math.nan], "in [0, 1)"),
    (Param("real", low=0, finite=True), [0, 2], [-1e-9, math.inf], "a finite number >= 0"),
    (Param("bool"), [True, False], [1, 0, "yes", None], "True or False"),
    (Param("choice", choices=("a", "b")), ["a"], ["c", None, 1], "one of ('a', 'b')"),
    (Param("names", choices=("a", "b")), [(), ["a", "b"], (object(),)], ["a", ("c",), 3],
     "a sequence of names from ('a', 'b')"),
    (Param("path", none=True), [None, "x.pt"], ["", 3], "None or a file path"),
    (Param("sizes"), [4, (3, 2), [1], np.array([8, 8])], [(), (3, 0), "32", 2.0, (2.5,)],
     "a non-empty sequence of positive ints"),
]


@pytest.mark.parametrize("param, good, bad, words", CASES)
def test_a_declaration_accepts_its_values_and_names_the_bad_ones(param, good, bad, words):
    assert param.describe() == words
    for v in good:
        param.check("p", v)
    for v in bad:
        with pytest.raises(ValueError) as e:
            param.check("the_name", v)
        assert str(e.value) == f"the_name must be {words}, got {v!r}"


def test_the_cli_type_converts_then_checks_in_the_same_words():
    steps = Param("int", low=0)
    assert steps.parse("12") == 12
    with pytest.raises(argparse.ArgumentTypeError, match="must be a non-negative int, got '-1'"):
        steps.parse("-1")
    with pytest.raises(argparse.ArgumentTypeError, match="got 'ten'"):
        steps.parse("ten")
    assert Param("sizes").parse("32, 16") == (32, 16)
    with pytest.raises(argparse.ArgumentTypeError, match="positive ints, got '8,x'"):
        Param("sizes").parse("8,x")
    kw = PARAMS["rule"].argparse("newton", none_name="none")
    assert kw["choices"] == (*PARAMS["rule"].options(), "none") and "(default newton)" in kw["help"]


def test_a_declaration_needs_choices_exactly_when_it_has_names():
    with pytest.raises(ValueError, match="choices"):
        Param("choice")
    with pytest.raises(ValueError, match="choices"):
        Param("int", choices=("a",))
    with pytest.raises(ValueError, match="kind must be one of"):
        Param("float")


def test_every_train_config_field_is_declared_and_its_default_passes():
    names = [f.name for f in fields(TrainConfig)]
    assert set(names) <= set(PARAMS), set(names) - set(PARAMS)
    cfg = TrainConfig()
    for name in names:
        PARAMS[name].check(name, getattr(cfg, name))


def test_names_are_read_from_the_registries_when_checked(monkeypatch):
    from sepneuron.conditioning import CONDITIONERS
    from sepneuron.init import INITS
    from sepneuron.settings import DTYPES, OPTIMIZERS
    from sepneuron.solvers.varpro import OUTPUT_LAYERS
    from sepneuron.tuning import RULES

    assert PARAMS["rule"].options() == tuple(RULES)
    assert PARAMS["conditioning"].options() == tuple(CONDITIONERS)
    assert PARAMS["optimizer"].options() == tuple(OPTIMIZERS)
    assert PARAMS["init"].options() == tuple(INITS)
    assert PARAMS["output_layer"].options() == tuple(OUTPUT_LAYERS)
    assert PARAMS["dtype"].options() == DTYPES
    monkeypatch.setitem(RULES, "my_rule", RULES["newton"])  # a rule registered later
    TrainConfig(rule="my_rule").validate()
    assert "my_rule" in PARAMS["rule"].options()


def test_the_estimator_declares_exactly_its_parameters():
    """scikit-learn's check_param_validation, in our words: one declaration per
    parameter, and a value of no valid type is refused by name at fit."""
    pytest.importorskip("sklearn")
    from sepneuron import SeparatedMLPRegressor

    est = SeparatedMLPRegressor(max_steps=2)
    assert set(est._parameter_constraints) == set(est.get_params(deep=False))
    bad_type = type("BadType", (), {})()
    X = np.random.default_rng(0).random((20, 2))
    for name, param in est._parameter_constraints.items():
        if not isinstance(param, Param):
            continue
        with pytest.raises(ValueError, match=f"^{name} must be .*got <.*BadType"):
            SeparatedMLPRegressor(**({"max_steps": 2} | {name: bad_type})).fit(X, X[:, 0])


def test_the_estimator_shares_train_configs_declarations():
    pytest.importorskip("sklearn")
    from sepneuron.estimator import PARAMETER_CONSTRAINTS as C

    for name in ("rule", "optimizer", "output_layer", "init", "batch_size", "dtype", "patience"):
        assert C[name] is PARAMS[name]
    assert C["learning_rate"].none and C["learning_rate"].low == PARAMS["lr"].low
    assert C["max_steps"].low == 1 and C["max_steps"].kind == PARAMS["steps"].kind


# -- the CLI's flags derive from the same declarations -------------------------------------------


def _train_parser():
    from sepneuron.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices["train"]


def _action(parser, flag):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_train_flags_take_their_choices_from_the_registries(monkeypatch):
    from sepneuron.functional import KINDS
    from sepneuron.settings import OPTIMIZERS
    from sepneuron.tuning import RULES

    _, train = _train_parser()
    assert tuple(_action(train, "--rule").choices) == (*RULES, "none")
    assert tuple(_action(train, "--optimizer").choices) == tuple(OPTIMIZERS)
    assert tuple(_action(train, "--kind").choices) == KINDS
    monkeypatch.setitem(RULES, "my_rule", RULES["newton"])
    _, train = _train_parser()
    assert "my_rule" in _action(train, "--rule").choices


def test_every_config_flag_is_a_train_config_field_and_reaches_it():
    from sepneuron.cli.train import CONFIG_FLAGS, _config

    assert set(CONFIG_FLAGS) <= {f.name for f in fields(TrainConfig)}
    parser, _ = _train_parser()
    args = parser.parse_args(["train", "--task", "kan_exp", "--checkpoint", "c.pt",
                              "--optimizer", "adam", "--output-layer", "optimizer",
                              "--max-step", "0.1", "--batch-size", "8", "--rule", "paper",
                              "--steps", "7", "--max-time", "2.5"])
    cfg = _config(args)
    assert (cfg.optimizer, cfg.max_step, cfg.batch_size, cfg.rule, cfg.steps, cfg.max_time) == (
        "adam", 0.1, 8, "paper", 7, 2.5)
    assert cfg.checkpoint_every == 100 and cfg.checkpoint_path == "c.pt"
    args = parser.parse_args(["train", "--task", "kan_exp", "--checkpoint", "c.pt", "--rule",
                              "none"])
    assert _config(args).rule is None


@pytest.mark.parametrize("flag, field, text", [("--gamma", "gamma", "0"),
                                               ("--eval-every", "eval_every", "0"),
                                               ("--max-time", "max_time", "-3"),
                                               ("--hidden", None, "4,0")])
def test_a_bad_flag_is_refused_in_its_declarations_words(flag, field, text, capsys):
    from sepneuron.settings import MODEL_PARAMS

    parser, _ = _train_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["train", "--task", "kan_exp", "--checkpoint", "c.pt", flag, text])
    assert e.value.code == 2
    words = (PARAMS[field] if field else MODEL_PARAMS["hidden_sizes"]).describe()
    assert f"argument {flag}: must be {words}, got {text!r}" in capsys.readouterr().err
