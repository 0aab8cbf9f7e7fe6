"""Progress of a search as data (``Progress``) and two ways to show it (``ProgressPrinter``).

The study loop fills a ``Progress`` and hands it to a callback; it knows nothing of terminals. The printer
draws a tqdm bar when the stream is a terminal, and otherwise (a log file, a pipe, CI) writes a plain line
when a trial finishes or every ``interval`` seconds, never a carriage return and never the same line twice.

Fields are shown generically: every dataclass field whose metadata has a ``show`` formatter appears as
``label value`` (a formatter returning None hides the field), and ``extra`` holds free-form items. A new
field is one line in ``Progress``.

>>> p = Progress(done=3, failed=1, running=2, best=0.91, elapsed=75.0, left=30.0)
>>> " ".join(render_fields(p))
'best 0.9100 running 2 failed 1 elapsed 1m15s left 30s'
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nas.fmt import clock


def shown(label: str, fmt: Callable[[Any], str | None] = str) -> dict:
    """Field metadata that puts a new Progress field on screen: ``field(default=0, metadata=shown("epochs"))``."""
    return {"label": label, "show": fmt}


def _count_if_any(v: int) -> str | None:
    return str(v) if v else None


def _fmt_job(j: dict) -> str:
    """ "5/9ep 0.812": a running trial's live epoch and value out of its rung target ("->9ep" before its first)."""
    if j.get("resource") is None:
        return f"->{j['resource_to']:g}ep"
    v = f" {j['value']:.3f}" if j.get("value") is not None else ""
    return f"{j['resource']:g}/{j['resource_to']:g}ep{v}"


@dataclass
class Progress:
    done: int = 0  # complete trials
    failed: int = 0
    running: int = 0
    best: float | None = None
    elapsed: float = 0.0
    left: float | None = None
    events: list = field(default_factory=list)
    # Multi-fidelity only: trials paused at a rung, epochs (resource) trained out of the budget, and per
    # running job {"trial", "resource_to", "resource", "value"} (the last two from its live file, or None).
    paused: int = field(default=0, metadata=shown("paused", _count_if_any))
    epochs: float | None = None  # shown by the counter: "12/36 ep  1 full"
    epoch_budget: float | None = None
    jobs: list = field(
        default_factory=list,
        metadata=shown("jobs", lambda js: " ".join(f"#{j['trial']}:{_fmt_job(j)}" for j in js) or None),
    )
    extra: dict = field(default_factory=dict)  # free-form {label: value} items, shown last

    @property
    def finished(self) -> int:
        return self.done + self.failed


# Display order and formats of the plain fields (kept apart from the dataclass so `best` can lead).
_SHOWN = (
    ("best", "best", lambda v: "-" if v is None else f"{v:.4f}"),
    ("running", "running", str),
    ("failed", "failed", _count_if_any),
    ("elapsed", "elapsed", clock),
    ("left", "left", lambda v: None if v is None else clock(v)),
)


def render_fields(p: Progress) -> list[str]:
    """``label value`` for every shown field of ``p`` (those of ``_SHOWN``, then any other field with
    ``show`` metadata, then ``extra``)."""
    out, seen = [], set()
    for name, label, fmt in _SHOWN:
        seen.add(name)
        text = fmt(getattr(p, name))
        if text is not None:
            out.append(f"{label} {text}")
    for f in dataclasses.fields(p):
        if f.name in seen or "show" not in f.metadata:
            continue
        text = f.metadata["show"](getattr(p, f.name))
        if text is not None:
            out.append(f"{f.metadata['label']} {text}")
    out += [f"{k} {v}" for k, v in p.extra.items()]
    return out


class ProgressPrinter:
    """The ``on_progress`` callback of a study: a bar on a terminal, plain periodic lines elsewhere."""

    def __init__(self, total: int | None, stream=None, *, interval: float = 30.0, tty: bool | None = None):
        self.total, self.stream, self.interval = total, stream or sys.stderr, interval
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._last_line: str | None = None
        self._last_n = -1
        self._last_t = -float("inf")

    def __call__(self, p: Progress) -> None:
        if self.tty:
            self._draw_bar(p)
        else:
            self._plain(p)

    def _counter(self, p: Progress) -> str:
        if p.epoch_budget:  # multi-fidelity: the budget is epochs; trials count as they reach the top rung
            return f"{p.epochs or 0:g}/{p.epoch_budget:g} ep  {p.done} full"
        return f"{p.finished}/{self.total} trials" if self.total else f"{p.finished} trials"

    def _plain(self, p: Progress, *, force: bool = False) -> None:
        now = time.monotonic()
        n = p.epochs if p.epoch_budget else p.finished  # a line whenever the count moves
        if not force and n == self._last_n and now - self._last_t < self.interval:
            return
        line = "  ".join([self._counter(p)] + render_fields(p))
        self._last_n, self._last_t = n, now
        if line != self._last_line:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_line = line

    def _draw_bar(self, p: Progress) -> None:
        from tqdm import tqdm

        total, unit = (p.epoch_budget, "ep") if p.epoch_budget else (self.total, "trial")
        if self._bar is None:
            # Our own time-left estimate knows the time budget; tqdm's rate-based one does not.
            self._bar = tqdm(
                total=total,
                file=self.stream,
                unit=unit,
                dynamic_ncols=True,
                leave=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} " + unit + " {postfix}"
                if total
                else "{n_fmt} trials {postfix}",
            )
        self._bar.n = (p.epochs or 0) if p.epoch_budget else p.finished
        self._bar.set_postfix_str("  ".join(render_fields(p)), refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """End the bar (its last state stays on screen); plain output needs nothing more."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
