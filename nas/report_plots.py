"""The report's plots (PNG bytes) and the parameter importance behind one of them.

Every function takes a ``nas.report.StudyView``. Matplotlib's Figure API renders with Agg and never touches
pyplot's global state, so plots can be drawn from any thread.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nas.pareto import pareto_mask
from nas.trial import COMPLETE, FAILED, INFEASIBLE

TOP_EFFECTS = 8  # parameters shown in param_effects.png: a 2 x 4 grid stays readable
LABELS = {"macs": "MACs"}  # how a known objective's column is titled where a person reads it


def cost_column(view, df: pd.DataFrame) -> str | None:
    """The known objective plotted on the x axis: the first one any of these trials has."""
    return next((c for c in view.known_columns if df[c].notna().any()), None)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def empty_plot(title: str, message: str) -> bytes:
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return png(fig)


def plot_score_over_trials(view) -> bytes:
    """Each complete trial's score (value when there is no score) and the best so far."""
    ranked = sorted(view.ranked(), key=lambda t: t.id)
    if not ranked:
        return empty_plot("score over trials", "no complete trials")
    ids = np.array([t.id for t in ranked])
    y = np.array([view.objective(t) for t in ranked], dtype=float)
    best = np.maximum.accumulate(y * view.sign) * view.sign
    label = "score" if any(t.score is not None for t in ranked) else "value"
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(ids, y, s=18, alpha=0.7, label=label)
    ax.step(ids, best, where="post", color="C3", label="best so far")
    bad = [t.id for t in view.trials if t.status in (FAILED, INFEASIBLE)]
    if bad:  # failures have no score; tick them under the axis so gaps in the ids are explained
        ax.plot(
            bad,
            np.full(len(bad), 0.03),
            "x",
            color="0.5",
            transform=ax.get_xaxis_transform(),
            label="failed / infeasible",
        )
    ax.set_xlabel("trial id")
    ax.set_ylabel(label)
    ax.set_title(f"{label} per trial ({view.direction})")
    fig.legend(loc="outside lower center", ncols=3, fontsize="small")
    return png(fig)


