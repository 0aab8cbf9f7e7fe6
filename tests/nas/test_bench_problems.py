"""The benchmark problems are what bench/results_optimizer.md says they are."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench.problems import (
    CONDITIONAL_MAX,
    CONDITIONAL_OPTIMUM,
    conditional_space,  # noqa: E402
    conditional_value,
    optuna_distributions,
    suggest,
)


def test_claimed_optimum_is_valid_and_attains_the_maximum():
    space = conditional_space()
    space.validate(CONDITIONAL_OPTIMUM)
    assert conditional_value(CONDITIONAL_OPTIMUM) == CONDITIONAL_MAX == 1.0


def test_no_sampled_config_exceeds_the_optimum():
    space = conditional_space()
    values = np.array([conditional_value(c) for c in space.sample_many(5000, seed=0)])
    assert values.max() < CONDITIONAL_MAX
    assert values.min() > 0.0
    # and a local search around the optimum never beats it: every one-move neighbour is strictly lower
    rng = np.random.default_rng(1)
    for _ in range(5):
        for nb in space.neighbours(CONDITIONAL_OPTIMUM, rng):
            assert conditional_value(nb) < CONDITIONAL_MAX


def test_each_family_peaks_where_the_docstring_says():
    # The decoy families' best configs, found by hand: their tops are 0.85 and 0.7, below family a's 1.0.
    b = {"x": 0.7, "n": 2, "family": "b", "b_u": 0.2, "b_v": 0.8, "b_k": 3, "b_kind": "p"}
    c = {"x": 0.5, "n": 4, "family": "c", "c_w": -0.4, "c_m": 4, "c_opt": "s", "c_s": 0.5}
    assert conditional_value(b) == pytest.approx(0.85, abs=1e-12)
    assert conditional_value(c) == pytest.approx(0.7, abs=1e-12)
    # Without the nested boost branch, family a cannot pass exp(-1/2).
    plain = {k: v for k, v in CONDITIONAL_OPTIMUM.items() if k != "a_gain"} | {"a_mode": "plain"}
    assert conditional_value(plain) == pytest.approx(math.exp(-0.5), abs=1e-12)


def test_at_least_half_of_the_encoded_dims_are_conditional():
    space = conditional_space()
    assert space.n_conditional * 2 >= space.n_dims
    assert {d.kind for d in space.dims if d.conditional} == {"float", "int", "cat"}  # mixed kinds


def test_optuna_bridge_suggests_exactly_the_active_parameters():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = conditional_space()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    families = set()
    for _ in range(30):
        trial = study.ask()
        cfg = suggest(trial, space)
        space.validate(cfg)  # raises on a missing or extra parameter
        assert set(trial.params) == set(cfg)
        families.add(cfg["family"])
        study.tell(trial, conditional_value(cfg))
    assert families == {"a", "b", "c"}
    # a trial made from a config round-trips through optuna's distributions
    trial = optuna.trial.create_trial(
        params=CONDITIONAL_OPTIMUM, value=1.0, distributions=optuna_distributions(space, CONDITIONAL_OPTIMUM)
    )
    assert trial.params == CONDITIONAL_OPTIMUM


def test_nb201_space_and_lookup():
    from bench.nb201 import EDGES, OPS, NB201Missing, load_nb201, nb201_space

    space = nb201_space()
    assert space.n_dims == 6 and space.size() == 5**6 and space.n_conditional == 0
    try:
        nb = load_nb201()
    except NB201Missing as e:
        pytest.skip(str(e))
    # rows read with the csv module and decoded from arch_str (not config_id) land on the same values
    import csv
    import re

    with open(nb.path, newline="") as f:
        for _, row in zip(range(40), csv.DictReader(f)):
            ops = re.findall(r"([a-z0-9_]+)~\d", row["arch_str"])
            cfg = dict(zip(EDGES, ops))
            assert nb.lookup(cfg)["val"] == float(row["cifar10valid_val_acc_mean"])
            assert nb.lookup(cfg)["test"] == float(row["cifar10_test_acc"])
    i = int(np.argmax(nb.columns["cifar10valid_val_acc_mean"]))
    assert nb.row(nb.config(i)) == i and nb.lookup(nb.config(i))["val"] == nb.best_val
    all_conv = {e: "nor_conv_3x3" for e in EDGES}
    assert nb.config(nb.row(all_conv)) == all_conv
    assert nb.config_ids[nb.row(all_conv)] == str(OPS.index("nor_conv_3x3")) * 6
