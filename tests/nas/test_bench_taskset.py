"""The TaskSet harness (bench/taskset.py, bench/bench_multifidelity.py): snapping, the pick rule, and that
every method is charged exactly the checkpoints it trained (a promoted trial never retrains an epoch)."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench import bench_multifidelity as mf  # noqa: E402
from bench.taskset import CAP, MAX_STEP, Pool, Task  # noqa: E402


def fake_task(n=60, seed=0) -> Task:
    rng = np.random.default_rng(seed)
    raw = np.exp(rng.uniform(-5, 0, size=(n, 8)))
    final = rng.uniform(0.3, 0.7, size=n)
    steps = np.arange(MAX_STEP + 1)
    valid = 0.69 + (final[:, None] - 0.69) * (1 - np.exp(-steps / 8.0))[None, :] + rng.normal(0, 0.01, (n, 1))
    valid[3, 20:] = np.nan  # a diverged run
    return Task("fake", raw, valid, valid + 0.01)


def test_snap_takes_the_nearest_unused_member_in_log_space():
    t = fake_task()
    pool = Pool(t.raw)
    target = pool.config(7)
    assert pool.snap(target) == 7
    again = pool.snap(target)  # 7 is used now: the next nearest in the encoding
    d = ((pool.X - pool.X[7]) ** 2).sum(1)
    d[7] = np.inf
    assert again == int(np.argmin(d))
    for _ in range(len(t.raw) - 2):
        assert pool.snap(target) is not None
    assert pool.snap(target) is None and pool.used.all()


def test_pick_prefers_the_highest_checkpoint_then_the_lowest_loss():
    obs = [(1, 0, 1, 0.2), (2, 1, 1, 0.5), (5, 1, 3, 0.4), (6, 2, 1, math.nan), (50, 0, 3, 0.6)]
    assert mf.pick(obs, 2) == 0  # both at checkpoint 1: the lower loss
    assert mf.pick(obs, 6) == 1  # run 1 reached checkpoint 3 first
    assert mf.pick(obs, 50) == 1  # at checkpoint 3: run 1 (0.4) beats run 0 (0.6)
    assert mf.pick([(1, 2, 1, math.nan)], 5) is None
    t = fake_task()
    assert mf.regrets(t, [], 10)[0] == CAP - t.best_valid


@pytest.mark.parametrize(
    "method", ["random-asha", "tpe-sh", "tpe-hb", "ours-off", "ours", "ours-finish-model", "ours-finish-blend"]
)
def test_charged_checkpoints_are_the_ones_trained(method):
    t = fake_task(n=40)
    run = mf.Run(t, 2 * MAX_STEP)
    mf._init_worker()
    mf.RUNNERS[method](run, 0)
    assert run.spent == 2 * MAX_STEP or run.pool.used.all()
    reached: dict = {}
    total = 0
    for spent, i, step, _ in run.obs:
        assert step > reached.get(i, 0)  # never trained again from scratch, never repeats a checkpoint
        total += step - reached.get(i, 0)
        reached[i] = step
        assert spent == total
    assert total == run.spent <= 2 * MAX_STEP


def test_ours_runs_once_per_budget_and_is_read_at_its_own():
    # ours plans with its budget (it finishes its best paused trials at the end), so a budget-10 run and a
    # budget-30 run differ; the table at each budget must read ours' run of that budget, the peers' one run.
    def res(method, budget, values):
        cells = {f"b{b}": {"valid": v, "test": v, "spent": b * MAX_STEP, "configs": 5} for b, v in values.items()}
        return {"task": "t", "method": method, "seed": 0, "budget": budget, **cells}

    results = [
        res("ours", 10, {10: 0.0123}),
        res("ours", 30, {30: 0.0456}),
        *(res(m, 30, {10: 0.2, 30: 0.1}) for m in mf.PEERS),
    ]
    lines, ratios = mf.summarise(results, ["ours", *mf.PEERS], [10, 30], ["t"])
    rows = [ln for ln in lines if ln.startswith("| t |")]
    assert "0.0123" in rows[0] and "0.0456" not in rows[0]
    assert "0.0456" in rows[1] and "0.0123" not in rows[1]
    assert ratios[10][0] == pytest.approx((0.0123 + mf.EPS) / (0.2 + mf.EPS))
    assert ratios[30][0] == pytest.approx((0.0456 + mf.EPS) / (0.1 + mf.EPS))
