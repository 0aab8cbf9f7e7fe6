"""The data set vanishes mid-search and between runs."""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from fault_tools import (
    assert_our_error,
    assert_weights_load,
    call,
    _image_folder,
    integrity,
    logs_of,
    reaped,
    snapshot,
    spawn,
    _started_since,
    trials_of,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


def test_data_that_vanishes_mid_search_and_between_runs(tmp_path, tiny_space):
    """Deleted once the driver has loaded it: the trials run from the in-memory copy and the search ends
    normally. Still gone at --resume: one line naming the folder, exit 2, the study untouched."""
    data, out, logs = _image_folder(tmp_path / "images"), tmp_path / "study", tmp_path / "logs"
    argv = [
        "search",
        "--dataset",
        "imagefolder",
        "--data-dir",
        data,
        "--space",
        tiny_space,
        "--trials",
        3,
        "--warmup",
        3,
        "--out",
        out,
        "--quiet",
        "--fidelity",
        "off",
        "--max-epochs",
        2,
    ]
    t0 = time.time()
    with reaped(spawn(argv, logs, "search")) as proc:
        wait_for(lambda: _started_since(out, t0), timeout=180, proc=proc, what="the first trial")
        shutil.rmtree(data)  # the driver loaded the images before creating the first trial
        assert proc.wait(timeout=300) == 0, logs_of(logs, "search")
    trials = trials_of(out)
    assert [t.status for t in trials] == ["complete"] * 3, [(t.id, t.status, t.error) for t in trials]
    kept = snapshot(out)

    code, _, err = call([*argv, "--trials", 4, "--resume"])
    assert_our_error(code, err, str(data), "does not exist")
    assert snapshot(out) == kept and integrity(out) == "ok"
    assert assert_weights_load(out) == 3
