"""Parameters declared once: a :class:`Param` holds a setting's type, range, choices and help.

Every view of a setting derives from its declaration (in the spirit of scikit-learn's
``_parameter_constraints``, ``sklearn/neural_network/_multilayer_perceptron.py``):

* :meth:`Param.check` -- ``ValueError("lr must be a positive finite number, got 0.0")``,
  used by :func:`sepneuron.settings.validate_config` and the estimator's ``_validate_params``;
* :meth:`Param.argparse` -- the ``type``, ``choices``, ``default`` and ``help`` of a CLI flag
  (``sepneuron train``), whose type converts the text and then runs the same check.

``choices`` may be a callable returning the names, so that a registry (``RULES``,
``CONDITIONERS``, ...) is read when a check runs, not copied when this module loads.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Param", "is_int", "is_real"]

KINDS = ("int", "real", "bool", "choice", "names", "str", "path", "sizes")


def is_int(v: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _num(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class Param:
    """One setting: what values it takes, and what it does.

    ``kind``: ``"int"``, ``"real"``, ``"bool"``, ``"choice"`` (one name of ``choices``),
    ``"names"`` (a sequence of names of ``choices``; other objects, e.g. instances, pass),
    ``"str"`` (any string), ``"path"`` (a non-empty ``str`` or ``os.PathLike``) or
    ``"sizes"`` (a positive int or a non-empty sequence of positive ints).
    Numbers lie in ``low .. high``; ``low_open`` / ``high_open`` exclude the bound;
    ``finite`` refuses NaN and Inf. ``none``: ``None`` is allowed too; ``also``: these
    strings too (e.g. ``("auto",)`` beside an int).
    """

    kind: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = False
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    none: bool = False
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if (self.choices is None) == (self.kind in ("choice", "names")):
            raise ValueError(f"choices go with kind 'choice' or 'names' only, not {self.kind!r}")

    def options(self) -> tuple[str, ...]:
        """The names a ``choice`` or ``names`` parameter takes (read from its registry now)."""
        c = self.choices() if callable(self.choices) else self.choices
        return tuple(c or ())

    # -- the check -----------------------------------------------------------------------
    def describe(self) -> str:
        """What the values must be, as in ``"<name> must be <describe()>"``."""
        k = self.kind
        if k == "int":
            core = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
                self.low, f"an int >= {self.low}")  # type: ignore[arg-type]
        elif k == "real":
            core = self._describe_real()
        elif k == "bool":
            core = "True or False"
        elif k == "choice":
            core = f"one of {self.options()}"
        elif k == "names":
            core = f"a sequence of names from {self.options()}"
        elif k == "str":
            core = "a string"
        elif k == "path":
            core = "a file path"
        else:
            core = "a non-empty sequence of positive ints"
        core = "".join(f"{a!r} or " for a in self.also) + core
        return f"None or {core}" if self.none else core

    def _describe_real(self) -> str:
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return (f"in {'(' if self.low_open else '['}{_num(lo)}, {_num(hi)}"
                    f"{')' if self.high_open else ']'}")
        finite = "finite " if self.finite else ""
        if lo == 0 and self.low_open:
            return f"a positive {finite}number" if self.finite else "> 0"
        if lo is not None:
            return f"a {finite}number {'>' if self.low_open else '>='} {_num(lo)}"
        if hi is not None:
            return f"a {finite}number {'<' if self.high_open else '<='} {_num(hi)}"
        return f"a {finite}number"

    def ok(self, v: Any) -> bool:
        """Whether ``v`` is a value of this parameter."""
        if v is None:
            return self.none
        if isinstance(v, str) and v in self.also:
            return True
        k = self.kind
        if k == "int":
            return is_int(v) and self._in_range(v)
        if k == "real":
            return is_real(v) and (not self.finite or math.isfinite(v)) and self._in_range(v)
        if k == "bool":
            return isinstance(v, bool)
        if k == "choice":
            return isinstance(v, str) and v in self.options()
        if k == "names":
            return (not isinstance(v, str) and isinstance(v, Sequence)
                    and all(e in self.options() for e in v if isinstance(e, str)))
        if k == "str":
            return isinstance(v, str)
        if k == "path":
            return isinstance(v, (str, os.PathLike)) and bool(str(v))
        if isinstance(v, str):
            return False
        try:
            sizes = (v,) if is_int(v) else tuple(v)  # a list, tuple, array, ...
        except TypeError:
            return False
        return len(sizes) > 0 and all(is_int(s) and s >= 1 for s in sizes)

    def _in_range(self, v: float) -> bool:
        if math.isnan(v):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return not (self.high is not None and (v >= self.high if self.high_open
                                               else v > self.high))

    def check(self, name: str, v: Any) -> None:
        """Raise ``ValueError`` naming ``name`` and ``v`` unless :meth:`ok`."""
        if not self.ok(v):
            raise ValueError(f"{name} must be {self.describe()}, got {v!r}")

    # -- the CLI flag --------------------------------------------------------------------
    def parse(self, text: str) -> Any:
        """A flag's text as a value of this parameter; ``argparse.ArgumentTypeError`` if not.

        ``int``/``real`` convert with ``int``/``float``; ``sizes`` reads ``"32,32"``;
        other kinds keep the text.
        """
        try:
            if text in self.also:
                v: Any = text
            elif self.kind == "int":
                v = int(text)
            elif self.kind == "real":
                v = float(text)
            elif self.kind == "sizes":
                v = tuple(int(s) for s in text.replace(" ", ",").split(",") if s)
            else:
                v = text
        except ValueError:
            v = text  # not a number: refused below, in the declaration's words
        if not self.ok(v):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return v

    def argparse(self, default: Any = None, *, help: str | None = None,
                 none_name: str | None = None) -> dict[str, Any]:
        """``add_argument`` keywords: ``type`` (or ``choices``), ``default`` and ``help``.

        ``none_name``: a choice that stands for ``None`` on the command line (``"none"``).
        The help text is ``help`` (default: the declaration's) and the default's value.
        """
        text = help if help is not None else self.help
        if default is not None:
            shown = ",".join(map(str, default)) if self.kind == "sizes" else (
                f"{default:g}" if isinstance(default, float) else str(default))
            text = f"{text} (default {shown})"
        kw: dict[str, Any] = {"default": default, "help": text}
        if self.kind == "choice":
            kw["choices"] = self.options() + ((none_name,) if none_name else ())
            if default is None and none_name:
                kw["default"] = none_name
        elif self.kind != "str":
            kw["type"] = self.parse
        return kw
