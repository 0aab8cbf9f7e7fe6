"""How a message names an option: ``max_epochs`` in Python, ``--max-epochs`` on the command line.

Checks live once, in ``nas.api`` and the engine, and their messages name options through ``shown`` /
``said``; ``nas search`` runs them inside ``as_flags(...)`` so the same check speaks in flags there.

>>> said("min_epochs", 5), shown("resume")
('min_epochs=5', 'resume=True')
>>> with as_flags({"pareto": "--objective pareto"}):
...     said("min_epochs", 5), shown("resume"), shown("pareto")
('--min-epochs 5', '--resume', '--objective pareto')
"""

from __future__ import annotations

import contextlib
import contextvars

# How Python callers read an option where its bare name would not say what to do.
_PYTHON = {"resume": "resume=True", "out": "out= folder", "force": "force=True"}
_FLAGS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("nas_option_flags", default=None)


def on_cli() -> bool:
    return _FLAGS.get() is not None


def shown(option: str) -> str:
    """The option as the caller wrote it: ``--max-epochs`` on the CLI (or the CLI's own spelling), else the
    keyword name."""
    flags = _FLAGS.get()
    if flags is None:
        return _PYTHON.get(option, option)
    return flags.get(option) or "--" + option.replace("_", "-")


def said(option: str, value) -> str:
    """The option with a value: ``--eta 1`` on the CLI, ``eta=1`` in Python."""
    return f"{shown(option)} {value}" if on_cli() else f"{option}={value!r}"


@contextlib.contextmanager
def as_flags(flags: dict | None = None):
    """Messages raised inside name options as command-line flags (``flags``: exceptions to ``--name-like-this``)."""
    token = _FLAGS.set(dict(flags or {}))
    try:
        yield
    finally:
        _FLAGS.reset(token)
