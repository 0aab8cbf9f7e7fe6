"""Calling the user's own code from a trial: the ``report`` callback, checks on what user functions return.

No torch here: a user objective can be any Python function of a config.

``report(epoch, val_acc) -> bool`` is what a user's training function calls after each epoch. It answers
True to go on and False where a stop is due. Which report a trial gets is chosen by the study: the spec's
``"reporter"`` entry is a picklable factory ``factory(spec) -> report``, ``make_report`` by default (it
stops at the spec's fixed ``"epochs"``, if any). A multi-fidelity scheduler swaps in its own factory; every
report is wrapped in ``CheckedReport``, which checks the arguments and records the curve.

>>> rep = CheckedReport(Report(max_epochs=2))
>>> rep(1, 0.5), rep(2, 0.75)
(True, False)
>>> rep.curve
[{'epoch': 1, 'val_acc': 0.5}, {'epoch': 2, 'val_acc': 0.75}]
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from nas.errors import DataError, NasError

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024  # below 8 no CNN stage has room; above 1024 a CPU search cannot train


def check_image_size(size) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DataError(f"image size {size!r}: expected a whole number from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")
    return int(size)


def check_fractions(val_fraction, test_fraction) -> tuple[float, float]:
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
            raise DataError(f"{label}={frac!r} must lie strictly between 0 and 1")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no training "
            "data; lower one of them"
        )
    return float(val_fraction), float(test_fraction)


class UserFunctionError(NasError):
    """A user's train / model / objective function failed or returned something unusable."""


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def as_number(v: Any) -> float | None:
    """A real number from an int, float, numpy scalar or one-element tensor / array; None for anything else."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    item = getattr(v, "item", None)
    if callable(item):
        try:
            v = item()  # one element only: more raise
        except (TypeError, ValueError, RuntimeError):
            return None
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            return float(v)
    return None


def check_value(v: Any, who: str, *, bounds: tuple[float, float] | None = (0.0, 1.0)) -> float:
    """The finite number a user function returned, or UserFunctionError saying what is wrong with it."""
    x = as_number(v)
    if x is None:
        raise UserFunctionError(
            f"{who} returned {_short(v)} (a {type(v).__name__}); return the final validation accuracy as a number"
        )
    if not math.isfinite(x):
        raise UserFunctionError(
            f"{who} returned {x}; return a finite number (a diverged run should raise, "
            "or return its last good accuracy)"
        )
    if bounds is not None and not bounds[0] <= x <= bounds[1]:
        raise UserFunctionError(
            f"{who} returned {x:g}, outside [{bounds[0]:g}, {bounds[1]:g}]; return accuracy "
            "as a fraction (0.97, not 97)"
        )
    return x


class Report:
    """The default report: go on, except that a fixed training length (``max_epochs``) has been reached."""

    def __init__(self, *, max_epochs: int | None = None):
        self.max_epochs = max_epochs

    def __call__(self, epoch: int, val_acc: float) -> bool:
        return self.max_epochs is None or epoch < self.max_epochs


def make_report(spec: dict) -> Report:
    """The default ``"reporter"`` factory of a study spec."""
    return Report(max_epochs=spec.get("epochs"))


class CheckedReport:
    """Wraps any report: checks ``(epoch, val_acc)``, records the curve, answers the inner report's bool."""

    def __init__(self, inner: Callable[[int, float], Any]):
        self.inner, self.curve = inner, []

    @property
    def calls(self) -> int:
        return len(self.curve)

    def __call__(self, epoch, val_acc) -> bool:
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
            raise UserFunctionError(f"report(epoch={_short(epoch)}, ...): epoch must be a whole number from 1")
        if self.curve and epoch <= self.curve[-1]["epoch"]:
            raise UserFunctionError(
                f"report(epoch={epoch}, ...) after epoch {self.curve[-1]['epoch']}: epochs must increase"
            )
        acc = as_number(val_acc)
        if acc is None or not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
            raise UserFunctionError(
                f"report(epoch={epoch}, val_acc={_short(val_acc)}): val_acc must be a finite accuracy in [0, 1]"
            )
        self.curve.append({"epoch": int(epoch), "val_acc": acc})
        return bool(self.inner(int(epoch), acc))


def report_for(spec: dict) -> CheckedReport:
    factory = spec.get("reporter") or make_report
    return CheckedReport(factory(spec))


def call_user(fn: Callable, who: str, *args):
    """``fn(*args)``; any exception becomes one UserFunctionError line naming ``who`` (the traceback stays
    on the exception chain, and so in the trial record)."""
    try:
        return fn(*args)
    except UserFunctionError:
        raise
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise UserFunctionError(f"{who} raised {type(e).__name__}" + (f": {msg}" if msg else "")) from e


def run_objective(spec: dict) -> dict:
    """The trial objective for a user's ``objective(config) -> number``: no data, no model, any space."""
    fn = spec["user_objective"]
    name = getattr(fn, "__name__", "objective")
    value = call_user(fn, f"{name}(config)", spec["config"])
    bounds = spec.get("value_bounds")
    return {"value": check_value(value, f"{name}(config)", bounds=tuple(bounds) if bounds else None), "metrics": {}}
