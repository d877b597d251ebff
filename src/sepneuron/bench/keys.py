"""Run keys: the stable name of a run's configuration in the results store.

A key is the first 20 hex digits of the SHA-256 of a canonical JSON document built from
the run spec (:func:`~sepneuron.bench.runner.make_spec`). A benchmark resumes by skipping
the keys that are stored, so a key must change when a setting that shapes the run changes,
and must *not* change when the code merely learns a new setting whose default keeps runs
as they were.

Key version 1 (:data:`KEY_VERSION`) hashes, per section of the spec (the top level,
``data``, ``model``, ``train``):

* every entry named in :data:`V1_FIELDS` (the entries the spec had when keys were
  versioned; their hash is the one stored databases already hold), and
* any other entry only when its value differs from its default (``train``: the default of
  the :class:`~sepneuron.train.TrainConfig` field of that name; other sections:
  :data:`SECTION_DEFAULTS`). An entry with no known default is always hashed.

So a new ``TrainConfig`` field with a default leaves every stored key as it was, while a
run that sets it to another value gets a new key. A change that must re-run everything
(a setting whose meaning changed) bumps :data:`KEY_VERSION`, which then enters the document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

__all__ = ["KEY_VERSION", "V1_FIELDS", "SECTION_DEFAULTS", "run_key", "key_document"]

KEY_VERSION = 1

V1_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset({"task", "method", "seed", "budget", "data", "model", "train", "grid_n",
                   "threads"}),
    "data": frozenset({"n_train", "n_test", "standardise"}),
    "model": frozenset({"type", "activation", "hidden"}),
    "train": frozenset({
        # TrainConfig's fields at key version 1
        "optimizer", "lr", "momentum", "schedule", "steps", "max_time", "batch_size", "rule",
        "gamma", "max_step", "tune_curvature", "tune_every", "conditioning", "seed", "dtype",
        "device", "eval_every", "diagnostics", "max_retries", "checkpoint_path",
        "checkpoint_every", "resume",
        # fit_kan's arguments in a KAN run's spec
        "grid", "k", "opt",
    }),
}
"""The entries hashed whatever their value (key version 1)."""

TRAIN_AS_BEFORE: dict[str, Any] = {"output_layer": "optimizer", "init": "default",
                                   "weight_decay": 0.0, "relative_weight_decay": 0.0}
"""``train`` entries added after key version 1 whose *default* later moved (issue 12 made
the exact output layer and ``init="data"`` the default): the value that reproduces runs
from before the entry existed counts as its default for the key, so those runs keep their
keys and a run with the new default gets a new one."""

TRAIN_ONLY_WITH: dict[str, tuple[str, Any]] = {"weight_decay": ("optimizer", "lm"),
                                               "relative_weight_decay": ("optimizer", "lm")}
"""``train`` entries that shape a run only with another entry at one value (TrainConfig
refuses them elsewhere unless at their default): left out of the key otherwise, so that
a new default of such an entry does not move the keys of runs it never touched."""

SECTION_DEFAULTS: dict[str, dict[str, Any]] = {"": {}, "data": {}, "model": {}}
"""Defaults of spec entries added after key version 1, outside ``train`` (none yet): an
entry added to a spec section registers its default here, so that runs at the default keep
their key."""


def _json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


def _train_defaults() -> dict[str, Any]:
    from ..train import TrainConfig  # read at call time: the fields of the code that runs

    out = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    out.update(TRAIN_AS_BEFORE)
    return out


def _section(name: str, entries: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    always = V1_FIELDS.get(name, frozenset())
    return {k: v for k, v in entries.items()
            if k in always or k not in defaults or _json(v) != _json(defaults[k])}


def key_document(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of ``spec`` that the key hashes (see the module docstring)."""
    doc = _section("", spec, SECTION_DEFAULTS[""])
    for name in ("data", "model"):
        if isinstance(doc.get(name), dict):
            doc[name] = _section(name, doc[name], SECTION_DEFAULTS[name])
    if isinstance(doc.get("train"), dict):
        train = {k: v for k, v in doc["train"].items()
                 if k not in TRAIN_ONLY_WITH
                 or doc["train"].get(TRAIN_ONLY_WITH[k][0]) == TRAIN_ONLY_WITH[k][1]}
        doc["train"] = _section("train", train, _train_defaults())
    if KEY_VERSION != 1:
        doc["key_version"] = KEY_VERSION
    return doc


def run_key(spec: dict[str, Any]) -> str:
    """A stable hash of the run's configuration: equal settings, equal keys."""
    text = json.dumps(key_document(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]