def plot_value_vs_cost(view) -> bytes:
    """Value against MACs (log x), complete trials only, with the 2-D front as a step line."""
    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    cost = cost_column(view, df)
    if cost is None or df.empty:
        return empty_plot("value vs MACs", "no complete trials with MACs or params")
    df = df.dropna(subset=[cost])
    x = df[cost].to_numpy(dtype=float)
    y = df["value"].to_numpy(dtype=float)
    maximize = view.direction == "maximize"
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    # a second known objective, where every trial has it, colours the points
    shade = next((c for c in view.known_columns if c != cost and df[c].notna().all()), None)
    color = df[shade].to_numpy(dtype=float) if shade is not None and cost == view.known_columns[0] else None
    sc = ax.scatter(
        x, y, c=color, s=22, cmap="viridis", alpha=0.8, norm="log" if color is not None and (color > 0).all() else None
    )
    if color is not None:
        fig.colorbar(sc, ax=ax, label=shade)
    m = pareto_mask(np.c_[y, x], maximize=[maximize, False])
    order = np.argsort(x[m])
    fx, fy = x[m][order], y[m][order]
    ax.step(fx, fy, where="post", color="C3", lw=1.5, label=f"front ({m.sum()})")
    ax.scatter(fx, fy, facecolors="none", edgecolors="C3", s=60)
    if (x > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(LABELS.get(cost, cost))
    ax.set_ylabel("value")
    ax.set_title(f"value vs {cost} (complete trials)")
    ax.legend(loc="lower right", fontsize="small")
    return png(fig)


def _design_matrix(df: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, list[str]]:
    """Flat config -> numbers: numeric columns as they are (absent -> NaN), others one-hot (absent -> all 0).

    Returns X (n, p) and, for each of the p columns, the config column it came from.
    """
    blocks, owners = [], []
    for col in cols:
        s = df[col]
        num = pd.to_numeric(s.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
        if num.notna().sum() == s.notna().sum():
            blocks.append(num.to_numpy(dtype=float)[:, None])
            owners.append(col)
        else:
            dummies = pd.get_dummies(s.astype("string"), dtype=float)
            blocks.append(dummies.to_numpy())
            owners += [col] * dummies.shape[1]
    return np.hstack(blocks), owners


def parameter_importance(view, *, seed: int = 0) -> pd.Series:
    """How much each config column explains the value, summing to 1 (largest first).

    Mean decrease in impurity of a random forest fitted to value on the flat config, summed over each
    parameter's one-hot columns (the method of Optuna's MeanDecreaseImpurityImportanceEvaluator). Conditional
    parameters that a trial lacks are NaN, which scikit-learn's forests split on directly. MDI favours
    parameters with many distinct values; it ranks, it does not prove cause. Constant columns are left out.
    """
    from sklearn.ensemble import RandomForestRegressor  # only the report needs it; keep `import nas` light

    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    cols = [
        c for c in view.config_columns if df[c].astype("string").nunique(dropna=False) > 1
    ]  # astype: lists/bools hash as text
    if len(df) < 4 or not cols:  # a forest on 3 points says nothing
        return pd.Series(dtype=float)
    X, owners = _design_matrix(df, cols)
    forest = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(X, df["value"].to_numpy(dtype=float))
    imp = pd.Series(forest.feature_importances_, index=owners).groupby(level=0, sort=False).sum()
    return imp.reindex(cols).fillna(0.0).sort_values(ascending=False, kind="stable")


def plot_param_effects(view, importance: pd.Series | None = None) -> bytes:
    """Value against each of the top parameters by importance: scatter for many levels, boxes for few."""
    if importance is None:
        importance = parameter_importance(view)
    if importance.empty:
        return empty_plot("parameter effects", "needs at least 4 complete trials with varying parameters")
    df = view.trials_dataframe()
    df = df[df["status"] == COMPLETE].dropna(subset=["value"])
    top = list(importance.index[:TOP_EFFECTS])
    ncol = min(4, len(top))
    nrow = math.ceil(len(top) / ncol)
    height = 2.8 * nrow + 0.5
    fig = Figure(figsize=(3.2 * ncol, height))
    # fixed margins: constrained layout costs ~1 s per grid on a small CPU and these labels have known sizes
    fig.subplots_adjust(
        left=0.07, right=0.98, top=1 - 0.75 / height, bottom=0.85 / height, wspace=0.3, hspace=0.9 / 2.8 * 2
    )
    fig.suptitle("value vs the most important parameters (random-forest MDI importance)")
    y = df["value"].to_numpy(dtype=float)
    for i, col in enumerate(top):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        s = df[col]
        num = pd.to_numeric(s.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
        numeric = num.notna().sum() == s.notna().sum() and num.notna().any()
        if numeric and num.nunique() > 6:
            ax.scatter(num, y, s=12, alpha=0.7)
            pos = num.dropna()
            if (pos > 0).all() and pos.max() / pos.min() > 20:  # lr, weight decay: log-uniform spaces
                ax.set_xscale("log")
        else:
            levels = s.map(_level)
            names = sorted(levels.unique(), key=lambda v: (v == "absent", _sort_key(v)))
            data = [y[(levels == n).to_numpy()] for n in names]
            ax.boxplot(data, tick_labels=names, showfliers=False)
            rng = np.random.default_rng(0)
            for j, d in enumerate(data):
                ax.scatter(np.full(len(d), j + 1.0) + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.6)
            ax.tick_params(axis="x", labelrotation=30, labelsize="small")
        ax.set_title(f"{col}\nimportance {importance[col]:.2f}", fontsize="small")
        if i % ncol == 0:
            ax.set_ylabel("value")
    return png(fig)


def _level(v: Any) -> str:
    """A category label: 2.0 -> "2" (NaN-padded int columns turn float), missing -> "absent"."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "absent"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _sort_key(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)
