"""A study's Pareto front for reports and exports: each member's posterior accuracy, the front plot, and the
most accurate member within a budget.

The posterior comes from a GP refitted at report time on the study's complete trials (the space is stored
in the study; a multi-fidelity study's model also reads every rung value, with the resource as an input, and
predicts at the top rung, as the search does), in the objective's own units with no output warping, so ``post_mean +- post_std`` reads as
"accuracy, within noise". Two front members whose intervals overlap are not told apart by the data.
"""

from __future__ import annotations

import warnings

import numpy as np

from nas.errors import NasError
from nas.fidelity import Fidelity
from nas.trial import COMPLETE


def front_posterior(view, front) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` (len(front),) of the modelled objective at the front's configs; NaN where the study
    stores no space or has fewer than 3 complete trials."""
    nan = np.full(len(front), np.nan)
    space_dict = view.meta.get("space")
    fid = Fidelity.from_dict(view.meta["fidelity"]) if view.meta.get("fidelity") else None
    if fid is not None:
        obs, zs = _rung_observations(view, fid)
    else:
        obs = [(t.config, t.value) for t in view.trials if t.status == COMPLETE and t.value is not None]
        zs = None
    if not space_dict or len(obs) < 3 or len(front) == 0:
        return nan, nan.copy()
    from nas.space import Space
    from nas.surrogate import Surrogate

    try:
        space = Space.from_dict(space_dict, source="study space")
        # No output warp: the interval reads in the objective's own units. Multi-fidelity: every rung value
        # informs the prediction at the top rung, as in the search (a few top-rung trials alone cannot).
        model = Surrogate(space, maximize=True, rng=np.random.default_rng(0), warp="none", fidelity=fid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fallback fit is still a fit; the report shows the numbers
            model.fit(obs, zs or [])
        by_id = {t.id: t for t in view.trials}
        mean, std = model.posterior()([by_id[int(i)].config for i in front["id"]])
    except (
        NasError,
        KeyError,
        TypeError,
        ValueError,
    ):  # a stored space or config that no longer reads: report the front without a posterior
        return nan, nan.copy()
    return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)


def _rung_observations(view, fid: Fidelity) -> tuple[list, list]:
    """Multi-fidelity: every recorded rung value as ((config, value), scaled resource)."""
    obs, zs = [], []
    for t in view.trials:
        for entry in (t.metrics or {}).get("rungs", []):
            v = entry.get("value")
            if v is not None and np.isfinite(v):
                obs.append((t.config, float(v)))
                zs.append(fid.scaled(entry["resource"]))
    return obs, zs


def pick_within(view, *, max_macs: float | None = None, max_params: float | None = None):
    """The id of the most accurate front member with MACs <= ``max_macs`` and params <= ``max_params``."""
    front = view.pareto_front(posterior=False)
    if front.empty:
        raise NasError(f"{view.path}: no complete trials, so no front to pick from; run `nas search` first")
    ok = np.ones(len(front), dtype=bool)
    for col, lim in (("macs", max_macs), ("params", max_params)):
        if lim is not None:
            if col not in front or front[col].isna().all():
                raise NasError(f"{view.path}: the study records no {col}; leave out --max-{col}")
            ok &= (front[col].astype(float) <= lim).to_numpy()
    if not ok.any():
        parts = [
            f"{c} {front[c].astype(float).min():,.0f}"
            for c, lim in (("macs", max_macs), ("params", max_params))
            if lim is not None
        ]
        raise NasError(
            f"no front member fits the budget (the cheapest has {', '.join(parts)}); raise the budget, "
            f"pick a trial with --trial, or search under it with nas search --max-macs / --max-params"
        )
    sub = front[ok]
    best = sub["value"].astype(float)
    i = int(np.argmax(best.to_numpy()) if view.direction == "maximize" else np.argmin(best.to_numpy()))
    return int(sub["id"].iloc[i])


def plot_front(view) -> bytes:
    """Every complete trial (grey) against MACs, the front as a step line with each member's posterior
    mean +- std of the objective."""
    from matplotlib.figure import Figure

    from nas.report_plots import cost_column, empty_plot, png

    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    cost = cost_column(view, df)
    if cost is None or df.empty:
        return empty_plot("Pareto front", "no complete trials with MACs or params")
    front = view.pareto_front().dropna(subset=[cost])
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(df[cost].astype(float), df["value"], s=16, color="0.6", alpha=0.7, label=f"all trials ({len(df)})")
    fx, fy = front[cost].astype(float).to_numpy(), front["value"].to_numpy(dtype=float)
    order = np.argsort(fx)
    # The front over MACs alone: members that are on it only through params sit below the step line.
    ax.step(
        fx[order],
        np.maximum.accumulate(fy[order]) if view.direction == "maximize" else fy[order],
        where="post",
        color="C3",
        lw=1.2,
    )
    ax.scatter(fx, fy, color="C3", s=30, zorder=3, label=f"front ({len(front)})")
    if front["post_mean"].notna().any():
        ax.errorbar(
            fx,
            front["post_mean"],
            yerr=front["post_std"],
            fmt="none",
            ecolor="C0",
            elinewidth=1.2,
            capsize=3,
            zorder=2,
            label="GP posterior mean ± std",
        )
    if (fx > 0).all() and (df[cost].astype(float) > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(cost)
    ax.set_ylabel("validation accuracy" if view.meta.get("objective") == "val_acc" else "value")
    ax.set_title("Pareto front found (complete trials)")
    ax.legend(loc="lower right", fontsize="small")
    return png(fig)
