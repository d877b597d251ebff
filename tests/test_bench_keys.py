"""Run keys (issue #8): a new TrainConfig field at its default keeps every stored key, so old
benchmark folders stay resumable; a real change of a setting gives a new key."""

from __future__ import annotations

import dataclasses

import pytest

import sepneuron.train
from sepneuron.bench import ResultStore, make_spec, pending_specs, run_key
from sepneuron.bench.keys import V1_FIELDS
from sepneuron.bench.suites import Budget
from sepneuron.train import TrainConfig

METHODS = ("sep_relu_newton", "relu_adam", "tanh_lm", "kan")


def _with_new_field(monkeypatch, name="new_knob", default=0.5):
    """TrainConfig as if a field ``name`` with ``default`` had been added to it."""
    grown = dataclasses.make_dataclass(
        "TrainConfig", [(name, type(default), dataclasses.field(default=default))],
        bases=(TrainConfig,))
    monkeypatch.setattr(sepneuron.train, "TrainConfig", grown)
    return grown


def test_v1_fields_are_todays_trainconfig_fields():
    # the fields hashed whatever their value: a field added later must not be listed there
    # (that would move the keys of every stored run); a removed field is an error to notice
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert V1_FIELDS["train"] - {"grid", "k", "opt"} <= names  # fit_kan's: not TrainConfig's
    assert {"output_layer", "init", "patience"} <= names - V1_FIELDS["train"]  # later fields


@pytest.mark.parametrize("method", METHODS)
def test_new_default_field_keeps_the_key(monkeypatch, method):
    budget = Budget(steps=100)
    before = make_spec("kan_exp", method, 0, budget)
    key = run_key(before)
    _with_new_field(monkeypatch)
    after = make_spec("kan_exp", method, 0, budget)
    if method != "kan":  # the new field is in the spec (and the stored config) ...
        assert after["train"]["new_knob"] == 0.5
    assert run_key(after) == key  # ... but not in the key while it has its default
    if method != "kan":
        changed = dict(after, train={**after["train"], "new_knob": 0.7})
        assert run_key(changed) != key
    real = dict(after, train={**after["train"], "lr": after["train"]["lr"] * 2})
    assert run_key(real) != key


def test_changed_v1_setting_changes_the_key_even_at_its_default():
    spec = make_spec("kan_exp", "sep_relu_newton", 0, Budget(steps=100))
    key = run_key(spec)
    for name, value in (("gamma", 0.5), ("steps", 101), ("conditioning", ["compensate"]),
                        ("rule", "paper"), ("eval_every", 7)):
        assert run_key(dict(spec, train={**spec["train"], name: value})) != key, name
    assert run_key(dict(spec, seed=1)) != key
    assert run_key(dict(spec, model={**spec["model"], "hidden": [8, 8]})) != key
    # an entry of no known default is hashed
    assert run_key(dict(spec, model={**spec["model"], "init": "xavier"})) != key


def test_old_folder_resumes_after_a_field_is_added(tmp_path, monkeypatch):
    specs = [make_spec("kan_exp", m, 0, Budget(steps=10)) for m in ("relu_adam", "tanh_lm")]
    with ResultStore(tmp_path) as store:
        for spec in specs:
            store.add({"key": run_key(spec), "task": spec["task"], "method": spec["method"],
                       "seed": 0, "budget": "10 steps", "status": "ok", "config": spec})
        _with_new_field(monkeypatch, "another_switch", False)
        again = [make_spec("kan_exp", m, 0, Budget(steps=10)) for m in ("relu_adam", "tanh_lm")]
        assert all("another_switch" in s["train"] for s in again)
        assert pending_specs(store, again) == []  # nothing to re-run
        flipped = [dict(s, train={**s["train"], "another_switch": True}) for s in again]
        assert len(pending_specs(store, flipped)) == 2


def test_a_moved_default_keys_runs_by_what_they_do():
    # issue 12 made output_layer="lstsq" and init="data" TrainConfig's defaults; the bench's
    # methods pin the old behaviour, which keeps their keys, and the new one gets its own
    spec = make_spec("kan_exp", "tanh_lbfgs", 0, Budget(steps=10))
    assert spec["train"]["output_layer"] == "optimizer" and spec["train"]["init"] == "default"
    key = run_key(spec)
    for field, value in (("output_layer", "lstsq"), ("init", "data")):
        other = {**spec, "train": {**spec["train"], field: value}}
        assert run_key(other) != key
    without = {**spec, "train": {k: v for k, v in spec["train"].items()
                                 if k not in ("output_layer", "init")}}
    assert run_key(without) == key  # as a spec from before the fields existed
