"""Every `torch.load(` in the shipped source passes weights_only=True."""

from __future__ import annotations

import re
import sys

import pytest

from fault_tools import ROOT

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


def test_every_torch_load_passes_weights_only_true():
    """torch.load unpickles: without weights_only=True a weights file can run code. Every call in the
    shipped packages (and in the model.py that export generates, which lives in a string) must pass it."""
    sources = [p for pkg in ("nas", "search_spaces", "trainers") for p in sorted((ROOT / pkg).rglob("*.py"))]
    calls = []
    for path in sources:
        text = path.read_text()
        for m in re.finditer(r"\btorch\s*\.\s*load\s*\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):  # the call's own parentheses
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((path.relative_to(ROOT), text.count("\n", 0, m.start()) + 1, text[m.end() : i - 1]))
        # `from torch import load` (or an alias) would dodge the pattern above
        assert not re.search(r"from\s+torch\s+import[^\n]*\bload\b", text), path
    assert len(calls) >= 2, "found no torch.load at all: is the source tree where this test looks?"
    bad = [(str(p), line) for p, line, args in calls if not re.search(r"\bweights_only\s*=\s*True\b", args)]
    assert not bad, f"torch.load without weights_only=True at {bad}"
