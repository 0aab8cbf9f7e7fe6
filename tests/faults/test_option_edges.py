"""Option edges through `main()` and through the real console script: one line, before any trial."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fault_tools import assert_our_error, call, fake_training, NAS, _nested_repeats, ROOT, _search_argv, SMALL_CONFIG

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


@pytest.mark.parametrize(
    "option, needle",
    [
        ("--seed=-1", "--seed"),  # was ValueError from numpy
        ("--seed=99999999999999999999", "--seed"),  # was OverflowError from SQLite
        ("--trials=0", "--trials"),
        ("--trials=1e3", "--trials"),
        ("--max-macs=nan", "--max-macs"),
        ("--max-params=-5k", "--max-params"),
        ("--time-budget=-5m", "--time-budget"),
        ("--time-budget=inf", "--time-budget"),
        ("--score=mnas:alpha=nan", "--score"),
        ("--score=weighted:macs=", "--score"),
        ("--warmup=0", "--warmup"),
    ],
)
def test_search_option_edges_fail_before_any_trial(tmp_path, tiny_space, option, needle):
    with fake_training() as calls:
        code, _, err = call(_search_argv(tiny_space, tmp_path / "s", 1, option))
    assert_our_error(code, err, needle)
    assert not calls and not (tmp_path / "s" / "study.db").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["search", "--seed", "-1"], "--seed"),
        (["space", "{space}"], "dimensions"),
        (["inspect", "{config}", "--input-shape", "3,32,32"], "too large"),
    ],
)
def test_hostile_input_in_a_real_process_is_one_line(tmp_path, argv, needle):
    """The console script, not main(): exit status, stderr and no traceback as a user sees them."""
    space, config = tmp_path / "bomb.yaml", tmp_path / "huge.json"
    space.write_text(_nested_repeats(4))
    config.write_text(json.dumps({**SMALL_CONFIG, "stem": {"channels": 10**12}}))
    argv = [a.format(space=space, config=config) for a in argv]
    proc = subprocess.run(NAS + argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert_our_error(proc.returncode, proc.stderr, needle)
