"""bench/bench_mf_real.py charges each method the epochs it trained and reads its curve right."""

import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench.bench_mf_real import at, one_run, reach, space_file, trajectory  # noqa: E402
from bench.common import set_attributes  # noqa: E402


def test_trajectory_counts_segments_and_only_full_runs_pick():
    run = {
        "max_epochs": 9,
        "events": [
            {"trial": 0, "from": 0, "to": 1, "score": 0.9},  # high at rung 1, never a pick
            {"trial": 1, "from": 0, "to": 9, "score": 0.5},
            {"trial": 0, "from": 1, "to": 9, "score": 0.7},  # continued: charged 8 epochs, not 9
            {"trial": 2, "from": 0, "to": 3, "score": None},  # failed segment: charged, no score
        ],
    }
    traj = trajectory(run)
    assert [t[0] for t in traj] == [1, 10, 18, 21]
    assert [t[1] for t in traj] == [None, 0.5, 0.7, 0.7]
    assert at(traj, 17)[0] == 0.5 and at(traj, 18)[0] == 0.7 and at(traj, 0.5)[0] is None
    assert at(traj, 100)[1]["trial"] == 0
    assert reach(traj, 0.6) == 18 and reach(traj, 0.8) is None


def test_one_real_run_of_each_kind(tmp_path):  # 2 trials of 1 epoch each
    opts = Namespace(
        dataset="digits",
        space=space_file(tmp_path),
        budget=2,
        max_epochs=1,
        min_epochs=1,
        image_size=None,
        data_dir=None,
    )
    for method in ("ours", "tpe-hb"):
        r = one_run(opts, method, 0)
        assert "error" not in r, r.get("error")
        spent = sum(e["to"] - e["from"] for e in r["events"])
        assert spent == 2  # the budget: 2 runs of 1 epoch
        assert all(len(e["curve"]) == e["to"] - e["from"] for e in r["events"])
        assert trajectory(r)[-1][1] is not None  # some trial was trained to the full length


def test_set_attributes_converts_to_the_attributes_type_and_refuses_unknown_names():
    from nas.optimizer import Optimizer
    from nas.space import Float, Space

    opt = Optimizer(Space([Float("x", 0.0, 1.0)]), seed=0)
    set_attributes(opt, "beta_scale=1,n_warmup=16")
    assert opt.beta_scale == 1.0 and isinstance(opt.beta_scale, float)
    assert opt.n_warmup == 16 and isinstance(opt.n_warmup, int)
    set_attributes(opt, "")  # nothing to set
    with pytest.raises(SystemExit, match="no attribute 'beta'"):
        set_attributes(opt, "beta=2")
