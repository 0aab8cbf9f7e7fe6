"""The multi-fidelity part of a study's report: rungs, epochs spent and saved, every trial's learning curve.

Reads only what ``nas.segments`` stores: meta "fidelity" (rungs), each trial's ``resource`` (epochs
trained), ``rung`` and ``metrics["rungs"]`` / ``metrics["curve"]``. A study without meta "fidelity" (run
with ``--fidelity off``, or older) has no such section.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nas.trial import COMPLETE, FAILED, PAUSED

CURVE_KEYS = ("val_acc", "value", "val_loss")  # what a curve entry's y is read from, first found wins


def fidelity_of(view) -> dict | None:
    f = view.meta.get("fidelity")
    return f if isinstance(f, dict) and f.get("rungs") else None


def _rung_values(t) -> list:
    return [(e.get("resource"), e.get("value")) for e in (t.metrics.get("rungs") or []) if isinstance(e, dict)]


def rung_table(view) -> pd.DataFrame:
    """Per rung: its resource, the trials that reached it, and the epochs spent training up to it from the
    rung below (completed segments only)."""
    fid = fidelity_of(view)
    rungs = list(fid["rungs"])
    reached = [0] * len(rungs)
    for t in view.trials:
        for r, _ in _rung_values(t):
            if r in rungs:
                reached[rungs.index(r)] += 1
    seg = np.diff([0] + rungs)
    return pd.DataFrame(
        {
            "rung": range(len(rungs)),
            "epochs": rungs,
            "trials": reached,
            "epochs_spent": [int(n * s) if float(s).is_integer() else float(n * s) for n, s in zip(reached, seg)],
        }
    )


def epochs_summary(view) -> dict:
    """Epochs trained, the budget, and what training every evaluated trial to max_resource would cost."""
    fid = fidelity_of(view)
    top = fid["max_resource"]
    evaluated = [t for t in view.trials if _rung_values(t)]
    trained = float(sum(t.resource or 0 for t in view.trials))
    full = float(len(evaluated) * top)
    return {
        "trained": trained,
        "budget": view.meta.get("epoch_budget"),
        "full": full,
        "saved": full - trained,
        "saved_frac": (full - trained) / full if full else 0.0,
        "evaluated": len(evaluated),
        "complete": sum(t.status == COMPLETE for t in view.trials),
        "paused": sum(t.status == PAUSED for t in view.trials),
    }


def format_fidelity(view) -> str:
    fid = fidelity_of(view)
    s = epochs_summary(view)
    table = rung_table(view)
    budget = f" of a budget of {s['budget']:g}" if s["budget"] else ""
    lines = [
        f"multi-fidelity: rungs {'/'.join(f'{r:g}' for r in fid['rungs'])} epochs, eta {fid['eta']:g}; "
        f"{s['evaluated']} trials evaluated, {s['complete']} reached the top rung, {s['paused']} stopped early",
        f"epochs trained {s['trained']:g}{budget}; training every evaluated trial to {fid['max_resource']:g} "
        f"epochs would take {s['full']:g} (saved {s['saved']:g}, {100 * s['saved_frac']:.0f}%)",
        "trials and epochs per rung:",
        table.to_string(index=False),
    ]
    return "\n".join(lines)


def stopped_trials(view, top: int = 5) -> pd.DataFrame:
    """Before any trial reached the top rung: the best trials at their highest rung."""
    rows = [
        (t.id, t.rung, t.resource, t.value, t.score)
        for t in view.trials
        if t.status in (PAUSED, "running", "interrupted") and t.value is not None
    ]
    df = pd.DataFrame(rows, columns=["id", "rung", "epochs", "value", "score"])
    if df.empty:
        return df
    df["epochs"] = df["epochs"].map(lambda v: f"{v:g}")
    return df.sort_values(["rung", "value"], ascending=[False, view.direction == "minimize"]).head(top)


def _curve(t) -> tuple[list, list]:
    pts = t.metrics.get("curve") or []
    for key in CURVE_KEYS:
        xs = [p.get("epoch") for p in pts if isinstance(p, dict) and p.get(key) is not None]
        ys = [p.get(key) for p in pts if isinstance(p, dict) and p.get(key) is not None]
        if xs:
            return xs, ys
    rv = [(r, v) for r, v in _rung_values(t) if v is not None]
    return [r for r, _ in rv], [v for _, v in rv]


def plot_curves(view, png) -> bytes:
    """Every trial's validation curve: trials never promoted in grey, promoted ones coloured by the highest
    rung they reached (top-rung trials thickest); dots at the rung values."""
    fid = fidelity_of(view)
    n_rungs = len(fid["rungs"])
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    cmap = ["C0", "C1", "C2", "C3", "C4", "C5"]
    order = sorted(view.trials, key=lambda t: t.rung if t.rung is not None else -1)
    seen_labels = set()
    for t in order:
        xs, ys = _curve(t)
        if not xs:
            continue
        k = t.rung if t.rung is not None else 0
        if k == 0 or t.status == FAILED:
            color, lw, label = "0.75", 0.8, "stopped at rung 0" if t.status != FAILED else "failed"
        else:
            color = cmap[(k - 1) % len(cmap)]
            lw = 2.0 if k == n_rungs - 1 else 1.2
            label = "reached the top rung" if k == n_rungs - 1 else f"promoted, stopped at rung {k}"
        ax.plot(xs, ys, color=color, lw=lw, label=None if label in seen_labels else label)
        seen_labels.add(label)
        rv = [(r, v) for r, v in _rung_values(t) if v is not None]
        if rv:
            ax.plot([r for r, _ in rv], [v for _, v in rv], "o", ms=3, color=color)
    for r in fid["rungs"]:
        ax.axvline(r, color="0.9", lw=0.8, zorder=0)
    ax.set_xscale("log" if fid["max_resource"] / max(fid["min_resource"], 1e-12) > 8 else "linear")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation value")
    ax.set_title("learning curves (grey: stopped at the first rung)")
    if seen_labels:
        ax.legend(fontsize="small")
    return png(fig)


def plot_epochs_per_rung(view, png) -> bytes:
    table = rung_table(view)
    s = epochs_summary(view)
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"rung {k}\n({e:g} ep)" for k, e in zip(table["rung"], table["epochs"])]
    bars = ax.bar(labels, table["epochs_spent"], color="C0")
    for b, n in zip(bars, table["trials"]):
        ax.annotate(
            f"{n} trials", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize="small"
        )
    ax.set_ylabel("epochs spent")
    ax.set_title(
        f"epochs per rung: {s['trained']:g} trained, {s['saved']:g} saved "
        f"({100 * s['saved_frac']:.0f}%) vs all to the top"
    )
    return png(fig)


def fidelity_facts(view) -> dict:
    """What the report page's multi-fidelity section shows (nas/templates/report.html renders it)."""
    s = epochs_summary(view)
    return {
        "line": format_fidelity(view).split("\n")[0],
        "trained": f"{s['trained']:g}",
        "evaluated": s["evaluated"],
        "max_resource": f"{fidelity_of(view)['max_resource']:g}",
        "full": f"{s['full']:g}",
        "saved": f"{s['saved']:g}",
        "saved_pct": f"{100 * s['saved_frac']:.0f}",
        "rungs": rung_table(view),
    }
