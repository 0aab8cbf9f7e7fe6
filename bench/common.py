"""What every benchmark script does the same way: log to stderr, end its results file with the failed runs and
where the raw trials are (then write it and print it), and set an experiment's optimizer attributes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def opt_set() -> str:
    """The ``ours-x`` experiment's settings, ``$BENCH_OPT_SET`` (empty when unset): given to ``set_attributes`` and
    written into the run's log, so a variant's rows say what they were."""
    return os.environ.get("BENCH_OPT_SET", "")


def set_attributes(obj, spec: str) -> None:
    """An experiment's settings: ``spec`` "name=value,name=value" sets each existing attribute of ``obj`` (an
    ``Optimizer``), the value converted to the attribute's current type (``beta_scale=1.0,n_warmup=16``)."""
    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        if not hasattr(obj, name):
            raise SystemExit(f"set_attributes: {type(obj).__name__} has no attribute {name!r}")
        setattr(obj, name, type(getattr(obj, name))(value))


def finish_results(
    lines: list[str], errors: list[dict], describe: Callable[[dict], str], *, raw: Path, out: Path, root: Path
) -> int:
    """Append the failed runs (`describe(run)` names each) and the raw file's path to `lines`, write `out`."""
    if errors:
        lines += (
            ["## Runs that failed", ""]
            + [f"- {describe(r)}: {r['error'].strip().splitlines()[-1]}" for r in errors]
            + [""]
        )
    lines += [f"Raw trials: `{raw.relative_to(root) if raw.is_relative_to(root) else raw}` (git-ignored)."]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)
    log(f"wrote {out}")
    return 0
