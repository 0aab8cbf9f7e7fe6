"""What defines a study: the settings recorded once, at creation, that ``--resume`` may not change.

Trials of one study must be comparable: trained on the same data, scored by the same formula, drawn from
the same space under the same limits and seeds. ``check_resume`` compares the settings a resume would use
with those the study recorded and refuses the first that differs, in one line naming the setting, both
values and the way out (options named as the caller wrote them: ``seed`` in Python, ``--seed`` under
``nas search``; see ``nas.options``). Settings not listed here (trial and time budgets, workers, executor, --quiet ...)
may change on resume.

A setting is one ``Setting`` row: the meta key, how a person changes it (``option``: the ``nas.api`` option,
or a description where no option sets it), and how two values compare. A new defining setting is one line in ``DEFINING``. A key the study did not record (a
study made before the setting existed) is not compared.

>>> check_resume({"seed": 0}, {"seed": 1}, where="results/x")
Traceback (most recent call last):
...
nas.errors.StudyError: results/x: resume=True with a different seed (seed): the study has 0, this run 1; ...
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from nas.errors import StudyError
from nas.options import shown


def equal(a: Any, b: Any) -> bool:
    """JSON equality, with 2 == 2.0 and lists == tuples (a value read back from the database is JSON)."""
    return _norm(a) == _norm(b)


def close(a: Any, b: Any) -> bool:
    """Numbers (or lists of them) equal to 1e-6 relative: per-channel statistics recomputed from the same
    images differ in the last bits between machines."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if _is_num(a) and _is_num(b):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return equal(a, b)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _norm(v: Any) -> str:
    def clean(x):
        if isinstance(x, (list, tuple)):
            return [clean(y) for y in x]
        if isinstance(x, dict):
            return {str(k): clean(y) for k, y in x.items()}
        if _is_num(x) and float(x).is_integer():
            return float(x)
        return x

    return json.dumps(clean(v), sort_keys=True, default=str)


def short(v: Any) -> str:
    """A value as one short line; large ones (a whole space) as a digest a person can compare."""
    text = "none" if v is None else json.dumps(v, sort_keys=True, default=str)
    if len(text) <= 60:
        return text
    digest = hashlib.sha256(_norm(v).encode()).hexdigest()[:10]
    return f"{text[:30]}... (sha256 {digest})"


@dataclass(frozen=True)
class Setting:
    key: str  # the meta key
    option: str  # the option that sets it (an identifier), or what sets it, in words
    same: Callable[[Any, Any], bool] = equal
    show: Callable[[Any], str] = short

    @property
    def flag(self) -> str:
        """How the message names it: the option as the caller spells it (nas.options), or the words."""
        return shown(self.option) if self.option.isidentifier() else self.option


# One row per setting that defines a study. Colleagues' settings (fidelity, objectives) go here too.
DEFINING: tuple[Setting, ...] = (
    Setting("dataset", "dataset"),
    Setting("data_dir", "data_dir"),
    # Causes before their effects: these change how the data are split and resized, so the data's shape
    # and statistics below differ too, and the message should name the option, not its consequence.
    Setting("image_size", "image_size"),
    Setting("val_fraction", "val_fraction"),
    Setting("test_fraction", "test_fraction"),
    Setting("seed", "seed"),
    Setting("input_shape", "the data's input shape"),
    Setting("num_classes", "the data's classes"),
    Setting("class_names", "the data's class folders"),
    Setting("norm_mean", "the data's pixel statistics", same=close),
    Setting("norm_std", "the data's pixel statistics", same=close),
    Setting("augment", "the data set's augmentation"),
    Setting("space", "space"),
    Setting("max_macs", "max_macs"),  # before score: the limits set the score's default targets
    Setting("max_params", "max_params"),
    Setting("score", "score"),
    Setting("size_caps", "the size caps"),
    Setting("direction", "the direction"),
    Setting("objective", "the objective"),
    Setting("precision", "precision"),
    Setting("fidelity", "the fidelity settings"),
)
DEFINING_KEYS = frozenset(s.key for s in DEFINING)


def check_resume(recorded: dict, now: dict, *, where: str, settings=DEFINING) -> None:
    """Raise a one-line StudyError for the first setting in ``settings`` that ``now`` changes.

    Compared only where both sides have the key: a study made before a setting existed keeps working.
    """
    for s in settings:
        if s.key not in recorded or s.key not in now:
            continue
        old, new = recorded[s.key], now[s.key]
        if not s.same(old, new):
            raise StudyError(
                f"{where}: {shown('resume')} with a different {s.key.replace('_', ' ')} ({s.flag}): the study has "
                f"{s.show(old)}, this run {s.show(new)}; resume with the study's settings, or start a new "
                f"study with another {shown('out')}"
            )
