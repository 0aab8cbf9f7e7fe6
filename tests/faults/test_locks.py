"""Two searches race for one folder (the second is refused), and `nas report` reads the running one."""

from __future__ import annotations

import re
import signal
import sys

import pytest

from fault_tools import (
    assert_our_error,
    assert_weights_load,
    integrity,
    logs_of,
    reaped,
    _search_argv,
    snapshot,
    spawn,
    temp_leftovers,
    trials_of,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


def test_second_search_is_refused_and_report_reads_the_running_one(tmp_path, tiny_space):
    """A budget far longer than the test: the race is decided long before the first search could end.
    Once the second is refused and the first has finished one more trial, Ctrl-C ends it (exit 130)."""
    out, logs = tmp_path / "study", tmp_path / "logs"
    with reaped(spawn(_search_argv(tiny_space, out, 200, "--warmup", "3"), logs, "first")) as first:
        wait_for(lambda: len(snapshot(out)) >= 1, timeout=180, proc=first, what="the first finished trial")
        # Both at once: the second reaches the lock only after its imports and data loading.
        second = spawn(_search_argv(tiny_space, out, 200, "--resume"), logs, "second")
        report = spawn(["report", out, "--no-profile", "--no-files"], logs, "report")
        with reaped(second), reaped(report):
            assert report.wait(timeout=180) == 0, logs_of(logs, "report")
            code = second.wait(timeout=180)
        assert first.poll() is None, logs_of(logs, "first")
        assert_our_error(code, logs_of(logs, "second")[1], "in use by another `nas search`", f"pid {first.pid}")

        shown, _ = logs_of(logs, "report")
        rows = {int(m) for m in re.findall(r"^\s*(\d+)\s+\d\.\d{4}", shown, flags=re.M)}
        assert rows and rows <= set(snapshot(out)), shown  # finished trials only, at least one

        done = len(snapshot(out))
        wait_for(lambda: len(snapshot(out)) > done, timeout=180, proc=first, what="the first to go on")
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 130, logs_of(logs, "first")
    trials = trials_of(out)
    assert all(t.status in ("complete", "interrupted") for t in trials), [(t.id, t.status, t.error) for t in trials]
    assert sum(t.status == "complete" for t in trials) > done
    assert integrity(out) == "ok" and not temp_leftovers(out)
    assert_weights_load(out)
