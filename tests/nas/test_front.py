"""The report's front posterior (nas/front.py): a multi-fidelity study's model reads every rung value, so front
members seen mostly at low rungs still get distinct, informed top-rung predictions."""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from nas.fidelity import Fidelity
from nas.front import front_posterior
from nas.report import StudyView
from nas.space import Float, Space
from nas.trial import COMPLETE, PAUSED, Trial

SPACE = Space([Float("x", 0.0, 1.0)])
FID = Fidelity(1, 27, 3)


def curve(x: float, epochs: float) -> float:
    """A learning curve whose final level rises with x: every config learns, the better ones further."""
    return (0.5 + 0.4 * x) * (1 - math.exp(-epochs / 4))


def view(trials) -> StudyView:
    meta = {"space": SPACE.to_dict(), "fidelity": FID.to_dict()}
    return StudyView(path=Path("."), meta=meta, trials=trials)


def mf_trials():
    rng = np.random.default_rng(0)
    trials = []
    for i, x in enumerate(rng.uniform(0, 1, 14)):
        top = 3 if i < 2 else int(rng.integers(0, 3))  # two trials reach the top rung, the rest pause lower
        rungs = [{"resource": r, "value": curve(x, r)} for r in FID.rungs[: top + 1]]
        status = COMPLETE if top == FID.top else PAUSED
        trials.append(
            Trial(
                id=i + 1,
                config={"x": float(x)},
                status=status,
                value=rungs[-1]["value"],
                metrics={"rungs": rungs},
                rung=top,
                resource=rungs[-1]["resource"],
            )
        )
    return trials


def test_a_multi_fidelity_front_is_predicted_from_every_rung():
    trials = mf_trials()
    front = pd.DataFrame({"id": [t.id for t in trials]})
    mean, std = front_posterior(view(trials), front)
    assert np.isfinite(mean).all() and (std > 0).all()  # two complete trials alone would give no posterior
    truth = [curve(t.config["x"], 27) for t in trials]
    rho = pd.Series(mean).corr(pd.Series(truth), method="spearman")
    assert rho > 0.8  # the top-rung ranking is recovered from mostly low-rung data


def test_single_fidelity_posterior_reproduces_its_complete_trials():
    xs = [0.1, 0.3, 0.5, 0.7, 0.9]
    trials = [Trial(id=i + 1, config={"x": x}, status=COMPLETE, value=curve(x, 27)) for i, x in enumerate(xs)]
    v = StudyView(path=Path("."), meta={"space": SPACE.to_dict()}, trials=trials)
    mean, std = front_posterior(v, pd.DataFrame({"id": [1, 3, 5]}))
    assert np.allclose(mean, [curve(x, 27) for x in (0.1, 0.5, 0.9)], atol=0.02) and (std >= 0).all()
