"""What one trial (or one segment of it) is told: the study builds a ``TrialSpec``, the objective reads it.

Fields every objective may use are typed; what one kind of objective needs (the data set and how to load
it, the user's functions, the run length, precision ...: the study's ``objective_args``) travels in
``extra``. A spec is picklable (process pool, Ray) whenever ``extra`` is.

A spec also reads as the mapping objectives were first written against: ``spec["config"]``,
``spec.get("dataset")``, ``"resource_to" in spec`` (true for a multi-fidelity segment only), ``dict(spec)``;
``TrialSpec.of(d)`` makes one from such a dict. Costs the study counted (``known``: macs, params) come
with it, so a trial need not count them again.

>>> s = TrialSpec.of({"trial_id": 3, "config": {"x": 1}, "seed": 7, "dataset": "digits", "threads": 2})
>>> s.trial_id, s.threads, s.extra, s["dataset"], "resource_to" in s
(3, 2, {'dataset': 'digits'}, 'digits', False)
>>> sorted(TrialSpec.of(dict(s)).items()) == sorted(s.items())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_SEGMENT = ("resource_from", "resource_to", "max_resource", "checkpoint")  # present together, or not at all


@dataclass(eq=False)
class TrialSpec(Mapping):
    config: dict = field(default_factory=dict)
    seed: int = 0
    trial_id: int | None = None
    study_dir: str | None = None
    known: dict = field(default_factory=dict)  # the study's exact costs of the config: {"macs", "params"}
    threads: int | None = None  # intra-op threads the executor allots the trial
    resource_from: float | None = None  # multi-fidelity segment: epochs already trained (0: a fresh start)
    resource_to: float | None = None  # ... stop after this epoch
    max_resource: float | None = None  # ... the run's full length
    checkpoint: bytes | None = None  # ... the previous segment's state (None for a fresh start)
    extra: dict = field(default_factory=dict)  # objective-specific: the study's objective_args

    @property
    def segment(self) -> bool:
        """A multi-fidelity segment (resource_from / resource_to / max_resource / checkpoint are set)."""
        return self.resource_to is not None

    @classmethod
    def of(cls, spec) -> "TrialSpec":
        """A spec from a TrialSpec (itself) or a dict with the same keys (the rest goes to ``extra``)."""
        if isinstance(spec, cls):
            return spec
        d = dict(spec)
        typed = {name: d.pop(name) for name in _TYPED if name in d}
        if typed.get("known") is None:
            typed["known"] = {}
        return cls(**typed, extra=d)

    def replace_extra(self, **extra) -> "TrialSpec":
        """A copy with ``extra`` entries set (the spec itself is left as it is)."""
        from dataclasses import replace

        return replace(self, extra={**self.extra, **extra})

    # ---------------------------------------------------------------- read as a mapping
    def _keys(self) -> list[str]:
        keys = ["trial_id", "config", "seed", "study_dir"]
        if self.known:
            keys.append("known")
        if self.threads is not None:
            keys.append("threads")
        if self.segment:
            keys.extend(_SEGMENT)
        return keys + [k for k in self.extra if k not in keys]

    def __getitem__(self, key: str) -> Any:
        if key in self.extra and key not in _TYPED:
            return self.extra[key]
        if key in self._keys():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self):
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


_TYPED = frozenset(f.name for f in fields(TrialSpec) if f.name != "extra")
